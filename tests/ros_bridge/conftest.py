"""Fixtures of the ROS 2 bridge tests: the tiny model exported with action heads (skipped without torch)."""

from __future__ import annotations

import pytest

HEAD_VALUES = ("bearing", "distance")  # the order of <topic>/action's data


@pytest.fixture(scope="session")
def head_artifact(tiny_model, tmp_path_factory):
    """The tiny model with one random head ``target`` -> bearing (1, [-1, 1]) and distance (m, [0, 4]); about 20 s."""
    from export.heads import HeadConfig, HeadOutput, build_heads
    from export.onnx_export import export_model

    heads = build_heads([HeadConfig("target", tiny_model.cfg.lm.d_model,
                                    (HeadOutput("bearing", "1", -1, 1), HeadOutput("distance", "m", 0, 4)))], seed=3)
    out = tmp_path_factory.mktemp("heads") / "tiny-heads"
    export_model(tiny_model, out, heads=tuple(heads), heads_source={"source": "random", "seed": 3})
    return out
