"""The GPU check: everything about the GPU path that a CPU cannot prove, in one run of a few minutes on a machine with
an NVIDIA GPU, its driver and a CUDA toolkit (or the nvidia-cuda-nvrtc-cu12 wheel), and nothing from the network.

    python -m bench.gpu_check [--out bench/results] [--no-build] [--artifact DIR] [--budget-s 420]

1. build      ``python setup.py build_ext --inplace --force``: the CPU and CUDA libraries and the cubins (NVRTC)
2. kernels    every GPU kernel on the GPU (SelectiveScan/SelectiveStep: the scan kernel; CausalConv/ConvStep: the conv
              kernel; float32 and float16 activations) against a float64 reference, on the shapes of the CPU tests
              (tests/engines/test_gpu_kernels.py, test_kernels.py) and one mamba-2.8b layer; tolerance 1e-4 relative
              (float32) and 1e-2 (float16), the issue's targets
3. timings    one mamba-2.8b layer's scan (d_inner 5120, d_state 16, 761 tokens) at B = 1 and 8, and 64 layers of
              decode-step kernels (conv then scan at one token, 64 distinct layers' buffers) at B = 1 and 8, by CUDA
              events; each with the bytes it must move and the time those bytes take at Jetson Orin's bandwidths
4. onnxruntime  when onnxruntime-gpu is importable: the tiny artifact (--artifact, else the trained tiny model exported
              now, which needs the export extra) answered on the CUDA provider (and TensorRT, when present) with both
              decode modes, against the CPU provider's answers (tokens, states)

Ends with one summary line and writes JSON (``gpu-check-<time>.json`` in --out). Exit codes: 0 every check passed,
1 a check failed (the summary names it), 2 bad options, 4 no GPU here: the GPU parts were skipped ("no GPU: skipped
..."), what could run without one (the build, the cubins) ran. ``--emulate`` runs the kernel checks on the host harness
(engines/kernels/gpu_emu.py: the kernels' code on the CPU) instead, for a machine without a GPU.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .gpu_reference import (CONV_SHAPES, MAMBA_2_8B, SCAN_SHAPES, TOL, conv_inputs, conv_reference, rel_err,
                            scan_inputs, scan_reference)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = "cobra-edge-gpu-check/1"
EXIT_OK, EXIT_FAILED, EXIT_NO_GPU = 0, 1, 4
# the targets on an H200 (ms), and Jetson Orin's memory bandwidths (GB/s) to state the figures against
TARGET_MS = {"scan_2.8b_layer_B1": 0.5, "decode_64_layers_B1": 1.0}
JETSON_GB_S = {"agx_orin": 204.8, "orin_nx_16gb": 102.4, "orin_nano_8gb": 68.0}
_clock = time.perf_counter  # the run's clock for --budget-s (a test's to replace)

# -- the kernels on the GPU ----------------------------------------------------------------------------------------

class Gpu:
    """The GPU kernels on device 0, with the host harness's signatures (engines/kernels/gpu_emu.py): numpy in, numpy
    out, each call copying its buffers to the device, launching on the default stream and copying the outputs back."""

    def __init__(self):
        from engines.kernels import cuda

        self.cuda = cuda
        self.info = cuda.cuda_library()  # CudaUnavailable without a driver, a GPU or a cubin
        self.lib = cuda.host_library()
        cuda.call(self.lib.cobra_gpu_use_device, ctypes.c_int(0))
        self._live: list[int] = []

    def alloc(self, nbytes: int) -> int:
        p = ctypes.c_uint64()
        self.cuda.call(self.lib.cobra_gpu_alloc, ctypes.c_size_t(nbytes), ctypes.byref(p))
        self._live.append(p.value)
        return p.value

    def put(self, a: np.ndarray) -> int:
        p = self.alloc(a.nbytes)
        self.copy(p, a.ctypes.data, a.nbytes)
        return p

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        self.cuda.call(self.lib.cobra_gpu_copy, ctypes.c_uint64(dst), ctypes.c_uint64(src), ctypes.c_size_t(nbytes))

    def free_all(self) -> None:
        while self._live:
            self.cuda.call(self.lib.cobra_gpu_free, ctypes.c_uint64(self._live.pop()))

    def launch(self, fn, params, half: int) -> None:
        self.cuda.call(fn, ctypes.byref(params), ctypes.c_int(half), None)

    def _run(self, call, fn):
        try:
            ptrs = {k: self.put(a) for k, a in call.inputs.items()}
            ptrs.update({k: self.alloc(a.nbytes) for k, a in call.outputs.items()})
            self.launch(fn, call.params(ptrs), call.half)
            self.cuda.call(self.lib.cobra_gpu_synchronize)
            for k, a in call.outputs.items():
                self.copy(a.ctypes.data, ptrs[k], a.nbytes)
            return tuple(call.outputs.values())
        finally:
            self.free_all()

    def selective_scan(self, x, dt, A, B, C, D, z, dt_bias, h):
        from engines.kernels.gpu_emu import scan_call

        return self._run(scan_call(x, dt, A, B, C, D, z, dt_bias, h), self.lib.cobra_gpu_selective_scan)

    def causal_conv(self, x, conv_state, weight, bias):
        from engines.kernels.gpu_emu import conv_call

        return self._run(conv_call(x, conv_state, weight, bias), self.lib.cobra_gpu_causal_conv)

    def timed(self, body, repeats: int) -> float:
        """Median GPU milliseconds of ``body()`` (launches on the default stream), after two warm-up calls."""
        body()
        body()
        self.cuda.call(self.lib.cobra_gpu_synchronize)
        times = []
        for _ in range(repeats):
            self.cuda.call(self.lib.cobra_gpu_timer_start)
            body()
            ms = ctypes.c_float()
            self.cuda.call(self.lib.cobra_gpu_timer_stop, ctypes.byref(ms))
            times.append(ms.value)
        return float(np.median(times))


def check_kernels(impl, dtypes=("float32", "float16"), big_scan: bool = True) -> list[dict]:
    """Every shape of every kernel (SCAN_SHAPES, CONV_SHAPES) through ``impl`` (Gpu, or engines.kernels.gpu_emu: the
    same signatures) against the float64 reference: one row per case, ``ok`` when within TOL[dtype]."""
    rows = []
    cases = [("scan", s) for s in SCAN_SHAPES] + [("conv", s) for s in CONV_SHAPES]
    if big_scan:  # one mamba-2.8b layer over Cobra's prefill length, B = 1
        cases.append(("scan", (1, MAMBA_2_8B["tokens"], MAMBA_2_8B["d_inner"], MAMBA_2_8B["d_state"])))
    for dtype in dtypes:
        for kind, shape in cases:
            seed = sum(shape)
            if kind == "scan":
                f = scan_inputs(*shape, seed=seed, dtype=dtype)
                args = [f[k] for k in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h")]
                got, want = impl.selective_scan(*args), scan_reference(*args)
                op = "SelectiveStep" if shape[1] == 1 else "SelectiveScan"
            else:
                f = conv_inputs(*shape, seed=seed, dtype=dtype)
                args = [f[k] for k in ("x", "conv_state", "weight", "bias")]
                got, want = impl.causal_conv(*args), conv_reference(*args)
                op = "ConvStep" if shape[1] == 1 else "CausalConv"
            err = rel_err(got, want)
            finite = all(np.isfinite(np.asarray(g, np.float32)).all() for g in got)
            rows.append({"kernel": kind, "op": op, "shape": list(shape), "dtype": dtype, "rel_err": err,
                         "tol": TOL[dtype], "ok": bool(finite and err < TOL[dtype])})
    return rows


def layer_bytes(b: int, l: int, d: int, n: int, k: int, itemsize: int) -> dict[str, int]:
    """Bytes the scan and the conv kernels must read and write for one layer (what bounds them: a memory-bound
    recurrence)."""
    scan = 4 * b * l * d * itemsize + 2 * b * l * n * itemsize + d * n * 4 + 2 * d * 4 + 2 * b * d * n * 4
    conv = 2 * b * l * d * itemsize + 2 * b * d * (k - 1) * itemsize + d * k * 4 + d * 4
    return {"scan": scan, "conv": conv}


def at_jetson(nbytes: int) -> dict[str, float]:
    """The time those bytes take at each Jetson's memory bandwidth (ms): a floor on the board."""
    return {board: nbytes / (gb_s * 1e9) * 1e3 for board, gb_s in JETSON_GB_S.items()}


def time_kernels(gpu: Gpu, repeats: int = 20) -> dict:
    """The scan of one mamba-2.8b layer (B = 1, 8) and 64 layers of decode-step kernels (B = 1, 8), fp32 and fp16."""
    from engines.kernels.gpu_args import ConvParams, ScanParams, conv_params, scan_params

    d, n, k, layers, l = (MAMBA_2_8B[key] for key in ("d_inner", "d_state", "d_conv", "n_layer", "tokens"))
    out: dict = {}
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float16"):
        item, half = np.dtype(dtype).itemsize, int(dtype == "float16")
        for b in (1, 8):
            try:
                f = scan_inputs(b, l, d, n, seed=b, dtype=dtype)
                ptrs = {("h0" if key == "h" else key): gpu.put(v) for key, v in f.items()}
                ptrs.update(y=gpu.alloc(b * l * d * item), h_out=gpu.alloc(b * d * n * 4))
                p = scan_params(b, l, d, n, ptrs)
                ms = gpu.timed(lambda: gpu.launch(gpu.lib.cobra_gpu_selective_scan, p, half), repeats)
                nbytes = layer_bytes(b, l, d, n, k, item)["scan"]
                out[f"scan_2.8b_layer_B{b}_{dtype}"] = {"ms": ms, "bytes": nbytes, "gb_s": nbytes / ms / 1e6,
                                                        "jetson_floor_ms": at_jetson(nbytes)}
            finally:
                gpu.free_all()
            try:  # 64 layers, each its own buffers (no layer finds the previous one's in the L2 cache)
                convs, scans = (ConvParams * layers)(), (ScanParams * layers)()
                act = lambda shape: gpu.put(rng.standard_normal(shape).astype(dtype))  # noqa: E731
                f32 = lambda shape: gpu.put(rng.standard_normal(shape).astype(np.float32))  # noqa: E731
                for i in range(layers):
                    convs[i] = conv_params(b, 1, d, k, {"x": act((b, d)), "state": act((b, d, k - 1)),
                                                        "weight": f32((d, k)), "bias": f32((d,)),
                                                        "y": gpu.alloc(b * d * item),
                                                        "state_out": gpu.alloc(b * d * (k - 1) * item)})
                    scans[i] = scan_params(b, 1, d, n, {"x": act((b, d)), "dt": act((b, d)), "B": act((b, n)),
                                                        "C": act((b, n)), "z": act((b, d)),
                                                        "A": gpu.put(-np.ones((d, n), np.float32)), "D": f32((d,)),
                                                        "dt_bias": f32((d,)), "h0": f32((b, d, n)),
                                                        "y": gpu.alloc(b * d * item),
                                                        "h_out": gpu.alloc(b * d * n * 4)})
                ms = gpu.timed(lambda: gpu.cuda.call(gpu.lib.cobra_gpu_run_layers, convs, scans, ctypes.c_int(layers),
                                                     ctypes.c_int(half), None), repeats)
                one = layer_bytes(b, 1, d, n, k, item)
                nbytes = layers * (one["scan"] + one["conv"])
                out[f"decode_64_layers_B{b}_{dtype}"] = {"ms": ms, "bytes": nbytes, "gb_s": nbytes / ms / 1e6,
                                                         "jetson_floor_ms": at_jetson(nbytes)}
            finally:
                gpu.free_all()
    for key, target in TARGET_MS.items():
        row = out.get(f"{key}_float32")
        if row:
            row.update(target_ms=target, ok=row["ms"] < target)
    return out


# -- ONNX Runtime on the GPU -----------------------------------------------------------------------------------------

def tiny_artifact(given: str | None, work: Path) -> Path:
    """--artifact, or the trained tiny model exported now (needs the export extra: torch)."""
    if given:
        return Path(given)
    out = work / "tiny-trained"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "export", "--trained", "--out", str(out), "--overwrite"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"exporting the tiny model failed (pass --artifact DIR): {r.stderr.strip()[-500:]}")
    return out


def answers(runtime, frames, prompt: str, max_new: int):
    """Token ids and final states of two streams asked every frame (one continuous: its state carries)."""
    from edge.batch import Request

    streams = [runtime.open_stream("a", mode="continuous"), runtime.open_stream("b")]
    try:
        tokens = []
        for frame in frames:
            results = runtime.answer([Request(s, frame, prompt, max_new) for s in streams])
            for r in results:
                if isinstance(r, Exception):
                    raise r
            tokens.append([r.token_ids for r in results])
        states = [tuple(np.array(a) for a in runtime.pool.read(s.slot)) for s in streams]
        return tokens, states
    finally:
        for s in streams:
            s.close()


def check_onnxruntime(artifact: Path, devices: list[str]) -> list[dict]:
    """The artifact on each GPU device and decode mode against the CPU provider: same tokens, states within 1e-3."""
    from edge.runtime import Runtime

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    rows = []
    for decode in ("prefill", "step"):
        want, want_states = answers(Runtime.load(artifact, max_streams=2, decode=decode), frames,
                                    "What is in the image?", 8)
        for device in devices:
            t0 = time.perf_counter()
            rt = Runtime.load(artifact, max_streams=2, decode=decode, device=device)
            got, got_states = answers(rt, frames, "What is in the image?", 8)
            err = max(rel_err(g, w) for g, w in zip(got_states, want_states))
            same = got == want
            # TensorRT may run the standard operators in fp16: its tokens are reported, not required to match
            ok = bool(np.isfinite(err)) if device == "tensorrt" else bool(same and err < 1e-3)
            rows.append({"device": device, "decode": decode, "tokens_equal": same, "state_rel_err": err, "ok": ok,
                         "scan": rt.selective_scan, "seconds": time.perf_counter() - t0})
    return rows


# -- the run ---------------------------------------------------------------------------------------------------------

def build() -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "--force"], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    cubins = sorted(p.name for p in (REPO / "engines" / "kernels" / "cubin").glob("*.cubin"))
    return {"ok": r.returncode == 0, "seconds": time.perf_counter() - t0, "cubins": cubins,
            "log_tail": (r.stdout + r.stderr)[-1500:]}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder of the JSON (default: bench/results)")
    p.add_argument("--no-build", action="store_true", help="use the libraries and cubins already built")
    p.add_argument("--artifact",
                   help="the artifact for the ONNX Runtime check (default: export the trained tiny model)")
    p.add_argument("--emulate", action="store_true",
                   help="no GPU: run the kernel checks on the host harness (the kernels' code on the CPU) instead")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per figure (median)")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip what would start after this many seconds")
    a = p.parse_args(argv)
    if a.repeats < 1 or a.budget_s <= 0:
        p.error("--repeats and --budget-s must be positive")
    return a


def run(a: argparse.Namespace) -> tuple[dict, int]:
    """Every step of the check: (the JSON document, the exit code)."""
    t0 = _clock()
    doc: dict = {"schema": SCHEMA, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "skipped": [], "failed": [],
                 "machine": {"platform": platform.platform(), "python": platform.python_version(),
                             "cores": os.cpu_count()}, "targets_ms": TARGET_MS, "jetson_gb_s": JETSON_GB_S}

    def skip(what: str, why: str) -> None:
        doc["skipped"].append({"what": what, "why": why})

    def in_budget(what: str) -> bool:
        if _clock() - t0 < a.budget_s:
            return True
        skip(what, f"out of time (--budget-s {a.budget_s:g})")
        return False

    if a.no_build:
        skip("build", "--no-build")
    else:
        doc["build"] = build()
        if not doc["build"]["ok"]:
            doc["failed"].append("build")
    from engines.kernels import cuda, nvrtc

    try:
        doc["machine"]["nvrtc"] = nvrtc.version()
    except nvrtc.NvrtcError as e:
        doc["machine"]["nvrtc"] = f"none: {e}"
    doc["machine"]["cuda_kernels"] = cuda.status()
    gpu = None
    try:
        gpu = Gpu()
        doc["machine"]["gpu"] = gpu.info.describe()
    except cuda.CudaUnavailable as e:
        doc["no_gpu"] = str(e)
    impl = gpu
    if gpu is None and a.emulate:
        from engines.kernels import gpu_emu as impl
    if impl is None:
        skip("kernels on the GPU", doc["no_gpu"])
    elif in_budget("kernels"):
        doc["kernels_on"] = "gpu" if gpu else "host harness (--emulate)"
        doc["kernels"] = check_kernels(impl, big_scan=gpu is not None)
        bad = [r for r in doc["kernels"] if not r["ok"]]
        if bad:
            doc["failed"].append(f"kernels: {len(bad)} of {len(doc['kernels'])} outside tolerance")
    if gpu is None:
        skip("timings", doc["no_gpu"])
    elif in_budget("timings"):
        doc["timings"] = time_kernels(gpu, a.repeats)
        doc["failed"] += [f"{k} {v['ms']:.3f} ms >= {v['target_ms']} ms" for k, v in doc["timings"].items()
                          if v.get("ok") is False]
    import onnxruntime as ort

    devices = [d for d, p in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider"))
               if p in ort.get_available_providers()]
    if gpu is None:
        skip("onnxruntime on the GPU", doc["no_gpu"])
    elif not devices:
        skip("onnxruntime on the GPU", f"this onnxruntime ({ort.__version__}) has no CUDA provider: pip install "
                                       "onnxruntime-gpu (docs/jetson.md)")
    elif in_budget("onnxruntime"):
        try:
            with tempfile.TemporaryDirectory() as work:
                doc["onnxruntime"] = check_onnxruntime(tiny_artifact(a.artifact, Path(work)), devices)
            doc["failed"] += [f"onnxruntime {r['device']} decode={r['decode']}" for r in doc["onnxruntime"]
                              if not r["ok"]]
        except Exception as e:  # noqa: BLE001 - reported as this step's failure, the rest of the report kept
            doc["onnxruntime_error"] = f"{type(e).__name__}: {e}"
            doc["failed"].append("onnxruntime")
    doc["seconds"] = _clock() - t0
    code = EXIT_FAILED if doc["failed"] else EXIT_NO_GPU if gpu is None else EXIT_OK
    doc["exit_code"] = code
    return doc, code


def summary(doc: dict, path: Path) -> str:
    """The one line the check ends with."""
    verdict = "FAIL" if doc["failed"] else "NO GPU" if "no_gpu" in doc else "PASS"
    parts = [f"gpu-check: {verdict}"]
    if "kernels" in doc:
        ok = sum(r["ok"] for r in doc["kernels"])
        parts.append(f"kernels {ok}/{len(doc['kernels'])} within tolerance ({doc['kernels_on']})")
    for key, row in doc.get("timings", {}).items():
        if key.endswith("float32"):
            parts.append(f"{key[:-8]} {row['ms']:.3f} ms" + (f" (target < {row['target_ms']})" if "target_ms" in row
                                                            else ""))
    if "onnxruntime" in doc:
        parts.append("onnxruntime " + ", ".join(f"{r['device']}/{r['decode']} {'ok' if r['ok'] else 'FAILED'}"
                                                for r in doc["onnxruntime"]))
    if "no_gpu" in doc:
        parts.append("no GPU: skipped " + ", ".join(s["what"] for s in doc["skipped"] if s["why"] == doc["no_gpu"])
                     + f" ({doc['no_gpu']})")
    if doc["failed"]:
        parts.append("failed: " + "; ".join(doc["failed"]))
    parts.append(f"{doc['seconds']:.0f} s, wrote {path}")
    return "; ".join(parts)


def main(argv=None) -> int:
    a = parse_args(argv)
    doc, code = run(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"gpu-check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(summary(doc, path), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
