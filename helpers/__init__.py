"""Helpers for the notebook series: data, models, metrics, plots, training and the series runner.

Importing the package reads no data and downloads nothing. It sets two TensorFlow environment
variables, each only where you have not set it yourself, so import helpers before tensorflow:

- TF_CPP_MIN_LOG_LEVEL=3 quietens TensorFlow's C++ start-up log, so that notebook outputs hold
  results rather than driver chatter that differs between machines;
- TF_ENABLE_ONEDNN_OPTS=1 turns on TensorFlow's oneDNN CPU kernels, which TensorFlow enables by
  default only on CPUs with AVX-512 neural-network instructions. On an AVX2 CPU (the 2-core
  machine the series is timed on) they train ResNet-50 about three times as fast and the other
  networks 15-35% faster, with the same results from run to run under op determinism. Set it to
  0 to compare.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
