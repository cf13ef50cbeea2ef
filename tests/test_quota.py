"""Byte quotas per repository: the engine's running figure, the services' refusals, the
daemon's answers (QUOTA_EXCEEDED, quota and use in every RepositoryInfo), the CLI's size
parser; and the repositories listing a token may see."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import wait_until
from hypothesis import given
from hypothesis import strategies as st

from hoard.cli.repo import parse_size
from hoard_server.auth.tokens import Grants, Role
from hoard_server.grpc import call
from hoard_server.grpc.repositories import RepositoriesServicer
from hoard_server.services.batching import ResponseBudget
from hoard_server.services.datasets.arrays import encode
from hoard_server.services.datasets.files import DatasetFileService, ImportHeader
from hoard_server.services.datasets.service import AppendPart, DatasetService, NodeRef
from hoard_server.services.metadata.service import MetadataService
from hoard_server.services.objects import ObjectService
from hoard_server.services.repositories import RepositoryService
from hoard_server.storage import usage as usage_module
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.usage import QuotaExceeded, Usage, disk_bytes

KIB = 1024


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RepositoryRegistry]:
    registry = RepositoryRegistry(str(tmp_path / "data"))
    registry.create("default")
    yield registry
    registry.close()


@pytest.fixture
def budget() -> ResponseBudget:
    return ResponseBudget(64 << 20, wait=0.2)


def blobs(n: int, size: int) -> list[bytes]:
    return [os.urandom(size) for _ in range(n)]  # incompressible: stored at full size


# -- engine and services ---------------------------------------------------------------------


def test_used_bytes_is_what_the_repository_holds_on_disk(registry: RepositoryRegistry, budget):
    repos = RepositoryService(registry)
    objects = ObjectService(registry, budget)
    before = repos.get("default").used_bytes
    assert before == disk_bytes(registry.get("default").layout.root) > 0  # the index
    objects.put_batch("default", blobs(4, 64 * KIB))
    assert repos.get("default").used_bytes >= before + 4 * 64 * KIB  # counted as written
    registry.get("default").usage.measure()
    assert repos.get("default").used_bytes >= before + 4 * 64 * KIB  # and really on disk


def test_writes_stop_at_the_quota_and_resume_once_space_is_freed(
    registry: RepositoryRegistry, budget
):
    repos = RepositoryService(registry)
    objects = ObjectService(registry, budget)
    used = repos.get("default").used_bytes
    info = repos.set_quota("default", used + 300 * KIB)
    assert info.quota_bytes == used + 300 * KIB
    keys = []
    for batch in [blobs(1, 100 * KIB) for _ in range(2)]:
        keys += [o.key for o in objects.put_batch("default", batch)]
    with pytest.raises(QuotaExceeded) as refused:
        objects.put_batch("default", blobs(1, 200 * KIB))  # would pass the quota
    assert refused.value.reason == "QUOTA_EXCEEDED"
    assert refused.value.details["repository"] == "default"
    assert refused.value.details["quota"] == str(used + 300 * KIB)
    assert "hoard repo quota default" in str(refused.value)
    objects.put_batch("default", blobs(1, 90 * KIB))  # still fits
    with pytest.raises(QuotaExceeded):
        objects.put_batch("default", blobs(1, 90 * KIB))
    # reads, deletes and maintenance keep working; compaction gives the space back
    assert objects.has("default", keys) == [True, True]
    objects.delete("default", keys)
    for _ in objects.maintain("default"):
        pass
    assert repos.get("default").used_bytes < used + 150 * KIB
    objects.put_batch("default", blobs(1, 100 * KIB))
    # a quota of 0 removes it
    repos.set_quota("default", 0)
    objects.put_batch("default", blobs(1, 400 * KIB))


class Walks:
    """Counts the real walks of ``disk_bytes``; ``hold`` makes them wait to be released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.release = threading.Event()
        self.release.set()
        monkeypatch.setattr(usage_module, "disk_bytes", self.walk)

    def walk(self, root: str) -> int:
        self.count += 1
        self.release.wait(30)
        return disk_bytes(root)


def test_callers_that_need_a_fresh_figure_share_one_walk(tmp_path: Path, monkeypatch):
    (tmp_path / "f").write_bytes(os.urandom(10 * KIB))
    walks = Walks(monkeypatch)
    usage = Usage("r", str(tmp_path), 0, lambda q: None)
    walks.release.clear()
    with ThreadPoolExecutor(8) as pool:
        figures = [pool.submit(usage.current) for _ in range(8)]
        wait_until(lambda: walks.count == 1)
        walks.release.set()
        assert {f.result() for f in figures} == {disk_bytes(str(tmp_path))}
    assert walks.count == 1
    usage.changed()  # something was removed: the next use walks again, once
    (tmp_path / "f").unlink()
    assert usage.current() == 0 and walks.count == 2


def test_an_old_figure_is_trued_up_in_the_background(tmp_path: Path, monkeypatch):
    walks = Walks(monkeypatch)
    usage = Usage("r", str(tmp_path), 100 * KIB, lambda q: None, remeasure_every=0.05)
    assert usage.current() == 0 and walks.count == 1
    usage.admit(10 * KIB)  # announced, never written: the figure is too high
    time.sleep(0.1)
    walks.release.clear()  # the next walk hangs until released
    usage.admit(KIB)  # admitted on the running figure, without waiting for the walk
    assert usage.current() == 11 * KIB
    wait_until(lambda: walks.count == 2)
    walks.release.set()
    wait_until(lambda: usage.current() == 0)  # the background walk trued it up
    assert walks.count == 2


def test_a_refusal_is_never_made_on_an_old_figure(tmp_path: Path, monkeypatch):
    walks = Walks(monkeypatch)
    usage = Usage("r", str(tmp_path), 100 * KIB, lambda q: None, remeasure_every=0.05)
    usage.admit(90 * KIB)  # announced too high: nothing was written
    with pytest.raises(QuotaExceeded):
        usage.admit(20 * KIB)  # the figure is fresh: refused at once
    assert walks.count == 1
    time.sleep(0.1)
    usage.admit(20 * KIB)  # the figure is old: measured again, and it fits
    assert walks.count >= 2 and usage.current() == 20 * KIB


def test_the_quota_is_kept_with_the_repository(tmp_path: Path, budget):
    registry = RepositoryRegistry(str(tmp_path / "data"))
    registry.create("lab")
    RepositoryService(registry).set_quota("lab", 1)
    ObjectService(registry, budget)
    registry.close()
    registry = RepositoryRegistry(str(tmp_path / "data"))
    try:
        info = RepositoryService(registry).get("lab")
        assert info.quota_bytes == 1
        assert info.used_bytes == disk_bytes(str(tmp_path / "data" / "repositories" / "lab"))
        with pytest.raises(QuotaExceeded):
            ObjectService(registry, budget).put_batch("lab", [b"x"])
    finally:
        registry.close()


def test_every_face_that_adds_data_is_refused_at_the_quota(registry: RepositoryRegistry, budget):
    repos = RepositoryService(registry)
    datasets = DatasetService(registry, budget)
    files = DatasetFileService(registry)
    ref = NodeRef("default", "a.h5", "/", "x")
    datasets.store_data(ref, encode(np.arange(10)))
    repos.set_quota("default", 1)  # below what it holds already
    try:
        with pytest.raises(QuotaExceeded):
            datasets.store_data(ref, encode(np.arange(10)))
        with pytest.raises(QuotaExceeded):
            datasets.append_data(ref, encode(np.arange(10)))
        with pytest.raises(QuotaExceeded):
            files.write_xml_metadata("default", "Project.xml", {"a": "b"})
        with pytest.raises(QuotaExceeded):
            files.snapshot_file("default", "a.h5")
        with pytest.raises(QuotaExceeded):
            files.copy_file("default", "a.h5", "b.h5")
        with pytest.raises(QuotaExceeded):
            MetadataService(registry).cache("default", adding=True)
        header = ImportHeader("default", "imported.h5")
        with pytest.raises(QuotaExceeded):
            files.import_file(iter([header, b"\x89HDF"]), lambda: True)
        part = AppendPart(ref, encode(np.arange(10)), None, 1, None)
        with pytest.raises(QuotaExceeded):
            list(datasets.append_stream(iter([part])))
        # reading and deleting go on
        assert datasets.get_data_shape(ref).shape == (10,)
        files.delete_file("default", "a.h5")
    finally:
        datasets.close()


# -- the size parser ---------------------------------------------------------------------------

UNITS = {"": 1, "B": 1, "k": 1000, "KB": 1000, "MB": 10**6, "G": 10**9, "TB": 10**12}
UNITS |= {"KiB": 1024, "Mi": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "mib": 1 << 20}


@given(
    n=st.integers(0, 10**6), unit=st.sampled_from(sorted(UNITS)), space=st.sampled_from(["", " "])
)
def test_sizes_parse_in_decimal_and_binary_units(n: int, unit: str, space: str):
    assert parse_size(f"{n}{space}{unit}") == n * UNITS[unit]


@given(st.text(alphabet="0123456789.kmgtpibKMGTPIB xe-+", max_size=8))
def test_a_size_parses_or_is_refused_with_a_value_error(text: str):
    try:
        size = parse_size(text)
    except ValueError as exc:
        assert "500MB, 10GiB" in str(exc)
    else:
        assert size >= 0


@pytest.mark.parametrize("text", ["", "MB", "-1", "1.5.2G", "10iB", "1e3", "ten"])
def test_sizes_that_are_not_sizes_are_refused(text: str):
    with pytest.raises(ValueError):
        parse_size(text)


def test_fractions_of_a_unit():
    assert parse_size("1.5GiB") == 3 << 29
    assert parse_size(".5k") == 500


# -- the repositories a token may list ---------------------------------------------------------


def test_listing_shows_only_what_the_token_may_read(registry: RepositoryRegistry):
    for name in ("lab", "private"):
        registry.create(name)
    servicer = RepositoriesServicer(RepositoryService(registry))

    def listed(grants: Grants | None) -> list[str]:
        call.begin(
            call.Call("/hoard.v1.Repositories/ListRepositories", "r1", "unix:", None, grants)
        )
        try:
            reply = servicer.ListRepositories(None, None)  # type: ignore[arg-type]
        finally:
            call.begin(None)  # type: ignore[arg-type]
        return [r.name for r in reply.repositories]

    assert listed(None) == ["default", "lab", "private"]  # no authentication: all
    assert listed(Grants("alice", {"lab": Role.READ})) == ["lab"]
    assert listed(Grants("bob", {"*": Role.READ})) == ["default", "lab", "private"]
    assert listed(Grants("carol", {"elsewhere": Role.ADMIN})) == []


# -- through the daemon ------------------------------------------------------------------------


def test_a_full_repository_refuses_writes_through_the_daemon(daemon_factory: Any, capsys: Any):
    import hoard
    from hoard import cli

    daemon = daemon_factory()
    with hoard.connect(daemon.target, timeout=30) as client:
        repo = client.repository("default")
        used = client.get_repository("default").used_bytes
        assert cli.main(["--target", daemon.target, "repo", "quota", "default", "1MiB"]) == 0
        assert "quota 1.0 MiB" in capsys.readouterr().out
        assert client.get_repository("default").quota_bytes == 1 << 20
        assert used < 1 << 20
        keys = []
        with pytest.raises(hoard.QuotaExceededError) as refused:
            for _ in range(20):
                keys += repo.put_objects(blobs(1, 128 * KIB))
        assert len(keys) >= (((1 << 20) - used) // (128 * KIB)) - 1
        error = refused.value
        assert isinstance(error, OSError) and error.errno == errno.EDQUOT
        assert error.details["repository"] == "default"
        assert int(error.details["used"]) >= (1 << 20) - 128 * KIB
        (info,) = client.list_repositories()
        assert info.quota_bytes == 1 << 20 and info.used_bytes >= (1 << 20) - 128 * KIB
        assert cli.main(["--target", daemon.target, "repo", "ls"]) == 0
        assert "quota 1.0 MiB" in capsys.readouterr().out
        assert repo.get_object_content(keys[0])  # reads go on
    daemon.restart()
    with hoard.connect(daemon.target, timeout=30) as client:
        repo = client.repository("default")
        info = client.get_repository("default")
        assert info.quota_bytes == 1 << 20  # kept
        assert info.used_bytes > (1 << 20) - 256 * KIB  # measured again at open
        with pytest.raises(hoard.QuotaExceededError):
            repo.put_objects(blobs(1, 256 * KIB))
        repo.delete_objects(keys)
        repo.maintain()
        assert client.get_repository("default").used_bytes < used + 256 * KIB
        repo.put_objects(blobs(1, 128 * KIB))  # room again
        assert cli.main(["--target", daemon.target, "repo", "quota", "default", "0"]) == 0
        assert client.get_repository("default").quota_bytes == 0
