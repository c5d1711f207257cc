"""cobra-edge's GPU kernels for ONNX Runtime's CUDA provider: the library ``_cobra_cuda`` (host code built by a plain
C++ compiler, see setup.py) and the device code it loads (gpu_kernels.cu compiled to a cubin by NVRTC).

    lib = cuda_library()        # the library, the driver opened, the cubin for this GPU loaded: ready to register
    opts.register_custom_ops_library(str(lib.path))   # on a CUDA-provider session (engines/onnxruntime_backend.py)

Where the cubin comes from, in order: engines/kernels/cubin/ (compiled at install where NVRTC was found, valid while
the device code's hash matches), the user's cache ($COBRA_EDGE_CACHE or ~/.cache/cobra-edge, then cubin/), or NVRTC
now (then cached). Every failure is a ``CudaUnavailable`` naming what to install.

    COBRA_EDGE_CUDA_KERNELS=off           never register the CUDA library (the portable bodies run on the GPU)
    COBRA_EDGE_CUDA_KERNELS=/path/x.so    use this build
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import os
from dataclasses import dataclass
from pathlib import Path

from . import KernelUnavailable, nvrtc

ENV = "COBRA_EDGE_CUDA_KERNELS"
HERE = Path(__file__).resolve().parent
PACKAGED = HERE / "cubin"


class CudaUnavailable(KernelUnavailable):
    """The CUDA kernels cannot run here: the library was not built, no CUDA driver or GPU, or no cubin for this GPU
    and no NVRTC to make one (the message names what to install)."""


@dataclass(frozen=True)
class CudaLibrary:
    path: Path
    arch: str  # the GPU's, "sm_87"
    cubin: str  # where the device code came from

    def describe(self) -> str:
        return f"cobra-edge CUDA kernels ({self.arch}, {self.cubin}, {self.path.name})"


def library_path() -> Path | None:
    """The CUDA library to use: $COBRA_EDGE_CUDA_KERNELS's path, the installed build, or None (not built / off)."""
    choice = os.environ.get(ENV, "").strip()
    if choice.lower() in ("off", "0", "no", "false"):
        return None
    if choice:
        if not Path(choice).is_file():
            raise CudaUnavailable(f"${ENV}={choice}: no such file")
        return Path(choice).resolve()
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = HERE / f"_cobra_cuda{suffix}"
        if path.is_file():
            return path
    return None


@functools.cache
def _cdll(path: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(path)
        lib.cobra_gpu_init  # noqa: B018 - a cobra-edge CUDA library, not something else of that name
        lib.RegisterCustomOps  # noqa: B018
    except (OSError, AttributeError) as e:
        raise CudaUnavailable(f"{path} is not a cobra-edge CUDA kernel library: {e}") from e
    return lib


def host_library() -> ctypes.CDLL:
    """The CUDA library's host code (launches, the host harness of gpu_emu.py); needs no GPU."""
    path = library_path()
    if path is None:
        raise CudaUnavailable("cobra-edge's CUDA kernel library is not built (it needs only a C++ compiler at install: "
                              "pip install -e . again)" + (f", or ${ENV} is off" if os.environ.get(ENV) else ""))
    return _cdll(str(path))


def host_built() -> bool:
    """Whether the CUDA library's host build is here (what the host harness, engines/kernels/gpu_emu.py, needs)."""
    try:
        host_library()
    except CudaUnavailable:
        return False
    return True


def call(fn, *args) -> None:
    """Call a gpu_launch.h function (its last two arguments are the error buffer); CudaUnavailable with its message."""
    err = ctypes.create_string_buffer(512)
    if fn(*args, err, ctypes.c_size_t(len(err))) != 0:
        raise CudaUnavailable(f"{fn.__name__}: {err.value.decode(errors='replace')}")


def cache_dir() -> Path:
    base = os.environ.get("COBRA_EDGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cobra-edge")
    return Path(base) / "cubin"


def cubin(arch: str) -> tuple[bytes, str]:
    """The device code for ``arch`` ("sm_87") -> (cubin bytes, where it came from)."""
    digest = nvrtc.source_hash()
    packaged = PACKAGED / f"cobra_kernels.{arch}.cubin"
    stamp = PACKAGED / "cobra_kernels.sha256"
    if packaged.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return packaged.read_bytes(), "cubin built at install"
    cached = cache_dir() / f"{digest[:16]}.{arch}.cubin"
    if cached.is_file():
        return cached.read_bytes(), f"cubin cached in {cached.parent}"
    try:
        image, _ = nvrtc.compile_cubin(arch)
    except nvrtc.NvrtcError as e:
        raise CudaUnavailable(f"no cubin of cobra-edge's GPU kernels for {arch}, and NVRTC cannot make one: {e}") from e
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(image)
    os.replace(tmp, cached)  # another process compiling the same cubin writes the same bytes
    return image, f"cubin compiled by NVRTC {nvrtc.version()}, cached in {cached.parent}"


@functools.cache
def cuda_library(device: int = 0) -> CudaLibrary:
    """The CUDA library ready for ONNX Runtime's CUDA provider on ``device``: built, the driver opened, the device's
    architecture read, its cubin loaded. Raises CudaUnavailable naming what is missing."""
    lib = host_library()
    call(lib.cobra_gpu_init, ctypes.c_int(device))
    arch = ctypes.c_int()
    call(lib.cobra_gpu_arch, ctypes.c_int(device), ctypes.byref(arch))
    name = f"sm_{arch.value}"
    image, where = cubin(name)
    call(lib.cobra_gpu_set_image, image, ctypes.c_size_t(len(image)))
    return CudaLibrary(library_path(), name, where)


def status() -> str:
    """One line for ``cobra-edge kernels``: the CUDA build here, whether it can run, and what it lacks."""
    try:
        path = library_path()
    except CudaUnavailable as e:
        return f"error: {e}"
    if path is None:
        return "off ($COBRA_EDGE_CUDA_KERNELS)" if os.environ.get(ENV) else "not built (pip install -e . again)"
    parts = [path.name]
    stamp = PACKAGED / "cobra_kernels.sha256"
    built = sorted(p.name.split(".")[1] for p in PACKAGED.glob("cobra_kernels.sm_*.cubin"))
    if built and stamp.is_file() and stamp.read_text().strip() == nvrtc.source_hash():
        parts.append("cubins built at install for " + ", ".join(built))
    try:
        parts.append(f"NVRTC {nvrtc.version()} (compiles for other GPUs at first use)")
    except nvrtc.NvrtcError:
        parts.append("no NVRTC" + ("" if built else ": pip install nvidia-cuda-nvrtc-cu12 or a CUDA toolkit"))
    try:
        lib = cuda_library()
        parts.append(f"GPU {lib.arch} ready ({lib.cubin})")
    except CudaUnavailable as e:
        parts.append(f"cannot run here: {e}")
    return "; ".join(parts)
