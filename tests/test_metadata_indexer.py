"""The dataset indexer without a daemon: whatever the order and pace of changes, and
however often its queue overflows, the cache ends in step with the dataset files."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
from harness import wait_until

from hoard_server.services.metadata.cache import DATASETS_MACHINE
from hoard_server.services.metadata.indexer import DatasetIndexer
from hoard_server.storage.registry import RepositoryRegistry


@pytest.fixture
def registry(tmp_path) -> Iterator[RepositoryRegistry]:
    reg = RepositoryRegistry(str(tmp_path / "data"))
    reg.create("r")
    yield reg
    reg.close()


def indexed(repo) -> dict[str, str]:
    """path -> the shape of dataset "x", as the cache has it (None: removed meanwhile)."""
    out = {}
    for path, _sig, _failed in repo.metadata.signatures(DATASETS_MACHINE):
        record = repo.metadata.get(path, DATASETS_MACHINE)
        out[path] = record.fields.get("x.shape") if record is not None else None
    return out


@pytest.mark.parametrize("max_queue", [1, 10_000])
def test_the_cache_ends_in_step_with_the_files(registry, max_queue):
    indexer = DatasetIndexer(registry, max_queue=max_queue)
    try:
        repo = registry.get("r")
        expected = {}
        for k in range(30):
            path = f"d{k % 3}/f{k}.h5"
            with repo.files.writing(path, create=True) as f:
                f["x"] = np.zeros(k + 1)
            expected[path] = str(k + 1)
        for k in range(0, 30, 3):  # grow some
            path = f"d0/f{k}.h5"
            with repo.files.writing(path) as f:
                del f["x"]
                f["x"] = np.zeros(100 + k)
            expected[path] = str(100 + k)
        for k in range(1, 30, 3):  # delete others
            path = f"d1/f{k}.h5"
            with repo.files.exclusive(path) as full:
                os.unlink(full)
            del expected[path]
        with repo.files.exclusive("notes.txt") as full:  # not HDF5: not indexed
            open(full, "w").close()
        wait_until(lambda: indexed(repo) == expected, what="the cache in step")
        assert repo.metadata.check() == []
    finally:
        indexer.stop()


def test_a_closed_repository_is_skipped_not_reopened(registry, tmp_path):
    indexer = DatasetIndexer(registry)
    try:
        repo = registry.get("r")
        with repo.files.writing("a.h5", create=True) as f:
            f["x"] = np.zeros(3)
        wait_until(lambda: indexed(repo) == {"a.h5": "3"}, what="indexed")
        registry.erase("r")
        indexer.changed("r", "a.h5")  # a late notice for a repository that is gone
        indexer.index("r", "a.h5")
        assert not os.path.exists(tmp_path / "data" / "repositories" / "r")
    finally:
        indexer.stop()
