from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from daemon import DaemonProcess


@pytest.fixture
def daemon_factory(tmp_path):
    """Start daemons on data directories under tmp_path; all are stopped afterwards."""
    started: list[DaemonProcess] = []

    def start(data_dir: Path | None = None, *extra: str, **kw) -> DaemonProcess:
        d = DaemonProcess(str(data_dir or tmp_path / "data"), *extra, **kw).start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def hoard_daemon(daemon_factory) -> DaemonProcess:
    """A fresh daemon with an empty data directory (its 'default' repository exists)."""
    return daemon_factory()


@pytest.fixture
def client(hoard_daemon):
    import hoard

    with hoard.connect(hoard_daemon.target, timeout=30) as c:
        yield c


@pytest.fixture
def repo(client):
    r = client.repository("default")
    return r
