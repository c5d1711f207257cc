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
from dataclasses import dataclass, field

import numpy as np

from engines import load_engine
from engines.base import Engine
from engines.devices import check_device
from engines.kernels import OP as SCAN_OP
from engines.onnxfile import OnnxFileError, external_refs
from engines.weights import MappedWeights, WeightsError

from .answer import Answer
from .batch import Request, answer_batch
from .checks import as_count
from .decode import Stepper
from .device_state import DeviceStatePool
from .errors import ManifestError, NonFiniteError, StreamError
from .manifest import Manifest
from .state import StatePool, StateSnapshot
from .tokenizer import PromptTokenizer


STREAM_MODES = ("reset", "continuous")
# What a stream does when its state stops being finite (NaN or infinity after a frame, or found before one): the
# answer of that frame is a NonFiniteError either way; then "reset" zeroes the state (the next frame starts clean)
# and "fail" keeps the stream failed, every request refused, until ``Stream.reset()`` or a good ``restore()``.
NONFINITE_POLICIES = ("reset", "fail")


@dataclass
class StreamStats:
    frames: int = 0  # frames given to ask()
    answered: int = 0
    errors: int = 0
    last_error: str | None = None


class Stream:
    """One camera: its state slot, its counters and its last error. Made by ``Runtime.open_stream``."""

    def __init__(self, runtime: "Runtime", name: str, slot: int, mode: str = "reset", on_nonfinite: str = "reset"):
        self.runtime = runtime
        self.name = name
        self.slot = slot
        self.mode = mode
        self.on_nonfinite = on_nonfinite
        self.fault: str | None = None  # why the stream is failed (policy "fail"), until reset() or restore()
        self.stats = StreamStats()
        self.closed = False

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, slot={self.slot}, answered={self.stats.answered}, errors={self.stats.errors})"

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """[1, ...] views of this stream's conv and ssm state in the pool."""
        return self.runtime.pool.view(self.slot)

    def reset(self) -> None:
        """Zero the state; a stream failed by a non-finite state answers again."""
        self._check_open()
        self.runtime.pool.reset(self.slot)
        self.fault = None

    def ask(self, frame_bgr: np.ndarray, prompt: str, max_new_tokens: int = 16,
            timestamp: float | None = None, boxes=None) -> Answer:
        """Answer ``prompt`` about one frame (uint8 BGR [H, W, 3]).

        timestamp: capture time (``time.time()`` seconds), to record the frame's age when work began.
        boxes: for models with object tokens (``Runtime.takes_boxes``), detector boxes [K, 4] as (x1, y1, x2, y2)
        normalised to [0, 1] over the frame; one token per box follows the image tokens.
        Raises FrameError (bad frame) or CobraEdgeError naming this stream; the stream's state and every
        other stream are left as they were.
        """
        return self._one(Request(self, frame_bgr, prompt, max_new_tokens, timestamp, boxes))

    def act(self, frame_bgr: np.ndarray, prompt: str, timestamp: float | None = None, boxes=None) -> Answer:
        """The control path: vision, projector and one prefill of the image and ``prompt``, then the artifact's
        action heads (``answer.outputs``: {value name: float}); no text is decoded (``text`` is ''). In continuous
        mode the state carries the image and the prompt. Raises StreamError when the artifact has no heads."""
        if not self.runtime.manifest.heads:
            raise StreamError(f"stream {self.name!r}: artifact {self.runtime.manifest.root} has no action heads to "
                              "act with (export it with --heads, or use ask/choose)")
        return self._one(Request(self, frame_bgr, prompt, 0, timestamp, boxes, act=True))

    def ask_text(self, prompt: str, max_new_tokens: int = 16) -> Answer:
        """Answer a text-only prompt (the templated prompt, no image), from a zero state (reset mode)."""
        return self._one(Request(self, None, prompt, max_new_tokens, text_only=True))

    def ask_many(self, frame_bgr: np.ndarray, prompts: list[str], max_new_tokens: int = 16,
                 timestamp: float | None = None, boxes=None) -> list[Answer]:
        """Several prompts about one frame, from a fork of the state: the image is encoded and prefilled once,
        snapshotted, and every prompt is answered from a copy of that snapshot (all prompts in one batch).
        Each answer equals asking that prompt alone; its profile shows only the prompt's prefill and decode,
        and the first answer's also the image's cost. The stream's slot keeps the state after the image."""
        fork = self.fork(frame_bgr, timestamp=timestamp, boxes=boxes)
        answers = fork.ask_all(prompts, max_new_tokens)
        for stage in ("preprocess", "vision", "projector", "prefill"):
            setattr(answers[0].profile, stage, getattr(answers[0].profile, stage) + getattr(fork.profile, stage))
        return answers

    def fork(self, frame_bgr: np.ndarray, timestamp: float | None = None, boxes=None):
        """Encode and prefill one frame's image tokens, keep the state as a snapshot: then ``fork.ask(prompt)``
        any number of times without re-encoding or re-prefilling the image."""
        from .fork import ImageFork

        return ImageFork.create(self, frame_bgr, timestamp, boxes)

    def choose(self, frame_bgr: np.ndarray, prompt: str, answers: list[str], boxes=None,
               timestamp: float | None = None):
        """Answer-set scoring for closed questions: the log-probability of each given answer after the prompt
        (one batched step per answer token), the best one and its probability within the set."""
        from .scoring import choose

        return choose(self, frame_bgr, prompt, answers, boxes, timestamp)

    def snapshot(self) -> StateSnapshot:
        """A copy of this stream's state (one memcpy)."""
        self._check_open()
        return self.runtime.pool.snapshot(self.slot)

    def restore(self, snap: StateSnapshot) -> None:
        """Put a snapshot back (all or nothing: another spec, shape or dtype, or non-finite values, are refused with
        a StreamError naming this stream and both specs, and the state is left as it was)."""
        self._check_open()
        self.runtime.pool.restore(self.slot, snap, self.name)
        self.fault = None

    def state_failed(self, reason: str) -> str:
        """Apply this stream's policy for a non-finite state (see NONFINITE_POLICIES); -> what was done, for the
        error message. The pool never keeps the bad state: forks and snapshots would inherit it."""
        self.runtime.pool.reset(self.slot)
        if self.on_nonfinite == "fail":
            self.fault = reason
            return "stream failed until reset() (policy 'fail')"
        return "state reset, the next frame starts clean (policy 'reset')"

    def close(self) -> None:
        if not self.closed:
            self.runtime._close(self)
            self.closed = True

    # internals

    def _one(self, request: Request) -> Answer:
        (result,) = answer_batch(self.runtime, [request])
        if isinstance(result, Exception):
            raise result
        return result

    def _check_open(self) -> None:
        if self.closed:
            raise StreamError(f"stream {self.name!r} is closed")

    def _check_usable(self) -> None:
        self._check_open()
        if self.fault is not None:
            raise NonFiniteError(f"stream {self.name!r} is failed ({self.fault}); policy 'fail' keeps it so until "
                                 "reset() or restore()")


@dataclass
class Runtime:
    manifest: Manifest
    engines: dict[str, Engine]
    tokenizer: PromptTokenizer
    pool: StatePool
    backend: str
    precision: str = "fp32"
    streams: dict[str, Stream] = field(default_factory=dict)
    on_nonfinite: str = "reset"  # default policy of new streams (NONFINITE_POLICIES)
    decode: str = "step"  # which graph runs a decode step: "prefill" (at L = 1) or "step" (see Runtime.load)
    device: str = "cpu"  # where the graphs run: "cpu", "cuda" or "tensorrt" (engines/devices.py)

    @classmethod
    def load(cls, directory: str | os.PathLike, backend: str = "onnxruntime", max_streams: int = 16,
             verify_hashes: bool = True, precision: str = "fp32", on_nonfinite: str = "reset",
             decode: str | None = None, device: str = "cpu", device_state: bool | None = None,
             **engine_options) -> "Runtime":
        """Open an artifact directory. ``precision``: fp32, or a variant the artifact holds (fp16, int8: see
        ``Manifest.precisions``). ``on_nonfinite``: what streams do when their state stops being finite
        (``NONFINITE_POLICIES``). ``decode``: "prefill" (the prefill graph at L = 1: one set of language-model
        weights in memory; the default where the prefill graph has the fused ``cobra_edge.CausalConv``) or "step"
        (the step graph: older artifacts). ``device``: "cpu", "cuda" (ONNX Runtime's CUDA provider with cobra-edge's
        CUDA kernels) or "tensorrt" (TensorRT for the standard operators, the CUDA kernels for the cobra_edge nodes);
        unknown names and what this machine lacks (onnxruntime-gpu, CUDA, TensorRT, the CUDA kernels) are
        ``DeviceUnavailable`` errors naming what to install. ``device_state``: keep the streams' states on the graphs'
        device (edge/device_state.py; default: on for a GPU device; on the CPU the same path runs with CPU OrtValues).
        ``engine_options`` go to the backend (ONNX Runtime: threads).
        Everything read from the artifact is checked before a stream can open: files against their hashes, graphs
        against the manifest, preprocessing against the vision graph, the tokenizer against the vocabulary."""
        max_streams = as_count(max_streams, "max_streams", 1)
        _check_policy(on_nonfinite, "Runtime.load")
        check_device(device)
        manifest = Manifest.load(directory, verify_hashes=verify_hashes)
        decode = decode or decode_graph(manifest, precision)
        if decode not in ("prefill", "step"):
            raise ManifestError(f"decode must be 'prefill' or 'step', got {decode!r}")
        names = tuple(g for g in manifest.graphs_for(precision) if not (decode == "prefill" and g == "step"))
        names += tuple(h.graph for h in manifest.heads)  # heads run in fp32 at every precision (they are tiny)
        engines = load_graphs(manifest, precision, backend, graphs=names, device=device, **engine_options)
        tokenizer = PromptTokenizer.for_manifest(manifest)
        if device_state if device_state is not None else device != "cpu":
            pool = DeviceStatePool(manifest.state, max_streams, engines["prefill"].memory)
        else:
            pool = StatePool(manifest.state, max_streams)
        return cls(manifest, engines, tokenizer, pool, backend, precision, on_nonfinite=on_nonfinite, decode=decode,
                   device=device)

    @property
    def stepper(self) -> Stepper:
        """How this runtime runs a decode step: the prefill graph at L = 1 or the step graph (``decode``)."""
        if self.decode == "prefill":
            return Stepper(self.engines["prefill"], self.engines["embed"])
        return Stepper(self.engines["step"])

    @property
    def takes_boxes(self) -> bool:
        """True when the model appends object tokens for detector boxes (``Stream.ask(..., boxes=...)``)."""
        return "vision" in self.engines and "boxes" in self.engines["projector"].inputs

    @property
    def bytes_per_stream(self) -> int:
        return self.manifest.state.bytes_per_stream

    @property
    def selective_scan(self) -> str:
        """What runs the prefill's selective scan in this runtime: cobra-edge's fused kernel (engines/kernels), the
        portable ONNX function body of the same node, or a plain ONNX Scan (artifacts exported without the op)."""
        if SCAN_OP not in self.manifest.graphs_for(self.precision)["prefill"].custom_ops:
            return "ONNX Scan (the prefill graph has no fused op: exported before it)"
        library = getattr(self.engines["prefill"], "kernels", None)
        return f"{SCAN_OP}: " + (library.describe() if library else "portable ONNX function body (no kernel library)")

    def answer(self, requests: list[Request]) -> list[Answer | Exception]:
        """Answer frames of several streams as one batch (see edge.batch); each result is an Answer or the
        exception that failed that request alone."""
        return answer_batch(self, requests)

    def open_stream(self, name: str, mode: str = "reset", on_nonfinite: str | None = None) -> Stream:
        """A new stream with its own state slot. mode: "reset" (Cobra, per frame) or "continuous";
        on_nonfinite: "reset" or "fail" (default: the runtime's, see NONFINITE_POLICIES)."""
        check_new_stream(name, mode, self.streams)
        policy = self.on_nonfinite if on_nonfinite is None else on_nonfinite
        _check_policy(policy, f"stream {name!r}")
        stream = Stream(self, name, self.pool.allocate(), mode, policy)
        self.streams[name] = stream
        return stream

    def _close(self, stream: Stream) -> None:
        self.pool.release(stream.slot)
        del self.streams[stream.name]


def check_new_stream(name, mode, open_streams) -> None:
    """StreamError unless ``name`` is a new non-empty str (not in ``open_streams``) and ``mode`` a STREAM_MODE."""
    if not isinstance(name, str) or not name:
        raise StreamError(f"stream name must be a non-empty str, got {name!r}")
    if name in open_streams:
        raise StreamError(f"stream {name!r} is already open")
    if mode not in STREAM_MODES:
        raise StreamError(f"stream {name!r}: unknown mode {mode!r}; use one of {STREAM_MODES}")


CAUSAL_CONV = "cobra_edge.CausalConv"


def decode_graph(manifest: Manifest, precision: str = "fp32") -> str:
    """"prefill" when the artifact's prefill graph decodes as fast as its step graph (its conv is the fused
    ``cobra_edge.CausalConv``, cheap at L = 1), else "step"."""
    return "prefill" if CAUSAL_CONV in manifest.graphs_for(precision)["prefill"].custom_ops else "step"


def load_graphs(manifest: Manifest, precision: str = "fp32", backend: str = "onnxruntime",
                graphs: tuple[str, ...] | None = None, device: str = "cpu", **engine_options) -> dict[str, Engine]:
    """Open the artifact's graphs at ``precision`` (all, or those named; action heads by their graph name
    ``head_<name>``), each checked against the manifest.

    With a shared weights file (``manifest.weights_path``) it is mapped once and every graph gets its external
    initializers as views of that mapping (engines/weights.py); once the sessions have pre-packed their matmul
    weights the mapped pages are dropped, so each weight is resident about once (docs/architecture.md, "Weights").
    Any graph's reference to data elsewhere is refused. ``device`` chooses the providers (engines/devices.py); a
    TensorRT engine cache is keyed by the graph's and the weights' hashes from the manifest."""
    mapped = None
    if manifest.weights_path is not None:
        try:
            mapped = MappedWeights(manifest.weights_path, manifest.files[manifest.weights_file].get("bytes"))
        except WeightsError as e:
            raise ManifestError(str(e)) from None
    engines = {}
    entries = [*manifest.graphs_for(precision).items(), *((h.graph, h) for h in manifest.heads)]
    for name, entry in entries:
        if graphs is not None and name not in graphs:
            continue
        options = dict(engine_options)
        if device != "cpu":
            options.update(device=device, cache_key=_cache_key(manifest, entry.path))
        try:
            if mapped is not None:
                options["initializers"] = mapped.arrays_for(entry.path)
            else:
                _check_external_refs(manifest, entry.path)
        except (WeightsError, OnnxFileError) as e:
            raise ManifestError(str(e)) from None
        engine = load_engine(backend, entry.path, name=name, **options)
        check_engine_matches(entry, engine)
        engines[name] = engine
        if mapped is not None:  # this session holds its pre-packed weights: the load's peak is one graph's, not all
            mapped.release(options["initializers"])
    if mapped is not None:
        mapped.release()
    return engines


def _cache_key(manifest: Manifest, graph) -> str:
    """The graph's sha256 and the weights file's, from the manifest (16 hex digits each)."""
    def sha(name):
        return str(manifest.files.get(name, {}).get("sha256", "none"))[:16]

    rel = os.path.relpath(graph, manifest.root)
    return f"{sha(rel)}-{sha(manifest.weights_file)}" if manifest.weights_path is not None else sha(rel)


def _check_external_refs(manifest: Manifest, graph) -> None:
    """Artifacts without a shared weights file: every external reference of a graph must be a listed file."""
    for name, ref in external_refs(graph).items():
        if ref.location not in manifest.files:
            raise ManifestError(f"{graph}: initializer {name!r} refers to {ref.location!r}, which is not a file of "
                                "the artifact's manifest: refused")


def _check_policy(policy, where: str) -> None:
    if policy not in NONFINITE_POLICIES:
        raise StreamError(f"{where}: unknown on_nonfinite policy {policy!r}; use one of {NONFINITE_POLICIES}")


def check_engine_matches(entry, engine: Engine, promised_by: str = "manifest") -> None:
    """The graph file must declare exactly the tensors ``entry`` promises (names, dtypes, fixed dims): the
    manifest's at load, the fp32 graph's for a precision variant at export."""
    for kind, want, have in (("input", entry.inputs, engine.inputs), ("output", entry.outputs, engine.outputs)):
        if set(want) != set(have):
            raise ManifestError(
                f"{entry.path}: graph {entry.name!r} has {kind}s {sorted(have)}, {promised_by} says {sorted(want)}"
            )
        for tname, spec in want.items():
            if not spec.matches(have[tname]):
                raise ManifestError(
                    f"{entry.path}: graph {entry.name!r} {kind} {tname!r} is {have[tname].describe()}, "
                    f"{promised_by} says {spec.describe()}"
                )
