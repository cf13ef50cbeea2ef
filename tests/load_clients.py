"""The clients of the load test: threads in a worker process, each with its own connection,
running a mixed workload on every face until a deadline.

``run_worker`` is the entry point of one worker process (started with the ``spawn``
method: no gRPC state crosses a fork). Each thread checks what it reads against what it
wrote, so a wrong answer counts as an error just as a failed call does. A deliberate miss
(a key never stored) must fail with the SDK's not-found error; anything else is an error.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import hoard
from hoard.errors import ObjectNotFoundError
from hoard.metadata.records import FileRecord, FileSignature

OBJECT_SIZES = (100, 4096, 65536)  # the largest object any call carries: 64 KiB
ROWS_PER_APPEND = 8
COLUMNS = 4  # float64: an append carries 8 x 4 x 8 = 256 bytes
RECORDS_PER_PUSH = 10
QUERY_WINDOW = 50  # records a query asks for at most
MAX_ERRORS = 20  # kept per worker, with their tracebacks


@dataclass
class Tally:
    calls: Counter[str] = field(default_factory=Counter)
    misses: int = 0  # deliberate, answered NOT_FOUND as they must be
    errors: list[str] = field(default_factory=list)
    error_count: int = 0


class LoadClient:
    """One client: a connection of its own and the state it checks its reads against."""

    def __init__(self, target: str, name: str, seed: int) -> None:
        self.name = name
        self.rng = random.Random(seed)
        # a connection of its own: no sharing of the subchannel with the other threads
        self.client = hoard.connect(
            target, timeout=60, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.repo = self.client.repository("default")
        self.datasets = self.client.datasets("default", shared_memory=False)
        self.metadata = self.client.metadata("default", machine_id=f"load-{name}")
        self.file = f"load/{name}.h5"
        self.stored: dict[str, bytes] = {}
        self.rows = np.zeros((0, COLUMNS))
        self.pushed = 0
        self.faces: dict[str, Callable[[], None]] = {
            "objects.put": self.put,
            "objects.get": self.get,
            "objects.has": self.has,
            "objects.list": self.list,
            "objects.miss": self.miss,
            "datasets.append": self.append,
            "datasets.slice": self.slice,
            "datasets.follow": self.follow,
            "metadata.push": self.push,
            "metadata.query": self.query,
            "metadata.count": self.count,
            "repository.info": self.info,
        }

    # -- objects ---------------------------------------------------------------------------
    def put(self) -> None:
        content = self.rng.randbytes(self.rng.choice(OBJECT_SIZES))
        key = self.repo.put_object(content)
        if len(self.stored) >= 50:
            self.stored.pop(next(iter(self.stored)))
        self.stored[key] = content

    def get(self) -> None:
        if not self.stored:
            return self.put()
        key = self.rng.choice(list(self.stored))
        assert self.repo.get_object_content(key) == self.stored[key], f"object {key} differs"

    def has(self) -> None:
        keys = list(self.stored)[-10:]
        assert all(self.repo.has_objects(keys)), "a stored object is missing"

    def list(self) -> None:
        keys, _ = self.repo.list_objects_page(100)
        assert len(keys) <= 100

    def miss(self) -> None:
        key = self.rng.randbytes(32).hex()  # never stored (a SHA-256 preimage would be news)
        try:
            self.repo.get_object_content(key)
        except ObjectNotFoundError:
            raise Miss from None
        raise AssertionError(f"object {key} was never stored, yet it was read")

    # -- datasets ----------------------------------------------------------------------------
    def append(self) -> None:
        block = np.asarray(
            [[self.rng.random() for _ in range(COLUMNS)] for _ in range(ROWS_PER_APPEND)]
        )
        ack = self.datasets.append_data(self.file, "rows", block, grow_dimension=0)
        self.rows = np.concatenate([self.rows, block])
        assert ack.shape[0] == len(self.rows), f"ack shape {ack.shape}, {len(self.rows)} rows"

    def slice(self) -> None:
        if len(self.rows) == 0:
            return self.append()
        start = self.rng.randrange(len(self.rows))
        stop = min(len(self.rows), start + self.rng.randint(1, 64))
        got = self.datasets.get_data(self.file, "rows", np.s_[start:stop])
        assert np.array_equal(got, self.rows[start:stop]), f"rows {start}:{stop} differ"

    def follow(self) -> None:
        """Follow from a few rows back until every row written so far has arrived."""
        if len(self.rows) == 0:
            return self.append()
        start = max(0, len(self.rows) - 3 * ROWS_PER_APPEND)
        got = []
        for block in self.datasets.follow(self.file, "rows", start, grow_dimension=0):
            got.append(block)
            if start + sum(len(b) for b in got) >= len(self.rows):
                break
        assert np.array_equal(np.concatenate(got)[: len(self.rows) - start], self.rows[start:])

    # -- metadata ----------------------------------------------------------------------------
    def push(self) -> None:
        records = [
            FileRecord(
                path=f"C:/{self.name}/{self.pushed + i}",
                signature=FileSignature(size=i, mtime_ns=i, ctime_ns=i, inode=self.pushed + i),
                fields={"process": self.pushed + i, "client": self.name},
            )
            for i in range(RECORDS_PER_PUSH)
        ]
        self.metadata.push_records(records)
        self.pushed += RECORDS_PER_PUSH

    def query(self) -> None:
        if not self.pushed:  # a field no record has yet is UNKNOWN_FIELD
            return self.push()
        # a window of the client's records: answers of a steady size, as a leak test needs
        # (answers that grow with all pushed so far grow the memory in flight with them)
        low = self.rng.randrange(max(1, self.pushed))
        high = low + QUERY_WINDOW
        text = f"client == '{self.name}' and process >= {low} and process < {high}"
        found = list(self.metadata.query(text))
        assert len(found) == min(high, self.pushed) - low, (low, self.pushed, len(found))

    def count(self) -> None:
        if not self.pushed:
            return self.push()
        assert self.metadata.count(f"client == '{self.name}'") == self.pushed

    # -- the repository ----------------------------------------------------------------------
    def info(self) -> None:
        assert self.client.get_repository("default").name == "default"
        assert self.repo.get_info()["objects"] >= len(self.stored)

    def run(self, deadline: float, tally: Tally, lock: threading.Lock) -> None:
        names = list(self.faces)
        try:
            while time.monotonic() < deadline:
                face = self.rng.choice(names)
                try:
                    self.faces[face]()
                    outcome = None
                except Miss:
                    outcome = "miss"
                except Exception:
                    outcome = f"{self.name} {face}: {traceback.format_exc()}"
                with lock:
                    tally.calls[face] += 1
                    if outcome == "miss":
                        tally.misses += 1
                    elif outcome is not None:
                        tally.error_count += 1
                        if len(tally.errors) < MAX_ERRORS:
                            tally.errors.append(outcome)
        finally:
            self.client.close()


class Miss(Exception):
    """A deliberate miss answered as it must be."""


def run_worker(target: str, worker: int, threads: int, seconds: float) -> Tally:
    """``threads`` clients for ``seconds``; the worker's tally (picklable)."""
    tally, lock = Tally(), threading.Lock()
    deadline = time.monotonic() + seconds
    clients = [LoadClient(target, f"w{worker}c{i}", seed=worker * 1000 + i) for i in range(threads)]
    running = [threading.Thread(target=c.run, args=(deadline, tally, lock)) for c in clients]
    for t in running:
        t.start()
    for t in running:
        t.join()
    return tally
