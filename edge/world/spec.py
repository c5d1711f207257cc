"""The synthetic world's distribution, written once: colours, shapes, sizes, positions, backgrounds, motion.

docs/world.md describes the same numbers for people who draw scenes of their own; a test checks that the two
agree. Coordinates are normalised to the frame: x from the left edge (0) to the right edge (1), y from the top
(0) to the bottom (1). A shape's ``size`` is the side of its bounding box as a fraction of the frame's shorter
side, so shapes keep their proportions in any aspect ratio.
"""

from __future__ import annotations

# name -> RGB of the fill; each shape's fill is this plus a uniform integer in [-COLOUR_JITTER, COLOUR_JITTER]
# per channel (clipped to [0, 255]), then the background's sensor noise is added on top
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (235, 220, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "purple": (140, 40, 190),
    "white": (240, 240, 240),
}
COLOUR_JITTER = 20
SHAPES = ("circle", "square", "triangle")

# frame sizes (width, height) a scene is drawn at, chosen uniformly: webcams, robot cameras, a square crop and a
# portrait phone; the model sees every one resized to its square input (Cobra's resize-naive)
FRAME_SIZES = ((320, 240), (640, 480), (800, 600), (424, 240), (640, 360), (1280, 720), (752, 480), (480, 480),
               (480, 640))
SIZE_RANGE = (0.16, 0.30)  # bounding-box side / shorter frame side, uniform
MAX_SHAPES = 4  # 1 to 4 shapes per scene, uniform
MAX_OVERLAP = 0.25  # intersection of two bounding boxes / the smaller box's area, at most (every frame)
# label margins: a shape's centre is never this close (in normalised x or y) to a boundary its labels depend on:
# x = 1/3 and 2/3 (left / centre / right), y = 1/2 (the path region's top edge)
BAND = 0.04
THIRDS = (1 / 3, 2 / 3)
PATH_REGION = (1 / 3, 2 / 3, 0.5, 1.0)  # x0, x1, y0, y1: "the path ahead" is the lower centre of the view

# backgrounds: a low-saturation base (grey level uniform in GREY_RANGE, each channel offset by up to TINT), drawn
# as one of BACKGROUNDS, plus Gaussian sensor noise of sigma uniform in NOISE_SIGMA (a 64 x 64 noise tile,
# repeated from a random offset), per frame
GREY_RANGE = (20, 150)
TINT = 12
BACKGROUNDS = ("flat", "gradient", "checker", "stripes")
CHECKER_CELL = (6, 40)  # pixels
STRIPE_PERIOD = (8, 60)  # pixels
CONTRAST = 35  # the second tone of gradient / checker / stripes differs from the base by up to this much
NOISE_SIGMA = (2.0, 12.0)
NOISE_TILE = 64

# distractors: 0 to MAX_DISTRACTORS grey lines (1 to 3 px thick) and specks (radius 1 to 1.5 % of the shorter
# side), grey level in DISTRACTOR_GREY; they are never counted as shapes and never block the path
MAX_DISTRACTORS = 4
DISTRACTOR_GREY = (50, 200)

# motion (sequences of 2 to 4 frames): each shape moves one of MOTIONS at a constant speed uniform in SPEED_RANGE
# (normalised units per frame along its axis; 0 for "still"). So that one frame cannot tell a direction, the
# asked shape's last position is drawn from the same range whatever its direction: at least the longest
# possible travel, (frames - 1) * SPEED_RANGE[1], away from every edge
MOTIONS = ("left", "right", "up", "down", "still")
SPEED_RANGE = (0.05, 0.09)
SEQUENCE_FRAMES = (2, 4)
