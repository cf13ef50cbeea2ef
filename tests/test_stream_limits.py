"""The idle watchdog's clock of a stream served by several threads (an Append stream reads
its client in one thread while another commits and acknowledges)."""

from __future__ import annotations

import threading
import time

from harness import wait_until

from hoard_server.grpc.limits import StreamLimits


class _Call:
    """What the watchdog needs of a grpc context: cancel() and peer()."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()

    def peer(self) -> str:
        return "test"


def test_a_stream_at_work_for_its_client_is_not_idle_while_another_thread_waits() -> None:
    limits = StreamLimits({"append": (1, "append_streams")}, 0.2, 1 << 20)
    call = _Call()
    try:
        # the reader waits for the client's next message...
        with limits.stream("append", call) as stream, stream.waiting():  # type: ignore[arg-type]
            with stream.working():  # ...while a commit runs, then its ack is sent
                time.sleep(1.0)  # five idle timeouts of work
                assert not call.cancelled.is_set()
                with stream.waiting():
                    pass  # the ack was taken: progress
            assert not call.cancelled.is_set()
            # nothing to commit, nothing unacknowledged, the client silent: idle
            wait_until(call.cancelled.is_set, 30, "the watchdog to cancel the idle stream")
    finally:
        limits.close()


def test_one_wait_ending_does_not_stop_the_clock_of_another() -> None:
    limits = StreamLimits({"append": (1, "append_streams")}, 0, 1 << 20)  # no watchdog thread
    with limits.stream("append", _Call()) as stream:  # type: ignore[arg-type]
        with stream.waiting():
            with stream.waiting():
                pass
            assert stream.waiting_since is not None  # still waiting on the client
            with stream.working():
                assert stream.waiting_since is None
            assert stream.waiting_since is not None
        assert stream.waiting_since is None
    limits.close()
