"""Helpers for the notebook series: data, models, metrics, plots, training and the series runner.

Importing the package reads no data and downloads nothing. It only quietens TensorFlow's
C++ start-up log (unless you set TF_CPP_MIN_LOG_LEVEL yourself), so that notebook outputs
hold results rather than driver chatter that differs between machines.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
