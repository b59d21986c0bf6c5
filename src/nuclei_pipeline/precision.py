"""Which arithmetic training uses on this machine (reads the CPU's flags: kept out of ``core/``)."""

from __future__ import annotations

from nuclei_pipeline.core.model import PRECISIONS


def native_bfloat16_available() -> bool:
    """True when the CPU advertises bfloat16 arithmetic (AVX-512 BF16 or AMX).

    Read from ``/proc/cpuinfo`` (Linux); elsewhere the answer is False and
    training stays in float32.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """``auto`` → ``mixed_bfloat16`` where the CPU computes bfloat16 natively, else ``float32``."""
    if precision == "auto":
        return "mixed_bfloat16" if native_bfloat16_available() else "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"training.precision must be 'auto' or one of {PRECISIONS}, got {precision!r}")
    return precision
