"""The precision rule (bfloat16 only where it is native), its overrides, and determinism under each policy."""

import keras
import numpy as np
import pytest

from helpers import experiment, precision


@pytest.mark.parametrize("flags, gpu, expected", [
    ({"avx2", "avx512f", "amx_bf16"}, None, "mixed_bfloat16"),
    ({"avx2", "avx512f", "avx512_bf16"}, None, "mixed_bfloat16"),  # AVX512-BF16 without AMX (AMD Zen 4)
    ({"avx2"}, None, "float32"),
    (set(), (8, 0), "mixed_bfloat16"),  # an A100
    ({"avx2", "avx512f", "amx_bf16"}, (7, 5), "float32"),  # a T4 trains, in float32, whatever the CPU
    (set(), (0, 0), "float32"),  # a GPU that does not report its compute capability
])
def test_auto_uses_bfloat16_only_where_it_is_native(flags, gpu, expected, monkeypatch):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    monkeypatch.delenv(precision.ISA_CAP_ENV, raising=False)
    policy, reason = precision.choose(None, flags, gpu)
    assert policy == expected
    assert reason.startswith("auto:")
    if gpu is not None:  # a GPU decides, and the reason names it
        assert "GPU" in reason and (gpu == (0, 0)) == ("does not report" in reason)


@pytest.mark.parametrize("cap, usable", [
    ("", {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
    ("AVX512_CORE_AMX", {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
    ("avx512_core_bf16", {"avx2", "avx512f", "avx512_bf16"}),
    ("AVX512_CORE", {"avx2", "avx512f"}),
    ("AVX2", {"avx2"}),
])
def test_onednn_isa_cap_hides_the_instructions_it_forbids(cap, usable, monkeypatch):
    flags = {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert precision.usable_cpu_flags(flags, cap) == usable
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    monkeypatch.setenv(precision.ISA_CAP_ENV, cap)
    policy, reason = precision.choose(None, flags, None)
    assert policy == ("mixed_bfloat16" if usable & {"amx_bf16", "avx512_bf16"} else "float32")
    if policy == "float32":
        assert reason == "auto: $ONEDNN_MAX_CPU_ISA keeps oneDNN off this CPU's bfloat16 instructions"


def test_a_chapter_can_keep_float32_on_every_cpu(monkeypatch):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    monkeypatch.delenv(precision.ISA_CAP_ENV, raising=False)
    for flags in ({"amx_bf16"}, {"avx512_bf16"}):
        assert precision.choose(None, flags, None, cpu_bfloat16=False)[0] == "float32"
    assert precision.choose(None, set(), (8, 6), cpu_bfloat16=False)[0] == "mixed_bfloat16"  # a GPU still gains
    assert precision.choose("mixed_bfloat16", {"amx_bf16"}, None, cpu_bfloat16=False)[0] == "mixed_bfloat16"


def test_argument_then_environment_override_auto(monkeypatch):
    monkeypatch.setenv(precision.PRECISION_ENV, "float32")
    policy, reason = precision.choose(None, {"amx_bf16"}, None)
    assert (policy, reason) == ("float32", "set by the precision parameter or $SERIES_PRECISION")
    assert precision.choose("mixed_bfloat16", set(), None)[0] == "mixed_bfloat16"
    monkeypatch.setenv(precision.PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match="SERIES_PRECISION"):
        precision.choose(None, set(), None)


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2 amx_bf16\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == set()


def _train_once(policy: str):
    keras.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(0)
    data = {f"x_{s}": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8) for s, n in (("train", 64), ("val", 32))}
    data |= {f"y_{s}": rng.integers(0, 10, n) for s, n in (("train", 64), ("val", 32))}
    budget = experiment.Budget(epochs=2, batch_size=32, augment=True, warmup_epochs=1)
    model, history = experiment.train_model("resnet_small", data, budget, seed=1)
    assert model.layers[-1].compute_dtype == "float32"  # the softmax stays float32 under mixed precision
    return model.get_weights(), history["loss"]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_training_is_deterministic_for_a_precision(policy):
    weights_a, loss_a = _train_once(policy)
    weights_b, loss_b = _train_once(policy)
    assert loss_a == loss_b
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(a, b)
