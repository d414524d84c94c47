"""Numeric precision, chosen by the machine: bf16 where the hardware computes it natively.

Modern server and desktop CPUs compute bf16 in hardware (AVX512-BF16, AMX) and so do
recent GPUs; elsewhere bf16 is emulated and slower than fp32. ``auto`` asks the hardware
(never the vendor's name): :func:`native_bf16` reads PyTorch's own CPU feature probe
(the same CPUID bits oneDNN dispatches on), or ``/proc/cpuinfo`` where that probe is
missing, and ``torch.cuda.is_bf16_supported`` on a GPU.

bf16 runs under autocast: convolutions and matrix products in bf16, reductions and the
softmax in fp32, and the bundle's temperature and pre-processing unchanged.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    answers = [bool(probe()) for probe in probes if callable(probe)]
    if answers:
        return any(answers)
    try:  # an older PyTorch without the probe: the kernel's own list of CPU flags
        flags = next(
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


EVALUATION_PRECISION = "fp32"
"""The one default of every command that evaluates (evaluate, compare, demo, reproduce,
explain-eval): fp32, so a model scores the same on every machine. ``auto`` would pick bf16 on
some CPUs and not others, and the same model would report two accuracies. Prediction and
serving default to ``auto`` (speed); their calls flip only near-ties (see the docs)."""


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 natively."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_precision(requested: str, device: torch.device | str) -> str:
    """``"fp32"`` or ``"bf16"``: ``auto`` picks bf16 where :func:`native_bf16`, else fp32.

    Raises:
        ValueError: not one of :data:`PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return requested


def autocast_for(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a resolved precision (a no-op for fp32)."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
