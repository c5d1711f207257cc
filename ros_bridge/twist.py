"""Named action-head outputs -> a geometry_msgs/Twist, within the user's limits.

Mapping (``--twist-map``; rclpy parameter ``twist_map``): terms separated by spaces or commas, each

    FIELD=GAIN*VALUE        e.g.  linear.x=0.5*distance  angular.z=-1.0*bearing
    FIELD=VALUE*GAIN              linear.x=distance*0.5   (the same term)
    FIELD=VALUE                   gain 1

FIELD is one of linear.x, linear.y, linear.z (m/s) or angular.x, angular.y, angular.z (rad/s), each at most once;
fields not named are 0. VALUE is an action-head value name of the artifact (``cobra-edge inspect`` lists them with
their units and ranges); GAIN a finite number (converting the value's unit into the field's). Quote the map in a
shell (``*`` is a glob character).

Per answer: field = GAIN * VALUE; a value that is not finite (NaN, inf) gives 0 for its field (stop, not full
speed); then every linear field is clamped to [-max_linear_mps, +max_linear_mps] and every angular field to
[-max_angular_radps, +max_angular_radps] (per component).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .messages import TwistMsg, Vector3
from .transport import check_topic

FIELDS = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")
DEFAULT_MAX_LINEAR_MPS = 0.5
DEFAULT_MAX_ANGULAR_RADPS = 1.0
DEFAULT_DEADLINE_MS = 500.0


@dataclass(frozen=True)
class TwistTerm:
    """One mapped field: ``field`` = ``gain`` * the head value named ``value``."""

    field: str
    value: str
    gain: float = 1.0

    def __str__(self) -> str:
        return f"{self.field}={self.gain:g}*{self.value}"


def _gain(text: str) -> float | None:
    try:
        g = float(text)
    except ValueError:
        return None
    return g if math.isfinite(g) else None


def parse_term(text: str, option: str = "--twist-map") -> TwistTerm:
    """``FIELD=GAIN*VALUE`` | ``FIELD=VALUE*GAIN`` | ``FIELD=VALUE`` -> TwistTerm (ValueError naming ``option``)."""
    field, eq, rhs = text.partition("=")
    field = field.strip()
    if not eq or not rhs.strip():
        raise ValueError(f"{option} {text!r}: expected FIELD=GAIN*VALUE (e.g. linear.x=0.5*distance)")
    if field not in FIELDS:
        raise ValueError(f"{option} {text!r}: unknown field {field!r} (one of {', '.join(FIELDS)})")
    parts = [p.strip() for p in rhs.split("*")]
    if len(parts) == 1:
        value, gain = parts[0], 1.0
    elif len(parts) == 2 and _gain(parts[0]) is not None and _gain(parts[1]) is None:
        value, gain = parts[1], _gain(parts[0])
    elif len(parts) == 2 and _gain(parts[1]) is not None and _gain(parts[0]) is None:
        value, gain = parts[0], _gain(parts[1])
    else:
        raise ValueError(f"{option} {text!r}: expected one head value name times one finite gain "
                         f"(FIELD=GAIN*VALUE, e.g. {field}=0.5*distance)")
    if not value.isidentifier():  # head value names are identifiers (export/heads.py)
        raise ValueError(f"{option} {text!r}: {value!r} is not a head value name")
    return TwistTerm(field, value, gain)


def parse_twist_map(text: str | list[str] | tuple[str, ...], option: str = "--twist-map") -> tuple[TwistTerm, ...]:
    """The whole mapping (one string, or the CLI's words) -> its terms, each field at most once."""
    words = text if isinstance(text, (list, tuple)) else [text]
    items = [w for word in words for w in re.split(r"[,\s]+", word) if w]
    if not items:
        raise ValueError(f"{option}: empty; give at least one FIELD=GAIN*VALUE (e.g. linear.x=0.5*distance)")
    terms = tuple(parse_term(w, option) for w in items)
    fields = [t.field for t in terms]
    twice = sorted({f for f in fields if fields.count(f) > 1})
    if twice:
        raise ValueError(f"{option}: field {', '.join(twice)} mapped more than once")
    return terms


def _limit(value, what: str, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what}: expected a finite number > 0 ({unit}), got {value!r}")
    return float(value)


@dataclass
class TwistConfig:
    """Publish a Twist on ``topic`` for every answer of the camera topic ``source`` (None: the node's first), and
    zero velocity when no fresh answer came within ``deadline_ms`` (the watchdog: ros_bridge/watchdog.py)."""

    topic: str
    terms: tuple[TwistTerm, ...]
    source: str | None = None
    max_linear_mps: float = DEFAULT_MAX_LINEAR_MPS
    max_angular_radps: float = DEFAULT_MAX_ANGULAR_RADPS
    deadline_ms: float = DEFAULT_DEADLINE_MS

    def __post_init__(self):
        try:
            self.topic = check_topic(self.topic)
        except ValueError as e:
            raise ValueError(f"--twist (twist): {e}") from None
        if isinstance(self.terms, str):
            self.terms = parse_twist_map(self.terms)
        if not self.terms:
            raise ValueError("--twist needs --twist-map FIELD=GAIN*VALUE ... (e.g. linear.x=0.5*distance)")
        if self.source is not None:
            try:
                self.source = check_topic(self.source)
            except ValueError as e:
                raise ValueError(f"--twist-source (twist_source): {e}") from None
        self.max_linear_mps = _limit(self.max_linear_mps, "--max-linear (max_linear)", "m/s")
        self.max_angular_radps = _limit(self.max_angular_radps, "--max-angular (max_angular)", "rad/s")
        self.deadline_ms = _limit(self.deadline_ms, "--deadline-ms (deadline_ms)", "milliseconds")

    @property
    def deadline_s(self) -> float:
        return self.deadline_ms / 1e3

    def check_values(self, names: list[str], artifact) -> None:
        """Every mapped value must be one of the artifact's head values ``names``."""
        unknown = [t for t in self.terms if t.value not in names]
        if unknown:
            raise ValueError(f"--twist-map {unknown[0]}: {unknown[0].value!r} is not an action-head value of "
                             f"artifact {artifact} (its values: {', '.join(names) or 'none'})")

    def command(self, outputs: dict[str, float]) -> TwistMsg:
        """The heads' values of one answer -> the Twist (gains applied, non-finite -> 0, clamped to the limits)."""
        fields = dict.fromkeys(FIELDS, 0.0)
        for t in self.terms:
            v = float(outputs[t.value]) * t.gain
            if not math.isfinite(v):
                v = 0.0
            lim = self.max_linear_mps if t.field.startswith("linear") else self.max_angular_radps
            fields[t.field] = min(max(v, -lim), lim)
        return TwistMsg(Vector3(fields["linear.x"], fields["linear.y"], fields["linear.z"]),
                        Vector3(fields["angular.x"], fields["angular.y"], fields["angular.z"]))

    def describe(self, live: bool = True) -> str:
        watchdog = f"watchdog {self.deadline_ms:g} ms" if live else "no watchdog on a recorded source"
        return (f"{self.topic} <- {' '.join(map(str, self.terms))} from {self.source} (|linear| <= "
                f"{self.max_linear_mps:g} m/s, |angular| <= {self.max_angular_radps:g} rad/s, {watchdog})")
