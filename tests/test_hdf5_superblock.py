"""The superblock repair the daemon does instead of ``h5clear -s``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoard_server.storage.hdf5 import superblock


def test_lookup3_matches_the_published_vectors() -> None:
    # from Bob Jenkins' lookup3.c driver5()
    assert superblock.lookup3(b"") == 0xDEADBEEF
    assert superblock.lookup3(b"Four score and seven years ago") == 0x17770551
    assert superblock.lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def test_checksums_of_files_h5py_writes_are_reproduced(tmp_path) -> None:
    for n in range(1, 4):
        path = tmp_path / f"{n}.h5"
        with h5py.File(path, "w", libver="latest") as f:
            f["x" * n] = np.arange(n)
        head = bytearray(path.read_bytes()[:200])
        assert head[8] == 3 and superblock.status_flags(head) == 0
        span = 12 + 4 * head[9]
        stored = int.from_bytes(head[span : span + 4], "little")
        assert superblock.lookup3(bytes(head[:span])) == stored
        assert not superblock.clear_status_flags(head)  # nothing to clear


_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import h5py, numpy as np
    f = h5py.File(sys.argv[1], "w", libver="latest")
    d = f.create_dataset("data", shape=(0, 4), maxshape=(None, 4), chunks=(64, 4), dtype="f8")
    f.swmr_mode = True
    for i in range(50):
        d.resize(d.shape[0] + 1, axis=0)
        d[-1] = i
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _killed_writer(path) -> None:
    proc = subprocess.run([sys.executable, "-c", _WRITER, str(path)], check=False)
    assert proc.returncode == -signal.SIGKILL


def test_a_file_left_by_a_killed_swmr_writer_opens_after_repair(tmp_path) -> None:
    path = tmp_path / "crashed.h5"
    _killed_writer(path)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r")
    assert superblock.repair(str(path))
    assert not superblock.repair(str(path))  # once is enough
    with h5py.File(path, "r+") as f:
        assert f["data"].shape == (50, 4)
        np.testing.assert_array_equal(f["data"][:, 0], np.arange(50))


def test_a_damaged_superblock_is_not_made_to_look_right(tmp_path) -> None:
    path = tmp_path / "crashed.h5"
    _killed_writer(path)
    head = bytearray(path.read_bytes()[: superblock.HEAD_BYTES])
    head[20] ^= 0xFF  # inside the checksummed addresses
    assert not superblock.clear_status_flags(head)
    with open(path, "r+b") as f:
        f.write(head[:64])
    assert not superblock.repair(str(path))
    with pytest.raises(OSError):
        h5py.File(path, "r")


def test_a_superblock_behind_a_user_block_is_found(tmp_path) -> None:
    path = tmp_path / "ub.h5"
    _killed_writer(path)
    data = path.read_bytes()
    shifted = bytearray(b"\0" * 512 + data)
    assert superblock.status_flags(shifted) == superblock.status_flags(data) != 0
    assert superblock.clear_status_flags(shifted)
    assert superblock.status_flags(shifted) == 0


@given(st.binary(max_size=600))
def test_any_bytes_are_handled_without_error(blob: bytes) -> None:
    head = bytearray(superblock.SIGNATURE + blob) if blob[:1] == b"\x01" else bytearray(blob)
    before = bytes(head)
    changed = superblock.clear_status_flags(head)
    assert changed or bytes(head) == before


def test_repair_does_not_follow_links(tmp_path) -> None:
    target = tmp_path / "real.h5"
    _killed_writer(target)
    link = tmp_path / "link.h5"
    os.symlink(target, link)
    with pytest.raises(OSError):
        superblock.repair(str(link))
    assert superblock.status_flags(target.read_bytes()[:200]) != 0
