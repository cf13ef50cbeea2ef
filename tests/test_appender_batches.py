"""An appender whose writer outruns its stream still sends messages gRPC accepts.

Found by the datasets benchmark: a bulk append queued faster than the stream sent made one
message of everything queued (268 MB), which gRPC refused above its 64 MiB message limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def test_a_backlog_larger_than_a_message_is_sent_in_batches(client: Any) -> None:
    ds = client.datasets("default")
    block = np.arange(1000 * 128, dtype=np.float64).reshape(1000, 128)  # ~1 MiB
    blocks = 96  # ~96 MiB queued: above gRPC's 64 MiB message limit if sent as one
    # a bound above the backlog: max_delay and max_pending_bytes keep it all queued until
    # the flush (the default bound, 64 MiB, would start sending at 64 MiB)
    options = {"max_delay": 60.0, "max_pending_bytes": 128 << 20}
    with ds.appender("backlog.h5", "data", grow_dimension=0, **options) as app:
        for _ in range(blocks):
            app.append(block)
        app.flush()
        assert app.acknowledged == blocks * len(block)
    view = ds.open("backlog.h5")["data"]
    assert view.shape == (blocks * len(block), 128)
    np.testing.assert_array_equal(view[-1000:], block)
    np.testing.assert_array_equal(view[:1000], block)
