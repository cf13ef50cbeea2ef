"""Where tvb-storage (the datasets face's anchor) can be run for interop tests.

The dev extra installs it into the project's venv, so CI runs these tests; a separate venv
(``HOARD_TVB_PYTHON``) works too. Tests run TVB in a subprocess: it prints a log line on
import and sets up its own logging, which must not leak into the test process.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest


def tvb_python() -> str | None:
    """An interpreter that can import tvb.storage, or None."""
    explicit = os.environ.get("HOARD_TVB_PYTHON")
    if explicit:
        return explicit
    if importlib.util.find_spec("tvb") is not None:
        try:
            if importlib.util.find_spec("tvb.storage") is not None:
                return sys.executable
        except ModuleNotFoundError:
            pass
    return None


TVB_PYTHON = tvb_python()
needs_tvb = pytest.mark.skipif(
    TVB_PYTHON is None,
    reason="tvb-storage is not installed (pip install -e '.[dev]' installs it, "
    "or set HOARD_TVB_PYTHON to an interpreter that has it)",
)
