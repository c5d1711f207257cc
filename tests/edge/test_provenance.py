"""edge/provenance.py: the one-line description of where an artifact's weights come from."""

from edge.provenance import describe


def test_trained_weights_describe_their_run_and_any_vision_pretraining():
    record = {"model": "tiny-ldp-96", "seed": 0, "steps": 1200, "minutes": 49.5,
              "validation": {"accuracy": {"colour": 0.8}}}
    plain = describe({"source": "trained", "record": record})
    assert plain == "trained: tiny-ldp-96, seed 0, 1200 steps, 49.5 min; validation colour 80%"
    pre = describe({"source": "trained", "record": {**record, "vision_pretraining": {"steps": 3000, "minutes": 10.5}}})
    assert pre == ("trained: tiny-ldp-96, seed 0, 1200 steps, 49.5 min after 3000 steps / 10.5 min of vision "
                   "pretraining; validation colour 80%")
    staged = describe({"source": "trained", "record": {**record, "steps": 900, "minutes": 40.1, "minutes_in_all": 105.7,
                                                       "stages": ["questions", "motion-large", "mixed"]}})
    assert staged == ("trained: tiny-ldp-96, seed 0, 3 stages (questions, motion-large, mixed), 105.7 min in all; "
                      "the last 900 steps / 40.1 min; validation colour 80%")
    assert describe({"source": "random", "seed": 3}).startswith("random (seed 3)")


def test_a_checkpoint_is_named_by_its_path_and_its_sha256():
    """Eval files keep this line: a scratch path alone (/tmp/...) would not say which weights were measured."""
    digest = "054dbb3b7d31d519eb967c0da0bf602d417fb783b0cc0ba38365a3b57fb9bf5c"
    assert describe({"source": "checkpoint", "path": "/tmp/s13/s13.safetensors", "sha256": digest}) == (
        "checkpoint: /tmp/s13/s13.safetensors (sha256 054dbb3b7d31d519)")
    assert describe({"source": "checkpoint", "path": "/w/x.safetensors"}) == "checkpoint: /w/x.safetensors"
