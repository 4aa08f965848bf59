"""The benchmark times models in fresh processes and reports ratios against its plain reference."""

import os

import pandas as pd

from helpers import bench, precision


def test_benchmark_reports_every_model_against_the_reference(tmp_path, capsys):
    csv = tmp_path / "bench.csv"
    bench.main(["--models", "benchmark", "--precisions", "float32", "--csv", str(csv)])
    table = pd.read_csv(csv).set_index(["model", "precision"])
    assert list(table.index) == [("reference", "float32"), ("benchmark", "float32")]
    assert table.loc[("reference", "float32"), "vs_reference"] == 1.0
    assert table.loc[("reference", "float32"), "parameters"] == 413_786  # the plain ResNet-9 at width 16
    timed = ["train_s_per_1000", "train_cpu_s_per_1000", "predict_s_per_1000", "peak_memory_mib"]
    assert (table[timed] > 0).all().all()
    # the CPU seconds of all threads: at most every core busy for the whole wall time
    assert (table["train_cpu_s_per_1000"] <= table["train_s_per_1000"] * os.cpu_count() * 1.05).all()
    model, reference = table.loc[("benchmark", "float32")], table.loc[("reference", "float32")]
    assert abs(model.vs_reference - model.train_s_per_1000 / reference.train_s_per_1000) < 1e-3
    assert "cores, flags:" in capsys.readouterr().out


def test_supported_precisions_follow_the_cpu(monkeypatch):
    monkeypatch.setattr(precision, "gpu_capability", lambda: None)
    monkeypatch.delenv(precision.ISA_CAP_ENV, raising=False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})
    assert bench.supported_precisions() == ["float32"]
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f", "amx_bf16"})
    assert bench.supported_precisions() == ["float32", "mixed_bfloat16"]
    monkeypatch.setenv(precision.ISA_CAP_ENV, "AVX2")  # an AVX2-only CPU, imitated by capping oneDNN
    assert bench.supported_precisions() == ["float32"]
    assert "flags: avx2 (oneDNN capped by ONEDNN_MAX_CPU_ISA=AVX2)" in bench.machine()
    monkeypatch.setattr(precision, "gpu_capability", lambda: (7, 5))  # a T4: no bfloat16 tensor cores
    assert bench.supported_precisions() == ["float32"]
    monkeypatch.setattr(precision, "gpu_capability", lambda: (8, 0))
    assert bench.supported_precisions() == ["float32", "mixed_bfloat16"]
