"""The domain services called directly, without a network: real storage in a temp dir.

What a request must look like (the Put protocol, range limits, argument ranges, backup
destinations) and how replies are cut into batches under the response budget are rules of
the services, whatever transport carries them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hoard_server.errors import (
    FailedPrecondition,
    HoardError,
    InvalidArgument,
    ObjectNotFound,
    OutOfRange,
    Overloaded,
    PermissionDenied,
    RepositoryNotFound,
)
from hoard_server.reports import BackupProgress, MaintenanceProgress, StoreInfo, VerifyProgress
from hoard_server.services.batching import ResponseBudget
from hoard_server.services.objects import (
    LIST_CHUNK,
    MAX_INLINE,
    MAX_RANGE,
    MAX_READ_MANY_ITEMS,
    MESSAGE_BYTES,
    ObjectService,
    PutFinish,
    PutHeader,
)
from hoard_server.services.repositories import RepositoryService
from hoard_server.storage.registry import RepositoryRegistry


@pytest.fixture
def registry(tmp_path) -> Iterator[RepositoryRegistry]:
    registry = RepositoryRegistry(str(tmp_path / "data"))
    registry.create("default")
    yield registry
    registry.close()


@pytest.fixture
def budget() -> ResponseBudget:
    return ResponseBudget(64 << 20, wait=0.2)


@pytest.fixture
def objects(registry, budget, tmp_path) -> ObjectService:
    roots = (str(tmp_path / "backups"),)
    os.makedirs(roots[0])
    return ObjectService(registry, budget, roots)


def key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def always() -> bool:
    return True


def read_all(objects: ObjectService, k: str, budget: ResponseBudget) -> bytes:
    size, batches = objects.read("default", k)
    out = b""
    for b in batches:
        out += b"".join(b.items)
        budget.release(b.reserved)
    assert len(out) == size
    return out


# -- the Put protocol -------------------------------------------------------------------------


def test_put_with_finish_or_declared_size_stores(objects, budget):
    data = b"hello, hoard"
    stored = objects.put(iter([PutHeader("default"), data[:5], data[5:], PutFinish(12)]), always)
    assert (stored.key, stored.raw_size, stored.created) == (key(data), 12, True)
    again = objects.put(iter([PutHeader("default", key(data), size=12), data]), always)
    assert again.key == key(data) and not again.created
    assert read_all(objects, key(data), budget) == data


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([b"chunk first"], "must start with a header"),
        ([], "must start with a header"),
        ([PutHeader("default"), b"abc", PutFinish(4)], "PutFinish says 4 bytes but 3 arrived"),
        ([PutHeader("default"), b"abc", PutFinish(3), b"d"], "PutFinish must be the last"),
        ([PutHeader("default"), PutHeader("default"), b"abc"], "only the first message"),
        ([PutHeader("default"), b"abc", None, PutFinish(3)], "a header, a chunk or a finish"),
        ([PutHeader("default"), b"abc"], "the upload was incomplete"),
        ([PutHeader("default", size=4), b"abc"], "announced 4 bytes but sent 3"),
        ([PutHeader("default", key(b"other")), b"abc", PutFinish(3)], "not the expected key"),
    ],
)
def test_put_protocol_violations_store_nothing(objects, parts, message):
    with pytest.raises(InvalidArgument, match=message):
        objects.put(iter(parts), always)
    assert objects.info("default").object_count == 0


def test_a_cancelled_upload_stores_nothing(objects):
    with pytest.raises(InvalidArgument, match="cancelled"):
        objects.put(iter([PutHeader("default"), b"abc", PutFinish(3)]), lambda: False)
    assert objects.has("default", [key(b"abc")]) == [False]


def test_a_large_upload_cut_short_stores_nothing(objects, registry):
    chunk = os.urandom(1 << 20)
    parts = [PutHeader("default"), *([chunk] * 10)]  # past the in-memory limit: staged
    with pytest.raises(InvalidArgument, match="incomplete"):
        objects.put(iter(parts), always)
    assert objects.info("default").object_count == 0
    staging = os.path.join(registry.data_dir, "repositories", "default", "staging")
    assert not os.path.isdir(staging) or not os.listdir(staging)


def test_put_errors_name_the_repository(objects):
    with pytest.raises(HoardError) as exc:
        objects.put(iter([PutHeader("a/b"), b"abc", PutFinish(3)]), always)
    assert exc.value.reason == "INVALID_REPOSITORY_NAME"
    assert exc.value.details["repository"] == "a/b"
    with pytest.raises(RepositoryNotFound) as exc:
        objects.put(iter([PutHeader("nope"), b"abc", PutFinish(3)]), always)
    assert exc.value.details["repository"] == "nope"
    with pytest.raises(InvalidArgument) as exc:
        objects.put(iter([PutHeader("default"), b"abc"]), always)
    assert exc.value.details["repository"] == "default"


# -- reads ----------------------------------------------------------------------------------


def test_read_of_an_empty_range_still_tells_the_size(objects):
    data = b"0123456789"
    objects.put_batch("default", [data])
    size, batches = objects.read("default", key(data), offset=10)
    assert size == 10 and [b.items for b in batches] == [[]]
    with pytest.raises(OutOfRange):
        objects.read("default", key(data), offset=11)


def test_read_range_limits_and_budget(objects, budget):
    data = os.urandom(1000)
    objects.put_batch("default", [data])
    reply = objects.read_range("default", key(data), 100, 50)
    assert reply.data == data[100:150] and reply.object_size == 1000
    assert reply.reserved == 50 and budget.in_use == 50  # the caller releases once sent
    budget.release(reply.reserved)
    reply = objects.read_range("default", key(data), 990, 50)  # cut short at the end
    assert reply.data == data[990:] and reply.reserved == 10
    budget.release(reply.reserved)
    with pytest.raises(InvalidArgument, match="needs a length"):
        objects.read_range("default", key(data), 0, None)
    with pytest.raises(InvalidArgument, match="use Read"):
        objects.read_range("default", key(data), 0, MAX_RANGE + 1)
    with pytest.raises(OutOfRange):
        objects.read_range("default", key(data), 1001, 1)
    with pytest.raises(ObjectNotFound):
        objects.read_range("default", key(b"absent"), 0, 1)
    assert budget.in_use == 0


def test_read_many_batches_by_bytes_and_count(objects, budget):
    small = [i.to_bytes(4, "big") for i in range(MAX_READ_MANY_ITEMS + 10)]
    objects.put_batch("default", small)
    batches = list(objects.read_many("default", [key(d) for d in small]))
    assert [len(b.items) for b in batches] == [MAX_READ_MANY_ITEMS, 10]
    assert sum(b.reserved for b in batches) == 4 * len(small)
    for b in batches:
        budget.release(b.reserved)

    big = [os.urandom(300 << 10) for _ in range(8)]  # 2.4 MiB: three messages of ~1 MiB
    objects.put_batch("default", big)
    batches = list(objects.read_many("default", [key(d) for d in big]))
    for b in batches:
        assert sum(len(c) for _, _, c in b.items) <= MESSAGE_BYTES + (300 << 10)
        budget.release(b.reserved)
    assert {k: c for b in batches for k, _, c in b.items} == {key(d): d for d in big}
    assert budget.in_use == 0


def test_read_many_inlines_at_most_the_cap(objects, budget):
    small, large = b"small object", os.urandom(MAX_INLINE + 1)
    objects.put_batch("default", [small, large])
    keys = [key(small), key(large)]
    for limit in (0, MAX_INLINE * 4):  # 0: the default; more than the cap: the cap
        items = {
            k: (n, c) for b in objects.read_many("default", keys, limit) for k, n, c in b.items
        }
        assert items[key(small)] == (len(small), small)
        assert items[key(large)] == (len(large), None)  # the client reads it with Read
    with pytest.raises(ObjectNotFound) as exc:
        objects.read_many("default", [key(small), key(b"absent")])
    assert exc.value.details["keys"] == key(b"absent")


def test_read_many_waits_for_budget_and_gives_up(registry):
    budget = ResponseBudget(1 << 20, wait=0.2)
    objects = ObjectService(registry, budget)
    blobs = [os.urandom(600 << 10) for _ in range(3)]
    objects.put_batch("default", blobs)
    keys = [key(d) for d in blobs]
    # a consumer that releases each batch once "sent": the budget is short, each goes alone
    sizes = []
    for b in objects.read_many("default", keys):
        sizes.append(len(b.items))
        budget.release(b.reserved)
    assert sizes == [1, 1, 1] and budget.in_use == 0
    # a consumer that never releases: the daemon says so rather than holding more
    held = []
    with pytest.raises(Overloaded, match="response memory budget"):
        for b in objects.read_many("default", keys):
            held.append(b.reserved)
    budget.release(sum(held))
    assert budget.in_use == 0
    # a consumer that stops early: what was reserved for unsent items comes back
    batches = objects.read_many("default", keys)
    first = next(batches)
    batches.close()
    budget.release(first.reserved)
    assert budget.in_use == 0


def test_list_pages(objects):
    data = [i.to_bytes(3, "big") for i in range(LIST_CHUNK + 5)]
    objects.put_batch("default", data)
    everything = sorted(key(d) for d in data)
    pages = list(objects.list("default"))
    assert [len(p.keys) for p in pages] == [LIST_CHUNK, 5]
    assert [k for p in pages for k in p.keys] == everything
    assert all(p.next_page_token == "" for p in pages)
    (page,) = objects.list("default", page_size=3)
    assert page.keys == everything[:3] and page.next_page_token == everything[2]
    (page,) = objects.list("default", page_size=10, page_token=everything[-4])
    assert page.keys == everything[-3:] and page.next_page_token == ""
    with pytest.raises(InvalidArgument, match="page token"):
        list(objects.list("default", page_size=10, page_token="zz"))


# -- reports and maintenance ----------------------------------------------------------------


def test_reports_are_typed(objects):
    data = [b"a" * 1000, b"b" * 2000]
    objects.put_batch("default", data)
    objects.delete("default", [key(data[0])])
    info = objects.info("default")
    assert isinstance(info, StoreInfo) and info.object_count == 1 and info.packs == ()
    detailed = objects.info("default", detailed=True)
    assert detailed.packs and sum(p.dead_bytes for p in detailed.packs) > 0
    steps = list(objects.maintain("default", dead_fraction=1e-9))
    assert all(isinstance(p, MaintenanceProgress) for p in steps)
    assert steps[-1].stage == "done"
    checks = list(objects.verify("default"))
    assert all(isinstance(p, VerifyProgress) for p in checks)
    assert checks[-1].done and checks[-1].problem_count == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_maintenance_arguments_are_checked_before_anything_runs(objects, fraction):
    with pytest.raises(InvalidArgument, match="dead_fraction") as exc:
        objects.maintain("default", dead_fraction=fraction)
    assert exc.value.details == {"setting": "dead_fraction"}
    with pytest.raises(InvalidArgument, match="sample"):
        objects.verify("default", sample=fraction)


def test_backup_destinations(objects, registry, tmp_path):
    objects.put_batch("default", [b"backed up"])
    with pytest.raises(InvalidArgument, match="absolute") as exc:
        objects.backup("default", "relative/dir")
    assert exc.value.details["path"] == "relative/dir"
    with pytest.raises(PermissionDenied, match="outside"):
        objects.backup("default", str(tmp_path / "elsewhere"))
    steps = list(objects.backup("default", str(tmp_path / "backups" / "one")))
    assert all(isinstance(p, BackupProgress) for p in steps)
    assert steps[-1].stage == "done" and steps[-1].objects == 1
    with pytest.raises(FailedPrecondition, match="not enabled"):
        ObjectService(registry, ResponseBudget(1 << 20)).backup("default", "/tmp/x")


# -- repositories ---------------------------------------------------------------------------


def test_repository_lifecycle(registry):
    repos = RepositoryService(registry)
    made = repos.create("project")
    assert repos.create("project") == made  # idempotent
    assert repos.get("project") == made and made.key_format == "sha256"
    assert [r.name for r in repos.list()] == ["default", "project"]
    repos.erase("project")
    with pytest.raises(RepositoryNotFound):
        repos.get("project")
    with pytest.raises(RepositoryNotFound):
        repos.erase("project")


@pytest.mark.parametrize("name", ["", "../default", "a/b", ".hidden", "x" * 200])
def test_bad_repository_names(registry, name):
    repos = RepositoryService(registry)
    for call in (repos.create, repos.get, repos.erase):
        with pytest.raises(InvalidArgument) as exc:
            call(name)
        assert exc.value.reason == "INVALID_REPOSITORY_NAME"
        assert name.startswith(exc.value.details["repository"])  # long names are cut short


def test_services_do_not_import_grpc():
    code = (
        "import sys, hoard_server.services.objects, hoard_server.services.repositories; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'google')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
