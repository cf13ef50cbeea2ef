"""Extractors, shared by the SDK and the daemon: Analyzer4D buffer headers (from files the
synthetic generator writes from the format description), file-name groups, stat, HDF5
with TVB's conventions, the registry, and failures that keep their reason."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime

import pytest
from buffers import BufferSpec, buffer_bytes, write_buffer

from hoard.metadata.extractors import Extraction, ExtractionError, Extractor, create, register
from hoard.metadata.extractors.buffer import FIELDS, buffer_fields
from hoard.metadata.records import FileSignature


def test_buffer_fields_are_the_header_values(tmp_path) -> None:
    spec = BufferSpec(project_id=(1 << 64) - 5, process=27420, channel=3, datamode=2,
                      datakind=100, datatype=6, compression_frq=4, compression_time=8,
                      frq_bands=256, db_size=1024, db_header_size=256, blocks=2.5,
                      epoctime=1_700_000_000_456, partnumber="PN-42", streamno=7)
    path = write_buffer(tmp_path / spec.file_name(), spec)
    record = Extraction(["buffer"]).record(path)
    assert record.error is None
    fields = record.fields
    assert set(FIELDS) <= set(fields)
    with open(path, "rb") as f:
        data = f.read()
    expected = {
        "project_id": (1 << 64) - 5, "process": 27420, "channel": 3, "datamode": 2,
        "datakind": 100, "datatype": 6, "compression_frq": 4, "compression_time": 8,
        "frq_bands": 256, "db_size": 1024, "db_header_size": 256, "bytes_per_sample": 2,
        "db_sample_count": 512, "db_spec_count": 2, "header_size": 2000,
        "db_count": 3, "full_blocks": 2, "epoctime": 1_700_000_000_456,
        "process_time": spec.process_time, "lmodtime": spec.process_time + 5,
        "process_date_time": datetime.fromtimestamp(spec.process_time, UTC).strftime(
            "%Y-%m-%d %H:%M:%S"),
        "analyzer_version": "02.05.01.00", "partnumber": "PN-42", "streamno": 7,
        "spec_duration": spec.spec_duration, "frq_per_band": spec.frq_per_band,
        "frq_end": 256 * spec.frq_per_band, "frq_start": 0, "avg_time": 1, "avg_frq": 1,
        "header_hash": hashlib.sha256(data[:2000]).hexdigest(),
        "size": len(data),
    }
    assert {k: fields[k] for k in expected} == expected
    payload = len(data) - 2000
    assert fields["sample_count"] == (payload - 3 * 256) // 2
    assert fields["spec_count"] == fields["sample_count"] // 256


def test_absent_keys_are_null_or_qass_defaults_and_framedur_is_computed() -> None:
    spec = BufferSpec(streamno=None, datamode=2, compression_time=4,
                      omit=("framedur", "auxpara1", "datatype", "an4dvers"),
                      extra={"fftovers": 1, "samplefr": 1_000_000, "zzzzzzzz": 5})
    fields = buffer_fields(buffer_bytes(spec), len(buffer_bytes(spec)))
    assert fields["streamno"] is None and fields["analyzer_version"] is None
    assert fields["avg_time"] == 1 and fields["datatype"] == -1
    assert fields["spec_duration"] == pytest.approx(1e9 / ((1_000_000 * 2) / 1024) * 4)
    assert fields["process"] == spec.process  # parsing went on past the unknown key


@pytest.mark.parametrize(("content", "reason"), [
    (b"hello, not a buffer", "no 'qassdata' magic"),
    (b"qassdata" + (1 << 30).to_bytes(4, "little"), "header_size 1073741824 is implausible"),
    (buffer_bytes(BufferSpec())[:300], "ends inside its header (300 of 2000 bytes)"),
    (b"qassdata" + (30).to_bytes(4, "little") + buffer_bytes(BufferSpec())[12:],
     "ends inside the value of 'datavers'"),
    (buffer_bytes(BufferSpec(omit=("db__size",))), "no 'db__size'"),
    (buffer_bytes(BufferSpec(omit=("frqbands",))), "no frequency bands"),
])
def test_a_file_that_fails_to_parse_keeps_the_reason_and_its_stat(tmp_path, content, reason
                                                                  ) -> None:
    path = tmp_path / "Bad_00001p1c0b01"
    path.write_bytes(content)
    record = Extraction(["buffer"]).record(str(path))
    assert record.error is not None and record.error.startswith("buffer: ")
    assert reason in record.error
    st = os.stat(path)
    assert record.fields == {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                             "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}
    assert record.signature == FileSignature.of(st)


def test_a_vanished_file_is_not_a_parse_failure(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        Extraction(["buffer"]).record(str(tmp_path / "gone"))


def test_filename_groups_become_typed_fields(tmp_path) -> None:
    path = tmp_path / "run-0042_t-1.5_Cu_x.dat"
    path.write_bytes(b"")
    ex = Extraction([("filename", {
        "pattern": r"run-(?P<run>\d+)_t-(?P<temp>[\d.]+)_(?P<element>[A-Z][a-z]?)(?P<opt>_y)?"})])
    fields = ex.record(str(path)).fields
    assert (fields["run"], fields["temp"], fields["element"], fields["opt"]) == (
        42, 1.5, "Cu", None)
    with pytest.raises(ValueError, match="no named group"):
        create("filename", pattern=r"\d+")
    other = tmp_path / "nothing.dat"
    other.write_bytes(b"")
    assert "does not match" in (ex.record(str(other)).error or "")


def test_the_default_filename_pattern_reads_qass_names(tmp_path) -> None:
    path = tmp_path / "MyProject_00003p27420c0b01_dump_00.000"
    path.write_bytes(b"")
    fields = Extraction(["filename"]).record(str(path)).fields
    assert (fields["name_project"], fields["name_number"], fields["name_process"],
            fields["name_channel"], fields["name_buffer"]) == ("MyProject", 3, 27420, 0, 1)


def test_hdf5_attributes_datasets_and_tvb_conventions(tmp_path) -> None:
    h5py = pytest.importorskip("h5py")
    import numpy as np

    path = str(tmp_path / "ts.h5")
    with h5py.File(path, "w") as f:
        f.attrs["TVB_Data_version"] = 5
        f.attrs["TVB_Is_nan"] = "bool:False"
        f.attrs["TVB_Create_date"] = "datetime:2024-01-02 03:04:05.123456"
        f.attrs["title"] = "a time series"
        d = f.create_dataset("data", data=np.zeros((10, 3), dtype="float32"))
        d.attrs["TVB_Sample_period"] = 0.5
        f.create_group("g").create_dataset("time", data=np.arange(4, dtype="int64"))
    fields = Extraction(["hdf5"]).record(path).fields
    assert fields["Data_version"] == 5
    assert fields["Is_nan"] is False
    assert fields["Create_date"] == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert fields["title"] == "a time series"
    assert fields["data.shape"] == "10x3" and fields["data.dtype"] == "float32"
    assert fields["data.ndim"] == 2 and fields["data.Sample_period"] == 0.5
    assert fields["g/time.shape"] == "4" and fields["g/time.dtype"] == "int64"
    assert fields["datasets"] == "data,g/time"
    not_h5 = tmp_path / "x.h5"
    not_h5.write_bytes(b"nope")
    assert "not a readable HDF5 file" in (Extraction(["hdf5"]).record(str(not_h5)).error
                                           or "")


def test_a_new_extractor_is_a_small_class_registered_by_name(tmp_path) -> None:
    @register
    class Sidecar(Extractor):
        name = "test-sidecar"

        def extract(self, path, st):
            with open(path) as f:
                text = f.read()
            if not text.startswith("T="):
                raise ExtractionError("no temperature")
            return {"temperature": float(text[2:])}

    with pytest.raises(ValueError, match="already registered"):
        register(type("Other", (Extractor,), {"name": "test-sidecar"}))
    with pytest.raises(KeyError, match="test-sidecar"):
        create("no-such-extractor")
    good, bad = tmp_path / "a.txt", tmp_path / "b.txt"
    good.write_text("T=21.5")
    bad.write_text("?")
    ex = Extraction(["test-sidecar"])
    assert ex.names == ["stat", "test-sidecar"]
    assert ex.record(str(good)).fields["temperature"] == 21.5
    assert ex.record(str(bad)).error == "test-sidecar: no temperature"


def test_the_fields_are_qass_s_own_where_qass_is_installed(tmp_path) -> None:
    """With qass-tools-analyzer 2.7 (the ``bench`` extra): its parser reads the generated
    files without a warning, and every property its cache stores equals ours."""
    parser = pytest.importorskip("qass.tools.analyzer.buffer_parser")
    cache = pytest.importorskip("qass.tools.analyzer.buffer_metadata_cache")
    import random
    import warnings

    from buffers import random_spec

    rng = random.Random(5)
    specs = [random_spec(rng, process=i) for i in range(1, 40)]
    specs.append(BufferSpec(streamno=None, datamode=1, blocks=0, omit=("framedur",)))
    extraction = Extraction(["buffer"])
    for i, spec in enumerate(specs):
        path = write_buffer(tmp_path / spec.file_name(buffer_no=i), spec)
        ours = extraction.record(path).fields
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with parser.Buffer(path) as theirs:
                for prop in cache.BufferMetadata.properties:
                    if prop in ("id", "directory_path", "filename"):
                        continue
                    value = getattr(theirs, prop)
                    value = getattr(value, "value", value)  # enums: their numbers
                    assert ours[prop] == value, (path, prop)


def test_the_sdk_extracts_without_the_server_lmdb_or_h5py(tmp_path) -> None:
    """The extractors live in the SDK package: importing and running them pulls in
    neither the daemon's package nor lmdb, and h5py only once the hdf5 extractor reads."""
    import subprocess
    import sys
    from pathlib import Path

    path = write_buffer(tmp_path / BufferSpec().file_name(), BufferSpec(process=77))
    code = (
        "import sys\n"
        "from hoard.metadata.extractors import Extraction\n"
        f"r = Extraction(['buffer', 'filename', 'stat']).record({path!r})\n"
        "assert 'h5py' not in sys.modules\n"
        f"r = Extraction(['buffer', 'filename', 'stat', 'hdf5']).record({path!r})\n"
        "assert r.fields['process'] == 77, r\n"
        "assert 'hdf5' in (r.error or ''), r.error\n"
        "bad = [m for m in ('hoard_server', 'lmdb') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    client = Path(__file__).resolve().parents[1] / "client"
    done = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(client)},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
