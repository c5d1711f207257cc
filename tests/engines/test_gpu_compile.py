"""The GPU kernels' device code compiles to cubins for Jetson Orin (sm_87) and Hopper (sm_90) with NVRTC on this
CPU-only machine, warnings as errors, every kernel without a stack frame or register spills (a channel's state stays in
registers, which is the design); and what the runtime says where no GPU or driver is."""

import pytest

from engines.kernels import cuda, nvrtc

try:
    NVRTC = nvrtc.version()
except nvrtc.NvrtcError as e:
    NVRTC = None
    WHY = str(e)
needs_nvrtc = pytest.mark.skipif(NVRTC is None, reason="NVRTC is not installed here (the test extra installs "
                                                       "nvidia-cuda-nvrtc-cu12 on x86_64 and aarch64 Linux)")

KERNELS = [f"cobra_scan_{t}_n{n}" for t in ("f32", "f16") for n in (8, 16, 32, 64)] + \
          [f"cobra_conv_{t}_k{k}" for t in ("f32", "f16") for k in ("3", "any")] + ["cobra_finite"]


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_87", "sm_90"])
def test_device_code_compiles_without_warnings_or_spills(arch):
    image, log = nvrtc.compile_cubin(arch, strict=True)  # strict: any warning is an NvrtcError
    assert image[:4] == b"\x7fELF"
    used = nvrtc.resources(log)
    assert sorted(used) == sorted(KERNELS), f"kernels in the cubin: {sorted(used)}"
    for name, r in used.items():
        print(f"{arch} {name}: {r}")
        assert r["stack"] == 0 and r["spill_stores"] == 0 and r["spill_loads"] == 0, (name, r)
        assert r["registers"] <= 255 and r["shared"] <= 48 * 1024, (name, r)


@needs_nvrtc
def test_a_compile_error_is_reported_with_the_log(monkeypatch, tmp_path):
    bad = tmp_path / nvrtc.SOURCE
    bad.write_text('#include "gpu_scan.h"\nextern "C" __global__ void k() { undeclared(); }\n')
    for h in nvrtc.HEADERS:
        (tmp_path / h).write_bytes((nvrtc.HERE / h).read_bytes())
    monkeypatch.setattr(nvrtc, "HERE", tmp_path)
    with pytest.raises(nvrtc.NvrtcError, match=r"(?s)does not compile for sm_87.*undeclared"):
        nvrtc.compile_cubin("sm_87")


def test_missing_nvrtc_names_what_to_install(monkeypatch):
    monkeypatch.setattr(nvrtc, "candidates", lambda: ["/nonexistent/libnvrtc.so"])
    with pytest.raises(nvrtc.NvrtcError, match="pip install nvidia-cuda-nvrtc-cu12"):
        nvrtc.load()


def test_without_a_gpu_the_cuda_library_names_the_driver():
    """This machine has no NVIDIA driver: the library still loads (its host harness runs), and asking it for a GPU
    is an error naming libcuda."""
    try:
        cuda.host_library()
    except cuda.CudaUnavailable:
        pytest.skip("the CUDA library is not built here")
    cuda.cuda_library.cache_clear()
    try:
        lib = cuda.cuda_library()
    except cuda.CudaUnavailable as e:
        assert "libcuda.so.1" in str(e) or "cuInit" in str(e)
        assert "cannot run here" in cuda.status()
    else:  # a machine with a GPU
        assert lib.arch.startswith("sm_")


@needs_nvrtc
def test_cubins_are_cached_by_source_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("COBRA_EDGE_CACHE", str(tmp_path))
    monkeypatch.setattr(cuda, "PACKAGED", tmp_path / "none")
    image, where = cuda.cubin("sm_87")
    assert "compiled by NVRTC" in where and image[:4] == b"\x7fELF"
    again, where = cuda.cubin("sm_87")
    assert again == image and "cached" in where
    assert list((tmp_path / "cubin").iterdir())[0].name.startswith(nvrtc.source_hash()[:16])
