"""HSDS (the HDF Group's HDF5 REST service) over unix sockets, and its client h5pyd.

``HsdsService`` starts the ``hsds`` command of the running interpreter's environment
(``pip install -e '.[bench]'``) with POSIX storage under a folder of the benchmark's work dir and
its endpoints on unix sockets (no TCP port, nothing outside this machine), waits for its
"READY" line, and stops the whole process group (a service node and data nodes) afterwards.
``HsdsDataset`` then writes and reads one dataset through h5pyd, as ``LocalH5py`` does locally.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

BUCKET = "hsds.bench"
USER = "bench"
PASSWORD = "bench"


def available() -> str | None:
    """None if HSDS and h5pyd can run here, else why not."""
    try:
        import h5pyd  # noqa: F401
    except ImportError:
        return "h5pyd is not installed (pip install -e '.[bench]')"
    if shutil.which("hsds", path=os.path.dirname(sys.executable)) is None:
        return "the hsds command is not installed beside this interpreter (pip install hsds)"
    return None


class HsdsService:
    """A standalone HSDS on unix sockets; a context manager."""

    def __init__(self, root_dir: str, data_nodes: int = 2, log_path: str | None = None) -> None:
        self.root_dir = root_dir
        self.data_nodes = data_nodes
        self.log_path = log_path or os.path.join(root_dir, "hsds.log")
        # unix socket paths must stay short (108 bytes): keep them under /tmp
        self.socket_dir = tempfile.mkdtemp(prefix="hsds-sock-")
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def endpoint(self) -> str:
        sock = os.path.join(self.socket_dir, "sn_1.sock")
        return "http+unix://" + urllib.parse.quote(sock, safe="")

    def connection(self) -> dict[str, Any]:
        """The keyword arguments h5pyd.File needs to reach this service."""
        return {
            "endpoint": self.endpoint,
            "username": USER,
            "password": PASSWORD,
            "bucket": BUCKET,
        }

    def start(self, timeout: float = 60.0) -> HsdsService:
        os.makedirs(os.path.join(self.root_dir, BUCKET), exist_ok=True)
        cmd = [
            os.path.join(os.path.dirname(sys.executable), "hsds"),
            "--root_dir", self.root_dir,
            "--bucket_name", BUCKET,
            "--socket_dir", self.socket_dir,
            "--hs_username", USER,
            "--hs_password", PASSWORD,
            "--count", str(self.data_nodes),
            "--logfile", self.log_path,
            "--loglevel", "ERROR",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: stop() ends every node
        )
        ready = threading.Event()

        def drain() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip())
                if line.startswith("READY"):
                    ready.set()

        threading.Thread(target=drain, name="hsds-output", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.output[-20:])
                raise RuntimeError(f"HSDS did not start:\n{tail}")
        return self

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL to whatever is left after 20 s."""
        if self.proc is None:
            return
        group = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.proc.poll()
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.proc.wait(20)
        self.proc = None
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> HsdsService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HsdsDataset:
    """One chunked, unlimited dataset of a domain on an ``HsdsService``, through h5pyd."""

    name = "HSDS (h5pyd)"

    def __init__(self, service: HsdsService, domain: str, dataset: str = "data") -> None:
        self.service = service
        self.domain = domain
        self.dataset = dataset
        self._file: Any = None

    def bulk_write(self, blocks: Iterable[np.ndarray], chunk_rows: int | None) -> int:
        import h5pyd

        rows = 0
        with h5pyd.File(self.domain, "w", **self.service.connection()) as f:
            d = None
            for block in blocks:
                if d is None:
                    d = f.create_dataset(
                        self.dataset,
                        shape=(0, *block.shape[1:]),
                        maxshape=(None, *block.shape[1:]),
                        chunks=(chunk_rows, *block.shape[1:]) if chunk_rows else None,
                        dtype=block.dtype,
                    )
                d.resize((rows + len(block), *block.shape[1:]))
                d[rows : rows + len(block)] = block
                rows += len(block)
            f.flush()
        return rows

    def open(self) -> None:
        import h5pyd

        self._file = h5pyd.File(self.domain, "r", **self.service.connection())

    def read(self, selection: tuple[slice | int, ...]) -> np.ndarray:
        assert self._file is not None, "open() first"
        return np.asarray(self._file[self.dataset][selection])

    def chunks(self) -> tuple[int, ...] | None:
        """The dataset's chunk shape, as HSDS laid it out."""
        import h5pyd

        with h5pyd.File(self.domain, "r", **self.service.connection()) as f:
            chunks = f[self.dataset].chunks
        return tuple(chunks) if chunks else None

    def pieces(self, rows: int) -> Iterator[np.ndarray]:
        """The whole dataset in slices of ``rows`` rows."""
        total = len(self._file[self.dataset])
        for start in range(0, total, rows):
            yield self.read((slice(start, min(start + rows, total)), slice(None)))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
