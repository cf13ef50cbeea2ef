"""``hoard ds ...`` against a real daemon, and the selection text it parses."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoard import cli
from hoard.cli.datasets import parse_selection


def test_selection_text_parses_like_python() -> None:
    assert parse_selection("") is None
    assert parse_selection("[]") is None
    assert parse_selection("...") is None
    assert parse_selection("[0:10, ::2]") == (slice(0, 10), slice(None, None, 2))
    assert parse_selection("5") == (5,)
    assert parse_selection("..., -1") == (Ellipsis, -1)
    assert parse_selection("[[1, 4, 7], :]") == ([1, 4, 7], slice(None))
    assert parse_selection("[1,2]") == (1, 2)  # as numpy reads a[1,2]
    for bad in ("1.5", "a", "::0", "1:2:3:4", "[1,", "..., ...", "1,,2"):
        with pytest.raises((ValueError, IndexError)):
            parse_selection(bad)


@given(
    st.lists(
        st.one_of(
            st.integers(-50, 50),
            st.builds(
                slice,
                st.one_of(st.none(), st.integers(-9, 9)),
                st.one_of(st.none(), st.integers(-9, 9)),
                st.one_of(st.none(), st.integers(1, 4)),
            ),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_selection_text_round_trips(items: list[Any]) -> None:
    def text(item: Any) -> str:
        if isinstance(item, int):
            return str(item)
        parts = ["" if v is None else str(v) for v in (item.start, item.stop, item.step)]
        return ":".join(parts)

    assert parse_selection("[" + ", ".join(text(i) for i in items) + "]") == tuple(items)


def run(daemon: Any, capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["--target", daemon.target, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ls_describe_cat_du(hoard_daemon: Any, client: Any, capsys: Any) -> None:
    ds = client.datasets()
    data = np.arange(40, dtype="<i4").reshape(10, 4)
    ds.store_data("p/1/x.h5", "data", data)
    ds.set_metadata("p/1/x.h5", {"unit": "ms"}, "data")

    code, out, _ = run(hoard_daemon, capsys, "ds", "ls", "p", "-R")
    assert code == 0 and out.split() == ["p/1/", "p/1/x.h5"]

    code, out, _ = run(hoard_daemon, capsys, "ds", "describe", "p/1/x.h5")
    assert code == 0 and "data  (10, 4) int32" in out and "@unit = 'ms'" in out
    assert out.splitlines()[1:3] == ["/", "  @TVB_Data_version = 5"]

    code, out, _ = run(hoard_daemon, capsys, "ds", "cat", "p/1/x.h5", "data", "[2:4, ::2]")
    assert code == 0 and out == "8,10\n12,14\n"
    code, out, _ = run(hoard_daemon, capsys, "ds", "cat", "p/1/x.h5", "data", "..., 1")
    assert out.split() == [str(v) for v in data[..., 1]]
    big = np.arange(300_000, dtype="<i8").reshape(100_000, 3)  # 2.4 MB: several blocks
    ds.store_data("p/1/x.h5", "big", big)
    code, out, _ = run(hoard_daemon, capsys, "ds", "cat", "p/1/x.h5", "big", "[::-1, 1:]")
    assert code == 0
    np.testing.assert_array_equal(
        np.loadtxt(io.StringIO(out), delimiter=",", dtype="<i8"), big[::-1, 1:]
    )
    code, _, err = run(hoard_daemon, capsys, "ds", "cat", "p/1/x.h5", "data", "1.5")
    assert code == 2 and "bad selection" in err
    code, _, err = run(hoard_daemon, capsys, "ds", "cat", "p/1/x.h5", "nothing")
    assert code == 1 and err.startswith("hoard: ")

    code, out, _ = run(hoard_daemon, capsys, "ds", "du", "p", "--h5")
    size = ds.disk_usage("p").bytes
    assert code == 0 and out.split("\t")[:2] == [str(size), "1 files"]


def test_export_import_mv_rm(hoard_daemon: Any, client: Any, capsys: Any, tmp_path: Path) -> None:
    import h5py

    ds = client.datasets()
    ds.store_data("a/x.h5", "data", np.arange(5.0))
    local = tmp_path / "x.h5"
    code, _, _ = run(hoard_daemon, capsys, "ds", "export", "a/x.h5", str(local))
    assert code == 0
    with h5py.File(local, "r") as f:
        np.testing.assert_array_equal(f["data"][:], np.arange(5.0))

    code, out, _ = run(hoard_daemon, capsys, "ds", "import", str(local), "b/y.h5")
    assert code == 0 and "b/y.h5" in out
    code, _, err = run(hoard_daemon, capsys, "ds", "import", str(local), "b/y.h5")
    assert code == 1 and "exists" in err
    assert run(hoard_daemon, capsys, "ds", "import", "-f", str(local), "b/y.h5")[0] == 0

    assert run(hoard_daemon, capsys, "ds", "mv", "b/y.h5", "c/z.h5")[0] == 0
    assert run(hoard_daemon, capsys, "ds", "mv", "c", "d")[0] == 0  # a folder
    np.testing.assert_array_equal(ds.get_data("d/z.h5", "data"), np.arange(5.0))

    code, _, err = run(hoard_daemon, capsys, "ds", "rm", "d/z.h5", "d/none.h5")
    assert code == 1 and "d/none.h5" in err
    assert run(hoard_daemon, capsys, "ds", "rm", "-f", "d/none.h5")[0] == 0
    assert not ds.is_valid_file("d/z.h5")
