"""The metadata cache as the RPC layer will use it: server-side syncs only under the
admin's sync roots (links out refused), client-side pushes under a machine_id, and the
qass-style query calls."""

from __future__ import annotations

import os

import pytest
from buffers import BufferSpec, write_buffer

from hoard.metadata.extractors import Extraction, Extractor, register
from hoard.metadata.records import FileRecord, FileSignature
from hoard_server.errors import InvalidArgument, PermissionDenied
from hoard_server.services.metadata.cache import MetadataCache
from hoard_server.services.metadata.query import MetadataQuery, OrderBy


def buffers(directory, processes) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    return [write_buffer(directory / BufferSpec(process=p).file_name(), BufferSpec(process=p))
            for p in processes]


def test_server_side_syncs_stay_under_the_sync_roots(tmp_path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    inside = buffers(allowed, [1, 2])
    (secret,) = buffers(outside, [3])
    os.symlink(secret, allowed / "Link_00001p3c0b09")
    os.symlink(outside, allowed / "dirlink")
    with MetadataCache(str(tmp_path / "meta"), sync_roots=[str(allowed)]) as cache:
        for path in (outside, allowed / ".." / "outside", allowed / "dirlink"):
            with pytest.raises(PermissionDenied) as caught:
                list(cache.synchronize_directory(path))
            assert caught.value.reason == "OUTSIDE_SYNC_ROOTS"
        with pytest.raises(PermissionDenied):
            list(cache.add_files_to_cache([allowed / "Link_00001p3c0b09"]))
        done = list(cache.synchronize_directory(allowed))[-1]
        assert (done.scanned, done.added) == (2, 2)  # the links were not followed
        assert sorted(cache.get_matching_files(MetadataQuery())) == sorted(inside)
    with MetadataCache(str(tmp_path / "meta2")) as cache, pytest.raises(
            PermissionDenied, match="none configured"):
        list(cache.synchronize_directory(allowed))


def test_client_side_pushes_are_checked_and_kept_under_their_machine(tmp_path) -> None:
    with MetadataCache(str(tmp_path / "meta")) as cache:
        records = [FileRecord(f"C:/data/f{i}", FileSignature(i, i, i, i), {"process": i},
                              machine_id="whatever") for i in range(5)]
        assert cache.push_records(records, "ws-7").added == 5
        assert {p for p, _s, _f in cache.signatures("ws-7")} == {f"C:/data/f{i}"
                                                                 for i in range(5)}
        assert list(cache.signatures("whatever")) == []
        bad = FileRecord("C:/x", FileSignature(1, 1, 1, 1), {"v": float("nan")})
        with pytest.raises(InvalidArgument) as caught:
            cache.push_records([bad], "ws-7")
        assert caught.value.reason == "INVALID_VALUE"
        assert cache.remove_records(["C:/data/f0"], "ws-7").removed == 1
        assert cache.count("process >= 0") == 4
        query = MetadataQuery.from_text("process > 1", order_by=["-process"], limit=1)
        assert cache.get_matching_files(query) == ["C:/data/f4"]
        everything = MetadataQuery(order_by=(OrderBy("process", True),))
        assert cache.get_matching_files(everything) == [f"C:/data/f{i}" for i in (4, 3, 2, 1)]
        assert {f.name for f in cache.schema()} >= {"process", "path", "machine_id"}


def test_an_extractor_s_unindexable_values_are_its_errors_not_the_batch_s(tmp_path) -> None:
    @register
    class Sloppy(Extractor):
        name = "test-sloppy"

        def extract(self, path, st):
            return {"ok": 1, "nan": float("nan"), "x" * 300: 2, "obj": object()}

    files = buffers(tmp_path / "d", [1, 2])
    roots = [str(tmp_path / "d")]
    extraction = Extraction(["buffer", "test-sloppy"])
    with MetadataCache(str(tmp_path / "meta"), sync_roots=roots, extraction=extraction
                       ) as cache:
        done = list(cache.synchronize_directory(tmp_path / "d"))[-1]
        assert (done.added, done.failed) == (2, 2)
        record = cache.index.get(files[0])
        assert record.fields["ok"] == 1 and record.fields["process"] == 1
        assert "nan" not in record.fields and "obj" not in record.fields
        assert "NaN" in record.error and "bad field name" in record.error
        assert cache.index.check() == []
