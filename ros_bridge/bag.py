"""Transport that replays a ROS 2 bag (MCAP or SQLite3, read with ``rosbags``) through the node and writes what
the node publishes to a JSON-lines file (``out``): one line per answer, latency record, error, action array
(``{"kind": "action", "layout": {...}, "data": [...]}``) and Twist (``{"kind": "twist", "linear", "angular"}``),
each with the topic it was published on (``"published_on": "/cam0/image_raw/answer"``); and/or to a ROS 2 bag
(``out_bag``: bag_out.py), each message with its ROS type.

Recorded data is replayed losslessly (``live`` is False: every frame is answered, none superseded), either as
fast as the node answers (``max_speed``) or at the recorded pace (messages released at their log time
offsets; the node still answers every frame, so a slow model lags behind the recording).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from .messages import COMPRESSED_TYPE, IMAGE_TYPE, STRING_TYPE, SerializedMsg
from .transport import Handler, TransportError, check_topic, deliver

CAMERA_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)


def _open_reader(path: Path):
    try:
        from rosbags.rosbag2 import Reader, ReaderError
    except ImportError as e:
        raise TransportError(f"bag replay needs rosbags: pip install 'cobra-edge[ros]' ({e})") from e
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError) as e:
        raise TransportError(f"cannot open ROS 2 bag {path}: {e}") from e
    return reader


def _open_out(path: Path):
    """The JSON-lines output, refused with a clear error before anything runs (missing folder, a directory,
    no permission)."""
    if path.is_dir():
        raise TransportError(f"--out {path}: is a directory; give a file path for the JSON lines")
    if not path.parent.is_dir():
        raise TransportError(f"--out {path}: folder {path.parent} does not exist (create it first)")
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as e:
        raise TransportError(f"--out {path}: cannot be written: {e.strerror or e}") from None


class BagTransport:
    live = False

    def __init__(self, path: str | Path, out: str | Path | None = None, max_speed: bool = True,
                 out_bag: str | Path | None = None):
        self.path = Path(path)
        self.max_speed = max_speed
        self._out = _open_out(Path(out)) if out is not None else None  # before the bag: nothing to close on error
        self._bag_out = None
        try:
            if out_bag is not None:
                from .bag_out import BagRecorder

                self._bag_out = BagRecorder(out_bag)
            self._reader = _open_reader(self.path)
        except BaseException:
            self._close_outputs()
            raise
        self.topics = {c.topic: c.msgtype for c in self._reader.connections}
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self.replayed = 0
        self.lines = 0
        self.closed = False

    @property
    def camera_topics(self) -> list[str]:
        """The Image / CompressedImage topics recorded in the bag, sorted."""
        return sorted(t for t, ty in self.topics.items() if ty in CAMERA_TYPES)

    def advertise(self, topic: str, msg_type: str = STRING_TYPE) -> None:
        pass  # the outputs take any topic (a bag's connection is made by its first message)

    def subscribe(self, topic: str, msg_type: str, handler: Handler) -> None:
        """Replay ``topic`` (its recorded type is used; ``msg_type`` is the node's guess from the name)."""
        name = check_topic(topic)
        recorded = self.topics.get(name)
        if recorded is None:
            raise TransportError(f"topic {topic!r} is not in bag {self.path} (camera topics there: "
                                 f"{self.camera_topics})")
        if recorded not in CAMERA_TYPES:
            raise TransportError(f"topic {topic!r} in bag {self.path} holds {recorded}, not a camera image type")
        self._handlers[name] = handler

    def spin(self, stop: threading.Event) -> None:
        """Hand every recorded message of the subscribed topics to its handler, in log-time order."""
        connections = [c for c in self._reader.connections if c.topic in self._handlers]
        start_wall = first_log = None
        messages = self._reader.messages(connections=connections)
        while not stop.is_set():
            try:
                conn, log_ns, raw = next(messages)
            except StopIteration:
                return
            except Exception as e:  # a damaged bag: stop replaying it, say where
                raise TransportError(f"bag {self.path}: cannot read the message after {self.replayed} replayed: "
                                     f"{type(e).__name__}: {e}") from e
            if not self.max_speed:
                if first_log is None:
                    start_wall, first_log = time.monotonic(), log_ns
                delay = (log_ns - first_log) / 1e9 - (time.monotonic() - start_wall)
                if delay > 0 and stop.wait(delay):
                    return
            deliver(self._handlers[conn.topic], conn.topic, SerializedMsg(conn.msgtype, raw))
            self.replayed += 1

    def publish(self, topic: str, msg) -> None:
        """``msg``: a str holding JSON (std_msgs/String), messages.Float32MultiArrayMsg or messages.TwistMsg."""
        doc = json.loads(msg) if isinstance(msg, str) else msg.to_dict()
        line = json.dumps({"published_on": topic, **doc})
        with self._lock:
            if self.closed:  # a worker left inside a batch at the stop: its outputs are closed
                raise TransportError(f"bag replay of {self.path} is closed; {topic} not written")
            if self._out is not None:
                self._out.write(line + "\n")
                self.lines += 1
            if self._bag_out is not None:
                self._bag_out.write(topic, msg)

    @property
    def bag_messages(self) -> int:
        """Messages written to the output bag (0 without one)."""
        return 0 if self._bag_out is None else self._bag_out.messages

    def _close_outputs(self) -> None:
        if self._out is not None:
            self._out.close()
        if self._bag_out is not None:
            self._bag_out.close()

    def close(self) -> int:
        if self.closed:
            return 0
        self.closed = True
        self._reader.close()
        with self._lock:
            self._close_outputs()
        return 0
