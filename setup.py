"""Build hook: the native kernels as two optional shared libraries that ONNX Runtime loads with
SessionOptions.register_custom_ops_library. Everything else is in pyproject.toml.

- engines.kernels._cobra_kernels: the CPU kernels (engines/kernels, C++ without dependencies), and the training
  recurrence's forward and backward (scan_grad.h) that export/ calls through ctypes.
- engines.kernels._cobra_cuda: the CUDA provider's ops, the GPU launch code and the host harness of the GPU kernels.
  Also plain C++: it declares the CUDA driver API itself and opens libcuda at first use, so it builds (and its
  harness runs) on machines without CUDA. The device code (gpu_kernels.cu) is compiled by NVRTC: here, when NVRTC is
  found (a CUDA toolkit, e.g. JetPack's /usr/local/cuda), into engines/kernels/cubin/ for sm_72, sm_87 and sm_90;
  otherwise on the board at first use, cached (engines/kernels/cuda.py).

Both are optional: without a C++ compiler the install still succeeds and the graphs run their portable bodies;
`cobra-edge kernels` says what runs."""

import importlib.util
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = "engines/kernels"
FLAGS = ["-std=c++17", "-O3", "-fno-exceptions", "-fno-rtti", "-fvisibility=hidden", "-Wno-psabi"]


class BuildWithCubins(build_ext):
    """build_ext, then the device code's cubins where NVRTC is found (never fails the install)."""

    def run(self):
        super().run()
        try:
            spec = importlib.util.spec_from_file_location("cobra_nvrtc", Path(KERNELS) / "nvrtc.py")
            nvrtc = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(nvrtc)
            out = Path(self.get_ext_fullpath("engines.kernels._cobra_cuda")).parent / "cubin"
            paths = nvrtc.build_cubins(out)
            print(f"cobra-edge: GPU kernels compiled with NVRTC: {', '.join(p.name for p in paths)}")
        except Exception as e:  # no NVRTC here: the board compiles at first use
            print(f"cobra-edge: GPU kernels not precompiled ({str(e).splitlines()[0]}); they compile at first use")


setup(
    cmdclass={"build_ext": BuildWithCubins},
    ext_modules=[
        Extension(
            "engines.kernels._cobra_kernels",
            sources=[f"{KERNELS}/{f}" for f in ("selective_scan.cc", "scan_grad.cc", "conv_step.cc", "ort_op.cc",
                                                         "ort_cpu.cc")],
            depends=[f"{KERNELS}/{h}" for h in ("selective_scan.h", "scan_grad.h", "scan_grad_impl.h", "conv_step.h",
                                                "scan_impl.h", "conv_impl.h",
                                                "vecmath.h", "per_isa.h", "isa.h", "ort_abi.h", "ort_run.h")],
            language="c++",
            extra_compile_args=FLAGS,
            extra_link_args=["-pthread"],
            optional=True,
        ),
        Extension(
            "engines.kernels._cobra_cuda",
            sources=[f"{KERNELS}/{f}" for f in ("gpu_launch.cc", "gpu_emu.cc", "ort_op.cc", "ort_cuda.cc")],
            depends=[f"{KERNELS}/{h}" for h in ("gpu_common.h", "gpu_scan.h", "gpu_conv.h", "gpu_finite.h",
                                                "gpu_kernels.h", "gpu_launch.h", "cuda_abi.h", "ort_abi.h", "ort_run.h",
                                                "selective_scan.h", "conv_step.h")],
            language="c++",
            extra_compile_args=FLAGS,
            extra_link_args=["-pthread", "-ldl"],
            optional=True,
        ),
    ],
)
