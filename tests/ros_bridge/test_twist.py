"""The Twist options (mapping, limits, source) and the watchdog on their own, and the node's refusals of options an
artifact cannot serve; the node on DDS with them: test_dds_actions.py, in a bag replay: test_bag.py."""

import math
import threading
import time

import pytest

from .rosmsgs import image_msg, scene, write_bag  # skips without rosbags

from edge.cli import main
from ros_bridge.messages import TwistMsg, Vector3
from ros_bridge.twist import TwistConfig, TwistTerm, parse_twist_map
from ros_bridge.watchdog import Watchdog

SEC = 1_000_000_000


def test_the_mapping_syntax():
    terms = parse_twist_map(["linear.x=0.5*distance", "angular.z=bearing*-1.0,linear.y=bearing"])
    assert terms == (TwistTerm("linear.x", "distance", 0.5), TwistTerm("angular.z", "bearing", -1.0),
                     TwistTerm("linear.y", "bearing", 1.0))
    assert parse_twist_map(" linear.x=2e-1*distance, ") == (TwistTerm("linear.x", "distance", 0.2),)
    assert str(terms[1]) == "angular.z=-1*bearing"


@pytest.mark.parametrize("text, message", [
    ("", "--twist-map: empty"),
    ("linear.x", "'linear.x': expected FIELD=GAIN*VALUE"),
    ("linear.x=", "'linear.x=': expected FIELD=GAIN*VALUE"),
    ("linear.q=1*distance", "unknown field 'linear.q' (one of linear.x, linear.y, linear.z, angular.x"),
    ("linear.x=0.5*0.2", "expected one head value name times one finite gain"),
    ("linear.x=a*b", "expected one head value name times one finite gain"),
    ("linear.x=nan*distance", "expected one head value name times one finite gain"),
    ("linear.x=inf*distance", "expected one head value name times one finite gain"),
    ("linear.x=1*2*distance", "expected one head value name times one finite gain"),
    ("linear.x=0.5*dist-ance", "'dist-ance' is not a head value name"),
    ("linear.x=distance angular.z=bearing linear.x=bearing", "field linear.x mapped more than once"),
])
def test_a_bad_mapping_is_an_error_naming_the_option_and_the_term(text, message):
    with pytest.raises(ValueError, match="^--twist-map") as e:
        parse_twist_map(text)
    assert message in str(e.value), str(e.value)
    with pytest.raises(ValueError, match="^twist_map"):  # the rclpy parameter's name, where it came from there
        parse_twist_map(text, "twist_map")


def test_the_command_applies_gains_then_limits_and_stops_on_nan():
    cfg = TwistConfig("/cmd_vel", "linear.x=0.5*distance angular.z=-2*bearing", max_linear_mps=0.6,
                      max_angular_radps=0.8)
    assert cfg.source is None and cfg.deadline_ms == 500.0
    assert cfg.command({"distance": 1.0, "bearing": 0.25}) == TwistMsg(Vector3(0.5, 0, 0), Vector3(0, 0, -0.5))
    assert cfg.command({"distance": 4.0, "bearing": -1.0}) == TwistMsg(Vector3(0.6, 0, 0), Vector3(0, 0, 0.8))
    assert cfg.command({"distance": -9.0, "bearing": 1.0}) == TwistMsg(Vector3(-0.6, 0, 0), Vector3(0, 0, -0.8))
    for bad in (math.nan, math.inf, -math.inf):  # a value that is no number stops that field, not saturates it
        cmd = cfg.command({"distance": bad, "bearing": 0.1})
        assert cmd.linear.x == 0.0 and cmd.angular.z == pytest.approx(-0.2), cmd
    assert cfg.command({"distance": math.nan, "bearing": math.nan}).is_zero


@pytest.mark.parametrize("kwargs, message", [
    ({"max_linear_mps": -1}, "--max-linear (max_linear): expected a finite number > 0 (m/s), got -1"),
    ({"max_angular_radps": math.nan}, "--max-angular (max_angular): expected a finite number > 0 (rad/s), got nan"),
    ({"max_angular_radps": True}, "--max-angular"),
    ({"deadline_ms": 0}, "--deadline-ms (deadline_ms): expected a finite number > 0 (milliseconds), got 0"),
    ({"topic": "cmd vel"}, "--twist (twist): invalid ROS topic name 'cmd vel'"),
    ({"source": "/cam 0"}, "--twist-source (twist_source): invalid ROS topic name"),
    ({"terms": ()}, "--twist needs --twist-map"),
])
def test_bad_limits_and_topics_are_errors_naming_the_option(kwargs, message):
    args = {"topic": "/cmd_vel", "terms": "linear.x=distance", **kwargs}
    with pytest.raises(ValueError) as e:
        TwistConfig(**args)
    assert message in str(e.value), str(e.value)


def test_the_watchdog_sends_zero_once_per_deadline_while_fed_nothing_and_stops_cleanly():
    sent, lock = [], threading.Lock()

    def record(what):
        with lock:
            sent.append((time.monotonic(), what))

    dog = Watchdog(0.1, lambda: record("zero"), "test")
    dog.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.35:  # fed every 20 ms: never stale
        assert dog.feed(lambda: record("cmd"))
        fed_last = time.monotonic()  # the deadline runs from the last feed (not from when the loop ends, ~20 ms on)
        time.sleep(0.02)
    time.sleep(0.6)  # starved: zeros at ~0.1, 0.2, ... s (later on a loaded machine: the thread may wake late)
    dog.stop()
    zeros = [t for t, what in sent if what == "zero"]
    print("zeros after the last feed (s):", [round(t - fed_last, 3) for t in zeros])
    assert 2 <= dog.zeros <= 6 and dog.stale_periods == 1, sent
    assert len(zeros) == dog.zeros + 1  # the stale period's + the last one at stop
    assert 0.09 <= zeros[0] - fed_last <= 0.35
    assert all(b - a >= 0.08 for a, b in zip(zeros[:-2], zeros[1:-1]))  # once per deadline, never faster
    assert not dog._thread.is_alive()
    assert not dog.feed(lambda: record("late cmd")) and sent[-1][1] == "zero"  # nothing after the last zero
    dog.stop()  # idempotent: no second last zero
    assert len([w for _, w in sent if w == "zero"]) == dog.zeros + 1


def _bag(tmp_path):
    return write_bag(tmp_path / "bag", "mcap", [("/cam0/image_raw", SEC, image_msg(scene(), "rgb8"))])


@pytest.mark.parametrize("extra, message", [
    (["--twist-map", "linear.x=distance"], "--twist-map needs --twist TOPIC"),
    (["--deadline-ms", "300"], "--deadline-ms needs --twist TOPIC"),
    (["--twist", "/cmd_vel"], "--twist needs --twist-map"),
    (["--twist", "/cmd_vel", "--twist-map", "linear.x=distance", "speed*2"], "--twist-map 'speed*2': expected"),
    (["--twist", "/cmd vel", "--twist-map", "linear.x=distance"], "--twist (twist): invalid ROS topic name"),
])
def test_bad_twist_options_are_refused_before_anything_loads(tmp_path, capsys, extra, message):
    rc = main(["ros", "--transport", "bag", "--bag", str(_bag(tmp_path)), "--model", str(tmp_path / "none"),
               "--out", str(tmp_path / "o.jsonl"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err


def test_out_of_range_limits_are_refused_by_the_option_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["ros", "--transport", "bag", "--bag", "b", "--model", "m", "--twist", "/cmd_vel", "--twist-map",
              "linear.x=distance", "--max-linear", "-0.5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--max-linear" in err and "expected a number > 0" in err, err


def test_options_the_artifact_cannot_serve_are_clear_errors(tiny_artifact, head_artifact, tmp_path, capsys):
    def run(artifact, *extra):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}.jsonl"
        rc = main(["ros", "--transport", "bag", "--bag", str(bag), "--model", str(artifact), "--out", str(out),
                   *extra])
        return rc, capsys.readouterr().err

    bag = _bag(tmp_path)
    rc, err = run(tiny_artifact, "--act")
    assert rc == 2 and "--act: artifact" in err and "has no action heads (export it with --heads)" in err, err
    rc, err = run(head_artifact, "--twist", "/cmd_vel", "--twist-map", "linear.x=0.5*speed")
    assert rc == 2 and "--twist-map linear.x=0.5*speed: 'speed' is not an action-head value" in err, err
    assert "(its values: bearing, distance)" in err
    rc, err = run(head_artifact, "--twist", "/cmd_vel", "--twist-map", "linear.x=distance", "--twist-source",
                  "/cam1/image_raw")
    assert rc == 2 and "--twist-source /cam1/image_raw: not one of the camera topics ['/cam0/image_raw']" in err, err
    rc, err = run(head_artifact, "--twist", "/cam0/image_raw/action", "--twist-map", "linear.x=distance")
    assert rc == 2 and "already a camera topic or one of the node's outputs" in err, err
    rc, err = run(head_artifact, "--act", "--answers", "yes,no")
    assert rc == 2 and "answer-set scoring (--answers) does not give" in err, err
    rc, err = run(head_artifact, "--out-bag", str(tmp_path))
    assert rc == 2 and f"--out-bag {tmp_path}: already exists" in err, err
