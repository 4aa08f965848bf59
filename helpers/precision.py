"""Which floating-point precision training uses on this machine, and why.

``mixed_bfloat16`` (Keras' mixed-precision policy: layers compute in bfloat16 and keep float32
weights) where the hardware multiplies bfloat16 natively: an NVIDIA GPU of compute capability 8.0 or
later (Ampere on; a T4, 7.5, has no bfloat16 tensor cores), or a CPU with bfloat16 instructions that
oneDNN uses: Intel's AMX-BF16 tiles (``amx_bf16`` in ``/proc/cpuinfo``) or AVX512-BF16 dot products
(``avx512_bf16``, e.g. AMD Zen 4), on which the convolutional networks of this series train faster
(``python -m helpers.bench --precisions float32 mixed_bfloat16`` measures it on your machine).
Everywhere else ``float32``: there bfloat16 arithmetic is emulated and many times slower.
A chapter whose network gains nothing from bfloat16 on a CPU passes ``cpu_bfloat16=False`` and keeps
float32 there: EfficientNet-Lite0 (chapters 06, 08 and 10), whose depthwise convolutions trained
slower in bfloat16 on an AMX CPU.

Setting oneDNN's own ``ONEDNN_MAX_CPU_ISA`` below a CPU's bfloat16 instructions (e.g. ``AVX2``) makes it
compute like an older CPU, and the rule then picks float32 too: that is how this series times an
AVX2-only machine on a newer CPU (``ONEDNN_MAX_CPU_ISA=AVX2 python -m helpers.bench``).

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


BFLOAT16_CPU_FLAGS = {"amx_bf16", "avx512_bf16"}  # the instructions oneDNN computes bfloat16 with
BFLOAT16_GPU = (8, 0)  # NVIDIA compute capability from which GPUs have bfloat16 tensor cores (Ampere)
DETECT = "detect"


def gpu_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability, e.g. ``(8, 0)``; ``(0, 0)`` where it is not reported; None
    without a GPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)))


def bfloat16_native(flags: set[str] | None = None, gpu: tuple[int, int] | None | str = DETECT) -> bool:
    """Whether this machine's training device multiplies bfloat16 natively (the GPU where there is one)."""
    gpu = gpu_capability() if gpu == DETECT else gpu
    if gpu is not None:
        return gpu >= BFLOAT16_GPU
    return bool(BFLOAT16_CPU_FLAGS & usable_cpu_flags(flags))


def choose(requested: str | None = None, flags: set[str] | None = None, gpu: tuple[int, int] | None | str = DETECT,
           cpu_bfloat16: bool = True) -> tuple[str, str]:
    """``(policy, reason)``: the argument, else ``$SERIES_PRECISION``, else ``auto``, resolved for this machine.

    ``gpu``: the GPU's compute capability, None without one (default: detected). ``cpu_bfloat16=False``:
    float32 on every CPU, for networks that bfloat16 does not speed up there.
    """
    requested = requested or os.environ.get(PRECISION_ENV) or "auto"
    if requested in PRECISIONS:
        return requested, f"set by the precision parameter or ${PRECISION_ENV}"
    if requested != "auto":
        raise ValueError(f"Unknown precision {requested!r} (from the argument or ${PRECISION_ENV}); "
                         f"use auto or one of {PRECISIONS}.")
    gpu = gpu_capability() if gpu == DETECT else gpu
    if gpu is not None:
        capability = ".".join(map(str, gpu))
        if gpu >= BFLOAT16_GPU:
            return "mixed_bfloat16", f"auto: a GPU with bfloat16 tensor cores (compute capability {capability})"
        if gpu == (0, 0):
            return "float32", "auto: this GPU does not report a compute capability, so bfloat16 is not assumed"
        return "float32", f"auto: this GPU (compute capability {capability}) has no bfloat16 tensor cores"
    flags = cpu_flags() if flags is None else flags
    native = sorted(BFLOAT16_CPU_FLAGS & usable_cpu_flags(flags))
    if native:
        if not cpu_bfloat16:
            return "float32", "auto: this chapter's network runs faster in float32 on a CPU, even with bfloat16 " \
                              "instructions"
        return "mixed_bfloat16", f"auto: this CPU computes bfloat16 natively ({' '.join(native)})"
    if BFLOAT16_CPU_FLAGS & flags:
        return "float32", f"auto: ${ISA_CAP_ENV} keeps oneDNN off this CPU's bfloat16 instructions"
    return "float32", "auto: this CPU has no AMX-BF16 or AVX512-BF16, so bfloat16 would be emulated and slower"


def apply(requested: str | None = None, cpu_bfloat16: bool = True) -> tuple[str, str]:
    """Choose the precision and make it Keras' global policy for every model built afterwards."""
    import keras

    policy, reason = choose(requested, cpu_bfloat16=cpu_bfloat16)
    keras.mixed_precision.set_global_policy(policy)
    return policy, reason
