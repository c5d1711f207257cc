"""argparse types that refuse bad numbers and text where they are typed, with the reason (``--streams 0``,
``--threads -2``, ``--prompt $'\\xff'``), so no command starts on a value it cannot use; and the options every
command line shares (``--device``, the default prompt), here so the runtime's and the ROS node's CLIs import them
from below instead of from each other."""

from __future__ import annotations

import argparse
import math

from .errors import PromptError
from .tokenizer import check_prompt

DEFAULT_PROMPT = "What is in the image?"  # what non-synthetic frames are asked when no --prompt is given


def _int(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An int >= 1 (counts: streams, frames, threads, batch size)."""
    return _int(text, 1, "an integer >= 1")


def non_negative_int(text: str) -> int:
    """An int >= 0 (max new tokens)."""
    return _int(text, 0, "an integer >= 0")


def _float(text: str, what: str, ok) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (max age in ms)."""
    return _float(text, "a number > 0", lambda v: v > 0)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (minimum interval in ms)."""
    return _float(text, "a number >= 0", lambda v: v >= 0)


def prompt_text(text: str) -> str:
    """Text a tokenizer can take (command-line bytes that are not UTF-8 arrive as lone surrogates: refused)."""
    try:
        return check_prompt(text)
    except PromptError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def device_arg(parser) -> None:
    """--device for every command that runs graphs (engines/devices.py)."""
    from engines.devices import DEVICES

    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where the graphs run: cpu; cuda (onnxruntime-gpu's CUDA provider with cobra-edge's CUDA "
                             "kernels); tensorrt (TensorRT for the standard operators, the CUDA kernels for the "
                             "cobra_edge nodes). Not yet run on a GPU: see docs/jetson.md")
