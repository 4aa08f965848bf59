"""The catalogue's columns and their types, shared by Kaggle's ``styles.csv`` reader and the mirror's.

``id`` and ``year`` are whole numbers that fit a 64-bit integer; anything else (``2011.5``, ``"twenty12"``,
``99999999999999999999``) is an error naming where it is, never truncated, rounded, wrapped or made missing.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from helpers.fashion_mnist import DataError

COLUMNS = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
           "season", "year", "usage", "productDisplayName"]
LABELS = COLUMNS[1:7] + ["usage"]
MISSING_TEXT = ("", "NA")  # cells that mean "missing" in styles.csv
INT64 = (Decimal(int(np.iinfo(np.int64).min)), Decimal(int(np.iinfo(np.int64).max)))


def _whole_number(value) -> int | str:
    """The whole number ``value`` holds (an int, a float such as 2012.0, or its text), or why it is not one."""
    if isinstance(value, (bool, np.bool_)):
        return "is not a number"
    try:
        exact = Decimal(value.strip() if isinstance(value, str) else
                        int(value) if isinstance(value, (int, np.integer)) else float(value))
    except (InvalidOperation, TypeError, ValueError):
        return "is not a number"
    if not exact.is_finite():
        return "is not a number"
    if exact != exact.to_integral_value():
        return "is not a whole number"
    if not INT64[0] <= exact <= INT64[1]:  # compared before int(): "1e999999999" never becomes an int
        return f"does not fit in 64 bits (the largest is {INT64[1]})"
    return int(exact)


def _is_missing(value) -> bool:
    return (value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value))
            or (isinstance(value, str) and value in MISSING_TEXT))


def _display(value):
    return value.item() if isinstance(value, np.generic) else value  # 1.7, not np.float64(1.7)


def whole_numbers(values: pd.Series, column: str, where: Callable[[int], str], fix: str,
                  required: bool) -> pd.Series:
    """``values`` as a nullable ``Int64`` series; a missing value (NA, NaN, "" or "NA") is allowed unless
    ``required``. Any other value that is not a whole 64-bit number raises ``DataError``, naming ``where(row)``
    (row counted from 0 in ``values``), the column, the value and ``fix``."""
    if pd.api.types.is_integer_dtype(values.dtype) and (not required or not values.isna().any()):
        return values.astype("Int64")
    numbers = []
    for row, value in enumerate(values.tolist()):
        if _is_missing(value):
            if required:
                raise DataError(f"{where(row)}: {column} is empty. {fix}")
            numbers.append(pd.NA)
            continue
        number = _whole_number(value)
        if isinstance(number, str):
            raise DataError(f"{where(row)}: {column} {_display(value)!r} {number}. {fix}")
        numbers.append(number)
    return pd.Series(pd.array(numbers, dtype="Int64"), index=values.index)
