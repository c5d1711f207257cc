"""docs/loop.md states the world's, the camera's and the controller's constants as the code has them."""

import math
import re
from dataclasses import fields

from edge.sim import CameraConfig, Controller, WorldConfig
from tests.conftest import REPO

DEGREES = {"target_bearing", "hfov"}  # radians in the code, degrees on the page


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]


def test_the_constants_table_matches_the_code():
    page = (REPO / "docs" / "loop.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", page, re.M))
    rows["width"], rows["height"] = (str(x) for x in _numbers(re.search(r"^\| `width` x `height` \| ([^|]+)\|", page,
                                                                         re.M).group(1)))
    for config in (WorldConfig(), CameraConfig(), Controller()):
        for f in fields(config):
            assert f.name in rows, f"docs/loop.md does not state {type(config).__name__}.{f.name}"
            value = getattr(config, f.name)
            want = [math.degrees(value)] if f.name in DEGREES else list(value) if isinstance(value, tuple) else [value]
            got = _numbers(rows[f.name])[:len(want)]
            assert got == [round(w, 6) for w in want], (f.name, rows[f.name], want)
