"""Transport over Cyclone DDS speaking the ROS 2 wire format, so a ROS 2 camera driver (rmw_cyclonedds or
rmw_fastrtps, same domain id) reaches the node with no ROS installation here.

ROS 2 maps topic ``/cam0/image_raw`` to DDS topic ``rt/cam0/image_raw`` with type
``sensor_msgs::msg::dds_::Image_`` and CDR payloads. Camera readers use the sensor-data QoS (best effort,
keep last 1); output writers (String answers and records, Float32MultiArray actions, Twist) are reliable, keep
last 10 (ROS 2's default), volatile. A topic's writer has the type of its first ``advertise`` or ``publish``.

Network: ``DdsConfig`` writes Cyclone's XML. The default is loopback only (interface ``lo``, multicast off,
unicast peer 127.0.0.1): nothing leaves the machine until you name an interface.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from cyclonedds.core import DDSException, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from .dds_types import OUTPUT_IDL, CompressedImage_, Image_, to_idl
from .messages import COMPRESSED_TYPE, IMAGE_TYPE, STRING_TYPE, SerializedMsg, type_of
from .transport import Handler, TransportError, check_topic, deliver

SENSOR_DATA_QOS = Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(1), Policy.Durability.Volatile)
DEFAULT_QOS = Qos(Policy.Reliability.Reliable(duration(milliseconds=100)), Policy.History.KeepLast(10),
                  Policy.Durability.Volatile)
TYPES = {IMAGE_TYPE: Image_, COMPRESSED_TYPE: CompressedImage_}
_SAFE = re.compile(r"^[A-Za-z0-9_.:\-\[\]%]+$")  # interface names, IPv4/IPv6 addresses, host names


@dataclass
class DdsConfig:
    """Where DDS traffic goes. Loopback by default; set ``interface`` (e.g. ``eth0``) to reach other machines."""

    domain_id: int = 0
    interface: str = "lo"
    peers: tuple[str, ...] = ("127.0.0.1",)  # unicast discovery peers ([] with multicast: discover by multicast)
    multicast: bool = False
    max_participants: int = 32  # participant indices to probe on each peer (unicast discovery)

    def __post_init__(self):
        if not 0 <= int(self.domain_id) <= 232:
            raise ValueError(f"DDS domain id must be 0..232, got {self.domain_id}")
        for value in (self.interface, *self.peers):
            if not _SAFE.match(value):
                raise ValueError(f"invalid DDS interface or peer address {value!r}")
        if not self.multicast and not self.peers:
            raise ValueError("with multicast off, DDS discovery needs at least one unicast peer (e.g. 127.0.0.1)")

    def xml(self) -> str:
        peers = "".join(f'<Peer address="{p}"/>' for p in self.peers)
        return (
            "<CycloneDDS><Domain id=\"any\"><General>"
            f"<Interfaces><NetworkInterface name=\"{self.interface}\"/></Interfaces>"
            f"<AllowMulticast>{'true' if self.multicast else 'false'}</AllowMulticast>"
            "</General><Discovery>"
            + (f"<Peers>{peers}</Peers>" if peers else "")
            + "<ParticipantIndex>auto</ParticipantIndex>"
            f"<MaxAutoParticipantIndex>{self.max_participants}</MaxAutoParticipantIndex>"
            "</Discovery></Domain></CycloneDDS>"
        )


def dds_topic(topic: str) -> str:
    """ROS 2 topic -> DDS topic name: ``/cam0/image_raw`` -> ``rt/cam0/image_raw``."""
    return "rt" + check_topic(topic)


class DdsTransport:
    live = True

    def __init__(self, config: DdsConfig | None = None):
        self.config = config or DdsConfig()
        self._domain = Domain(self.config.domain_id, self.config.xml())
        self.participant = DomainParticipant(self.config.domain_id)
        self._waitset = WaitSet(self.participant)
        self._readers: dict[str, tuple[DataReader, ReadCondition, Handler]] = {}
        self._writers: dict[str, tuple[str, DataWriter]] = {}  # topic -> (ROS type, writer)
        self._lock = threading.Lock()  # writers are made on demand from the worker thread
        self.closed = False

    def advertise(self, topic: str, msg_type: str = STRING_TYPE) -> None:
        self._writer(topic, msg_type)

    def _writer(self, topic: str, msg_type: str) -> DataWriter:
        if msg_type not in OUTPUT_IDL:
            raise ValueError(f"topic {topic!r}: the DDS transport publishes {', '.join(OUTPUT_IDL)}, not {msg_type!r}")
        with self._lock:
            if topic not in self._writers:
                idl = OUTPUT_IDL[msg_type]
                self._writers[topic] = msg_type, DataWriter(self.participant, Topic(self.participant, dds_topic(topic),
                                                                                     idl), qos=DEFAULT_QOS)
            have, writer = self._writers[topic]
        if have != msg_type:
            raise TransportError(f"DDS: topic {topic} carries {have}; cannot publish a {msg_type} on it")
        return writer

    def subscribe(self, topic: str, msg_type: str, handler: Handler) -> None:
        if msg_type not in TYPES:
            raise ValueError(f"topic {topic!r}: the DDS transport reads {', '.join(TYPES)}, not {msg_type!r}")
        reader = DataReader(self.participant, Topic(self.participant, dds_topic(topic), TYPES[msg_type]),
                            qos=SENSOR_DATA_QOS)
        cond = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        self._waitset.attach(cond)
        self._readers[topic] = (reader, cond, handler)

    def spin(self, stop: threading.Event, poll_s: float = 0.1) -> None:
        """Deliver samples to their handlers until ``stop`` is set (checked every ``poll_s``)."""
        while not stop.is_set():
            self._waitset.wait(duration(seconds=poll_s))
            for topic, (reader, cond, handler) in list(self._readers.items()):
                for sample in reader.take(N=64, condition=cond):
                    if isinstance(sample, SerializedMsg):  # not an InvalidSample (a writer went away)
                        deliver(handler, topic, sample)

    def publish(self, topic: str, msg) -> None:
        """``msg``: a str (std_msgs/String), messages.Float32MultiArrayMsg or messages.TwistMsg."""
        try:
            self._writer(topic, type_of(msg)).write(to_idl(msg))
        except DDSException as e:
            raise TransportError(f"DDS: could not publish on {dds_topic(topic)}: {e}") from e

    def close(self) -> int:
        """Delete every reader, writer and the participant (Cyclone deletes an entity with its last reference);
        -> how many participants of this process are left in the domain (0 when closed cleanly)."""
        if self.closed:
            return 0
        while self._readers:  # (no loop variable may outlive this: it would keep a reader, hence the participant)
            self._waitset.detach(self._readers.popitem()[1][1])
        self._writers.clear()
        self._waitset = None
        self.participant = None
        self.closed = True
        left = len(self._domain.get_participants())
        self._domain = None
        return left
