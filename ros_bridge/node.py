"""CameraNode: one stream per camera topic; answers, latency records and errors out, whatever the middleware.

    node = CameraNode.from_artifact("artifacts/cobra", DdsTransport(), NodeConfig(
        topics=["/cam0/image_raw", "/cam1/image_raw/compressed"], prompt="Is the path clear?"))
    node.run(stop)          # until stop is set (or a bag ends); then the transport is closed

Per answered frame, on ``<topic>/answer`` (std_msgs/String holding JSON):
    {"kind": "answer", "topic", "stamp": {"sec", "nanosec"}, "frame_id", "text", "tokens"}
    (+ "probability", "log_probs" with an answer set)
and on ``<topic>/latency``: the same topic/stamp/frame_id plus ``stages_ms`` (preprocess, vision, projector,
prefill, decode, total), ``age_ms`` (arrival -> start of work), ``stamp_to_answer_ms`` (header stamp -> answer,
live transports only: it assumes the camera's clock is this machine's), ``batch_size``, ``dropped`` and the
topic's counters. A frame that cannot be converted or answered gives ``{"kind": "error", ...}`` on
``<topic>/error``; it is counted on its topic and never stops the others.

Artifacts with action heads (docs/ros2.md, "Actions and velocity"): per answered frame, on ``<topic>/action``, a
std_msgs/Float32MultiArray of every head value (messages.Float32MultiArrayMsg.labelled: dim[0].label lists the
value names in order, comma-separated); the answer and latency JSON carry the same values as ``outputs`` (the
latency record is what ties them to the frame's header stamp: the array type has no header). ``act``: the control
path (no text decoded, no ``<topic>/answer``). ``twist`` (twist.TwistConfig): a geometry_msgs/Twist per fresh answer
of one camera topic, and a watchdog (watchdog.py, live transports) sending zero velocity when fresh answers stop.

Scheduling is edge.FrameScheduler's: per topic the newest frame wins (live cameras); recorded sources
(``transport.live`` False) are fed losslessly, each frame waiting until the previous one of its topic is taken.

Failure behaviour: no message can stop the node. ``on_message`` never raises: a message that cannot become a frame
(unknown encoding, corrupt bytes, a header claiming more than ``max_pixels``) is a conversion error on its topic;
a frame that fails in a batch is a runtime error on its topic (edge.batch turns any exception into one). Counts
add up per topic: received = answered + superseded + stale + errors + conversion_errors, once nothing is pending.
If the inference worker itself fails, the node stops (``failure`` holds why; ``cobra-edge ros`` exits 3) instead
of receiving forever with nobody answering; every wait (a recorded frame waiting its turn, the drain after a bag)
ends within 0.1 s of a stop, a signal or that failure.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

from edge.checks import as_count
from edge.errors import CobraEdgeError, WorkerFailed
from edge.imageheader import DEFAULT_MAX_PIXELS
from edge.profile import STAGES
from edge.runtime import Answer, Runtime
from edge.scheduler import FrameScheduler

from .convert import ConversionError, as_message, to_bgr
from .messages import FLOAT32_ARRAY_TYPE, TWIST_TYPE, Float32MultiArrayMsg, Header, TwistMsg, type_for_topic
from .transport import Transport, check_topic
from .twist import TwistConfig
from .watchdog import Watchdog

log = logging.getLogger("cobra_edge.ros")


@dataclass
class NodeConfig:
    topics: list[str]
    prompt: str
    answers: list[str] | None = None  # answer set: score these (closed questions) instead of decoding
    max_new_tokens: int = 16
    max_age_ms: float | None = None  # drop frames older than this (arrival time) when their turn comes
    min_interval_ms: float | None = None  # answer each topic at most this often
    max_batch: int = 8
    mode: str = "reset"  # edge stream mode: "reset" (Cobra, per frame) or "continuous"
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused (compressed ones before decoding)
    on_nonfinite: str = "reset"  # a topic whose state stops being finite: "reset" it, or "fail" until restart
    act: bool = False  # the control path: action heads only, no text decoded, no <topic>/answer
    twist: TwistConfig | None = None  # a Twist from the heads' values of one camera topic, with a watchdog

    def __post_init__(self):
        self.max_pixels = as_count(self.max_pixels, "max_pixels", 1)
        if not self.topics:
            raise ValueError("no camera topics given")
        self.topics = [check_topic(t) for t in self.topics]
        if len(set(self.topics)) != len(self.topics):
            raise ValueError(f"camera topics repeat: {self.topics}")
        if self.answers is not None and (self.act or self.twist is not None):
            raise ValueError("--act and --twist need the action heads' values, which answer-set scoring (--answers) "
                             "does not give; drop --answers")
        if self.twist is not None:
            tw = self.twist
            if tw.source is None:
                tw.source = self.topics[0]
            elif tw.source not in self.topics:
                raise ValueError(f"--twist-source {tw.source}: not one of the camera topics {self.topics}")
            outputs = {f"{t}/{kind}" for t in self.topics for kind in ("answer", "latency", "error", "action")}
            if tw.topic in set(self.topics) | outputs:
                raise ValueError(f"--twist {tw.topic}: already a camera topic or one of the node's outputs")


@dataclass(frozen=True)
class FrameTag:
    """What the node remembers of a frame while it waits: its header and when it arrived (time.time())."""

    header: Header
    received: float


@dataclass
class TopicCounters:
    received: int = 0
    conversion_errors: int = 0
    published: int = 0  # messages the node published for this topic (answers, records, errors, actions, twists)
    twists: int = 0  # Twists sent from this topic's answers (the --twist source)
    twists_stale: int = 0  # answers of this topic too old for a Twist (frame arrived > deadline before its answer)


@dataclass
class CameraNode:
    runtime: Runtime
    transport: Transport
    config: NodeConfig
    counters: dict[str, TopicCounters] = field(default_factory=dict)

    def __post_init__(self):
        c = self.config
        heads = self.runtime.manifest.heads
        self.action_labels = [v.name for h in heads for v in h.values]  # the order of <topic>/action's data
        if (c.act or c.twist is not None) and not heads:
            raise ValueError(f"{'--act' if c.act else '--twist'}: artifact {self.runtime.manifest.root} has no action "
                             "heads (export it with --heads)")
        if c.twist is not None:
            c.twist.check_values(self.action_labels, self.runtime.manifest.root)
        self.scheduler = FrameScheduler(self.runtime, c.prompt, c.max_new_tokens, c.max_age_ms, c.min_interval_ms,
                                        c.max_batch, answers=c.answers, act=c.act)
        for topic in c.topics:
            self.scheduler.add_stream(topic, c.mode)
            self.runtime.streams[topic].on_nonfinite = c.on_nonfinite
            self.counters[topic] = TopicCounters()
        self._stop = threading.Event()  # tells the worker to stop
        self._halt = threading.Event()  # tells everything else (spin, waits) to stop: a stop, a signal, a failure
        self._worker: threading.Thread | None = None
        self.failure: BaseException | None = None  # why the inference worker stopped, when it failed
        self.watchdog: Watchdog | None = None  # live transports with a twist: zero velocity when answers stop

    @classmethod
    def from_artifact(cls, directory, transport: Transport, config: NodeConfig, backend: str = "onnxruntime",
                      threads: int | None = None, precision: str = "fp32", device: str = "cpu") -> "CameraNode":
        """Load the artifact ``directory`` with ``backend`` (one state slot per topic) at ``precision`` (fp32 or a
        variant the artifact holds) on ``device`` (cpu, cuda, tensorrt) and make the node."""
        runtime = Runtime.load(directory, backend=backend, max_streams=len(config.topics), threads=threads,
                               precision=precision, device=device)
        return cls(runtime, transport, config)

    @classmethod
    def from_service(cls, url: str, transport: Transport, config: NodeConfig, namespace: str | None = None,
                     **options) -> "CameraNode":
        """The node with its topics answered by the serve application at ``url`` (edge/serve/remote.py): one stream
        there per topic, named ``<namespace>:<topic>``; ServeUnavailable when ``url`` does not answer /v1/health."""
        from edge.serve.remote import RemoteRuntime

        runtime = RemoteRuntime.connect(url, namespace=namespace, **options)
        try:
            return cls(runtime, transport, config)
        except BaseException:
            runtime.close()  # the topics opened on the service so far
            raise

    # lifecycle

    def start(self, halt: threading.Event | None = None) -> None:
        """Advertise the output topics, subscribe to the cameras, start the inference worker. ``halt`` (set by a
        stop, a signal, or the worker's failure) ends ``run``'s spin and every wait of the node."""
        if halt is not None:
            self._halt = halt
        c = self.config
        for topic in c.topics:
            for suffix in ("latency", "error") if c.act else ("answer", "latency", "error"):
                self.transport.advertise(f"{topic}/{suffix}")
            if self.action_labels:
                self.transport.advertise(f"{topic}/action", FLOAT32_ARRAY_TYPE)
        if c.twist is not None:
            self.transport.advertise(c.twist.topic, TWIST_TYPE)
        for topic in c.topics:
            self.transport.subscribe(topic, type_for_topic(topic), self.on_message)
        if c.twist is not None and self.transport.live:  # recorded: a Twist per answered frame, no wall-clock watchdog
            tw = c.twist
            self.watchdog = Watchdog(tw.deadline_s, lambda: self._send(tw.topic, TwistMsg(), tw.source),
                                     f"{tw.topic} (from {tw.source})")
            self.watchdog.start()
        self._worker = threading.Thread(target=self._serve, name="cobra-edge-worker", daemon=True)
        self._worker.start()

    def _serve(self) -> None:
        try:
            self.scheduler.serve(self._stop, self._on_answer, on_error=self._on_error)
        except BaseException as e:  # the scheduler logged it; the node must not go on without a worker
            self.failure = e
            log.critical("the inference worker failed (%s: %s): stopping the node", type(e).__name__, e)
        finally:
            self._halt.set()

    def run(self, stop: threading.Event, drain_timeout_s: float = 600.0) -> int:
        """start(), deliver messages until ``stop`` (or the source ends, then answer what is queued), stop().
        The worker's failure sets ``stop`` too (see ``failure``). -> DDS participants left open by the transport
        (0 when it shut down cleanly)."""
        self.start(halt=stop)
        try:
            self.transport.spin(stop)
            if not stop.is_set():
                log.info("source ended; answering the %d frame(s) still queued", self.scheduler.pending())
            deadline = time.monotonic() + drain_timeout_s
            while not stop.is_set() and time.monotonic() < deadline:  # a bag ended: finish its frames
                try:
                    if self.scheduler.wait_idle(timeout=0.1):
                        break
                except WorkerFailed:
                    break
        finally:
            left = self.stop()
        return left

    @property
    def worker_busy(self) -> bool:
        """True when the worker was still inside a batch when the node stopped (it is a daemon thread)."""
        return self._worker is not None and self._worker.is_alive()

    def stop(self, join_timeout_s: float = 1.0) -> int:
        self._stop.set()
        self._halt.set()
        if self._worker is not None:
            self._worker.join(join_timeout_s)
            if self._worker.is_alive():
                log.warning("inference worker still busy after %.1f s; leaving it (daemon thread)", join_timeout_s)
        if self.watchdog is not None:
            self.watchdog.stop()  # its last zero velocity goes out before the transport closes
        left = self.transport.close()
        close = getattr(self.runtime, "close", None)  # a RemoteRuntime: free the topics' streams on the service
        if close is not None:
            close()
        return left or 0

    # messages in

    def on_message(self, topic: str, msg, received: float) -> None:
        """Transport callback: convert, then hand the frame to the scheduler. Never raises, whatever the message."""
        counters = self.counters.get(topic)
        if counters is None:
            log.error("message on %r, which this node does not subscribe to; ignored", topic)
            return
        counters.received += 1
        try:
            image = as_message(msg, topic)
            frame = to_bgr(image, topic, self.config.max_pixels)
        except Exception as e:
            counters.conversion_errors += 1
            if not isinstance(e, ConversionError):
                log.error("topic %r: unexpected %s converting a message", topic, type(e).__name__, exc_info=e)
                e = ConversionError(f"topic {topic!r}: unexpected {type(e).__name__} converting the message: {e}")
            self._publish_error(topic, e, "conversion")
            return
        tag = FrameTag(image.header, received)
        try:
            if self.transport.live:
                self.scheduler.submit(topic, frame, received, tag=tag)
                return
            while not self._halt.is_set():  # recorded: wait for the previous frame of this topic to be taken
                if self.scheduler.submit(topic, frame, received, tag=tag, block=True, timeout=0.1):
                    return
        except WorkerFailed:
            self._halt.set()  # the worker is gone: nothing will take this frame

    # messages out

    def _on_answer(self, answer: Answer) -> None:
        topic, tag = answer.stream, answer.tag
        base = {"topic": topic, "stamp": tag.header.stamp.to_dict(), "frame_id": tag.header.frame_id}
        out = {"kind": "answer", **base, "text": answer.text, "tokens": len(answer.token_ids)}
        if answer.choice is not None:
            out.update(probability=answer.choice.probability, log_probs=answer.choice.log_probs)
        extra = {}
        if answer.outputs is not None and self.action_labels:
            action = Float32MultiArrayMsg.labelled(self.action_labels, answer.outputs)
            self._send(f"{topic}/action", action, topic)
            out["outputs"] = extra["outputs"] = dict(zip(action.labels, action.data))
            twist = self.config.twist
            if twist is not None and topic == twist.source:
                extra["twist"] = self._send_twist(topic, answer.outputs, tag)
        p = answer.profile
        now = time.time()
        latency = {
            "kind": "latency", **base,
            "frame_index": p.frame_index,
            "stages_ms": {s: round(getattr(p, s), 3) for s in STAGES},
            "age_ms": None if p.age_ms is None else round(p.age_ms, 3),
            "received_to_answer_ms": round((now - tag.received) * 1e3, 3),
            "stamp_to_answer_ms": round((now - tag.header.stamp.to_seconds()) * 1e3, 3) if self.transport.live
            else None,
            "batch_size": p.batch_size,
            "dropped": p.dropped,
            "prefill_tokens": p.prefill_tokens,
            "new_tokens": p.new_tokens,
            **extra,
            "counters": self.topic_counters(topic),
        }
        if not self.config.act:
            self._send(f"{topic}/answer", json.dumps(out), topic)
        self._send(f"{topic}/latency", json.dumps(latency), topic)

    def _send_twist(self, topic: str, outputs: dict[str, float], tag: FrameTag) -> dict:
        """The Twist of one answer of the source topic: sent if its frame is fresh (live: arrived within the
        deadline; recorded: always); -> what became of it, for the latency record."""
        tw, c = self.config.twist, self.counters[topic]
        cmd = tw.command(outputs)
        status = {k: v for k, v in cmd.to_dict().items() if k != "kind"}
        if self.watchdog is None:
            sent = self._send(tw.topic, cmd, topic)
        elif time.time() - tag.received > tw.deadline_s:
            c.twists_stale += 1
            return {"status": "stale", **status}
        else:
            sent = self.watchdog.feed(lambda: self._send(tw.topic, cmd, topic))
        c.twists += sent
        return {"status": "published" if sent else "not sent", **status}

    def _on_error(self, topic: str, error: Exception) -> None:
        self._publish_error(topic, error, "runtime")

    def _publish_error(self, topic: str, error: Exception, stage: str) -> None:
        log.warning("%s: %s", topic, error)
        self._send(f"{topic}/error", json.dumps({"kind": "error", "topic": topic, "stage": stage, "error": str(error),
                                                 "counters": self.topic_counters(topic)}), topic)

    def _send(self, out_topic: str, msg, camera: str) -> bool:
        """Publish ``msg`` (str, Float32MultiArrayMsg, TwistMsg), counted on ``camera``; -> sent. Never raises."""
        try:
            self.transport.publish(out_topic, msg)
            self.counters[camera].published += 1
            return True
        except (CobraEdgeError, OSError) as e:  # TransportError, or a bag's output file
            log.error("could not publish on %s: %s", out_topic, e)
        except Exception as e:
            log.error("could not publish on %s: unexpected %s: %s", out_topic, type(e).__name__, e, exc_info=e)
        return False

    def topic_counters(self, topic: str) -> dict:
        s, c = self.scheduler.stats[topic], self.counters[topic]
        out = {"received": c.received, "answered": s.answered, "superseded": s.superseded, "stale": s.stale,
               "conversion_errors": c.conversion_errors, "errors": s.errors, "published": c.published}
        tw = self.config.twist
        if tw is not None and topic == tw.source:
            out.update(twists=c.twists, twists_stale=c.twists_stale,
                       watchdog_zero=0 if self.watchdog is None else self.watchdog.zeros)
        return out
