"""The runtime: load an artifact directory with a backend, open streams, answer frames.

    rt = Runtime.load("artifacts/tiny")                   # checks hashes, shapes, names
    cam = rt.open_stream("front")
    answer = cam.ask(frame_bgr, "What is in the image?", max_new_tokens=16)
    answer.text, answer.token_ids, answer.profile         # profile: ms per stage

Per-frame Cobra semantics (mode "reset", the default): every ``ask`` starts from a zero state, prefills the
image tokens then the templated prompt, and decodes greedily until EOS or ``max_new_tokens``. Mode
"continuous" starts each frame from the state the previous one ended in (for models trained on video); the
answer's tokens are all fed back, so the state holds the whole exchange. Either way the state lives in the
stream's slot of the ``StatePool``: one constant-size slab per stream, however many frames it has seen.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines import EngineInputError, load_engine
from engines.base import Engine, EngineError

from .boxes import box_feeds
from .decode import greedy_decode
from .errors import CobraEdgeError, FrameError, ManifestError, StreamError
from .manifest import Manifest
from .preprocess import preprocess
from .profile import FrameProfile, StageTimer
from .state import StatePool
from .tokenizer import PromptTokenizer


STREAM_MODES = ("reset", "continuous")


@dataclass
class Answer:
    stream: str
    text: str
    token_ids: list[int]
    profile: FrameProfile


@dataclass
class StreamStats:
    frames: int = 0  # frames given to ask()
    answered: int = 0
    errors: int = 0
    last_error: str | None = None


class Stream:
    """One camera: its state slot, its counters and its last error. Made by ``Runtime.open_stream``."""

    def __init__(self, runtime: "Runtime", name: str, slot: int, mode: str = "reset"):
        self.runtime = runtime
        self.name = name
        self.slot = slot
        self.mode = mode
        self.stats = StreamStats()
        self.closed = False

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, slot={self.slot}, answered={self.stats.answered}, errors={self.stats.errors})"

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """[1, ...] views of this stream's conv and ssm state in the pool."""
        return self.runtime.pool.view(self.slot)

    def reset(self) -> None:
        self._check_open()
        self.runtime.pool.reset(self.slot)

    def ask(self, frame_bgr: np.ndarray, prompt: str, max_new_tokens: int = 16,
            timestamp: float | None = None, boxes=None) -> Answer:
        """Answer ``prompt`` about one frame (uint8 BGR [H, W, 3]).

        timestamp: capture time (``time.time()`` seconds), to record the frame's age when work began.
        boxes: for models with object tokens (``Runtime.takes_boxes``), detector boxes [K, 4] as (x1, y1, x2, y2)
        normalised to [0, 1] over the frame; one token per box follows the image tokens.
        Raises FrameError (bad frame) or CobraEdgeError naming this stream; the stream's state and every
        other stream are left as they were.
        """
        self._check_open()
        rt = self.runtime
        if not rt.manifest.has_vision:
            raise StreamError(f"stream {self.name!r}: artifact {rt.manifest.root} has no vision graphs; use ask_text()")
        self.stats.frames += 1
        profile = FrameProfile(stream=self.name, frame_index=self.stats.frames - 1)
        if timestamp is not None:
            profile.age_ms = (time.time() - timestamp) * 1e3
        timer = StageTimer(profile)
        return self._guarded(lambda: self._answer(timer, frame_bgr, prompt, max_new_tokens, with_image=True, boxes=boxes))

    def ask_text(self, prompt: str, max_new_tokens: int = 16) -> Answer:
        """Answer a text-only prompt (the templated prompt, no image), from a zero state."""
        self._check_open()
        self.stats.frames += 1
        timer = StageTimer(FrameProfile(stream=self.name, frame_index=self.stats.frames - 1))
        return self._guarded(lambda: self._answer(timer, None, prompt, max_new_tokens, with_image=False))

    def close(self) -> None:
        if not self.closed:
            self.runtime._close(self)
            self.closed = True

    # internals

    def _guarded(self, work) -> Answer:
        try:
            answer = work()
        except (CobraEdgeError, EngineError, TypeError) as e:
            self.stats.errors += 1
            self.stats.last_error = str(e)
            if isinstance(e, EngineInputError):
                raise FrameError(f"stream {self.name!r}: {e}") from e
            raise
        self.stats.answered += 1
        return answer

    def _answer(self, timer: StageTimer, frame_bgr, prompt: str, max_new_tokens: int, with_image: bool,
                boxes=None) -> Answer:
        rt = self.runtime
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise StreamError(f"stream {self.name!r}: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if boxes is not None and not rt.takes_boxes:
            raise StreamError(f"stream {self.name!r}: boxes given, but artifact {rt.manifest.root} has no object tokens")
        embeds = []
        if with_image:
            with timer.stage("preprocess"):
                pixels = preprocess(frame_bgr, rt.manifest.image_size, self.name)[None]
                extra, n_boxes = box_feeds(boxes, self.name) if rt.takes_boxes else ({}, 0)
            with timer.stage("vision"):
                features = rt.engines["vision"].run({"pixels": pixels})
            with timer.stage("projector"):
                projector = rt.engines["projector"]
                feeds = {name: features[name] for name in projector.inputs if name in features}
                out = projector.run({**feeds, **extra})
                embeds.append(out["visual_embeds"])
                if n_boxes:
                    embeds.append(out["object_embeds"][:, :n_boxes])  # padding boxes never reach the LM
        with timer.stage("prefill"):
            ids = rt.tokenizer.encode_prompt(prompt)[None]
            embeds.append(rt.engines["embed"].run({"input_ids": ids})["inputs_embeds"])
            inputs_embeds = np.concatenate(embeds, axis=1) if len(embeds) > 1 else embeds[0]
            if self.mode == "continuous":
                conv, ssm = rt.pool.view(self.slot)  # read only: the slot is written after success
            else:
                conv, ssm = rt.manifest.state.zeros(1)  # Cobra: each frame starts from a clean state
            out = rt.engines["prefill"].run({"inputs_embeds": inputs_embeds, "conv_state": conv, "ssm_state": ssm})
            timer.profile.prefill_tokens = inputs_embeds.shape[1]
        with timer.stage("decode"):
            token_ids, conv, ssm = greedy_decode(
                rt.engines["step"], out["logits"], out["conv_state_out"], out["ssm_state_out"],
                max_new_tokens, rt.manifest.eos_token_id, feed_last=self.mode == "continuous",
            )
            text = rt.tokenizer.decode(token_ids)
        timer.profile.new_tokens = len(token_ids)
        rt.pool.write(self.slot, conv, ssm)
        return Answer(self.name, text, token_ids, timer.finish())

    def _check_open(self) -> None:
        if self.closed:
            raise StreamError(f"stream {self.name!r} is closed")


@dataclass
class Runtime:
    manifest: Manifest
    engines: dict[str, Engine]
    tokenizer: PromptTokenizer
    pool: StatePool
    backend: str
    streams: dict[str, Stream] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: str | os.PathLike, backend: str = "onnxruntime", max_streams: int = 16,
             verify_hashes: bool = True, **engine_options) -> "Runtime":
        """Open an artifact directory. ``engine_options`` go to the backend (ONNX Runtime: providers, threads)."""
        manifest = Manifest.load(directory, verify_hashes=verify_hashes)
        engines = {}
        for name, entry in manifest.graphs.items():
            engine = load_engine(backend, entry.path, name=name, **engine_options)
            _check_engine_matches(manifest.root, entry, engine)
            engines[name] = engine
        tokenizer = PromptTokenizer(manifest.tokenizer_path, manifest.prompt_template, manifest.eos_token_id)
        return cls(manifest, engines, tokenizer, StatePool(manifest.state, max_streams), backend)

    @property
    def takes_boxes(self) -> bool:
        """True when the model appends object tokens for detector boxes (``Stream.ask(..., boxes=...)``)."""
        return "vision" in self.engines and "boxes" in self.engines["projector"].inputs

    @property
    def bytes_per_stream(self) -> int:
        return self.manifest.state.bytes_per_stream

    def open_stream(self, name: str, mode: str = "reset") -> Stream:
        """A new stream with its own state slot. mode: "reset" (Cobra, per frame) or "continuous"."""
        if not isinstance(name, str) or not name:
            raise StreamError(f"stream name must be a non-empty str, got {name!r}")
        if name in self.streams:
            raise StreamError(f"stream {name!r} is already open")
        if mode not in STREAM_MODES:
            raise StreamError(f"stream {name!r}: unknown mode {mode!r}; use one of {STREAM_MODES}")
        stream = Stream(self, name, self.pool.allocate(), mode)
        self.streams[name] = stream
        return stream

    def _close(self, stream: Stream) -> None:
        self.pool.release(stream.slot)
        del self.streams[stream.name]


def _check_engine_matches(root: Path, entry, engine: Engine) -> None:
    """The graph file must declare exactly the tensors the manifest promises (names, dtypes, fixed dims)."""
    for kind, want, have in (("input", entry.inputs, engine.inputs), ("output", entry.outputs, engine.outputs)):
        if set(want) != set(have):
            raise ManifestError(
                f"{entry.path}: graph {entry.name!r} has {kind}s {sorted(have)}, manifest says {sorted(want)}"
            )
        for tname, spec in want.items():
            if not spec.matches(have[tname]):
                raise ManifestError(
                    f"{entry.path}: graph {entry.name!r} {kind} {tname!r} is {have[tname].describe()}, "
                    f"manifest says {spec.describe()}"
                )
