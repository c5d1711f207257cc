"""Compile the GPU kernels' device code (gpu_kernels.cu) to cubins with NVRTC, through ctypes: no nvcc, no CUDA
headers, no GPU needed. Used at build time (setup.py, where NVRTC is found), on the board at first use (the cubin is
cached: engines/kernels/cuda.py), and by the compile test.

NVRTC comes from a CUDA toolkit (JetPack: /usr/local/cuda/lib64/libnvrtc.so) or from the registry's wheel
``nvidia-cuda-nvrtc-cu12`` (x86_64 and aarch64). Only the standard library is imported here, so setup.py can load
this file by path before anything is installed.

    cubin, log = compile_cubin("sm_87")        # bytes of an ELF cubin for Jetson Orin, NVRTC's log
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = "gpu_kernels.cu"
HEADERS = ("gpu_common.h", "gpu_scan.h", "gpu_conv.h", "gpu_finite.h", "gpu_kernels.h")
# Jetson Xavier (sm_72), Jetson Orin (sm_87), Hopper (sm_90: the H200 of the GPU check); any other GPU compiles its
# own at first use
ARCHS = ("sm_72", "sm_87", "sm_90")
# ptxas: warnings (register spills included) are errors, since the design (a channel's state in registers) depends on
# nothing spilling; --verbose puts each kernel's registers, stack frame and spills in the log (``resources``)
OPTIONS = ("--std=c++17", "--device-as-default-execution-space", "--ptxas-options=--warn-on-spills",
           "--ptxas-options=--warning-as-error", "--ptxas-options=--verbose")


class NvrtcError(RuntimeError):
    """NVRTC is missing, or the device code does not compile (the message holds NVRTC's log)."""


def source_hash() -> str:
    """sha256 of the device code and its headers: the key of a cached cubin."""
    h = hashlib.sha256()
    for name in (SOURCE, *HEADERS):
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    return h.hexdigest()


def candidates() -> list[str]:
    """Where libnvrtc may be, in order: $COBRA_EDGE_NVRTC, the nvidia-cuda-nvrtc-cu12 wheel, a CUDA toolkit
    ($CUDA_HOME, /usr/local/cuda, JetPack's target directories), the loader's search path."""
    found = []
    env = os.environ.get("COBRA_EDGE_NVRTC")
    if env:
        found.append(env)
    try:
        import nvidia.cuda_nvrtc as wheel  # the registry wheel: a namespace package with lib/libnvrtc.so.12

        for base in wheel.__path__:
            found += sorted(glob.glob(os.path.join(base, "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    roots = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    for root in filter(None, roots):
        for sub in ("lib64", "lib", "targets/aarch64-linux/lib", "targets/x86_64-linux/lib"):
            found += sorted(glob.glob(os.path.join(root, sub, "libnvrtc.so*")))
    found += ["libnvrtc.so.12", "libnvrtc.so"]
    return [f for f in found if "builtins" not in f and ".alt." not in f]


def load() -> ctypes.CDLL:
    """The first NVRTC library that loads; NvrtcError naming what to install when none does."""
    tried = []
    for path in candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.nvrtcVersion  # noqa: B018 - an NVRTC library, not something else of that name
            return lib
        except (OSError, AttributeError) as e:
            tried.append(f"{path} ({e})")
    raise NvrtcError("NVRTC (the CUDA runtime compiler) was not found: pip install nvidia-cuda-nvrtc-cu12, or install "
                     "a CUDA toolkit (JetPack has one in /usr/local/cuda), or point $COBRA_EDGE_NVRTC at libnvrtc.so; "
                     "tried " + "; ".join(tried[:4]))


def version(lib: ctypes.CDLL | None = None) -> str:
    lib = lib or load()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return f"{major.value}.{minor.value}"


def _without_deprecation(log: str) -> str:
    """The log less NVRTC 12's notice that targets before sm_75 (Xavier's sm_72) are deprecated: still supported,
    and NVRTC has no option to silence that one warning alone."""
    return "\n".join(line for line in log.splitlines() if "prior to '<compute/sm>_75' are deprecated" not in line)


def _check(lib: ctypes.CDLL, code: int, what: str) -> None:
    if code:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise NvrtcError(f"NVRTC {what}: {lib.nvrtcGetErrorString(code).decode()}")


def compile_cubin(arch: str, strict: bool = True, defines: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """gpu_kernels.cu compiled for ``arch`` ("sm_87") -> (cubin bytes, NVRTC's log). strict: warnings (NVRTC's or
    ptxas's, register spills included) are errors."""
    if not arch.startswith("sm_") or not arch[3:].isdigit():
        raise NvrtcError(f"architecture {arch!r}: expected sm_<major><minor>, e.g. sm_87")
    lib = load()
    prog = ctypes.c_void_p()
    src = (HERE / SOURCE).read_bytes()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), src, SOURCE.encode(), 0, None, None), "create")
    try:
        opts = [f"--gpu-architecture={arch}", f"--include-path={HERE}", *OPTIONS, *(f"-D{d}" for d in defines)]
        if not strict:
            opts = [o for o in opts if o != "--ptxas-options=--warning-as-error"]
        argv = (ctypes.c_char_p * len(opts))(*(o.encode() for o in opts))
        status = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        text = log.value.decode(errors="replace").strip()
        if status:
            raise NvrtcError(f"{SOURCE} does not compile for {arch} (NVRTC {version(lib)}):\n{text}")
        if strict and "warning" in _without_deprecation(text).lower():
            raise NvrtcError(f"{SOURCE} compiles for {arch} with warnings, which are errors here:\n{text}")
        _check(lib, lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "cubin size")
        cubin = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetCUBIN(prog, cubin), "cubin")
        return cubin.raw, text
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def resources(log: str) -> dict[str, dict[str, int]]:
    """Per kernel, from ptxas's verbose log: {"cobra_scan_f32_n16": {"registers": 40, "stack": 0, "spill_stores": 0,
    "spill_loads": 0, "shared": 8192}}."""
    import re

    out: dict[str, dict[str, int]] = {}
    name = None
    for line in log.splitlines():
        m = re.search(r"Function properties for (\w+)", line) or re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            name = m.group(1)
            out.setdefault(name, {})
            continue
        if name is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            out[name].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            out[name]["registers"] = int(m.group(1))
            m = re.search(r"(\d+) bytes smem", line)
            out[name]["shared"] = int(m.group(1)) if m else 0
    return out


def build_cubins(out_dir: str | os.PathLike, archs: tuple[str, ...] = ARCHS) -> list[Path]:
    """Compile for every arch into out_dir as cobra_kernels.<arch>.cubin, with the source hash beside them
    (cobra_kernels.sha256): what setup.py ships and engines/kernels/cuda.py loads when the hash still matches."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for arch in archs:
        cubin, _ = compile_cubin(arch)
        path = out / f"cobra_kernels.{arch}.cubin"
        path.write_bytes(cubin)
        paths.append(path)
    (out / "cobra_kernels.sha256").write_text(source_hash() + "\n")
    return paths
