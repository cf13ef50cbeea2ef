"""The shared pytest fixtures: daemons on temporary data directories, and a client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .daemon import DaemonProcess

DaemonFactory = Callable[..., DaemonProcess]


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    """``start(data_dir=None, *extra, env=None)``: a started daemon (data under tmp_path by
    default). Every daemon started is stopped afterwards; one that does not stop is killed."""
    started: list[DaemonProcess] = []

    def start(data_dir: Path | str | None = None, *extra: str, **kw: Any) -> DaemonProcess:
        d = DaemonProcess(str(data_dir or tmp_path / "data"), *extra, **kw)
        started.append(d)
        return d.start()

    yield start
    for d in started:
        try:
            d.stop()
        finally:
            d.kill()


@pytest.fixture
def hoard_daemon(daemon_factory: DaemonFactory) -> DaemonProcess:
    """A fresh daemon with an empty data directory (its 'default' repository exists)."""
    return daemon_factory()


@pytest.fixture
def client(hoard_daemon: DaemonProcess) -> Iterator[Any]:
    """An SDK client of ``hoard_daemon``."""
    import hoard

    with hoard.connect(hoard_daemon.target, timeout=30) as c:
        yield c


@pytest.fixture
def repo(client: Any) -> Any:
    """The 'default' repository of ``client``."""
    return client.repository("default")
