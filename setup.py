"""Build hook: the native kernels (engines/kernels, C++ without dependencies) as one shared library that ONNX
Runtime loads with SessionOptions.register_custom_ops_library. Everything else is in pyproject.toml.

The extension is optional: without a C++ compiler the install still succeeds, and the prefill graph runs its
portable body (standard ONNX operators) instead of the fused kernel; `cobra-edge kernels` says which one runs."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "engines.kernels._cobra_kernels",
            sources=["engines/kernels/selective_scan.cc", "engines/kernels/conv_step.cc", "engines/kernels/ort_op.cc"],
            depends=[f"engines/kernels/{h}" for h in ("selective_scan.h", "conv_step.h", "scan_impl.h", "conv_impl.h",
                                                      "vecmath.h", "per_isa.h", "isa.h", "ort_abi.h")],
            language="c++",
            extra_compile_args=["-std=c++17", "-O3", "-fno-exceptions", "-fno-rtti", "-fvisibility=hidden",
                                "-Wno-psabi"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    ],
)
