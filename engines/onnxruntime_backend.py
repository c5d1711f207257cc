"""ONNX Runtime backend: one ``InferenceSession`` per graph, on the CPU unless told otherwise (``device``:
engines/devices.py)."""

from __future__ import annotations

import os
import threading
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .base import EngineError, EngineInputError, TensorSpec, validate_feeds
from .devices import DeviceUnavailable, check_device, check_started, providers_for
from .kernels import KernelUnavailable
from .kernels import library as kernel_library
from .loop import check_loop
from .memory import DeviceMemory, memory_for

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


_shared_arena_lock = threading.Lock()
_shared_arena_registered = False


def _register_shared_arena() -> None:
    """One CPU arena for every session of this process that asks for it (``session.use_env_allocators``), growing
    by what is requested rather than to the next power of two. A runtime's sessions (vision, projector, embed,
    prefill, step) run in turn, so one arena holds the largest one's activations instead of each keeping its own
    peak: measured on mamba-370m, four prefill sessions after one B = 8 prefill each held 16.4 GB with their own
    arenas, under 9 GB with this one."""
    global _shared_arena_registered
    with _shared_arena_lock:
        if _shared_arena_registered:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))  # 1: kSameAsRequested
        _shared_arena_registered = True


def _spec(arg) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise EngineError(f"tensor {arg.name!r} has type {arg.type}, which cobra-edge does not handle")
    shape = tuple(d if isinstance(d, int) else (d or "?") for d in arg.shape)
    return TensorSpec(arg.name, dtype, shape)


class OrtEngine:
    """Runs one ONNX graph.

    device: "cpu", "cuda" or "tensorrt" (engines/devices.py: the providers, and the kernels registered for the
        cobra_edge nodes: the CPU library on cpu, the CUDA library on cuda and tensorrt).
    providers: ONNX Runtime execution providers in order of preference, instead of ``device``'s.
    cache_key: names this graph's TensorRT engine cache (default: the graph file's sha256).
    threads: intra-op threads (default: ONNX Runtime's choice, the physical cores).
    spinning: let idle worker threads busy-wait for the next op (default off: see below).
    kernels: register cobra-edge's native kernels (engines/kernels: the CPU library on the CPU provider, the CUDA
        library on a GPU provider), so ``cobra_edge`` nodes run fused instead of as their portable function body
        (default on; ``self.kernels`` is the library registered, or None).
    shared_arena: take CPU memory from one arena shared by every engine of the process (default on, see
        ``_register_shared_arena``) instead of a private arena per session.
    initializers: arrays for the graph's external initializers, by name (engines/weights.py: views of the
        artifact's weights file mapped once). The session uses them in place, without copying; what its kernels
        pre-pack (the matmul weights) they read once, at load, into their own layout, after which the mapped pages
        can be dropped (``MappedWeights.release``).
    prepacking: let kernels pre-pack their weights (default); off, they read them as stored, slower, no copy (the
        export's parity checks, which read the weights where PyTorch reads them).
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None,
                 providers: Sequence[str] | None = None, threads: int | None = None, spinning: bool = False,
                 kernels: bool = True, shared_arena: bool = True, initializers: Mapping[str, np.ndarray] | None = None,
                 prepacking: bool = True, device: str = "cpu", cache_key: str | None = None):
        self.name = name or os.path.splitext(os.path.basename(path))[0]
        self.path = os.fspath(path)
        available = ort.get_available_providers()
        provider_options = None
        if providers is None:
            try:
                providers, provider_options = providers_for(check_device(device), available,
                                                            cache_key or _file_hash(self.path))
            except DeviceUnavailable as e:
                raise DeviceUnavailable(f"graph {self.name!r}: {e}") from None
        else:
            providers = list(providers)
            device = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt"}.get(providers[0], "cpu")
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise EngineError(
                f"graph {self.name!r}: ONNX Runtime here lacks provider(s) {unknown}; available: {available}"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        # Off by default, by measurement (bench/lm.py, session options): a runtime holds several sessions (vision,
        # projector, embed, prefill, step) that run in turn, each with its own thread pool, and spinning workers
        # of the one that just finished steal the cores of the next (mamba-130m decode step 32.9 ms with
        # spinning vs 28.4 ms without, measured in turns with other sessions)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
        if shared_arena:
            _register_shared_arena()
            opts.add_session_config_entry("session.use_env_allocators", "1")
        # the CPU kernels on the CPU provider, the CUDA kernels on a GPU one (CPU kernels there would pull every
        # layer's activations to the host)
        self.kernels = None
        if kernels and device == "cpu":
            try:
                self.kernels = kernel_library()
            except KernelUnavailable as e:
                raise EngineError(f"graph {self.name!r}: {e}") from e
        elif kernels:
            from .kernels.cuda import cuda_library

            try:
                self.kernels = cuda_library()
            except KernelUnavailable as e:
                raise DeviceUnavailable(f"graph {self.name!r}: device {device!r} needs cobra-edge's CUDA kernels: {e}"
                                        ) from e
        if self.kernels:
            opts.register_custom_ops_library(str(self.kernels.path))
        if not prepacking:  # kernels read the weights as stored (slower matmuls, no second copy): one-off checks
            opts.add_session_config_entry("session.disable_prepacking", "1")
        self._initializers = []  # (array, OrtValue) pairs: they must outlive the session
        if initializers:
            for iname, array in initializers.items():
                value = ort.OrtValue.ortvalue_from_numpy(array)
                opts.add_initializer(iname, value)
                self._initializers.append((array, value))
        try:
            self.session = ort.InferenceSession(self.path, sess_options=opts, providers=providers,
                                                provider_options=provider_options)
        except Exception as e:  # ORT raises its own exception types; keep the file name in the message
            raise EngineError(f"graph {self.name!r}: ONNX Runtime could not load {self.path}: {e}") from e
        try:
            check_started(device, self.session.get_providers())
        except DeviceUnavailable as e:
            raise DeviceUnavailable(f"graph {self.name!r}: {e}") from None
        self.inputs = {a.name: _spec(a) for a in self.session.get_inputs()}
        self.outputs = {a.name: _spec(a) for a in self.session.get_outputs()}
        self._output_names = list(self.outputs)
        self.device = "cpu" if device == "cpu" else "cuda"  # where the session's inputs and outputs live
        self.memory: DeviceMemory = memory_for(self.device)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        validate_feeds(self.name, self.inputs, feeds)
        try:
            values = self.session.run(self._output_names, dict(feeds))
        except Exception as e:  # ORT's pybind exceptions carry no graph name; add it
            shapes = {k: f"{v.dtype}{list(v.shape)}" for k, v in feeds.items()}
            raise EngineError(f"graph {self.name!r}: ONNX Runtime failed on inputs {shapes}: {e}") from e
        return dict(zip(self._output_names, values))

    def run_bound(self, feeds: Mapping[str, np.ndarray], inputs: Mapping[str, ort.OrtValue],
                  outputs: Mapping[str, ort.OrtValue], fetch: Sequence[str]) -> dict[str, np.ndarray]:
        """One run with IO binding: ``feeds`` from the host, ``inputs`` and ``outputs`` as OrtValues on the session's
        device (written in place: the state stays there), ``fetch`` outputs copied to the host. Every other output
        goes to a device buffer nobody reads. Used for a prefill whose state lives on the device."""
        validate_feeds(self.name, {k: self.inputs[k] for k in feeds}, feeds)
        batch = {v.shape()[0] for v in (*inputs.values(), *outputs.values())} | {v.shape[0] for v in feeds.values()}
        if len(batch) != 1:
            raise EngineInputError(f"graph {self.name!r}: bound run with disagreeing batch sizes {sorted(batch)}")
        io = self.session.io_binding()
        for k, v in feeds.items():
            io.bind_cpu_input(k, np.ascontiguousarray(v))
        for k, v in inputs.items():
            io.bind_ortvalue_input(k, v)
        host, allocated, order = {}, [], []
        for name, spec in self.outputs.items():
            order.append(name)  # get_outputs() lists the bound outputs in the order they were bound
            if name in outputs:
                io.bind_ortvalue_output(name, outputs[name])
            elif _fixed_by_batch(spec):
                host[name] = _bound_value(self, name, spec, next(iter(batch)), "cpu" if name in fetch else self.device)
                io.bind_ortvalue_output(name, host[name])
            else:  # a shape not fixed by B (hidden_states [B, L, d]): ONNX Runtime allocates it
                io.bind_output(name, "cpu" if name in fetch else self.device)
                allocated.append(name)
        try:
            self.session.run_with_iobinding(io)
        except Exception as e:
            raise EngineError(f"graph {self.name!r}: ONNX Runtime failed in a bound run: {e}") from e
        if allocated:
            bound = dict(zip(order, io.get_outputs()))
            host.update({k: bound[k] for k in allocated})
        return {k: host[k].numpy() for k in fetch}

    def open_loop(self, carry: Mapping[str, str], state: Mapping, fetch: Sequence[str]) -> "OrtLoop":
        """A decode loop whose carried tensors stay in ``OrtValue``s (IO binding): see engines/loop.py. ``state``:
        numpy arrays (copied to the device) or OrtValues on the session's device (copied there, row for row)."""
        return OrtLoop(self, carry, state, fetch)


def _file_hash(path: str) -> str:
    """The first 16 hex digits of a graph file's sha256: the key of its TensorRT engine cache."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _fixed_by_batch(spec: TensorSpec) -> bool:
    """Every dimension fixed once B is known: the output can be preallocated (hidden_states [B, L, d] cannot)."""
    return all(d == "B" or isinstance(d, int) for d in spec.shape)


def _bound_value(engine: OrtEngine, name: str, spec: TensorSpec, batch: int, device: str) -> ort.OrtValue:
    """A preallocated output buffer [batch, ...] (only B may be dynamic)."""
    shape = [batch if d == "B" else d for d in spec.shape]
    if not _fixed_by_batch(spec):
        raise EngineError(f"graph {engine.name!r}: output {name!r} {spec.describe()} has a dynamic dimension other "
                          "than B; it cannot be bound to a preallocated buffer")
    return ort.OrtValue.ortvalue_from_shape_and_type(shape, np.dtype(spec.dtype), device, 0)


class OrtLoop:
    """``engines.loop.Loop`` with IO binding. The carried state lives in two sets of ``OrtValue``s on the session's
    device; each run reads one set and writes the other (step N's outputs are step N+1's inputs), so no state
    crosses to numpy between runs. Outputs neither carried nor fetched (the logits) are written to a preallocated
    buffer on the device and never copied; fetched ones (the token ids) go to preallocated host buffers. Rows leave
    (``keep_rows``) by a gather on the device (engines/memory.py), and ``carried_values`` hands the state on as
    OrtValues, so a runtime whose states live on the device never copies them to the host."""

    def __init__(self, engine: OrtEngine, carry: Mapping[str, str], state: Mapping, fetch: Sequence[str]):
        check_loop(engine, carry, state, fetch)
        self.engine, self.carry, self.fetch = engine, dict(carry), list(fetch)
        self.memory = engine.memory
        self.io = engine.session.io_binding()
        # copies: the loop writes into its buffers, never into the caller's arrays or OrtValues
        values = {}
        for k, v in state.items():
            if isinstance(v, ort.OrtValue):
                if v.device_name().lower() != self.engine.device:
                    raise EngineInputError(f"graph {engine.name!r}: carried {k!r} is on {v.device_name()}, the "
                                           f"session on {self.engine.device}")
                values[k] = self.memory.gather(v, range(v.shape()[0]))
            else:
                v = np.asarray(v)
                validate_feeds(engine.name, {k: engine.inputs[k]}, {k: v})
                values[k] = self.memory.from_host(v)
        self._allocate(values)

    def _allocate(self, values: Mapping[str, ort.OrtValue]) -> None:
        batches = {v.shape()[0] for v in values.values()}
        if len(batches) != 1:
            raise EngineInputError(f"graph {self.engine.name!r}: carried tensors disagree on the batch: "
                                   f"{ {k: v.shape() for k, v in values.items()} }")
        self.batch = batches.pop()
        self.cur = dict(values)
        self.nxt = {k: self.memory.empty(v.shape(), _ORT_TYPES[v.data_type()]) for k, v in values.items()}
        self.outputs: dict[str, ort.OrtValue] = {}
        self.unbound: list[str] = []  # outputs nothing reads whose shape is not fixed by B (hidden_states [B, L, d])
        for name, spec in self.engine.outputs.items():
            if name in self.carry:
                continue
            if name not in self.fetch and not _fixed_by_batch(spec):
                self.unbound.append(name)  # ONNX Runtime allocates it on the session's device, each run
                continue
            self.outputs[name] = _bound_value(self.engine, name, spec, self.batch,
                                              "cpu" if name in self.fetch else self.engine.device)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        specs = {k: self.engine.inputs[k] for k in feeds if k in self.engine.inputs}
        validate_feeds(self.engine.name, specs, feeds)
        wrong = {k: v.shape[0] for k, v in feeds.items() if v.shape[:1] != (self.batch,)}
        if wrong:
            raise EngineInputError(f"graph {self.engine.name!r}: loop inputs {wrong} must have the loop's batch "
                                   f"{self.batch} rows")
        io = self.io
        for k, v in feeds.items():
            io.bind_cpu_input(k, np.ascontiguousarray(v))
        for k, v in self.cur.items():
            io.bind_ortvalue_input(k, v)
        for out, inp in self.carry.items():
            io.bind_ortvalue_output(out, self.nxt[inp])
        for k, v in self.outputs.items():
            io.bind_ortvalue_output(k, v)
        for k in self.unbound:
            io.bind_output(k, self.engine.device)
        try:
            self.engine.session.run_with_iobinding(io)
        except Exception as e:
            raise EngineError(f"graph {self.engine.name!r}: ONNX Runtime failed in the bound loop "
                              f"(batch {self.batch}): {e}") from e
        self.cur, self.nxt = self.nxt, self.cur
        return {k: self.outputs[k].numpy().copy() for k in self.fetch}

    def carried(self) -> dict[str, np.ndarray]:
        return {k: self.memory.to_host(v) for k, v in self.cur.items()}

    def carried_values(self) -> dict[str, ort.OrtValue]:
        """The carried state as the loop's own OrtValues on the device (valid until the next run or keep_rows)."""
        return dict(self.cur)

    def keep_rows(self, rows: Sequence[int]) -> None:
        self._allocate({k: self.memory.gather(v, list(rows)) for k, v in self.cur.items()})
