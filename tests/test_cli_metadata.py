"""``hoard meta sync|query|count|schema|rm`` against a real daemon."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from buffers import BufferSpec, write_buffer

from hoard import cli


def run(daemon: Any, capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["--target", daemon.target, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def make_buffers(directory: Path, count: int) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    return [write_buffer(directory / BufferSpec(process=i).file_name(),
                         BufferSpec(process=i, channel=1 + i % 2, partnumber=f"PN-{i % 3}"))
            for i in range(count)]


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    return tmp_path / "instrument"


@pytest.fixture
def daemon(daemon_factory: Any, tmp_path: Path, roots: Path) -> Any:
    roots.mkdir()
    return daemon_factory(tmp_path / "data", "--sync-root", str(roots))


def test_sync_query_count_schema_rm(daemon: Any, capsys: Any, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOARD_MACHINE_ID", "cli-pc")
    files = make_buffers(tmp_path / "run", 8)
    code, out, err = run(daemon, capsys, "meta", "sync", str(tmp_path / "run"))
    assert code == 0, err
    assert out.strip() == ("8 files scanned: 8 added, 0 updated, 0 removed, 0 failed, "
                           "0 unchanged")
    assert "sync" in err  # progress on stderr (a line per report without a terminal)

    for order in (["--order-by", "process:desc"], ["--order-by=-process"]):
        code, out, _ = run(daemon, capsys, "meta", "query", "channel == 2 and process > 2",
                           *order)
        assert code == 0 and out.split() == [files[7], files[5], files[3]]
    code, out, _ = run(daemon, capsys, "meta", "query", "channel == 2", "--order-by",
                       "partnumber,process", "--limit", "2", "--fields", "process,partnumber")
    assert [line.split("\t") for line in out.splitlines()] == [
        [files[3], "3", "PN-0"], [files[1], "1", "PN-1"]]
    code, out, _ = run(daemon, capsys, "meta", "query", "process == 4", "--records", "--json")
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["path"] == files[4] and record["process"] == 4
    assert record["machine_id"] == "cli-pc" and record["partnumber"] == "PN-1"
    code, out, _ = run(daemon, capsys, "meta", "query", "process == 4", "--records")
    assert out.splitlines()[0] == files[4] and "  channel = 1" in out.splitlines()
    code, out, _ = run(daemon, capsys, "meta", "query", "--fields", "process", "--json",
                       "--order-by", "process", "--limit", "1")
    assert json.loads(out) == {"path": files[0], "process": 0}

    code, out, _ = run(daemon, capsys, "meta", "count", "partnumber prefix 'PN-1'")
    assert (code, out.strip()) == (0, "3")
    code, out, _ = run(daemon, capsys, "meta", "count")
    assert out.strip() == "8"
    code, out, _ = run(daemon, capsys, "meta", "schema")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["process"][1] == "8" and rows["process"][2] == "int"
    code, out, _ = run(daemon, capsys, "meta", "schema", "--json")
    schema = {f["name"]: f for f in map(json.loads, out.splitlines())}
    assert schema["partnumber"]["types"] == {"str": 8}

    os.remove(files[0])
    code, out, _ = run(daemon, capsys, "meta", "sync", str(tmp_path / "run"), "--delete-stale")
    assert "1 removed" in out and "7 unchanged" in out
    code, out, _ = run(daemon, capsys, "meta", "rm", files[1], files[2])
    assert (code, out.strip()) == (0, "2 of 2 records removed")
    code, out, _ = run(daemon, capsys, "meta", "rm", files[1])
    assert (code, out.strip()) == (1, "0 of 1 records removed")
    code, out, _ = run(daemon, capsys, "meta", "count")
    assert out.strip() == "5"


def test_server_side_sync_and_its_options(daemon: Any, capsys: Any, roots: Path,
                                          tmp_path: Path) -> None:
    files = make_buffers(roots / "a", 3) + make_buffers(roots / "a" / "deep", 2)
    other = roots / "a" / "notes.txt"
    other.write_text("x")
    code, out, err = run(daemon, capsys, "meta", "sync", str(roots / "a"), "--server",
                         "--no-recursive")
    assert code == 0, err
    assert out.startswith("3 files scanned: 3 added")
    code, out, _ = run(daemon, capsys, "meta", "sync", str(roots / "a"), "--server",
                       "--glob", "*", "--regex", ".*", "--machine-id", "")
    assert out.startswith("6 files scanned: 3 added") and "1 failed" in out
    code, out, _ = run(daemon, capsys, "meta", "query", "machine_id == ''",
                       "--order-by", "path")
    assert len(out.split()) == 6 and {os.path.realpath(f) for f in files} <= set(out.split())
    # outside the sync roots: refused, with a message a person can act on
    code, _, err = run(daemon, capsys, "meta", "sync", str(tmp_path), "--server")
    assert code == 1 and "sync root" in err


def test_bad_queries_are_one_line_errors(daemon: Any, capsys: Any) -> None:
    for argv, words in (
        (["meta", "query", "channel =="], "malformed query"),
        (["meta", "count", "nowhere == 1"], "nowhere"),
        (["meta", "query", "", "--order-by", "nowhere"], "nowhere"),
        (["meta", "sync", "/definitely/not/here"], "not a directory"),
        (["meta", "sync", ".", "--regex", "("], "does not compile"),
    ):
        code, out, err = run(daemon, capsys, *argv)
        assert code == 1 and out == "", argv
        assert err.startswith("hoard: ") and words in err and "Traceback" not in err, argv
