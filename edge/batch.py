"""Answer frames of several streams as one batch: one vision, projector and embed call for all of them, one
prefill per group of equal length, one decode batch that streams leave as their answers end.

Every stream's state is gathered from the ``StatePool`` (or zeros, in ``reset`` mode), and scattered back only
when its answer is complete; a stream whose frame is bad fails alone (its error is its result) and the others
are answered. A single ``Stream.ask`` is a batch of one, so batched and unbatched answers take the same path.

Timing: each frame's profile holds its own preprocess time and the wall time of each batched stage it took
part in (the latency that frame saw), plus the batch size.

Failures: this is the one place where an exception becomes a stream's error. A row's own problem (bad frame,
prompt or boxes; a state that is not finite) fails that row alone; an exception while the batch's graphs run
fails every row of the batch. Either way it is counted on each stream it touched and returned as that request's
result: ours as they are, anything unplanned wrapped in a ``RuntimeFault`` naming the stream (logged once with
its traceback). Nothing propagates, so the worker that called goes on. Non-finite values are errors too: a start
state, the prefill's logits and the final state are checked per row (``checks.finite_rows``), and a stream whose
state is not finite gets its policy applied (``Stream.state_failed``) instead of its state written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engines.base import EngineInputError

from .answer import Answer
from .boxes import box_feeds
from .checks import as_count, finite_rows
from .decode import decode_states
from .heads import hidden_at, run_heads
from .errors import FrameError, NonFiniteError, StreamError, as_stream_error, log_unexpected
from .preprocess import preprocess
from .profile import FrameProfile, StageTimer

if TYPE_CHECKING:
    from .runtime import Runtime, Stream


@dataclass
class Request:
    """One frame and prompt for one stream (``text_only``: the prompt alone, ``frame`` unused)."""

    stream: "Stream"
    frame: np.ndarray | None
    prompt: str
    max_new_tokens: int = 16
    timestamp: float | None = None  # capture time, time.time() seconds
    boxes: object = None  # normalised [K, 4] for models with object tokens
    start: tuple[np.ndarray, np.ndarray] | None = None  # a state to start from instead of the stream's (forks)
    text_only: bool = False  # no image: ask_text, and prompts answered from a fork (the image is in ``start``)
    write_state: bool = True  # store the final state in the stream's slot
    dropped: int = 0  # frames of this stream dropped since its previous answer (scheduler)
    act: bool = False  # the control path: the heads' outputs, no text (max_new_tokens 0)


@dataclass
class _Row:
    req: Request
    timer: StageTimer
    pixels: np.ndarray | None = None
    box_feeds: dict = field(default_factory=dict)
    n_boxes: int = 0
    ids: np.ndarray | None = None
    parts: list = field(default_factory=list)  # embeddings to prefill, in order
    image_tokens: int = 0  # leading positions of the prefill that are the frame's visual (+ object) tokens
    hidden: dict | None = None  # the prefill's hidden state [d_model] at each head position (edge/heads.py)
    outputs: dict | None = None  # the action heads' values

    @property
    def profile(self) -> FrameProfile:
        return self.timer.profile


def _start_row(req: Request, with_boxes: bool) -> _Row:
    s = req.stream
    s._check_usable()
    if req.start is None:  # a prompt answered from a fork is not a new frame
        s.stats.frames += 1
    profile = FrameProfile(stream=s.name, frame_index=s.stats.frames - 1, dropped=req.dropped)
    if req.timestamp is not None:
        profile.age_ms = (time.time() - req.timestamp) * 1e3
        profile.capture_ts = req.timestamp
    row = _Row(req, StageTimer(profile))
    req.max_new_tokens = as_count(req.max_new_tokens, f"stream {s.name!r}: max_new_tokens", 0, StreamError)
    rt = s.runtime
    _check_start_state(rt, req)
    if req.boxes is not None and not with_boxes:
        raise StreamError(f"stream {s.name!r}: boxes given, but artifact {rt.manifest.root} has no object tokens")
    with row.timer.stage("preprocess"):
        if not req.text_only:  # a None frame is a FrameError here, never a text prompt
            if not rt.manifest.has_vision:
                raise StreamError(f"stream {s.name!r}: artifact {rt.manifest.root} has no vision graphs; use ask_text()")
            row.pixels = preprocess(req.frame, rt.manifest.image_size, s.name)
            if with_boxes:
                row.box_feeds, row.n_boxes = box_feeds(req.boxes, s.name)
        row.ids = rt.tokenizer.encode_prompt(req.prompt, f"stream {s.name!r}: prompt")
    return row


def _check_start_state(rt: "Runtime", req: Request) -> None:
    """A continuous stream's state (or a fork's snapshot) must be finite before it enters a batch: one NaN row
    would otherwise reach the batch's graphs (no variant mixes rows today, but a NaN must never be batched)."""
    s = req.stream
    if req.start is not None:
        conv, ssm = req.start
        conv, ssm = np.asarray(conv).reshape(1, -1), np.asarray(ssm).reshape(1, -1)
    elif s.mode == "continuous":
        if rt.pool.slot_finite(s.slot):  # on the pool's device: one flag crosses, not the state
            return
        conv = ssm = np.array([[np.nan]])
    else:
        return
    if not finite_rows(conv, ssm)[0]:
        if req.start is not None:
            raise NonFiniteError(f"stream {s.name!r}: the fork's state holds NaN or infinity")
        reason = f"its state held NaN or infinity before frame {s.stats.frames - 1}"
        raise NonFiniteError(f"stream {s.name!r}: {reason}; {s.state_failed(reason)}")


def _failed(req: Request, error: BaseException, where: str = "its request") -> Exception:
    """Count a failure on its stream; -> the error to report (a bad graph input becomes a FrameError, an exception
    that is not ours a RuntimeFault naming the stream)."""
    stats = req.stream.stats
    stats.errors += 1
    if isinstance(error, EngineInputError):
        error = FrameError(f"stream {req.stream.name!r}: {error}")
    error = as_stream_error(error, req.stream.name, where)
    stats.last_error = str(error)
    return error


def _timed_stage(rows: list[_Row], stage: str, t0: float) -> None:
    ms = (time.perf_counter() - t0) * 1e3
    for r in rows:
        setattr(r.profile, stage, getattr(r.profile, stage) + ms)


def _visual_embeds(rt: "Runtime", rows: list[_Row]) -> None:
    """One vision and one projector call for every row with a frame; appends its visual (+ object) tokens."""
    img = [r for r in rows if r.pixels is not None]
    if not img:
        return
    t0 = time.perf_counter()
    features = rt.engines["vision"].run({"pixels": np.stack([r.pixels for r in img])})
    _timed_stage(img, "vision", t0)
    t0 = time.perf_counter()
    projector = rt.engines["projector"]
    feeds = {name: features[name] for name in projector.inputs if name in features}
    if rt.takes_boxes:  # pad every row's boxes to the batch's largest K with masked boxes
        k = max(r.box_feeds["boxes"].shape[1] for r in img)
        boxes = np.zeros((len(img), k, 4), np.float32)
        mask = np.zeros((len(img), k), bool)
        for j, r in enumerate(img):
            n = r.box_feeds["boxes"].shape[1]
            boxes[j, :n], mask[j, :n] = r.box_feeds["boxes"][0], r.box_feeds["box_mask"][0]
        feeds.update(boxes=boxes, box_mask=mask)
    out = projector.run(feeds)
    for j, r in enumerate(img):
        r.parts.append(out["visual_embeds"][j:j + 1])
        if r.n_boxes:
            r.parts.append(out["object_embeds"][j:j + 1, :r.n_boxes])  # padding boxes never reach the LM
        r.image_tokens = sum(p.shape[1] for p in r.parts)
    _timed_stage(img, "projector", t0)


def _groups(rows: list[_Row], key) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return groups


def _start_states(rt: "Runtime", rows: list[_Row]):
    """Gathered start states of the rows, where the pool keeps states (edge/batch_state.py): a fork's snapshot, a
    continuous stream's slot, or zeros. Copies: the pool is written only after success."""
    return rt.pool.start_states([r.req.start if r.req.start is not None
                                 else r.req.stream.slot if r.req.stream.mode == "continuous" else None for r in rows])


def _start_state(rt: "Runtime", rows: list[_Row]) -> tuple[np.ndarray, np.ndarray]:
    """The same as host arrays [n, ...] (forks run through the host)."""
    return _start_states(rt, rows).to_host()


def prefill_rows(rt: "Runtime", rows: list[_Row]):
    """Embed prompts (one call per prompt length), prefill (one call per total length); -> logits [n, V],
    next_token [n] (their argmax), and the states after (HostStates or DeviceStates, edge/batch_state.py) in the
    order of ``rows``."""
    t0 = time.perf_counter()
    for group in _groups(rows, lambda r: len(r.ids)).values():
        emb = rt.engines["embed"].run({"input_ids": np.stack([r.ids for r in group])})["inputs_embeds"]
        for j, r in enumerate(group):
            r.parts.append(emb[j:j + 1])
    logits = tokens = states = None
    index = {id(r): j for j, r in enumerate(rows)}
    for group in _groups(rows, lambda r: sum(p.shape[1] for p in r.parts)).values():
        x = np.concatenate([np.concatenate(r.parts, axis=1) for r in group], axis=0)
        out, after = _start_states(rt, group).prefill(rt.engines["prefill"], x)
        if logits is None:
            logits = np.empty((len(rows), *out["logits"].shape[1:]), out["logits"].dtype)
            tokens = np.empty(len(rows), np.int64)
            states = after if len(group) == len(rows) else rt.pool.empty_states(len(rows))
        at = [index[id(r)] for r in group]
        logits[at], tokens[at] = out["logits"], out["next_token"]
        if after is not states:
            states.place(at, after)
        for r in group:
            r.profile.prefill_tokens = x.shape[1]
        if rt.manifest.heads:
            for j, r in enumerate(group):
                r.hidden = hidden_at(out["hidden_states"][j], r.image_tokens)
    _timed_stage(rows, "prefill", t0)
    if rt.manifest.heads:
        t0 = time.perf_counter()
        for r, values in zip(rows, run_heads(rt.manifest.heads, rt.engines, [r.hidden for r in rows])):
            r.outputs = values
        _timed_stage(rows, "heads", t0)
    return logits, tokens, states


def answer_batch(rt: "Runtime", requests: list[Request]) -> list["Answer | Exception"]:
    """Answer every request; the result for a request is its Answer, or the exception that failed it."""
    results: list = [None] * len(requests)
    rows: list[_Row] = []
    where: list[int] = []
    for i, req in enumerate(requests):
        try:
            rows.append(_start_row(req, rt.takes_boxes))
            where.append(i)
        except Exception as e:  # this row's own problem: it alone fails
            log_unexpected(e, f"stream {req.stream.name!r}: preparing its frame")
            results[i] = _failed(req, e, "preparing its frame")
    if not rows:
        return results
    batch = len(rows)
    try:
        _visual_embeds(rt, rows)
        logits, first, states = prefill_rows(rt, rows)
        logits_ok = finite_rows(logits)
        t0 = time.perf_counter()
        tokens = decode_states(
            rt.stepper, first, states, [r.req.max_new_tokens for r in rows], rt.manifest.eos_token_id,
            feed_last=[r.req.stream.mode == "continuous" for r in rows],
        )
        texts = [rt.tokenizer.decode(t) for t in tokens]
        _timed_stage(rows, "decode", t0)
        state_ok = states.finite()
    except Exception as e:  # a failure of the batch's graphs fails every row in it
        log_unexpected(e, f"a batch of {batch} ({', '.join(r.req.stream.name for r in rows)})")
        for r, i in zip(rows, where):
            results[i] = _failed(r.req, e, f"a batch of {batch}")
        return results
    for j, (r, i) in enumerate(zip(rows, where)):
        s = r.req.stream
        if not (logits_ok[j] and state_ok[j]):
            what = "the prefill's logits" if not logits_ok[j] else "its state after the frame"
            reason = f"{what} held NaN or infinity (frame {r.profile.frame_index})"
            done = s.state_failed(reason) if r.req.write_state else "the stream's state is unchanged"
            results[i] = _failed(r.req, NonFiniteError(f"stream {s.name!r}: {reason}; no answer; {done}"))
            continue
        if r.req.write_state:
            rt.pool.store(s.slot, states, j)
        r.profile.new_tokens = len(tokens[j])
        r.profile.batch_size = batch
        s.stats.answered += 1
        results[i] = Answer(s.name, texts[j], tokens[j], r.timer.finish(), outputs=r.outputs)
    return results
