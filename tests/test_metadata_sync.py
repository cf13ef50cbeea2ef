"""Directory sync against files the synthetic generator writes: what qass gets wrong
(rewrites in place, growth, deletion, copies, parse failures, one path on two machines)
and a sync killed mid-way, inside and between transactions."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from buffers import BufferSpec, buffer_bytes, write_buffer
from harness import wait_until

from hoard.metadata.records import FileSignature
from hoard_server.errors import InvalidArgument
from hoard_server.services.metadata.filters import parse
from hoard_server.services.metadata.query import MetadataQuery, MetadataQueryEngine
from hoard_server.services.metadata.sync import ExtractPool, MetadataSync, SyncProgress
from hoard_server.storage.metadata.index import MetadataIndex

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def index(tmp_path):
    with MetadataIndex(str(tmp_path / "meta"), map_size=256 << 20) as idx:
        yield idx


def make_files(directory: Path, count: int, start: int = 1, channel: int = 1) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + count):
        spec = BufferSpec(process=i, channel=channel, blocks=1)
        out.append(write_buffer(directory / spec.file_name(), spec))
    return out


def sync(engine: MetadataSync, *paths, **kwargs) -> SyncProgress:
    steps = list(engine.synchronize_directory(*paths, **kwargs))
    assert steps[-1].done and not any(s.done for s in steps[:-1])
    return steps[-1]


def query(index: MetadataIndex, text: str, machine_id: str | None = "") -> list[str]:
    items = MetadataQueryEngine(index).run(MetadataQuery(filter=parse(text))).items
    return sorted(m.path for m in items if machine_id is None or m.machine_id == machine_id)


def counts(p: SyncProgress) -> tuple[int, int, int, int, int]:
    return p.scanned, p.added, p.updated, p.removed, p.failed


def test_first_sync_selects_by_glob_and_regex_and_a_resync_reads_nothing(tmp_path, index
                                                                          ) -> None:
    data = tmp_path / "data"
    files = make_files(data, 7)
    make_files(data / "sub", 3, start=100)
    (data / "notes.txt").write_text("not a buffer name")
    (data / "Synth_00001p5c0bXX").write_bytes(b"glob matches, the regex does not")
    engine = MetadataSync(index, batch_size=3)
    steps = list(engine.synchronize_directory(data))
    assert [s.added for s in steps] == [3, 6, 9, 10, 10]
    assert counts(steps[-1]) == (10, 10, 0, 0, 0)
    assert query(index, "process < 100") == sorted(files)
    assert index.check() == []
    again = sync(engine, data)
    assert counts(again) == (10, 0, 0, 0, 0) and again.unchanged == 10
    shallow = MetadataSync(index)
    assert sync(shallow, data, sync_subdirectories=False).scanned == 7


def test_a_rewrite_in_place_within_one_timestamp_tick_is_seen(tmp_path, index) -> None:
    (path,) = make_files(tmp_path / "d", 1)
    engine = MetadataSync(index)
    sync(engine, tmp_path / "d")
    before = os.stat(path)
    spec = BufferSpec(process=4242, blocks=1)  # same size: the header is fixed, so is the data
    with open(path, "r+b") as f:
        f.write(buffer_bytes(spec))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same mtime
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert counts(sync(engine, tmp_path / "d")) == (1, 0, 1, 0, 0)
    assert query(index, "process == 4242") == [path]
    assert query(index, "process == 1") == []


def test_a_growing_file_is_re_extracted(tmp_path, index) -> None:
    (path,) = make_files(tmp_path / "d", 1)
    engine = MetadataSync(index)
    sync(engine, tmp_path / "d")
    blocks = index.get(path).fields["db_count"]
    with open(path, "ab") as f:
        f.write(b"\x00" * (65536 + 256))
    assert counts(sync(engine, tmp_path / "d")) == (1, 0, 1, 0, 0)
    assert index.get(path).fields["db_count"] == blocks + 1


def test_deleted_and_renamed_files_are_dropped_when_asked_and_only_under_the_root(
        tmp_path, index) -> None:
    a = make_files(tmp_path / "a", 3)
    b = make_files(tmp_path / "b", 2, start=50)
    engine = MetadataSync(index)
    sync(engine, tmp_path / "a", tmp_path / "b")
    os.remove(a[0])
    os.rename(a[1], a[1] + "_renamed")
    os.remove(b[0])  # under the other root: not this sync's business
    kept = sync(engine, tmp_path / "a")
    assert (kept.added, kept.removed) == (1, 0)  # the new name is a new file
    assert index.get(a[0]) is not None
    done = sync(engine, tmp_path / "a", delete_stale_entries=True)
    assert done.removed == 2
    assert index.get(a[0]) is None and index.get(a[1]) is None
    assert index.get(a[1] + "_renamed") is not None and index.get(b[0]) is not None
    assert index.check() == []


def test_a_copy_is_another_record_and_removing_one_keeps_the_other(tmp_path, index) -> None:
    (original,) = make_files(tmp_path / "d", 1)
    copy = original.replace("b00", "b01")
    shutil.copy(original, copy)
    engine = MetadataSync(index)
    assert sync(engine, tmp_path / "d").added == 2
    assert index.get(original).fields["header_hash"] == index.get(copy).fields["header_hash"]
    assert engine.remove_files_from_cache([copy]) == 1
    assert index.get(original) is not None and index.get(copy) is None
    assert engine.remove_files_from_cache([copy]) == 0


def test_a_parse_failure_is_kept_and_retried_only_when_the_file_changes(tmp_path, index
                                                                         ) -> None:
    good = make_files(tmp_path / "d", 2)
    bad = tmp_path / "d" / "Broken_00001p9c0b01"
    bad.write_bytes(b"qassdata but not really")
    engine = MetadataSync(index)
    first = sync(engine, tmp_path / "d")
    assert (first.added, first.failed) == (3, 1)
    record = index.get(str(bad))
    assert record.error is not None and "header_size" in record.error  # implausible
    assert query(index, "error prefix 'buffer:'") == [str(bad)]
    again = sync(engine, tmp_path / "d")
    assert (again.updated, again.failed, again.unchanged) == (0, 0, 3)
    write_buffer(bad, BufferSpec(process=9, blocks=1))
    fixed = sync(engine, tmp_path / "d")
    assert (fixed.updated, fixed.failed) == (1, 0)
    assert index.get(str(bad)).error is None
    assert query(index, "process == 9") == [str(bad)]
    assert sorted(query(index, "error == null")) == sorted([*good, str(bad)])


def test_one_path_on_two_machines(tmp_path, index) -> None:
    files = make_files(tmp_path / "d", 2)
    engine = MetadataSync(index)
    sync(engine, tmp_path / "d", machine_id="lab-1")
    sync(engine, tmp_path / "d", machine_id="lab-2")
    assert index.count() == 4
    assert query(index, "machine_id == 'lab-1'", None) == sorted(files)
    os.remove(files[0])
    assert sync(engine, tmp_path / "d", machine_id="lab-1", delete_stale_entries=True
                ).removed == 1
    assert index.get(files[0], "lab-1") is None
    assert index.get(files[0], "lab-2") is not None


def test_non_synchronised_files_and_adding_and_removing_by_path(tmp_path, index) -> None:
    files = make_files(tmp_path / "d", 4)
    engine = MetadataSync(index)
    steps = list(engine.add_files_to_cache(files[:3], batch_size=2))
    assert [s.added for s in steps] == [2, 3, 3] and steps[-1].done
    with open(files[0], "ab") as f:
        f.write(b"more")
    unsynced, stale = engine.get_non_synchronized_files(files[1:])
    assert unsynced == [files[3]]
    assert stale == [files[0]]
    unsynced, stale = engine.get_non_synchronized_files(files)
    assert sorted(unsynced) == sorted([files[0], files[3]]) and stale == []
    assert list(engine.add_files_to_cache(files))[-1].added == 1
    assert list(engine.add_files_to_cache(files))[-1].scanned == 0  # all in step
    assert engine.remove_files_from_cache(files[:2]) == 2
    assert index.count() == 2 and index.check() == []
    with pytest.raises(InvalidArgument) as caught:
        sync(engine, tmp_path / "nowhere")
    assert caught.value.reason == "NOT_A_DIRECTORY"
    with pytest.raises(InvalidArgument):
        MetadataSync(index, batch_size=0)


# -- a sync killed mid-way ------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys
    from hoard.metadata.extractors import Extraction, Extractor, register
    from hoard.metadata.records import FileRecord, FileSignature
    from hoard_server.services.metadata.sync import MetadataSync
    from hoard_server.storage.metadata.index import MetadataIndex

    mode, index_path, data = sys.argv[1:4]
    index = MetadataIndex(index_path, map_size=256 << 20)

    @register
    class Stall(Extractor):
        # extracts nothing; at the 70th file says so and waits for a kill
        name = "stall"
        seen = 0

        def extract(self, path, st):
            Stall.seen += 1
            if Stall.seen == 70:
                print("stalled", flush=True)
                sys.stdin.readline()
            return {}

    if mode == "between":
        engine = MetadataSync(index, Extraction(["buffer", "stall"]), batch_size=20)
        for step in engine.synchronize_directory(data):
            print("batch", step.added, flush=True)
    elif mode == "pooled":  # batches the worker pool extracted, killed after the third
        engine = MetadataSync(index, batch_size=20, workers=2, pool_min=1)
        for step in engine.synchronize_directory(data):
            print("batch", step.added, flush=True)
            if step.added == 60:
                from hoard_server.services.metadata.sync import ExtractPool
                workers = ExtractPool._executor._processes  # type: ignore[union-attr]
                print("workers", *sorted(workers), flush=True)
                print("stalled", flush=True)
                sys.stdin.readline()
    else:  # inside: a transaction in flight when the kill comes
        def records():
            for i in range(1000):
                if i == 500:
                    print("stalled", flush=True)
                    sys.stdin.readline()
                yield FileRecord(f"/x/{i}", FileSignature(i, i, i, i), {"n": i})
        index.upsert_many(records())
""")


def run_child_until_stalled(mode: str, index_path: str, data: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "client"), str(ROOT / "server"), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode, index_path, data],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    lines = []
    assert child.stdout is not None
    for line in child.stdout:
        lines.append(line.strip())
        if line.startswith("stalled"):
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    return lines


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("mode", ["between", "inside", "pooled"])
def test_a_killed_sync_leaves_the_index_consistent_and_the_next_finishes(tmp_path, mode
                                                                         ) -> None:
    data = tmp_path / "data"
    make_files(data, 100)
    where = str(tmp_path / "meta")
    with MetadataIndex(where, map_size=256 << 20) as index:
        index.upsert_many([])  # the environment exists before the child opens it
    lines = run_child_until_stalled(mode, where, str(data))
    assert lines[-1] == "stalled"
    with MetadataIndex(where, map_size=256 << 20) as index:
        assert index.check() == []
        if mode == "pooled":  # its workers end with it
            pids = [int(p) for p in lines.pop(-2).split()[1:]]
            assert len(pids) == 2
            assert wait_until(lambda: not any(map(_alive, pids)), timeout=60)
        if mode in ("between", "pooled"):
            assert lines[:-1] == ["batch 20", "batch 40", "batch 60"]
            assert index.count() == 60  # the batches committed, nothing of the fourth
        else:
            assert index.count() == 0  # the transaction in flight left nothing
        before = index.count()
        done = sync(MetadataSync(index), data)
        assert (done.added, done.unchanged) == (100 - before, before)
        assert index.count() == 100 and index.check() == []
        assert sorted(query(index, "process >= 1")) == sorted(
            str(p) for p in data.iterdir())


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sync_through_the_worker_pool_writes_what_one_in_process_writes(
        tmp_path, workers) -> None:
    data = tmp_path / "data"
    make_files(data / "a", 40)
    make_files(data / "b", 25, start=100, channel=2)
    (data / "a" / "Broken_00009p1c0b01").write_bytes(b"not a buffer")
    with MetadataIndex(str(tmp_path / "here")) as here, \
            MetadataIndex(str(tmp_path / "pooled")) as pooled:
        alone = MetadataSync(here, batch_size=7, workers=0)
        pool = MetadataSync(pooled, batch_size=7, workers=workers, pool_min=1)
        steps = list(pool.synchronize_directory(data))
        assert ExtractPool._executor is not None  # the workers did extract
        assert counts(steps[-1]) == counts(sync(alone, data))
        assert steps[-1].added == 66 and steps[-1].failed == 1 and len(steps) > 3
        for index in (here, pooled):
            assert index.check() == []
        files = sorted(str(p) for p in data.glob("*/*"))
        assert [pooled.get(p) for p in files] == [here.get(p) for p in files]
        assert all(here.get(p) is not None for p in files)
        assert pooled.schema() == here.schema()
        for text in ("channel == 2", "process > 10 and process < 105", "process >= 0"):
            assert sorted(query(pooled, text)) == sorted(query(here, text))
        # files changed since: a second pooled sync updates them, as one here would
        for p in sorted((data / "b").iterdir())[:5]:
            p.write_bytes(p.read_bytes() + b"\0")
        assert counts(sync(pool, data)) == counts(sync(alone, data))
        assert pooled.schema() == here.schema() and pooled.check() == []


def test_the_scan_takes_qass_s_patterns(tmp_path) -> None:
    from hoard.metadata.scan import in_scope, scan_directory

    top = make_files(tmp_path / "d", 2)
    deep = make_files(tmp_path / "d" / "a" / "b", 1, start=9)
    os.symlink(top[0], tmp_path / "d" / "Synth_01234p5c0b07")
    found = {p for p, _st in scan_directory(str(tmp_path / "d"))}
    assert found == {*top, *deep, str(tmp_path / "d" / "Synth_01234p5c0b07")}
    no_links = {p for p, _ in scan_directory(str(tmp_path / "d"), follow_links=False)}
    assert no_links == {*top, *deep}
    shallow = {p for p, _ in scan_directory(str(tmp_path / "d"), sync_subdirectories=False,
                                            follow_links=False)}
    assert shallow == set(top)
    only_b = {p for p, _ in scan_directory(str(tmp_path / "d"), glob_pattern="a/b/*p9c*")}
    assert only_b == set(deep)
    strict = {p for p, _ in scan_directory(str(tmp_path / "d"), regex_pattern=r"^.*p1c")}
    assert strict == {top[0]}
    root = str(tmp_path / "d")
    assert in_scope(deep[0], root, True) and not in_scope(deep[0], root, False)
    assert in_scope(top[0], root, False) and not in_scope(top[0], root + "x", True)


def test_a_file_renamed_over_another_is_re_extracted(tmp_path, index) -> None:
    _first, second = make_files(tmp_path / "d", 2)
    engine = MetadataSync(index)
    sync(engine, tmp_path / "d")
    replacement = tmp_path / "elsewhere"
    # the same size as `second`, another header
    write_buffer(replacement, BufferSpec(process=2, blocks=1, partnumber="PN-0002"))
    st = os.stat(second)
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    os.replace(replacement, second)
    done = sync(engine, tmp_path / "d", delete_stale_entries=True)
    assert (done.updated, done.removed) == (1, 0)  # the inode (and ctime) told
    assert index.get(second).signature == FileSignature.of(os.stat(second))
    assert index.get(second).fields["partnumber"] == "PN-0002"
