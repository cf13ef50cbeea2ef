"""The Prometheus endpoint and request ids against a real daemon: every counter moves by
exactly what was done (RPCs by method and status, bytes, appends, syncs, compaction,
backups), histograms have their buckets, the per-repository figures equal ``Info``, a
request id goes back to its client and into the log line of its failing call; the endpoint
is off by default and a taken address stops the start. In-process: a backup's and a sync's
progress gauges live exactly as long as they run, log records carry the call's fields, and
the metrics table of docs/operations.md lists exactly the metrics declared."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from buffers import BufferSpec, write_buffer
from harness import wait_until
from harness.daemon import DaemonProcess, free_port
from prometheus_client.parser import text_string_to_metric_families

import hoard
from hoard.v1 import datasets_pb2, datasets_pb2_grpc, objects_pb2, objects_pb2_grpc
from hoard_server.daemon.logs import TEXT_FORMAT, CallFields, JsonFormatter
from hoard_server.grpc import call
from hoard_server.grpc.interceptors.calls import REQUEST_ID
from hoard_server.maintenance.backup import backup
from hoard_server.observe import endpoint, metrics
from hoard_server.observe.storage import StorageCollector
from hoard_server.services.metadata.cache import MetadataCache
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.repository import StorageSettings

ROOT = Path(__file__).resolve().parents[1]
PACK_MAX = 256 << 10  # small packs: compaction and backups have several to work on
OK, NOT_FOUND = "OK", "NOT_FOUND"

# -- one daemon with metrics for the module -----------------------------------------------------


@dataclass
class Served:
    daemon: DaemonProcess
    metrics: str  # host:port of /metrics
    sync_root: Path
    backup_root: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    sync_root = tmp_path_factory.mktemp("instrument")
    backup_root = tmp_path_factory.mktemp("backups")
    data = tmp_path_factory.mktemp("data")
    registry = RepositoryRegistry(str(data))  # a repository of its own for each test below
    for name in REPOSITORIES:
        registry.create(name)
    registry.close()
    d = DaemonProcess(
        str(data),
        "--metrics-listen", "127.0.0.1:0",  # the port chosen is in the log: no race for it
        "--sync-root", str(sync_root),
        "--backup-root", str(backup_root),
        "--pack-max-bytes", str(PACK_MAX),
        "--handle-idle-seconds", "0",  # open HDF5 handles stay open: their gauge is steady
    )  # fmt: skip
    d.start()
    try:
        d.wait_for_log("metrics served at")
        (url,) = [m[1] for line in d.log if (m := re.search(r"metrics served at (\S+)", line))]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        yield Served(
            d, url.removeprefix("http://").removesuffix("/metrics"), sync_root, backup_root
        )
    finally:
        try:
            d.stop()
        finally:
            d.kill()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[hoard.Client]:
    with hoard.connect(served.daemon.target, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def channel(served: Served) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.daemon.target) as ch:
        yield ch


REPOSITORIES = ("appends", "syncs", "maintained", "figures")


@pytest.fixture
def fresh_repo(request: pytest.FixtureRequest) -> str:
    """The repository of this test (made before the daemon started), by the test's name."""
    (name,) = [r for r in REPOSITORIES if r in request.node.name]
    return name


class Scrape:
    """One parsed ``/metrics`` page: families by name, sample values by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for f in self.families.values()
            for s in f.samples
        }

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; 0 for one not there yet (a counter never incremented)."""
        return self.get(name, **labels) or 0.0


def scrape(served: Served) -> Scrape:
    with urllib.request.urlopen(f"http://{served.metrics}/metrics", timeout=10) as reply:
        assert reply.status == 200
        return Scrape(reply.read().decode())


def scrape_until(served: Served, check, timeout: float = 30.0) -> Scrape:
    """Scrape until ``check(scrape)`` holds (what a callback of gRPC's counts lands a moment
    after the client's call returned); the last scrape if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        page = scrape(served)
        if check(page) or time.monotonic() > deadline:
            return page
        time.sleep(0.05)


def rpc(service: str, method: str, code: str) -> dict[str, str]:
    return {"service": f"hoard.v1.{service}", "method": method, "code": code}


def per_method(service: str, method: str) -> dict[str, str]:
    return {"service": f"hoard.v1.{service}", "method": method}


# -- RPCs -----------------------------------------------------------------------------------------


def test_rpcs_are_counted_by_method_and_status_timed_and_sized(served, channel) -> None:
    stub = objects_pb2_grpc.ObjectsStub(channel)
    put = objects_pb2.PutBatchRequest(repository="default", objects=[b"metrics " * 100])
    before = scrape(served)

    put_reply = stub.PutBatch(put)
    (key,) = put_reply.keys
    has = [
        objects_pb2.HasRequest(repository="default", keys=[key]),
        objects_pb2.HasRequest(repository="default", keys=[key, "f" * 64]),
        objects_pb2.HasRequest(repository="default", keys=["e" * 64] * 5),
    ]
    replies = [stub.Has(r) for r in has]
    assert [list(r.exists) for r in replies] == [[True], [True, False], [False] * 5]
    missing = objects_pb2.HasRequest(repository="no-such-repository", keys=["a" * 64])
    with pytest.raises(grpc.RpcError) as failed:
        stub.Has(missing)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND

    after = scrape(served)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("hoard_rpcs_total", **rpc("Objects", "Has", OK)) == 3
    assert delta("hoard_rpcs_total", **rpc("Objects", "Has", NOT_FOUND)) == 1
    assert delta("hoard_rpcs_total", **rpc("Objects", "PutBatch", OK)) == 1
    has_labels = per_method("Objects", "Has")
    assert delta("hoard_rpc_received_bytes_total", **has_labels) == sum(
        r.ByteSize() for r in [*has, missing]
    )
    assert delta("hoard_rpc_sent_bytes_total", **has_labels) == sum(r.ByteSize() for r in replies)
    assert delta("hoard_rpc_received_bytes_total", **per_method("Objects", "PutBatch")) == (
        put.ByteSize()
    )
    assert delta("hoard_rpc_sent_bytes_total", **per_method("Objects", "PutBatch")) == (
        put_reply.ByteSize()
    )
    assert after.value("hoard_rpcs_in_flight", **has_labels) == 0

    assert after.families["hoard_rpcs"].type == "counter"
    assert after.families["hoard_rpcs_in_flight"].type == "gauge"
    histogram = after.families["hoard_rpc_duration_seconds"]
    assert histogram.type == "histogram"
    buckets = {
        s.labels["le"]: s.value
        for s in histogram.samples
        if s.name.endswith("_bucket") and s.labels["method"] == "Has"
    }
    wanted = [float(b) for b in metrics.LATENCY_BUCKETS] + [float("inf")]
    assert sorted(float(le) for le in buckets) == wanted
    assert min(wanted) == 0.0001 and max(wanted[:-1]) == 60
    counts = [buckets[le] for le in sorted(buckets, key=float)]
    assert counts == sorted(counts)  # cumulative
    assert delta("hoard_rpc_duration_seconds_count", **has_labels) == 4
    assert buckets["+Inf"] == after.value("hoard_rpc_duration_seconds_count", **has_labels)


def test_streams_are_counted_when_they_end_cancelled_ones_too(served, client, channel) -> None:
    objects = objects_pb2_grpc.ObjectsStub(channel)
    key = client.repository("default").put_object(b"x" * 5000)
    follow_rpc = per_method("Datasets", "Follow")
    before = scrape(served)

    read = objects_pb2.ReadRequest(repository="default", key=key)
    assert b"".join(m.data for m in objects.Read(read)) == b"x" * 5000

    datasets = client.datasets("default")
    datasets.append_data("follow.h5", "rows", np.arange(12.0).reshape(4, 3), grow_dimension=0)
    node = datasets_pb2.NodeRef(repository="default", path="follow.h5", dataset="rows")
    stream = datasets_pb2_grpc.DatasetsStub(channel).Follow(
        datasets_pb2.FollowRequest(node=node, grow_dimension=0)
    )
    next(stream)  # the stream is running in the daemon now
    during = scrape(served)
    assert during.value("hoard_rpcs_in_flight", **follow_rpc) == 1
    assert during.value("hoard_dataset_follow_streams") == 1
    stream.cancel()

    cancelled = rpc("Datasets", "Follow", "CANCELLED")
    want = before.value("hoard_rpcs_total", **cancelled) + 1
    after = scrape_until(
        served,
        lambda s: (
            s.value("hoard_rpcs_total", **cancelled) == want
            and s.value("hoard_dataset_follow_streams") == 0
        ),
    )
    assert after.value("hoard_rpcs_total", **cancelled) == want
    assert after.value("hoard_rpcs_in_flight", **follow_rpc) == 0
    assert after.value("hoard_dataset_follow_streams") == 0
    assert after.value("hoard_rpcs_total", **rpc("Objects", "Read", OK)) == (
        before.value("hoard_rpcs_total", **rpc("Objects", "Read", OK)) + 1
    )


# -- request ids ----------------------------------------------------------------------------------


def _ids(metadata) -> list[str]:
    return [value for key, value in metadata or () if key == REQUEST_ID]


def test_request_id_goes_back_to_the_client(channel) -> None:
    stub = objects_pb2_grpc.ObjectsStub(channel)
    request = objects_pb2.HasRequest(repository="default", keys=["a" * 64])

    # a unary call: in the trailing metadata only (headers would cost a batch of their own)
    _reply, sent = stub.Has.with_call(request, metadata=[(REQUEST_ID, "job-42.step:7")])
    assert _ids(sent.trailing_metadata()) == ["job-42.step:7"]
    assert _ids(sent.initial_metadata()) == []

    _reply, fresh = stub.Has.with_call(request)
    (made,) = _ids(fresh.trailing_metadata())
    assert re.fullmatch(r"[0-9a-f]{12}", made)
    _reply, other = stub.Has.with_call(request)
    assert _ids(other.trailing_metadata()) != [made]  # one per call

    for insane in ("with space", "x" * 65, "-leading-dash", "a/b"):
        _reply, replaced = stub.Has.with_call(request, metadata=[(REQUEST_ID, insane)])
        (given,) = _ids(replaced.trailing_metadata())
        assert given != insane and re.fullmatch(r"[0-9a-f]{12}", given)

    # a stream: the id comes at the start, before any message, and again at the end
    stream = stub.List(
        objects_pb2.ListRequest(repository="default"), metadata=[(REQUEST_ID, "listing-1")]
    )
    assert _ids(stream.initial_metadata()) == ["listing-1"]
    list(stream)
    assert _ids(stream.trailing_metadata()) == ["listing-1"]


def test_a_failing_calls_log_line_and_trailing_metadata_carry_the_same_id(served, channel):
    garbage = channel.unary_unary("/hoard.v1.Objects/Has")  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as failed:
        garbage(b"\xff\xff\xff", metadata=[(REQUEST_ID, "broken-7")])
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _ids(failed.value.trailing_metadata()) == ["broken-7"]
    # no headers for a call that answered nothing: they would make it one gRPC never retries
    assert _ids(failed.value.initial_metadata()) == []
    served.daemon.wait_for_log("[req=broken-7]")
    (line,) = [line for line in served.daemon.log if "[req=broken-7]" in line]
    assert "undecodable request to /hoard.v1.Objects/Has" in line

    with pytest.raises(grpc.RpcError) as unnamed:
        garbage(b"\xff\xff\xff")
    (made,) = _ids(unnamed.value.trailing_metadata())
    served.daemon.wait_for_log(f"[req={made}]")


# -- what the services count ----------------------------------------------------------------------


def test_appends_are_counted(served, client, fresh_repo) -> None:
    datasets = client.datasets(fresh_repo)
    labels = {"repository": fresh_repo}
    before = scrape(served)
    block = np.arange(30.0).reshape(10, 3)
    datasets.append_data("a.h5", "d", block, grow_dimension=0)
    datasets.append_data("a.h5", "d", block[:4], grow_dimension=0)
    datasets.append_data("b.h5", "t", np.array(["abc", "de"]), grow_dimension=0)
    after = scrape(served)

    def delta(name: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("hoard_dataset_append_rows_total") == 10 + 4 + 2
    assert delta("hoard_dataset_append_batches_total") == 3
    assert delta("hoard_dataset_append_commits_total") == 3  # one after another: no grouping
    assert delta("hoard_dataset_append_bytes_total") == (10 + 4) * 3 * 8 + len("abcde")
    assert after.value("hoard_dataset_open_files", **labels) == 2  # a.h5, b.h5: kept open


def test_syncs_are_counted(served, client, fresh_repo) -> None:
    root = served.sync_root / fresh_repo
    root.mkdir()
    for i in range(5):
        write_buffer(root / BufferSpec(process=i).file_name(), BufferSpec(process=i))
    broken = root / BufferSpec(process=9).file_name()
    broken.write_bytes(b"NOTQASS!" + b"\0" * 3000)
    cache = client.metadata(fresh_repo)
    before = scrape(served)
    report = cache.synchronize_directory(root, server_side=True, batch_size=2)
    assert (report.added, report.failed) == (6, 1)
    again = cache.synchronize_directory(root, server_side=True)
    assert again.unchanged == 6
    after = scrape(served)

    def delta(name: str) -> float:
        return after.value(name) - before.value(name)

    assert delta("hoard_metadata_sync_indexed_files_total") == 6
    assert delta("hoard_metadata_sync_failed_files_total") == 1
    assert after.value("hoard_metadata_syncs_running") == 0
    assert after.value("hoard_metadata_sync_scanned_files") == 0


def _half_deleted(client: hoard.Client, name: str, n: int = 600) -> None:
    repo = client.repository(name)
    contents = [os.urandom(1024 + i) for i in range(n)]
    keys = repo.put_objects(contents)
    repo.delete_objects(keys[::2])


def test_compaction_and_backups_are_counted_maintained(served, client, fresh_repo) -> None:
    _half_deleted(client, fresh_repo)
    repo = client.repository(fresh_repo)
    labels = {"repository": fresh_repo}
    before = scrape(served)
    assert repo.maintain(dry_run=True)["total"] >= 1
    assert scrape(served).value("hoard_compaction_runs_total", **labels) == 0  # dry runs

    compacted = repo.maintain()
    first = repo.backup(served.backup_root / fresh_repo)
    second = repo.backup(served.backup_root / fresh_repo)  # nothing new to copy
    after = scrape(served)

    def delta(name: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert compacted["reclaimed_bytes"] > 0 and compacted["moved_bytes"] > 0
    assert delta("hoard_compaction_runs_total") == 1
    assert delta("hoard_compaction_moved_bytes_total") == compacted["moved_bytes"]
    assert delta("hoard_compaction_reclaimed_bytes_total") == compacted["reclaimed_bytes"]
    assert first["bytes_copied"] > 0 and second["bytes_copied"] == 0
    assert delta("hoard_backup_runs_total") == 2
    assert delta("hoard_backup_copied_bytes_total") == first["bytes_copied"] + first["file_bytes"]
    assert after.get("hoard_backup_progress", **labels) is None  # none is running


def test_figures_equal_what_info_reports(served, client, channel, fresh_repo) -> None:
    _half_deleted(client, fresh_repo, n=300)
    stub = objects_pb2_grpc.ObjectsStub(channel)
    page = scrape(served)
    names = {"default", *REPOSITORIES}  # every repository of the data directory
    shown = {s.labels["repository"] for s in page.families["hoard_repository_objects"].samples}
    assert shown == names
    for name in names:
        info = stub.Info(objects_pb2.InfoRequest(repository=name))
        labels = {"repository": name}
        assert page.value("hoard_repository_objects", **labels) == info.object_count
        assert page.value("hoard_repository_bytes", **labels) == info.raw_bytes
        assert page.value("hoard_repository_stored_bytes", **labels) == info.stored_bytes
        assert page.value("hoard_repository_packs", **labels) == info.pack_count
        assert page.value("hoard_repository_reclaimable_bytes", **labels) == (
            info.reclaimable_bytes
        )
    info = stub.Info(objects_pb2.InfoRequest(repository=fresh_repo))
    assert info.object_count == 150 and info.reclaimable_bytes > 0  # the figures are not 0


# -- the endpoint's life --------------------------------------------------------------------------


def _listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on (its sockets, matched in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for row in f:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_metrics_are_off_by_default_and_json_logs_carry_the_request_id(daemon_factory) -> None:
    d = daemon_factory(None, "--log-format", "json")
    assert _listening_ports(d.pid) == {d.port}
    assert not any("metrics served" in line for line in d.log)
    with grpc.insecure_channel(d.target) as ch, pytest.raises(grpc.RpcError):
        ch.unary_unary("/hoard.v1.Objects/Has")(b"\xff\xff", metadata=[(REQUEST_ID, "json-1")])
    d.wait_for_log('"request_id": "json-1"')
    (line,) = [json.loads(line) for line in d.log if "json-1" in line]
    assert line["request_id"] == "json-1" and "undecodable" in line["message"]
    assert "token" not in line  # no authentication: no token name


def test_idle_scrapers_cost_bounded_threads_and_never_stall_the_endpoint(daemon_factory) -> None:
    """Sixty connections that never send a byte: the daemon serves at most ``SLOTS`` of
    them (a thread each, for ``TIMEOUT`` at most), closes the rest at once, keeps answering
    gRPC meanwhile, and serves scrapes again once they time out."""
    d = daemon_factory(None, "--metrics-listen", "127.0.0.1:0")
    d.wait_for_log("metrics served at")
    (url,) = [m[1] for line in d.log if (m := re.search(r"metrics served at (\S+)", line))]
    host, port = url.removeprefix("http://").removesuffix("/metrics").rsplit(":", 1)

    def threads() -> int:
        return len(os.listdir(f"/proc/{d.pid}/task"))

    def scraped() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.status == 200 and b"hoard_rpcs_total" in reply.read()
        except OSError:
            return False

    assert scraped()
    before = threads()
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(60)]
    try:
        time.sleep(1)
        assert threads() <= before + endpoint.SLOTS
        with d.connect() as c:
            assert c.repository("default").has_object("0" * 64) is False
        wait_until(scraped, timeout=endpoint.TIMEOUT * 3)
    finally:
        for s in idle:
            s.close()
    wait_until(lambda: threads() <= before, timeout=endpoint.TIMEOUT * 2)


def test_a_metrics_address_in_use_stops_the_start(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        serve = [sys.executable, "-m", "hoard_server", "serve", "--metrics-listen", address]
        serve += ["--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "data")]
        result = subprocess.run(serve, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot serve metrics on {address}" in result.stderr
    assert "metrics_listen" in result.stderr  # what to change


# -- in-process: progress gauges, log fields, the docs ---------------------------------------------


def _gauge(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_a_backups_progress_gauge_lives_while_it_runs(tmp_path) -> None:
    registry = RepositoryRegistry(str(tmp_path / "data"), StorageSettings(pack_max_bytes=PACK_MAX))
    try:
        name = f"b-{uuid.uuid4().hex[:8]}"
        repo, _ = registry.create(name)
        repo.put_many([os.urandom(4096 + i) for i in range(300)])  # several packs
        runs = _gauge("hoard_backup_runs_total", repository=name) or 0.0
        shares = []
        for report in backup(repo, str(tmp_path / "backup")):
            shares.append(_gauge("hoard_backup_progress", repository=name))
            if report.stage == "done":
                break
        assert report.packs_copied >= 2
        assert shares[0] == 0 and shares[-1] == 1
        assert all(0 <= s <= 1 for s in shares) and shares == sorted(shares)
        assert len(set(shares)) > 2  # it moved pack by pack
        assert _gauge("hoard_backup_progress", repository=name) is None  # over: gone
        assert _gauge("hoard_backup_runs_total", repository=name) == runs + 1
    finally:
        registry.close()


def test_a_syncs_gauges_live_while_it_runs(tmp_path) -> None:
    root = tmp_path / "buffers"
    root.mkdir()
    for i in range(6):
        write_buffer(root / BufferSpec(process=i).file_name(), BufferSpec(process=i))
    running = _gauge("hoard_metadata_syncs_running")
    with MetadataCache(str(tmp_path / "index"), sync_roots=[str(root)]) as cache:
        reports = cache.synchronize_directory(str(root), batch_size=2)
        first = next(reports)
        assert _gauge("hoard_metadata_syncs_running") == running + 1
        assert _gauge("hoard_metadata_sync_scanned_files") >= first.scanned > 0
        reports.close()  # the client went away
        assert _gauge("hoard_metadata_syncs_running") == running
        assert _gauge("hoard_metadata_sync_scanned_files") == 0
        assert list(cache.synchronize_directory(str(root)))[-1].done
        assert _gauge("hoard_metadata_syncs_running") == running


def test_log_records_of_a_call_carry_its_request_id_and_token() -> None:
    def formatted(current: call.Call | None) -> tuple[str, dict]:
        if current is not None:
            call.begin(current)
        record = logging.LogRecord("hoard", logging.INFO, __file__, 1, "hi", (), None)
        assert CallFields().filter(record)
        return logging.Formatter(TEXT_FORMAT).format(record), json.loads(
            JsonFormatter().format(record)
        )

    def in_a_call_of_its_own(current: call.Call | None) -> tuple[str, dict]:
        return contextvars.Context().run(formatted, current)  # the call stays in there

    plain, doc = in_a_call_of_its_own(call.Call("/hoard.v1.Objects/Has", "abc123", "unix:"))
    assert plain.endswith(" hoard [req=abc123]: hi")
    assert doc["request_id"] == "abc123" and "token" not in doc
    plain, doc = in_a_call_of_its_own(call.Call("/x/Y", "abc123", "unix:", token="alice"))
    assert plain.endswith(" hoard [req=abc123 token=alice]: hi")
    assert doc["request_id"] == "abc123" and doc["token"] == "alice"
    plain, doc = in_a_call_of_its_own(None)
    assert plain.endswith(" hoard: hi") and "request_id" not in doc


def _documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("\n### Metrics\n", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `(hoard_[a-z_]+)`", section, re.MULTILINE))


def test_the_docs_list_every_metric_and_no_other() -> None:
    families = [*metrics.REGISTRY.collect(), *StorageCollector(None).describe()]  # type: ignore[arg-type]
    declared = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in families
        if f.name.startswith("hoard_")
    }
    assert len(declared) == 26
    assert declared == _documented_metrics()
