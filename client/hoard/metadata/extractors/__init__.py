"""Extractors by name: ``buffer``, ``filename``, ``stat``, ``hdf5`` and any registered later
(``register``). See ``base`` for what an extractor is."""

from hoard.metadata.extractors import buffer, filename, hdf5, stat
from hoard.metadata.extractors.base import (
    Extraction,
    ExtractionError,
    Extractor,
    available,
    create,
    register,
)

__all__ = [
    "Extraction",
    "ExtractionError",
    "Extractor",
    "available",
    "buffer",
    "create",
    "filename",
    "hdf5",
    "register",
    "stat",
]
