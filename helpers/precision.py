"""Which floating-point precision training uses on this machine, and why.

``mixed_bfloat16`` (Keras' mixed-precision policy: layers compute in bfloat16 and keep float32
weights) where the hardware multiplies bfloat16 natively: a GPU, or a CPU with Intel's AMX-BF16
tile instructions (``amx_bf16`` in ``/proc/cpuinfo``), on which oneDNN trains the convolutional
networks of this series about twice as fast (``python -m helpers.bench`` measures it on your
machine). Everywhere else ``float32``: without AMX, bfloat16 arithmetic is emulated and slower.
A chapter whose network gains nothing from AMX passes ``cpu_bfloat16=False`` and keeps float32 on a
CPU: EfficientNet-Lite0 (chapters 06 and 08), whose depthwise convolutions train two to three times
slower in bfloat16 on the CPU the series was measured on.

Setting oneDNN's own ``ONEDNN_MAX_CPU_ISA`` below AMX (e.g. ``AVX2``) makes such a CPU compute like an
older one, and the rule then picks float32 too: that is how this series times an AVX2-only machine on a
newer CPU (``ONEDNN_MAX_CPU_ISA=AVX2 python -m helpers.bench``).

Override with the ``SERIES_PRECISION`` environment variable or a chapter's ``precision``
parameter: ``auto`` (the default, the rule above), ``float32`` or ``mixed_bfloat16``. A run is
deterministic for a given machine and precision; the two precisions give slightly different numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

PRECISION_ENV = "SERIES_PRECISION"
PRECISIONS = ("float32", "mixed_bfloat16")
ISA_CAP_ENV = "ONEDNN_MAX_CPU_ISA"  # oneDNN's own switch: the newest instruction set its kernels may use


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` does not exist, e.g. macOS)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def usable_cpu_flags(flags: set[str] | None = None, isa_cap: str | None = None) -> set[str]:
    """The CPU's flags less those oneDNN is told not to use: ``$ONEDNN_MAX_CPU_ISA`` (e.g. ``AVX2``) caps
    the instructions its kernels dispatch to, which makes a newer CPU compute like an older one."""
    flags = cpu_flags() if flags is None else flags
    cap = (os.environ.get(ISA_CAP_ENV, "") if isa_cap is None else isa_cap).upper()
    if cap in ("", "ALL", "DEFAULT") or "AMX" in cap:
        return flags
    hidden = {"amx_bf16", "amx_tile", "amx_int8"}
    if "BF16" not in cap:
        hidden.add("avx512_bf16")
    if "512" not in cap and "AVX10" not in cap:
        hidden |= {f for f in flags if f.startswith("avx512")}
    return flags - hidden


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def choose(requested: str | None = None, flags: set[str] | None = None, gpu: bool | None = None,
           cpu_bfloat16: bool = True) -> tuple[str, str]:
    """``(policy, reason)``: the argument, else ``$SERIES_PRECISION``, else ``auto``, resolved for this machine
    (``cpu_bfloat16=False``: float32 on every CPU, for networks that AMX does not speed up)."""
    requested = requested or os.environ.get(PRECISION_ENV) or "auto"
    if requested in PRECISIONS:
        return requested, f"set by the precision parameter or ${PRECISION_ENV}"
    if requested != "auto":
        raise ValueError(f"Unknown precision {requested!r} (from the argument or ${PRECISION_ENV}); "
                         f"use auto or one of {PRECISIONS}.")
    if has_gpu() if gpu is None else gpu:
        return "mixed_bfloat16", "auto: a GPU is present"
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in usable_cpu_flags(flags):
        if not cpu_bfloat16:
            return "float32", "auto: this chapter's network runs faster in float32 on a CPU, even with AMX-BF16"
        return "mixed_bfloat16", "auto: this CPU has AMX-BF16"
    if "amx_bf16" in flags:
        return "float32", f"auto: ${ISA_CAP_ENV} keeps oneDNN off this CPU's AMX-BF16"
    return "float32", "auto: this CPU has no AMX-BF16, so bfloat16 would be emulated and slower"


def apply(requested: str | None = None, cpu_bfloat16: bool = True) -> tuple[str, str]:
    """Choose the precision and make it Keras' global policy for every model built afterwards."""
    import keras

    policy, reason = choose(requested, cpu_bfloat16=cpu_bfloat16)
    keras.mixed_precision.set_global_policy(policy)
    return policy, reason
