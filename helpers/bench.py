"""Time every chapter model under each precision this machine supports, beside a plain reference.

    python -m helpers.bench                       # every model, every precision the CPU supports
    python -m helpers.bench --models resnet_small resnet50 --precisions float32 --csv bench.csv

Each (model, precision) runs in a fresh Python process, one after another: it builds the model,
compiles it with the series' optimizer and loss, trains on random images in the chapter's batch size
(one warm-up pass, then the median of three timed passes) and predicts. The table gives seconds per
1,000 training images (wall time, and the CPU time of all the process's threads), seconds per 1,000
predictions, the process's peak memory, and two ratios: training cost against the reference at the same
precision, and float32's cost over this precision's for the same model (above 1: this precision is faster).
On a shared or rate-limited machine the wall time can stall at a rate the host sets (the same seconds per
image whatever the batch size, model or precision); the CPU seconds then still show the arithmetic's cost,
and a CPU-to-wall ratio well below the number of cores shows the stall.

The reference is a plain Keras ResNet-9 (Page, 2018, "How to train your ResNet") at width 16, written
out below without the series' helpers, trained in batches of 256: the same kind of network as chapter
04's, so a ratio far from 1 for ``resnet_small`` would point at the series' pipeline, not the CPU.
Random data measures speed only; the chapters measure accuracy. Takes about 6 minutes on 2 cores.

    ONEDNN_MAX_CPU_ISA=AVX2 python -m helpers.bench   # how an AVX2-only CPU would do, on a newer CPU

oneDNN's own ``ONEDNN_MAX_CPU_ISA`` keeps its kernels to the instructions named (and older ones):
the table then shows what a CPU without AVX-512 and AMX computes, at this CPU's clock and caches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from helpers.precision import ISA_CAP_ENV, PRECISIONS, bfloat16_native, usable_cpu_flags

CATALOGUE_HEADS = {"gender": 5, "masterCategory": 7, "subCategory": 45, "articleType": 142, "baseColour": 46,
                   "season": 4, "usage": 8}  # about the catalogue's class counts (chapter 06)
# model: (input shape, batch size, training images per timed pass)
SETTINGS = {"reference": ((28, 28, 1), 256, 2048), "benchmark": ((32, 32, 1), 128, 4096),
            "lenet5": ((32, 32, 1), 128, 4096), "resnet_small": ((28, 28, 1), 256, 2048),
            "resnet50": ((32, 32, 1), 64, 384), "catalogue_cnn": ((80, 60, 3), 64, 512),
            "catalogue_lite0": ((80, 60, 3), 64, 256)}
REPEATS = 3


def reference_resnet9(width: int = 16, num_classes: int = 10):
    """A plain ResNet-9 for 28x28x1 images: conv-BN-ReLU blocks, max-pools, two residual blocks."""
    import keras
    from keras import layers

    def conv(x, filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        return layers.ReLU()(layers.BatchNormalization()(x))

    inputs = keras.Input((28, 28, 1))
    x = conv(layers.Rescaling(1 / 255)(inputs), width)
    x = layers.MaxPooling2D()(conv(x, 2 * width))
    x = layers.Add()([x, conv(conv(x, 2 * width), 2 * width)])
    x = layers.MaxPooling2D()(conv(x, 4 * width))
    x = layers.MaxPooling2D()(conv(x, 8 * width))
    x = layers.Add()([x, conv(conv(x, 8 * width), 8 * width)])
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(layers.GlobalMaxPooling2D()(x))
    model = keras.Model(inputs, outputs, name="reference")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model


def _build(name: str):
    import keras

    from helpers.models import build_model

    shape, _, _ = SETTINGS[name]
    if name == "reference":
        return reference_resnet9()
    heads = name.startswith("catalogue")
    kwargs = {"pretrained": False} if name == "catalogue_lite0" else {}
    model = build_model(name, shape, CATALOGUE_HEADS if heads else 10, **kwargs)
    loss = {h: "sparse_categorical_crossentropy" for h in CATALOGUE_HEADS} if heads else \
        "sparse_categorical_crossentropy"
    model.compile(keras.optimizers.AdamW(1e-3, weight_decay=1e-4), loss)
    return model


def measure(name: str, precision: str) -> dict:
    """Time one model in this process (called in a fresh process by ``run``)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from helpers.notebook import peak_memory_mib
    from helpers.training import set_seed

    set_seed(0)
    keras.mixed_precision.set_global_policy(precision)
    shape, batch, images = SETTINGS[name]
    model = _build(name)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, *shape)).astype("float32")
    labels = {h: rng.integers(0, n, images) for h, n in CATALOGUE_HEADS.items()} \
        if name.startswith("catalogue") else rng.integers(0, 10, images)
    data = tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch).prefetch(2)
    passes, cpu = [], []
    for _ in range(1 + REPEATS):  # the first pass traces the graph and warms the caches
        start, start_cpu = time.perf_counter(), time.process_time()
        model.fit(data, epochs=1, verbose=0)
        passes.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    predict = []
    for _ in range(2):
        start = time.perf_counter()
        model.predict(x, batch_size=256, verbose=0)
        predict.append(time.perf_counter() - start)
    return {"model": name, "precision": precision, "parameters": int(model.count_params()),
            "batch_size": batch, "train_s_per_1000": statistics.median(passes[1:]) / images * 1000,
            "train_cpu_s_per_1000": statistics.median(cpu[1:]) / images * 1000,
            "predict_s_per_1000": predict[-1] / images * 1000, "peak_memory_mib": round(peak_memory_mib())}


def supported_precisions() -> list[str]:
    """float32, and mixed_bfloat16 where the GPU (compute capability 8.0 on) or the CPU (AVX512-BF16 or
    AMX-BF16) computes bfloat16 natively."""
    return list(PRECISIONS) if bfloat16_native() else ["float32"]


def machine() -> str:
    """The CPU's model name, its cores and the flags that decide the precision (less those that
    ``$ONEDNN_MAX_CPU_ISA`` keeps oneDNN from using)."""
    names = [line.partition(":")[2].strip() for line in _cpuinfo_lines() if line.startswith("model name")]
    flags = usable_cpu_flags()
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    cap = f" (oneDNN capped by {ISA_CAP_ENV}={os.environ[ISA_CAP_ENV]})" if os.environ.get(ISA_CAP_ENV) else ""
    return (f"{names[0] if names else platform.processor()}, {os.cpu_count()} cores, "
            f"flags: {' '.join(shown) or 'none of avx2/avx512f/amx_bf16'}{cap}")


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def run(models: list[str], precisions: list[str]) -> pd.DataFrame:
    rows = []
    for precision in precisions:
        for name in ["reference", *[m for m in models if m != "reference"]]:
            done = subprocess.run([sys.executable, "-m", "helpers.bench", "--child", name, precision],
                                  capture_output=True, text=True, check=False)
            if done.returncode:
                raise RuntimeError(f"timing {name} in {precision} failed:\n{done.stderr[-2000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{name:>16} {precision:>15}: {rows[-1]['train_s_per_1000']:.2f} s per 1,000 training images",
                  flush=True)
    table = pd.DataFrame(rows).set_index(["model", "precision"])
    reference = table.xs("reference", level="model")["train_s_per_1000"]
    table["vs_reference"] = [row.train_s_per_1000 / reference[p] for (_, p), row in table.iterrows()]
    if "float32" in precisions:
        f32 = table.xs("float32", level="precision")["train_s_per_1000"]
        table["float32_over_this"] = [f32[m] / row.train_s_per_1000 for (m, _), row in table.iterrows()]
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=None,
                        help="default: every precision this machine computes natively")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    print(machine(), flush=True)
    table = run(args.models, args.precisions or supported_precisions())
    print(table.round(3).to_string())
    if args.csv:
        table.round(4).to_csv(args.csv)


if __name__ == "__main__":
    main()
