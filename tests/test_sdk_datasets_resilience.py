"""The datasets SDK under pressure and across restarts, against a real daemon: the appender
holds at most ``max_pending_bytes`` of rows however fast its producer, and both the appender
and ``follow`` carry on across a daemon's graceful stop (UNAVAILABLE, reason SHUTTING_DOWN)
or crash, every row exactly once, in order."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from harness.waiting import wait_until

import hoard
from hoard import errors
from hoard.appender import AppenderFullError

JOIN_SECONDS = 120.0  # a bound on a hung thread (the test fails), never a measure


def _restart(daemon: Any, how: str) -> None:
    if how == "graceful":
        daemon.stop()  # SIGTERM: streams end with UNAVAILABLE, reason SHUTTING_DOWN
    else:
        daemon.kill()  # SIGKILL: the connection is simply lost
    daemon.start()  # same data directory, same port


class _Thread(threading.Thread):
    """A thread whose exception is re-raised by ``result``."""

    def __init__(self, target: Any) -> None:
        super().__init__(daemon=True)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self.error = exc

    def result(self) -> None:
        self.join(JOIN_SECONDS)
        assert not self.is_alive(), "the thread did not finish"
        if self.error is not None:
            raise self.error


# -- backpressure ------------------------------------------------------------------------------


def test_a_producer_faster_than_the_stream_is_held_to_the_bound(client: Any) -> None:
    """Appending 32 MiB in memory takes far less than the daemon needs to write it: without
    backpressure the queue would hold most of it. With a 256 KiB bound it never holds more,
    and every row still lands once, in order."""
    ds = client.datasets()
    bound = 256 << 10
    rows = np.arange(65_536 * 64, dtype="<i8").reshape(65_536, 64)  # 32 MiB, 512 B a row
    step = 64  # 32 KiB blocks
    peak = 0
    with ds.appender("bp/fast.h5", "data", grow_dimension=0, max_pending_bytes=bound) as app:
        for i in range(0, len(rows), step):
            app.append(rows[i : i + step])
            # only acks lower it meanwhile: right after an append is the highest it gets
            peak = max(peak, app.pending_bytes)
    assert 0 < peak <= bound
    assert app.acknowledged == app.sent == app.appended == len(rows)
    assert app.pending_bytes == 0
    np.testing.assert_array_equal(ds.get_data("bp/fast.h5", "data"), rows)


def test_a_block_larger_than_the_bound_goes_alone(client: Any) -> None:
    ds = client.datasets()
    small, big = np.zeros((10, 4)), np.ones((1000, 4))  # 320 B, 32 KB
    with ds.appender("bp/big.h5", "data", grow_dimension=0, max_pending_bytes=1024) as app:
        app.append(small)
        app.append(big)  # waits until nothing is held, then is taken alone
        app.append(small)
    assert app.acknowledged == 1020
    np.testing.assert_array_equal(
        ds.get_data("bp/big.h5", "data"), np.concatenate([small, big, small])
    )


def test_appending_while_the_daemon_is_down_waits_then_times_out(hoard_daemon: Any) -> None:
    """A daemon that is down acknowledges nothing: the appender fills to its bound, an
    append with a timeout then says so, and once the daemon is back every row queued before
    lands once (the refused block does not)."""
    rows = np.arange(4000, dtype="<i8").reshape(1000, 4)  # 32 B a row
    bound = 8 << 10  # 256 rows
    with hoard.connect(hoard_daemon.target) as client:
        ds = client.datasets()
        app = ds.appender("bp/down.h5", "data", grow_dimension=0, max_pending_bytes=bound)
        app.append(rows[:100])
        app.flush()
        hoard_daemon.kill()
        queued = 100
        with pytest.raises(AppenderFullError, match="max_pending_bytes") as full:
            while True:
                app.append(rows[queued : queued + 50], timeout=0.5)
                queued += 50
                assert app.pending_bytes <= bound
        assert isinstance(full.value, TimeoutError)
        assert queued == 100 + 50 * (bound // (50 * 32))  # filled exactly to the bound
        hoard_daemon.start()
        app.append(rows[queued:])
        app.close()
        assert app.acknowledged == len(rows)
        np.testing.assert_array_equal(ds.get_data("bp/down.h5", "data"), rows)


# -- across restarts ---------------------------------------------------------------------------


def test_the_appender_resumes_after_a_graceful_stop_mid_stream(hoard_daemon: Any) -> None:
    """The daemon's graceful stop acknowledges what it received, then ends the Append
    stream with SHUTTING_DOWN: the rows acknowledged before, in flight during, and appended
    after the restart all land once, in order."""
    rows = np.arange(20_000, dtype="<i8").reshape(10_000, 2)
    with hoard.connect(hoard_daemon.target) as client:
        ds = client.datasets()
        app = ds.appender("resume/graceful.h5", "data", grow_dimension=0, max_rows=50)
        half = threading.Event()

        def produce() -> None:
            for i in range(0, len(rows), 20):
                if i == len(rows) // 2:
                    half.set()
                app.append(rows[i : i + 20])

        producer = _Thread(produce)
        producer.start()
        wait_until(lambda: app.acknowledged >= 1_000, what="the first acks")
        wait_until(half.is_set, what="half of the rows appended")
        hoard_daemon.stop()
        hoard_daemon.start()
        producer.result()
        app.close()
        assert app.acknowledged == app.sent == len(rows)
        np.testing.assert_array_equal(ds.get_data("resume/graceful.h5", "data"), rows)


@pytest.mark.parametrize("how", ["graceful", "kill"])
def test_follow_sees_every_row_once_across_a_daemon_restart(hoard_daemon: Any, how: str) -> None:
    """A follower mid-stream while a writer appends; the daemon restarts (SHUTTING_DOWN, or
    a lost connection): the follower reconnects from the next row and sees 0..N-1 exactly."""
    n, block = 4_000, 25
    rows = np.arange(n, dtype="<i8")
    path = f"follow/{how}.h5"
    with hoard.connect(hoard_daemon.target) as client:
        ds = client.datasets()
        ds.append_data(path, "data", rows[:block], grow_dimension=0)
        seen: list[np.ndarray] = []
        count = [0]
        resume = threading.Event()

        def follow() -> None:
            stream = ds.follow(path, "data", grow_dimension=0)
            try:
                while count[0] < n:
                    got = next(stream)
                    seen.append(got)
                    count[0] += len(got)
            finally:
                stream.close()

        def write() -> None:
            with ds.appender(path, "data", grow_dimension=0) as app:
                for i in range(block, n, block):
                    if i == n // 2:
                        app.flush()
                        resume.wait(JOIN_SECONDS)  # carries on as the daemon goes down
                    app.append(rows[i : i + block])

        follower, writer = _Thread(follow), _Thread(write)
        follower.start()
        writer.start()
        wait_until(lambda: count[0] >= n // 2, what="the follower at half way")
        resume.set()
        _restart(hoard_daemon, how)
        writer.result()
        follower.result()
        np.testing.assert_array_equal(np.concatenate(seen), rows)


def test_the_view_follows_across_a_graceful_restart(hoard_daemon: Any) -> None:
    with hoard.connect(hoard_daemon.target) as client:
        ds = client.datasets()
        ds.append_data("follow/view.h5", "data", np.zeros((2, 3)), grow_dimension=1)
        stream = ds.open("follow/view.h5")["data"].follow()  # TVB's default: the last axis
        np.testing.assert_array_equal(next(stream), np.zeros((2, 3)))
        _restart(hoard_daemon, "graceful")
        ds.append_data("follow/view.h5", "data", np.ones((2, 1)), grow_dimension=1)
        np.testing.assert_array_equal(next(stream), np.ones((2, 1)))
        stream.close()


def test_follow_gives_up_after_its_resume_timeout(hoard_daemon: Any) -> None:
    with hoard.connect(hoard_daemon.target) as client:
        ds = client.datasets()
        ds.append_data("follow/gone.h5", "data", np.zeros(3), grow_dimension=0)
        stream = ds.follow("follow/gone.h5", "data", resume_timeout=1.0)
        np.testing.assert_array_equal(next(stream), np.zeros(3))
        hoard_daemon.stop()
        with pytest.raises(errors.UnavailableError):
            next(stream)
