"""``hdf5``: attributes, dataset names, shapes and dtypes of an HDF5 file.

TVB's conventions are decoded: ``bool:True`` is a bool, ``datetime:%Y-%m-%d %H:%M:%S.%f`` a
datetime, and the ``TVB_`` prefix of TVB-specific keys is dropped (``TVB_Data_version``
becomes ``Data_version``). Root attributes are fields under their own name; a dataset's
attributes are ``<dataset path>.<name>``; each dataset adds ``<path>.shape`` (``"10x3"``,
``""`` for a scalar), ``<path>.dtype`` and ``<path>.ndim``, and ``datasets`` lists the
dataset paths, comma-separated. h5py is imported only when a file is read: the SDK does
not depend on it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from hoard.metadata.extractors.base import ExtractionError, Extractor, register
from hoard.metadata.records import Value

TVB_PREFIX = "TVB_"
TVB_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
MAX_DATASETS = 1000  # a file with more lists only these (and says so)


def decode_tvb(value: Any) -> Value:
    """An attribute's value as a typed field value, TVB's string conventions decoded.
    Arrays of one element are that element; longer arrays become their text."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.size == 1:
            value = value.reshape(()).item()
        else:
            return str(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        if value.startswith("bool:"):
            rest = value[5:]
            if rest in ("True", "False"):
                return rest == "True"
        elif value.startswith("datetime:"):
            try:
                return datetime.strptime(value[9:], TVB_DATETIME).replace(tzinfo=UTC)
            except ValueError:
                return value
        return value
    if isinstance(value, bool | int | float) or value is None:
        if isinstance(value, float) and value != value:
            return None  # NaN has no place in an order
        return value
    return str(value)


def field_name(key: str) -> str:
    return key[len(TVB_PREFIX):] if key.startswith(TVB_PREFIX) and len(key) > 4 else key


@register
class Hdf5Extractor(Extractor):
    """Root and dataset attributes, dataset names, shapes and dtypes."""

    name = "hdf5"

    def extract(self, path: str, st: os.stat_result) -> dict[str, Value]:
        try:
            import h5py
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ExtractionError("h5py is not installed (pip install h5py)") from exc
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ExtractionError(f"not a readable HDF5 file ({exc})") from exc
        with f:
            return hdf5_fields(f)


def hdf5_fields(f: Any) -> dict[str, Value]:
    """The fields of an open ``h5py.File`` (the daemon reads its dataset files through
    the handles it already has open)."""
    import h5py

    out: dict[str, Value] = {}
    for key, value in f.attrs.items():
        out[field_name(key)] = decode_tvb(value)
    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and len(names) < MAX_DATASETS:
            names.append(name)
            out[f"{name}.shape"] = "x".join(str(n) for n in obj.shape)
            out[f"{name}.ndim"] = len(obj.shape)
            out[f"{name}.dtype"] = str(obj.dtype)
            for key, value in obj.attrs.items():
                out[f"{name}.{field_name(key)}"] = decode_tvb(value)

    f.visititems(visit)
    out["datasets"] = ",".join(names)
    return out
