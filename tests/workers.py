"""Client processes for the multi-process and crash tests: ``python tests/workers.py MODE ...``.

Each worker logs a key to its ack file (fsynced) only after the daemon acknowledged it, so
the test knows exactly which writes it must find after a crash.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import sys
import time


def content(seed: int, size: int) -> bytes:
    """Deterministic, partly compressible content for a seed."""
    rng = random.Random(seed)
    head = (f"object {seed} " * (size // 20 + 1)).encode()[: size // 2]
    return head + rng.randbytes(size - len(head))


def pool_sizes(n: int) -> list[int]:
    rng = random.Random(12345)
    return [rng.choice([0, 1, 100, 1000, 5000, 70_000]) for _ in range(n)]


def overlap(args) -> None:
    """Put a random overlapping subset of a shared pool, batched and streamed."""
    import hoard

    sizes = pool_sizes(args.pool)
    rng = random.Random(args.seed)
    picks = rng.sample(range(args.pool), args.count)
    with hoard.connect(args.target, timeout=60) as client:
        repo = client.repository(args.repository)
        half = len(picks) // 2
        keys = repo.put_objects([content(i, sizes[i]) for i in picks[:half]])
        for i in picks[half:]:
            keys.append(repo.put_object_from_filelike(io.BytesIO(content(i, sizes[i]))))
    for i, key in zip(picks, keys, strict=True):
        assert key == hashlib.sha256(content(i, sizes[i])).hexdigest()
    with open(args.ack, "w") as fh:
        fh.write("\n".join(keys))


def hammer(args) -> None:
    """Put until killed or out of time; log every acknowledged key durably."""
    import hoard

    rng = random.Random(args.seed)
    ack = open(args.ack, "a")  # noqa: SIM115
    deadline = time.monotonic() + args.seconds
    n = 0
    with hoard.connect(args.target, timeout=10, retries=1) as client:
        repo = client.repository(args.repository)
        while time.monotonic() < deadline:
            mode = rng.random()
            try:
                if mode < 0.6:
                    batch = [
                        content(args.seed * 1_000_000 + n + j, rng.randint(0, 3000))
                        for j in range(rng.randint(1, 200))
                    ]
                    n += len(batch)
                    keys = repo.put_objects(batch)
                elif mode < 0.9:
                    n += 1
                    data = content(args.seed * 1_000_000 + n, rng.randint(1, 3 << 20))
                    keys = [repo.put_object_from_filelike(io.BytesIO(data))]
                else:  # past the in-memory limit: the staging path
                    n += 1
                    data = content(args.seed * 1_000_000 + n, rng.randint(9 << 20, 12 << 20))
                    keys = [repo.put_object_from_filelike(io.BytesIO(data))]
            except Exception:
                time.sleep(0.05)
                continue
            ack.write("".join(k + "\n" for k in keys))
            ack.flush()
            os.fsync(ack.fileno())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["overlap", "hammer"])
    p.add_argument("--target", required=True)
    p.add_argument("--repository", default="default")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--ack", required=True)
    p.add_argument("--pool", type=int, default=600)
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    {"overlap": overlap, "hammer": hammer}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
