"""A closed-loop simulation: a robot with a camera in a small 2-D world, driven by the runtime's answers, so that
success can be measured against latency (docs/loop.md). Torch-free: numpy, OpenCV and edge.world.

    from edge.sim import OraclePolicy, run_episodes
    results = run_episodes(OraclePolicy(), n=20, seed=0, latency=20.0, multiplier=8)
    results.summary()["success_rate"]

    world.py     the arena, the robot, the target and obstacles, drawn from a seed
    camera.py    the robot's view as an edge.world.Scene (then pixels) and the exact truth of that view
    dynamics.py  commands (v, w) and the robot's motion in sub-steps with collision checks
    policies.py  oracle (truth), choose (answer-set scoring), act (head outputs), and their shared controller
    loop.py      one tick: newest frame, policy call, latency passes under the previous command, new command
    report.py    sweeps over policies, modes and latency multipliers: JSON, Markdown, PNG
    cli.py       cobra-edge loop --sim
"""

from .camera import CameraConfig, Truth, View, look
from .dynamics import STOP, Command
from .loop import Episode, LoopSettings, Results, run_episode, run_episodes
from .policies import (ACT_KEYS, ACT_OPTIONAL, PROMPT, WORDS, ActPolicy, ChoosePolicy, Controller, OraclePolicy,
                       stream_act_fn)
from .world import Body, Robot, World, WorldConfig, make_world

__all__ = ["ACT_KEYS", "ACT_OPTIONAL", "PROMPT", "STOP", "WORDS", "ActPolicy", "Body", "CameraConfig", "ChoosePolicy",
           "Command", "Controller", "Episode", "LoopSettings", "OraclePolicy", "Results", "Robot", "Truth", "View",
           "World", "WorldConfig", "look", "make_world", "run_episode", "run_episodes", "stream_act_fn"]
