"""Dataset (HDF5) files in a repository's housekeeping: erase removes them, info counts them,
verify reads every one and names the damaged ones, backup copies each as a valid file (even
while it is being appended to) without following planted links, and restore brings them
back."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hoard
from hoard import cli
from hoard_server.errors import FailedPrecondition
from hoard_server.maintenance.backup import backup, restore
from hoard_server.maintenance.dataset_check import DatasetFileCheck, blocks
from hoard_server.storage.hdf5 import superblock
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.repository import Repository, StorageSettings

WIDTH = 8


def write_h5(path: Path, rows: int = 2000, seed: int = 0) -> np.ndarray:
    """A file with a compressed chunked dataset, a group, attributes and a soft link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).random((rows, WIDTH))
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("data", data=data, chunks=(50, WIDTH), compression="gzip")
        f.attrs["title"] = "test"
        g = f.create_group("meta")
        g.create_dataset("scalar", data=7)
        g.attrs["n"] = rows
        f["dangling"] = h5py.SoftLink("/nowhere")
    return data


def read_data(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["data"][()]


def damage_chunk(path: Path, chunk: int) -> None:
    """Overwrite the middle of one compressed chunk: only reading its data can tell."""
    with h5py.File(path, "r") as f:
        info = f["data"].id.get_chunk_info(chunk)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 3)
        fh.write(b"\xa5" * 32)


def datasets_dir(data: Path, name: str = "default") -> Path:
    return data / "repositories" / name / "datasets"


@pytest.fixture
def engine_repo(tmp_path):
    with ThreadPoolExecutor(2) as pool:
        repo = Repository.create(
            "r", str(tmp_path / "r"), StorageSettings(), pool, str(tmp_path / ".creating-0")
        )
        try:
            yield repo
        finally:
            repo.close()


# -- erase -------------------------------------------------------------------------------


def test_erase_closes_open_files_and_removes_them(tmp_path):
    registry = RepositoryRegistry(str(tmp_path / "data"))
    try:
        repo, _ = registry.create("r")
        with repo.files.writing("project/7/ts.h5", create=True) as f:
            f["x"] = np.arange(10)
            handle = f  # the daemon keeps it open after the door
        assert handle.id.valid
        top = Path(repo.layout.root)
        assert (top / "datasets" / "project" / "7" / "ts.h5").is_file()

        registry.erase("r")
        assert not handle.id.valid  # closed before the folder went
        assert not top.exists()
        assert os.listdir(tmp_path / "data" / "repositories") == []

        again, new = registry.create("r")
        assert new
        assert again.info().dataset_files == 0
        assert list(Path(again.layout.datasets_dir).rglob("*")) == []
    finally:
        registry.close()


def test_erase_through_the_daemon_removes_dataset_files(hoard_daemon, client, tmp_path):
    files = datasets_dir(Path(hoard_daemon.data_dir))
    write_h5(files / "a.h5")
    assert client.repository("default").admin.info().dataset_files == 1
    client.erase_repository("default")
    assert not files.exists()
    client.repository("default").initialise()
    assert client.repository("default").admin.info().dataset_files == 0


# -- info --------------------------------------------------------------------------------


def test_info_counts_dataset_files_and_bytes_but_not_scratch_or_links(
    hoard_daemon, client, tmp_path, capsys
):
    files = datasets_dir(Path(hoard_daemon.data_dir))
    write_h5(files / "a.h5")
    write_h5(files / "sub" / "deeper" / "b.h5", rows=500)
    write_h5(files / ".import-1234.h5")  # an import in progress
    write_h5(files / ".scratch" / "c.h5")
    outside = tmp_path / "outside.h5"
    write_h5(outside)
    (files / "link.h5").symlink_to(outside)
    expected = (files / "a.h5").stat().st_size + (files / "sub/deeper/b.h5").stat().st_size

    info = client.repository("default").admin.info()
    assert (info.dataset_files, info.dataset_bytes) == (2, expected)
    assert client.repository("default").get_info()["dataset_files"] == 2

    assert cli.main(["--target", hoard_daemon.target, "info"]) == 0
    out = capsys.readouterr().out
    assert "dataset files:" in out and f"{expected} (" in out


# -- verify ------------------------------------------------------------------------------


def test_verify_names_each_damaged_dataset_file_and_carries_on(hoard_daemon, client, capsys):
    files = datasets_dir(Path(hoard_daemon.data_dir))
    repo = client.repository("default")
    write_h5(files / "good.h5")
    write_h5(files / "sub" / "good2.h5", seed=1)
    assert repo.verify().ok
    assert cli.main(["--target", hoard_daemon.target, "verify"]) == 0

    write_h5(files / "chunk.h5", seed=2)
    damage_chunk(files / "chunk.h5", 30)
    write_h5(files / "short.h5", seed=3)
    os.truncate(files / "short.h5", (files / "short.h5").stat().st_size // 2)
    (files / "notes.h5").write_bytes(b"not an HDF5 file\n" * 100)
    repo.put_object(b"an object beside the files")

    result = repo.verify()
    assert not result.ok
    assert result.checked_objects == 1  # objects are checked as well
    by_path = {p.path: p for p in result.problems}
    assert set(by_path) == {"chunk.h5", "short.h5", "notes.h5"}
    assert all(p.key == "" and p.pack_id == 0 and p.problem for p in result.problems)
    assert "/data" in by_path["chunk.h5"].problem
    assert "HDF5" in by_path["notes.h5"].problem
    assert client.repository("default").admin.info().last_verification_errors == 3

    capsys.readouterr()
    assert cli.main(["--target", hoard_daemon.target, "verify"]) == 1
    out = capsys.readouterr().out
    for name in ("chunk.h5", "short.h5", "notes.h5"):
        assert f"dataset file {name}:" in out
    assert "good.h5" not in out and "3 problems" in out


def damage_header(path: Path, node: str) -> None:
    """Flip a byte inside ``node``'s object header (checksummed in a "latest" file)."""
    with h5py.File(path, "r") as f:
        address = h5py.h5o.get_info(f[node].id).addr
    with open(path, "r+b") as fh:
        fh.seek(address + 6)
        byte = fh.read(1)[0]
        fh.seek(address + 6)
        fh.write(bytes([byte ^ 0xFF]))


def test_damaged_structures_are_data_loss_on_every_call(hoard_daemon, client):
    """A file that opens but whose inside does not hold together answers DATA_LOSS
    FILE_DAMAGED (the SDK's DataCorruptionError, an OSError) on reads and writes alike, and
    the daemon goes on serving the file's neighbours. Two kinds: a checksum that fails
    (bytes flipped in /meta's header) and an attribute name HDF5 could not store (64 KiB,
    written by h5py directly: the daemon refuses such names)."""
    files = datasets_dir(Path(hoard_daemon.data_dir))
    data = {
        "flipped.h5": write_h5(files / "flipped.h5"),
        "named.h5": write_h5(files / "named.h5", seed=1),
    }
    damage_header(files / "flipped.h5", "meta")
    with h5py.File(files / "named.h5", "r+", libver="latest") as f, pytest.raises(KeyError):
        f["meta"].attrs["n" * 70_000] = 1  # written, then h5py cannot read it back
    good = write_h5(files / "good.h5", seed=2)
    ds = client.datasets("default")
    for path in ("flipped.h5", "named.h5"):
        calls = {
            "get_metadata": lambda p=path: ds.get_metadata(p, "meta"),
            "describe": lambda p=path: ds.describe(p),
        }
        if path == "flipped.h5":  # HDF5 adds an attribute beside the broken name unharmed
            calls["set_metadata"] = lambda p=path: ds.set_metadata(p, {"x": 1}, "meta")
        for name, call in calls.items():
            with pytest.raises(hoard.errors.DataCorruptionError) as caught:
                call()
            assert caught.value.reason == "FILE_DAMAGED", (path, name)
            assert isinstance(caught.value, OSError) and path in str(caught.value), (path, name)
        assert np.array_equal(ds.get_data(path, "data"), data[path])  # the rest still reads
    assert np.array_equal(ds.get_data("good.h5", "data"), good)
    assert ds.get_metadata("good.h5", "meta") == {"n": 2000}


def test_verify_finds_damage_in_the_last_block_with_bounded_reads(engine_repo):
    full = Path(engine_repo.layout.datasets_dir) / "big.h5"
    write_h5(full, rows=4000)
    check = DatasetFileCheck(engine_repo.files, block_bytes=50 * WIDTH * 8)  # one chunk a read
    assert check.check("big.h5") == ""
    damage_chunk(full, 79)  # the last chunk: rows 3950..3999
    problem = check.check("big.h5")
    assert "dataset /data: reading [3950:4000]" in problem


def test_verify_checks_a_file_open_for_writing_and_leaves_the_writer_be(engine_repo):
    with engine_repo.files.writing("open.h5", create=True) as f:
        ds = f.create_dataset(
            "rows", shape=(0, WIDTH), maxshape=(None, WIDTH), chunks=(16, WIDTH), dtype="<f8"
        )
        f.swmr_mode = True
        ds.resize(100, axis=0)
        ds[:] = 1.0  # not flushed: verify reads it through the daemon's handle
        handle = f
    reports = list(engine_repo.verify())
    assert reports[-1].done and reports[-1].problem_count == 0
    assert handle.id.valid and handle.swmr_mode  # the writer's handle was not closed
    with engine_repo.files.writing("open.h5") as f:
        assert f is handle
        f["rows"].resize(200, axis=0)


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(st.integers(0, 7), min_size=0, max_size=4).map(tuple),
    itemsize=st.sampled_from([1, 4, 8, 16]),
    budget=st.integers(1, 300),
)
def test_blocks_cover_every_item_once_within_the_budget(shape, itemsize, budget):
    seen = np.zeros(shape, dtype=np.int64)
    for block in blocks(shape, itemsize, budget):
        view = seen[block]
        seen[block] += 1
        assert view.size * itemsize <= budget or view.size == 1
    assert (seen == 1).all()


# -- backup and restore ------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path) -> Path:
    r = tmp_path / "backups"
    r.mkdir()
    return r


def test_backup_copies_dataset_files_incrementally_and_restore_brings_them_back(
    daemon_factory, roots, tmp_path, capsys
):
    data = tmp_path / "data"
    d = daemon_factory(data, "--backup-root", str(roots))
    files = datasets_dir(data)
    a = write_h5(files / "a.h5")
    b = write_h5(files / "sub" / "b.h5", seed=1)
    write_h5(files / "gone.h5", seed=2)
    write_h5(files / ".import-9.h5", seed=3)
    with hoard.connect(d.target, timeout=60) as client:
        repo = client.repository("default")
        key = repo.put_object(b"an object too")
        reports: list = []
        first = repo.backup(roots / "b", progress=reports.append)
        assert first.stage == "done" and first.files_copied == 3
        assert first.file_bytes == sum(
            (files / n).stat().st_size for n in ("a.h5", "sub/b.h5", "gone.h5")
        )
        assert "files" in {r.stage for r in reports}
        copy = roots / "b" / "datasets"
        assert np.array_equal(read_data(copy / "a.h5"), a)
        assert not (copy / ".import-9.h5").exists()

        second = repo.backup(roots / "b")
        assert second.files_copied == 0 and second.file_bytes == 0  # nothing changed

        (files / "gone.h5").unlink()
        with h5py.File(files / "sub" / "b.h5", "a") as f:
            f["data"][0] = -1.0
            b[0] = -1.0
        third = repo.backup(roots / "b")
        assert third.files_copied == 1
        assert not (copy / "gone.h5").exists()
        assert np.array_equal(read_data(copy / "sub" / "b.h5"), b)
        manifest = json.loads((roots / "b" / "backup.json").read_text())
        assert sorted(manifest["files"]) == ["a.h5", "sub/b.h5"]

        capsys.readouterr()
        assert cli.main(["--target", d.target, "backup", str(roots / "c")]) == 0
        assert "2 dataset files copied" in capsys.readouterr().out

    restored = tmp_path / "restored"
    summary = restore(str(roots / "b"), str(restored), "copy")
    assert summary["files"] == 2
    back = datasets_dir(restored, "copy")
    assert np.array_equal(read_data(back / "a.h5"), a)
    assert np.array_equal(read_data(back / "sub" / "b.h5"), b)
    d2 = daemon_factory(restored)
    with hoard.connect(d2.target, timeout=60) as client:
        repo = client.repository("copy")
        assert repo.get_object_content(key) == b"an object too"
        assert repo.admin.info().dataset_files == 2
        assert repo.verify().ok


def test_backup_deletes_planted_links_without_following_them(daemon_factory, roots, tmp_path):
    data = tmp_path / "data"
    d = daemon_factory(data, "--backup-root", str(roots))
    files = datasets_dir(data)
    write_h5(files / "a.h5")
    write_h5(files / "sub" / "b.h5", seed=1)
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = outside / "precious"
    precious.write_bytes(b"precious bytes")
    with hoard.connect(d.target, timeout=60) as client:
        repo = client.repository("default")
        repo.backup(roots / "b")
        copy = roots / "b" / "datasets"
        # links where the backup writes: at a file, at a folder, and a stray one
        (copy / "a.h5").unlink()
        (copy / "a.h5").symlink_to(precious)
        (copy / "sub" / "b.h5").unlink()
        (copy / "sub").rmdir()
        (copy / "sub").symlink_to(outside)
        (copy / "stray.h5").symlink_to(precious)
        last = repo.backup(roots / "b")
        assert last.stage == "done" and last.files_copied == 2
        assert precious.read_bytes() == b"precious bytes"
        assert sorted(p.name for p in outside.iterdir()) == ["precious"]
        assert not (copy / "a.h5").is_symlink() and not (copy / "sub").is_symlink()
        assert not (copy / "stray.h5").exists() and not (copy / "stray.h5").is_symlink()
        read_data(copy / "a.h5")
        read_data(copy / "sub" / "b.h5")

        # the datasets folder itself a link: refused, nothing written through it
        (roots / "b" / "datasets").rename(roots / "old")
        (roots / "b" / "datasets").symlink_to(outside)
        with pytest.raises(hoard.errors.HoardError, match="symbolic link"):
            repo.backup(roots / "b")
        assert sorted(p.name for p in outside.iterdir()) == ["precious"]


def test_restore_refuses_a_manifest_naming_a_file_outside_the_repository(engine_repo, tmp_path):
    write_h5(Path(engine_repo.layout.datasets_dir) / "a.h5")
    dest = tmp_path / "backups" / "b"
    list(backup(engine_repo, str(dest)))
    manifest = json.loads((dest / "backup.json").read_text())
    assert list(manifest["files"]) == ["a.h5"]
    manifest["files"] = {"../../escape.h5": manifest["files"]["a.h5"]}
    (dest / "backup.json").write_text(json.dumps(manifest))
    with pytest.raises(FailedPrecondition, match="malformed file entry"):
        restore(str(dest), str(tmp_path / "data"))
    assert not (tmp_path / "data" / "repositories" / "r").exists()


def test_backup_while_a_writer_appends_holds_a_prefix_of_the_acknowledged_rows(
    engine_repo, tmp_path
):
    path = "live/rows.h5"
    full = engine_repo.files.resolve(path)
    acked = 0
    stop = threading.Event()
    failed: list[BaseException] = []

    def rows(start: int, stop_: int) -> np.ndarray:
        return np.arange(start * WIDTH, stop_ * WIDTH, dtype="<i8").reshape(-1, WIDTH)

    with engine_repo.files.writing(path, create=True) as f:
        f.create_dataset(
            "rows", shape=(0, WIDTH), maxshape=(None, WIDTH), chunks=(64, WIDTH), dtype="<i8"
        )
        if not f.swmr_mode:
            f.swmr_mode = True  # as a live file is kept: its superblock says "open for write"

    def writer() -> None:
        nonlocal acked
        try:
            while not stop.is_set():
                with engine_repo.files.writing(path) as f:
                    ds = f["rows"]
                    n = ds.shape[0]
                    ds.resize(n + 37, axis=0)
                    ds[n:] = rows(n, n + 37)
                    f.flush()
                    fd = os.open(full, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                acked = n + 37  # acknowledged: durable
        except BaseException as exc:  # reported by the test
            failed.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while acked < 500 and not failed:
            stop.wait(0.01)
        for run in range(3):
            dest = tmp_path / "backups" / "b"
            at_start = acked
            reports = list(backup(engine_repo, str(dest)))
            at_end = acked
            assert reports[-1].stage == "done" and reports[-1].files_copied == 1
            copy = dest / "datasets" / "live" / "rows.h5"
            head = copy.read_bytes()[: superblock.HEAD_BYTES]
            assert superblock.status_flags(head) == 0
            with h5py.File(copy, "r") as f:  # plain h5py: no SWMR, no repair
                got = f["rows"][()]
            assert at_start <= len(got) <= at_end, (run, at_start, len(got), at_end)
            assert np.array_equal(got, rows(0, len(got)))
    finally:
        stop.set()
        thread.join()
    assert not failed, failed
    # the source itself still carries the flag (the writer has it open): only the copy changed
    assert superblock.status_flags(Path(full).read_bytes()[: superblock.HEAD_BYTES]) != 0


def test_backup_copies_what_the_daemons_open_handle_holds(engine_repo, tmp_path):
    """Rows written through the daemon's handle but not yet flushed are in HDF5's caches,
    not on disk: the backup must flush them (OpenFiles.consistent) before it copies."""
    with engine_repo.files.writing("open.h5", create=True) as f:
        ds = f.create_dataset("rows", shape=(0,), maxshape=(None,), chunks=(256,), dtype="<i8")
        f.flush()
        ds.resize(1000, axis=0)
        ds[:] = np.arange(1000)  # no flush: the handle stays open, as a writer leaves it
    dest = tmp_path / "backups" / "b"
    list(backup(engine_repo, str(dest)))
    with h5py.File(dest / "datasets" / "open.h5", "r") as f:
        assert np.array_equal(f["rows"][()], np.arange(1000))


def test_a_file_the_sandbox_refuses_is_skipped_by_backup_and_reported_by_verify(
    engine_repo, tmp_path
):
    top = Path(engine_repo.layout.datasets_dir)
    write_h5(top / "fine.h5")
    write_h5(top / "odd\\name.h5", seed=1)  # placed by hand: no client path can name it
    reports = list(backup(engine_repo, str(tmp_path / "backups" / "b")))
    assert reports[-1].stage == "done" and reports[-1].files_copied == 1
    assert any("odd\\name.h5 skipped" in r.message for r in reports)
    assert sorted(os.listdir(tmp_path / "backups" / "b" / "datasets")) == ["fine.h5"]
    problems = [p for r in engine_repo.verify() for p in r.problems]
    assert [p.path for p in problems] == ["odd\\name.h5"]
    assert "cannot be checked" in problems[0].problem
