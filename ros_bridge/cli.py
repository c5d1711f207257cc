"""``cobra-edge ros``: the camera node on DDS (ROS 2 wire format), a ROS 2 bag, or rclpy.

    cobra-edge ros --transport dds --model DIR --topics /cam0/image_raw,/cam1/image_raw --prompt TEXT \\
        [--domain-id N] [--interface lo] [--peer ADDR ...] [--multicast]
    cobra-edge ros --transport bag --bag PATH --model DIR --prompt TEXT [--max-speed] --out PATH.jsonl \
        [--out-bag DIR]
    cobra-edge ros --transport rclpy --model DIR --topics ... --prompt TEXT      (needs a ROS 2 installation)
    cobra-edge ros --transport dds|bag --serve http://HOST:8000 [--serve-name ROBOT] ...  (no local model)

--serve URL sends every camera topic's frames to a `cobra-edge serve` application (docs/serve.md) instead of a
local model: the same outputs on the same topics, one stream on the service per topic (named ROBOT:topic; default
ROBOT <hostname>-<pid>), so many robots' nodes share one cluster. --model, --backend, --threads, --device and
--precision are then the service's business (not given here); the node refuses to start (exit 2) when the URL
does not answer /v1/health.

Artifacts with action heads also publish <topic>/action (std_msgs/Float32MultiArray, dim[0].label = the value
names in order, e.g. "bearing,distance"); --act answers by the heads alone (no text, no <topic>/answer), and

    --twist /cmd_vel --twist-map 'linear.x=0.5*distance angular.z=-1.0*bearing' [--twist-source TOPIC] \
        [--max-linear 0.5] [--max-angular 1.0] [--deadline-ms 500]

publishes a geometry_msgs/Twist per fresh answer of the source topic (clamped per component; NaN -> 0) and, on
live transports, zero velocity every --deadline-ms while no fresh answer comes (counted as watchdog_zero).

SIGINT / SIGTERM stop it cleanly within 2 s in every phase (start-up, replay, drain): the worker finishes its
batch (or is left behind if it cannot within 1 s), the DDS participant is deleted, the bag output closed; exit 0
(a signal during start-up: 130 / 143). Exit 3 when the inference worker failed (the message says why), 2 for bad
options or a bad artifact, 1 when DDS participants were left open.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from edge.argtypes import (DEFAULT_PROMPT, device_arg, non_negative_float, non_negative_int, positive_float,
                           positive_int, prompt_text)
from edge.imageheader import DEFAULT_MAX_PIXELS
from edge.signals import stop_on_signals

from .twist import DEFAULT_DEADLINE_MS, DEFAULT_MAX_ANGULAR_RADPS, DEFAULT_MAX_LINEAR_MPS, TwistConfig, parse_twist_map

EXIT_WORKER_FAILED = 3


def add_parser(sub) -> None:
    r = sub.add_parser("ros", help="ROS 2 camera node: answers on <topic>/answer, latency on <topic>/latency",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--transport", choices=("dds", "bag", "rclpy"), default="dds")
    r.add_argument("--model", help="artifact directory (cobra-edge export); required unless --serve")
    r.add_argument("--topics", help="comma-separated camera topics, one stream each (bag: default all recorded "
                                    "Image/CompressedImage topics); names ending in /compressed are CompressedImage")
    r.add_argument("--prompt", type=prompt_text, default=DEFAULT_PROMPT)
    r.add_argument("--answers", type=prompt_text,
                   help="comma-separated answer set: score these instead of decoding (e.g. yes,no)")
    r.add_argument("--max-new-tokens", type=non_negative_int, default=16)
    r.add_argument("--max-age-ms", type=positive_float, default=None,
                   help="drop frames older than this when their turn comes")
    r.add_argument("--min-interval-ms", type=non_negative_float, default=None,
                   help="answer each topic at most this often")
    r.add_argument("--max-batch", type=positive_int, default=8)
    r.add_argument("--mode", choices=("reset", "continuous"), default="reset")
    r.add_argument("--on-nonfinite", choices=("reset", "fail"), default="reset",
                   help="a topic whose state stops being finite: reset it, or fail its frames until restart")
    r.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help="refuse camera images larger than this many pixels (compressed ones before decoding; "
                        "default: 8192 x 4320, every 8K camera)")
    r.add_argument("--backend", default="onnxruntime")
    r.add_argument("--threads", type=positive_int, default=None, help="intra-op threads per graph")
    device_arg(r)
    r.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8", "int4"),
                   help="which of the artifact's variants to run (see cobra-edge inspect)")
    srv = r.add_argument_group("serve application instead of a local model (docs/serve.md)")
    srv.add_argument("--serve", metavar="URL",
                     help="answer every topic on the cobra-edge serve application at URL (http://HOST:PORT) "
                          "instead of a local model: not with --model, --backend, --threads, --device, --precision, "
                          "--on-nonfinite fail; --transport dds or bag")
    srv.add_argument("--serve-name", metavar="NAME",
                     help="this node's prefix of its stream ids on the service, NAME:<topic> (letters, digits, "
                          "'-', '_', '.'; default <hostname>-<pid>); a fixed name shows which robot a stream is")
    srv.add_argument("--serve-format", choices=("png", "jpeg", "raw"), default="png",
                     help="how frames travel: png (lossless: the answers equal a local model's), jpeg (smaller, "
                          "lossy) or raw BGR (no encoding, largest)")
    dds = r.add_argument_group("dds transport")
    dds.add_argument("--domain-id", type=_domain_id, default=os.environ.get("ROS_DOMAIN_ID", "0"),
                     help="DDS domain 0..232 (default: $ROS_DOMAIN_ID or 0)")
    dds.add_argument("--interface", default="lo",
                     help="network interface for DDS (default lo: loopback only; e.g. eth0 to reach a camera driver "
                          "on another machine)")
    dds.add_argument("--peer", action="append", default=None,
                     help="unicast discovery peer (repeatable; default 127.0.0.1 on lo, none elsewhere)")
    dds.add_argument("--multicast", action="store_true", help="allow multicast discovery (default: on unless lo)")
    act = r.add_argument_group("actions and velocity (artifacts with action heads; docs/ros2.md)")
    act.add_argument("--act", action="store_true",
                     help="the control path: the heads' values only, no text decoded and no <topic>/answer "
                          "(default: answers as usual, with the heads' values on <topic>/action too)")
    act.add_argument("--twist", metavar="TOPIC", help="publish geometry_msgs/Twist on TOPIC (e.g. /cmd_vel)")
    act.add_argument("--twist-map", nargs="+", metavar="FIELD=GAIN*VALUE",
                     help="head values -> Twist fields, e.g. linear.x=0.5*distance angular.z=-1.0*bearing "
                          "(fields linear.x/y/z in m/s, angular.x/y/z in rad/s; unnamed fields are 0; quote it)")
    act.add_argument("--twist-source", metavar="TOPIC",
                     help="the camera topic whose answers drive the Twist (default: the first of --topics)")
    act.add_argument("--max-linear", type=positive_float, metavar="M_PER_S",
                     help=f"clamp each linear field to +-this, m/s (default {DEFAULT_MAX_LINEAR_MPS})")
    act.add_argument("--max-angular", type=positive_float, metavar="RAD_PER_S",
                     help=f"clamp each angular field to +-this, rad/s (default {DEFAULT_MAX_ANGULAR_RADPS})")
    act.add_argument("--deadline-ms", type=positive_float, metavar="MS",
                     help="watchdog: zero velocity when no answer of a frame younger than this came for this long; "
                          f"and answers of older frames send no Twist (default {DEFAULT_DEADLINE_MS:g})")
    bag = r.add_argument_group("bag transport")
    bag.add_argument("--bag", help="ROS 2 bag directory (MCAP or SQLite3)")
    bag.add_argument("--max-speed", action="store_true", help="replay as fast as the node answers (default: "
                                                              "recorded pace)")
    bag.add_argument("--out", help="JSON-lines file for answers, latency records, errors, actions and twists")
    bag.add_argument("--out-bag", metavar="DIR", help="also record what the node publishes into a new ROS 2 bag "
                                                      "(MCAP; String, Float32MultiArray and Twist messages)")
    r.set_defaults(func=cmd_ros)


def _domain_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 232:
        raise argparse.ArgumentTypeError(f"expected a DDS domain id 0..232, got {text!r}")
    return value


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _twist(args) -> TwistConfig | None:
    """--twist and its options -> TwistConfig (ValueError naming the option at fault)."""
    given = [name for name in ("twist_map", "twist_source", "max_linear", "max_angular", "deadline_ms")
             if getattr(args, name) is not None]
    if args.twist is None:
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} needs --twist TOPIC")
        return None
    if args.twist_map is None:
        raise ValueError("--twist needs --twist-map FIELD=GAIN*VALUE ... (e.g. linear.x=0.5*distance)")
    limits = {k: v for k, v in (("max_linear_mps", args.max_linear), ("max_angular_radps", args.max_angular),
                                ("deadline_ms", args.deadline_ms)) if v is not None}
    return TwistConfig(args.twist, parse_twist_map(args.twist_map), args.twist_source, **limits)


def _check_serve(args) -> None:
    """--serve against the local-model options (ValueError naming the option at fault)."""
    if args.serve is None:
        if args.model is None:
            raise ValueError("--model DIR (an artifact directory) or --serve URL (a cobra-edge serve application) "
                             "is required")
        if args.serve_name is not None or args.serve_format != "png":
            raise ValueError(f"--serve-{'name' if args.serve_name is not None else 'format'} goes with --serve URL")
        return
    local = [opt for opt, given in (("--model", args.model is not None), ("--backend", args.backend != "onnxruntime"),
                                    ("--threads", args.threads is not None), ("--device", args.device != "cpu"),
                                    ("--precision", args.precision != "fp32")) if given]
    if local:
        raise ValueError(f"--serve {args.serve}: the service runs the model; {local[0]} is a local model's option "
                         "(give it to `cobra-edge serve`)")
    if args.on_nonfinite != "reset":
        raise ValueError("--on-nonfinite fail: the serve application resets a stream whose state stops being finite; "
                         "only --on-nonfinite reset goes with --serve")
    if args.transport == "rclpy":
        raise ValueError("--serve works with --transport dds or bag (the rclpy node loads a local model)")
    name = args.serve_name
    if name is not None and (not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name)):
        raise ValueError(f"--serve-name {name!r}: 1..64 letters, digits, '-', '_' or '.'")


def _transport(args):
    if args.transport == "dds":
        try:
            from .dds import DdsConfig, DdsTransport
        except ImportError as e:
            raise SystemExit(f"cobra-edge ros: the dds transport needs cyclonedds: pip install 'cobra-edge[ros]' ({e})")
        loopback = args.interface == "lo"
        peers = tuple(args.peer) if args.peer is not None else (("127.0.0.1",) if loopback else ())
        config = DdsConfig(args.domain_id, args.interface, peers, multicast=args.multicast or not loopback)
        return DdsTransport(config), f"DDS domain {config.domain_id} on {config.interface}"
    from .bag import BagTransport

    if not args.bag or not (args.out or args.out_bag):
        raise ValueError("--transport bag needs --bag PATH and --out PATH (JSON lines) and/or --out-bag DIR")
    return BagTransport(args.bag, args.out, max_speed=args.max_speed, out_bag=args.out_bag), f"bag {args.bag}"


def cmd_ros(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    _check_serve(args)
    if args.transport == "rclpy":
        from .rclpy_node import main as rclpy_main

        return rclpy_main(_rclpy_args(args))

    from .node import CameraNode, NodeConfig

    topics = _split(args.topics)
    if topics is None and args.transport != "bag":
        raise ValueError("--topics is required (comma-separated camera topics)")
    twist = _twist(args)  # bad options are refused before the transport opens
    transport, where = _transport(args)
    if args.serve is None:
        print(f"cobra-edge ros: loading {args.model} ({args.precision}) for {where}", flush=True)
    else:
        print(f"cobra-edge ros: connecting to the serve application at {args.serve} for {where}", flush=True)
    try:
        if topics is None:  # a bag: every camera topic it recorded
            topics = transport.camera_topics
            if not topics:
                raise ValueError(f"bag {args.bag} has no sensor_msgs/Image or CompressedImage topics")
        config = NodeConfig(topics, args.prompt, _split(args.answers), args.max_new_tokens, args.max_age_ms,
                            args.min_interval_ms, args.max_batch, args.mode, args.max_pixels, args.on_nonfinite,
                            act=args.act, twist=twist)
        if args.serve is None:
            node = CameraNode.from_artifact(args.model, transport, config, args.backend, args.threads,
                                            args.precision, args.device)
        else:
            node = CameraNode.from_service(args.serve, transport, config, namespace=args.serve_name,
                                           frame_format=args.serve_format)
    except BaseException:
        transport.close()  # bad options, a bad artifact or a signal must not leave a DDS participant or a file open
        raise

    stop = threading.Event()
    print(f"cobra-edge ros: {len(config.topics)} camera topics on {where}: {', '.join(config.topics)} "
          f"(answers on <topic>/answer, latency on <topic>/latency)", flush=True)
    if args.serve is not None:
        rt = node.runtime
        print(f"cobra-edge ros: answered by {rt.url} ({rt.manifest.model.get('name', 'model')}), streams "
              f"{', '.join(s.remote_id for s in rt.streams.values())}", flush=True)
    if node.action_labels:
        print(f"cobra-edge ros: actions on <topic>/action: [{', '.join(node.action_labels)}]"
              + (" (--act: no text answers)" if args.act else ""), flush=True)
    if twist is not None:
        print(f"cobra-edge ros: twist {twist.describe(transport.live)}", flush=True)
    with stop_on_signals(stop):
        left = node.run(stop)
    for topic in config.topics:
        print(f"  {topic}: {node.topic_counters(topic)}")
    if args.transport == "bag":
        if args.out:
            print(f"wrote {transport.lines} lines to {args.out}")
        if args.out_bag:
            print(f"wrote {transport.bag_messages} messages to bag {args.out_bag}")
    if node.failure is not None:
        print(f"cobra-edge ros: error: the inference worker failed ({type(node.failure).__name__}: {node.failure}); "
              "stopped, frames after that were not answered", file=sys.stderr, flush=True)
        code = EXIT_WORKER_FAILED
    else:
        print(f"cobra-edge ros: stopped; DDS participants left open: {left}" if args.transport == "dds"
              else "cobra-edge ros: stopped", flush=True)
        code = 0 if left == 0 else 1
    if node.worker_busy:  # a daemon thread still inside a graph: do not let interpreter shutdown race it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _rclpy_args(args) -> list[str]:
    """Our options as ROS 2 parameters (--ros-args -p name:=value) for the rclpy node."""
    params = {"model": args.model, "topics": args.topics or "", "prompt": args.prompt,
              "answers": args.answers or "", "max_new_tokens": args.max_new_tokens, "backend": args.backend}
    if args.act:
        params["act"] = "true"
    if args.twist_map:
        params["twist_map"] = ",".join(args.twist_map)
    for name in ("twist", "twist_source", "max_linear", "max_angular", "deadline_ms"):  # only those given
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    out = ["--ros-args"]
    for k, v in params.items():
        out += ["-p", f"{k}:={v}"]
    return out

