"""bench/errors.py: the error splits are read off the scenes' geometry, and count what they should."""

import pytest

from bench.errors import NEGATIVES, breakdown, presence_kind
from edge.world import eval_items


def test_presence_kinds_follow_the_scene():
    items = eval_items(4242, 80, families=("presence",))
    kinds = [presence_kind(i) for i in items]
    assert set(kinds) <= set(NEGATIVES) and "yes" in kinds and "colour and kind elsewhere" in kinds
    for item, kind in zip(items, kinds):
        assert (kind == "yes") == (item.question.answer == "yes")  # the split agrees with the world's own label
        words = item.question.prompt.rstrip("?").split()
        colours = {s.colour for s in item.scenes[-1].shapes}
        assert (words[-2] in colours) == (kind in ("yes", "colour only", "colour and kind elsewhere"))


def test_breakdown_counts_right_answers_per_split():
    items = eval_items(4242, 60, families=("presence",))
    always_yes = breakdown(items, ["Yes"] * len(items))
    q = always_yes["question"]
    assert q["yes"]["accuracy"] == 1.0 and all(q[k]["accuracy"] == 0.0 for k in q if k != "yes")
    assert sum(v["of"] for v in q.values()) == len(items) == sum(v["of"] for v in always_yes["shapes"].values())
    truth = breakdown(items, [i.question.answer for i in items])
    assert truth["accuracy"] == 1.0 and all(v["accuracy"] == 1.0 for v in truth["question"].values())

    motion = eval_items(4242, 30, families=("motion",))
    doc = breakdown(motion, ["still"] * len(motion))
    assert set(doc["frames"]) <= {"2", "3", "4"} and sum(v["of"] for v in doc["frames"].values()) == 30
    assert sum(c["count"] for c in doc["confusion"]) == 30 and {c["answer"] for c in doc["confusion"]} == {"still"}
    assert doc["accuracy"] == sum(i.question.answer == "still" for i in motion) / 30
    with pytest.raises(ValueError, match="items of one family expected"):
        breakdown(items[:1] + motion[:1], ["yes", "left"])
