"""What the read-side integrity checks cost: engine read paths with the checks vs. without.

    python -m tests.benchmarks.bench_read_checks [--quick] [--repeat 5]

"With" is the code as it is: small objects hashed (SHA-256) against their key on every read,
every frame of a large object checked against the crc32 of its decoded bytes, zstd frame
parameters checked, and whole reads of objects with an older frame table (no crc for
compressed frames) hashed against the key. "Without" swaps in the decoding of before the
checks (zstd's own checksum only; raw small objects hashed, raw frames crc-checked, as before)
and drops the whole-read hash. Both run in one process on the same repository, interleaved,
best of ``--repeat``; data is text-like (zstd level 3 for small objects, level 1 for frames)
and sits in the page cache, so the figures are CPU cost. Never part of the pytest suite.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from hashlib import sha256

import zstandard

from hoard_server.storage.codec import FRAME_SIZE, Codec, FrameTable
from hoard_server.storage.pack import Encoding
from hoard_server.storage.packed import reads as reads_module
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.repository import Repository, StorageSettings

MiB = 1 << 20
_WORDS = [b"energy", b"force", b"atom", b"cell", b"step", b"kpoint", b"spin", b"band"]


def text(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += b"%s %d %.6f\n" % (rng.choice(_WORDS), rng.randrange(10_000), rng.random())
    return bytes(out[:size])


class UncheckedCodec(Codec):
    """Decoding as before the read checks: zstd's own checksum is all a zstd body gets."""

    def decode_small(self, encoding, body, raw_size, digest=None):  # type: ignore[override]
        if encoding == Encoding.RAW:
            return super().decode_small(encoding, body, raw_size, digest)
        dict_id = 0
        if encoding == Encoding.ZSTD_DICT:
            dict_id = zstandard.get_frame_parameters(body).dict_id
        return self._decompressor(dict_id).decompress(body, max_output_size=raw_size)

    def decode_frame(self, body, is_raw, raw_size, crc, checked=False):  # type: ignore[override]
        if is_raw:
            return super().decode_frame(body, True, raw_size, crc)
        return self._decompressor(0).decompress(body, max_output_size=raw_size)

    def decode_batch(self, items, pool=None):  # type: ignore[override]
        zstd = [i for i, it in enumerate(items) if it[0] == Encoding.ZSTD]
        out = [None if it[0] == Encoding.ZSTD else self.decode_small(*it) for it in items]
        if zstd:
            result = self._decompressor(0).multi_decompress_to_buffer(
                [items[i][1] for i in zstd], threads=-1
            )
            for i, seg in zip(zstd, result, strict=True):
                out[i] = bytes(seg)
        return out


@contextmanager
def unchecked(repo: Repository) -> Iterator[None]:
    cls, hashed = repo.codec.__class__, reads_module._hashed
    repo.codec.__class__ = UncheckedCodec
    reads_module._hashed = lambda chunks, digest: chunks  # type: ignore[assignment]
    try:
        yield
    finally:
        repo.codec.__class__ = cls
        reads_module._hashed = hashed


def make_legacy(repo: Repository, key: str) -> None:
    """Rewrite an object's frame table as written before frames carried decoded crcs."""
    loc = repo.index.get_many([bytes.fromhex(key)])[0]
    end = loc.body_offset + loc.body_size
    with open(repo.pack_path(loc.pack_id), "r+b") as fh:
        fh.seek(end - 4)
        n = FrameTable.trailer_length(fh.read(4), loc.body_size)
        fh.seek(end - 4 - n)
        t = FrameTable.decode(fh.read(n))
        crc = tuple(c if r else 0 for c, r in zip(t.crc, t.raw, strict=True))
        legacy = FrameTable(t.frame_size, t.stored, t.raw, crc).encode()
        fh.seek(end - len(legacy))
        fh.write(legacy)
    repo.forget_pack(loc.pack_id)


def rate(fn: Callable[[], int]) -> float:
    """Bytes per second of ``fn``, which returns the number of bytes it produced."""
    t = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the data")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    scale = 4 if args.quick else 1
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        registry = RepositoryRegistry(tmp, StorageSettings(train_dictionary=False))
        repo = registry.create("bench")[0]
        small_1k = [text(rng, 1024) for _ in range(20_000 // scale)]
        small_64k = [text(rng, 64 << 10) for _ in range(640 // scale)]
        big = text(rng, (64 // scale) * MiB)
        legacy = text(rng, (64 // scale) * MiB)
        k1 = [k for k, _ in repo.put_many(small_1k)]
        k64 = [k for k, _ in repo.put_many(small_64k)]
        ((kbig, _),) = repo.put_many([big])
        ((kleg, _),) = repo.put_many([legacy])
        make_legacy(repo, kleg)
        ranges = [rng.randrange(len(big) - 4096) for _ in range(400 // scale)]

        def each(keys: list[str]) -> Callable[[], int]:
            return lambda: sum(len(b"".join(repo.read(k)[1])) for k in keys)

        def many(keys: list[str]) -> Callable[[], int]:
            return lambda: sum(len(c) for _, _, c in repo.read_many(keys))  # type: ignore[arg-type]

        def whole(key: str) -> Callable[[], int]:
            return lambda: sum(len(c) for c in repo.read(key)[1])

        def ranged() -> int:
            return sum(len(b"".join(repo.read(kbig, o, 4096)[1])) for o in ranges)

        codec = repo.codec
        z1 = [(codec.encode_small(o)[1], len(o), sha256(o).digest()) for o in small_1k[:2000]]
        z64 = [(codec.encode_small(o)[1], len(o), sha256(o).digest()) for o in small_64k[:160]]
        frames = [
            codec.encode_frame(big[i : i + FRAME_SIZE]) for i in range(0, len(big) // 2, FRAME_SIZE)
        ]
        batch = [(Encoding.ZSTD, b, n, d) for b, n, d in z1]

        def small(objs: list[tuple[bytes, int, bytes]]) -> Callable[[], int]:
            return lambda: sum(
                len(repo.codec.decode_small(Encoding.ZSTD, b, n, d)) for b, n, d in objs
            )

        def frame_decode() -> int:
            dec = repo.codec.decode_frame
            return sum(len(dec(b, r, FRAME_SIZE, c, True)) for r, b, c in frames)

        cases: list[tuple[str, Callable[[], int]]] = [
            ("codec: decode 1 KiB zstd", small(z1)),
            ("codec: decode 64 KiB zstd", small(z64)),
            (
                "codec: decode_batch 2000 x 1 KiB zstd",
                lambda: sum(map(len, repo.codec.decode_batch(batch))),
            ),
            ("codec: decode 256 KiB frames", frame_decode),
            ("Read, 1 KiB zstd objects", each(k1)),
            ("ReadMany, 1 KiB zstd objects", many(k1)),
            ("Read, 64 KiB zstd objects", each(k64)),
            ("ReadMany, 64 KiB zstd objects", many(k64)),
            ("Read whole, 256 KiB frames (crc per frame)", whole(kbig)),
            ("ReadRange 4 KiB, 256 KiB frames", ranged),
            ("Read whole, older table (zstd + key SHA-256)", whole(kleg)),
        ]
        rows = []
        for name, fn in cases:
            fn()  # warm the page cache and the frame-table cache
            with_, without = [], []
            for _ in range(args.repeat):  # interleaved: drift on a shared machine hits both
                with_.append(rate(fn))
                with unchecked(repo):
                    without.append(rate(fn))
            rows.append((name, max(without), max(with_)))
        registry.close()
    print("| read path | without checks MB/s | with checks MB/s | with / without |")
    print("|---|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a / 1e6:,.0f} | {b / 1e6:,.0f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
