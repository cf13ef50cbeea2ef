"""Damaged packs: every read path answers the original bytes or DATA_LOSS, never other bytes
and never INTERNAL, and verification names every damaged object.

The daemon test stores one copy of an object per damage site, stops the daemon, damages each
copy in one place of the pack format (record header, raw body, zstd frame header, content and
checksum, frame table fields and trailer, the pack magic), restarts once and reads every
copy through every read path of the SDK. The engine tests below pin the checks one by one.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard
from harness import WaitTimeout, wait_until

import hoard
from hoard.errors import DataCorruptionError
from hoard_server.errors import DataLoss
from hoard_server.storage.codec import Codec, FrameTable
from hoard_server.storage.pack import HEADER_SIZE, PACK_MAGIC, RecordHeader, scan_records
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.repository import StorageSettings
from hoard_server.storage.staging import StagedUpload

FRAME = 256 << 10
_ZSTD_FHD = 4  # frame header descriptor: after the 4-byte magic
_FHD_CHECKSUM = 0x04
_FHD_DICT_ID = 0x01


# -- the pack format, parsed independently of the code under test -------------------------


@dataclass
class Record:
    pack: Path
    offset: int  # of the record header in the pack
    body: bytes

    @property
    def b(self) -> int:
        """Pack offset of the body."""
        return self.offset + HEADER_SIZE


@dataclass
class Table:
    start: int  # body offset of the table
    frame_size: int
    count: int
    frame_offsets: list[int]  # body offset of each frame
    stored: list[int]


def parse_table(body: bytes) -> Table:
    (n,) = struct.unpack_from("<I", body, len(body) - 4)
    start = len(body) - 4 - n
    frame_size, count = struct.unpack_from("<II", body, start)
    words = struct.unpack_from(f"<{count}I", body, start + 8)
    stored = [w & 0x7FFF_FFFF for w in words]
    offsets = [sum(stored[:i]) for i in range(count)]
    return Table(start, frame_size & 0x7FFF_FFFF, count, offsets, stored)


def pack_records(data_dir: Path) -> dict[bytes, Record]:
    found = {}
    for pack in sorted(data_dir.glob("repositories/default/packs/*.pack")):
        data = pack.read_bytes()
        for off, header, body in scan_records(lambda o, n, d=data: d[o : o + n], len(data)):
            assert body is not None
            found[header.digest] = Record(pack, off, bytes(body))
    return found


def literal_offset(frame: bytes, content: bytes) -> int:
    """Offset in a zstd frame of a byte of ``content`` stored verbatim (a raw literal)."""
    for i in range(0, len(content) - 16, 13):
        j = frame.find(content[i : i + 16])
        if j >= 0:
            return j + 8
    raise AssertionError("no raw literal found in the frame")


# -- what is stored, and where it is damaged ----------------------------------------------


def repeated(rng: random.Random, unit: int, size: int) -> bytes:
    """Compressible content whose literals zstd stores raw (so one can be changed)."""
    return (rng.randbytes(unit) * (size // unit + 1))[:size]


def text(rng: random.Random, size: int) -> bytes:
    words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon", b"zeta", b"eta", b"theta"]
    return b" ".join(rng.choice(words) + b"%d" % rng.randrange(100) for _ in range(size // 4))[
        :size
    ]


MAKERS: dict[str, Callable[[random.Random], bytes]] = {
    "tiny": lambda r: r.randbytes(40),
    "zstd": lambda r: repeated(r, 500, 3000),
    "raw": lambda r: r.randbytes(20_000),
    "dict": lambda r: text(r, 2000),
    "frames": lambda r: b"".join(repeated(r, 1024, FRAME) for _ in range(3))[: 2 * FRAME + 5000],
    "frames-raw": lambda r: r.randbytes(2 * FRAME + 7000),
    # over the daemon's 8 MiB inline limit: streamed through staging into a pack of its own
    "staged": lambda r: b"".join(repeated(r, 1024, FRAME) for _ in range(33)) + r.randbytes(900),
}
ENCODING = {
    "tiny": "raw",
    "zstd": "zstd",
    "raw": "raw",
    "dict": "zstd-dict",
    "frames": "zstd-frames",
    "frames-raw": "zstd-frames",
    "staged": "zstd-frames",
}

# A site maps (record, content) to the (pack offset, xor mask) pairs to flip.
Flips = list[tuple[int, int]]
Site = Callable[[Record, bytes], Flips]


def _header(field_at: int, mask: int = 0x01) -> Site:
    return lambda rec, _c: [(rec.offset + field_at, mask)]


def _zstd(where: Callable[[Record, bytes, int, int, bytes], Flips], frame: int | None) -> Site:
    """A site inside a zstd frame: the whole body, or frame ``frame`` of a FRAMES body."""

    def site(rec: Record, content: bytes) -> Flips:
        if frame is None:
            start, size, raw = 0, len(rec.body), content
        else:
            t = parse_table(rec.body)
            start, size = t.frame_offsets[frame], t.stored[frame]
            raw = content[frame * t.frame_size : (frame + 1) * t.frame_size]
        return where(rec, rec.body[start : start + size], rec.b + start, size, raw)

    return site


def _two_flips(rec: Record, body: bytes, at: int, _size: int, raw: bytes) -> Flips:
    return [(at + _ZSTD_FHD, _FHD_CHECKSUM), (at + literal_offset(body, raw), 0x01)]


ZSTD_SITES: dict[str, Callable[[Record, bytes, int, int, bytes], Flips]] = {
    "zstd magic": lambda _r, _b, at, _s, _c: [(at + 1, 0x40)],
    "zstd descriptor dict-id flag": lambda _r, _b, at, _s, _c: [(at + _ZSTD_FHD, _FHD_DICT_ID)],
    "zstd descriptor checksum flag": lambda _r, _b, at, _s, _c: [(at + _ZSTD_FHD, _FHD_CHECKSUM)],
    "zstd content size": lambda _r, _b, at, _s, _c: [(at + _ZSTD_FHD + 1, 0x01)],
    "zstd content": lambda _r, _b, at, size, _c: [(at + size // 2, 0x40)],
    "zstd checksum": lambda _r, _b, at, size, _c: [(at + size - 2, 0x01)],
    "checksum flag cleared + literal changed": _two_flips,
}

HEADER_SITES: dict[str, Site] = {
    "record magic": _header(0, 0x40),
    "record encoding": _header(2),
    "record digest": _header(3 + 7),
    "record raw_size": _header(35),
    "record body_size": _header(43),
}


def _table(word: Callable[[Table], int], mask: int = 0x01) -> Site:
    def site(rec: Record, _c: bytes) -> Flips:
        return [(rec.b + word(parse_table(rec.body)), mask)]

    return site


TABLE_SITES: dict[str, Site] = {
    "table frame_size": _table(lambda t: t.start),
    "table count": _table(lambda t: t.start + 4),
    "table stored word": _table(lambda t: t.start + 8 + 4),
    "table stored word raw flag": _table(lambda t: t.start + 8 + 4 + 3, 0x80),
    "table crc word": _table(lambda t: t.start + 8 + 4 * t.count + 4),
    "table check value": _table(lambda t: t.start + 8 + 8 * t.count + 1),
    "trailer length low byte": lambda rec, _c: [(rec.b + len(rec.body) - 4, 0x04)],
    "trailer length high byte": lambda rec, _c: [(rec.b + len(rec.body) - 1, 0x40)],
}


def _body(where: Callable[[int], int]) -> Site:
    return lambda rec, _c: [(rec.b + where(len(rec.body)), 0x40)]


def _raw_frame(rec: Record, _c: bytes) -> Flips:
    t = parse_table(rec.body)
    return [(rec.b + t.frame_offsets[1] + 100, 0x40)]


SITES: dict[str, dict[str, Site]] = {
    "tiny": {"raw body": _body(lambda n: 5), "record digest": HEADER_SITES["record digest"]},
    "raw": {
        "raw body first byte": _body(lambda n: 0),
        "raw body middle": _body(lambda n: n // 2),
        "raw body last byte": _body(lambda n: n - 1),
        "record raw_size": HEADER_SITES["record raw_size"],
    },
    "zstd": {**HEADER_SITES, **{k: _zstd(v, None) for k, v in ZSTD_SITES.items()}},
    "dict": {
        "zstd dictionary id": lambda rec, _c: [(rec.b + _ZSTD_FHD + 1, 0x01)],
        **{k: _zstd(v, None) for k, v in ZSTD_SITES.items() if "literal" not in k},
    },
    "frames": {
        **HEADER_SITES,
        **TABLE_SITES,
        **{k: _zstd(v, 1) for k, v in ZSTD_SITES.items()},
    },
    "frames-raw": {
        "raw frame": _raw_frame,
        "table crc word": TABLE_SITES["table crc word"],
        "table stored word": TABLE_SITES["table stored word"],
        "trailer length high byte": TABLE_SITES["trailer length high byte"],
    },
    "staged": {
        "record digest": HEADER_SITES["record digest"],
        "table crc word": TABLE_SITES["table crc word"],
        "trailer length high byte": TABLE_SITES["trailer length high byte"],
        "zstd content": _zstd(ZSTD_SITES["zstd content"], 1),
        "checksum flag cleared + literal changed": _zstd(_two_flips, 1),
    },
}
RANDOM_FLIPS = 8  # per kind (staged: 2): one random byte of the record (header or body)
NEIGHBOURS = 20  # healthy objects read with a victim in one ReadMany (multi-frame decode)


@dataclass
class Victim:
    kind: str
    site: str
    content: bytes
    key: str = ""
    flips: Flips = field(default_factory=list)


def flip(flips: Flips, pack: Path) -> None:
    with open(pack, "r+b") as fh:
        for at, mask in flips:
            fh.seek(at)
            (b,) = fh.read(1)
            fh.seek(at)
            fh.write(bytes([b ^ mask]))


def read_paths(
    repo, key: str, content: bytes, neighbours: list[str]
) -> dict[str, Callable[[], tuple[bytes, bytes]]]:
    """Each read path of the SDK: name -> call returning (answer, expected)."""
    n = len(content)
    mid = n // 2

    def seek_read() -> tuple[bytes, bytes]:
        with repo.open(key) as fh:
            fh.seek(mid)
            part = fh.read(3000)
            return part + fh.read(), content[mid:]

    def streams() -> tuple[bytes, bytes]:
        got = b""
        for k, fh in repo.iter_object_streams([key]):
            assert k == key
            got = fh.read()
        return got, content

    def many() -> tuple[bytes, bytes]:
        got = repo.get_objects_content([key, *neighbours])
        for k in neighbours:  # healthy neighbours must come back whole
            assert hashlib.sha256(got[k]).hexdigest() == k
        return got[key], content

    return {
        "Read": lambda: (repo.get_object_content(key), content),
        "Read range": lambda: (repo.read(key, 7, 5 << 20), content[7 : 7 + (5 << 20)]),
        "ReadRange start": lambda: (repo.read(key, 0, 100), content[:100]),
        "ReadRange middle": lambda: (repo.read(key, mid, 1000), content[mid : mid + 1000]),
        "open+seek+read": seek_read,
        "ReadMany": lambda: (repo.get_objects_content([key])[key], content),
        "ReadMany with neighbours": many,
        "iter_object_streams": streams,
    }


def _store_dictionary_objects(repo, rng: random.Random) -> bool:
    """Get a dictionary trained (2000 small samples); False if it takes too long."""
    repo.put_objects([text(rng, 1024) for _ in range(2000)])
    try:
        return wait_until(lambda: repo.get_info()["has_dictionary"], timeout=20)
    except WaitTimeout:
        return False


def test_damaged_pack_never_serves_wrong_bytes(daemon_factory, tmp_path):
    rng = random.Random(20240611)
    victims: list[Victim] = []
    for kind, sites in SITES.items():
        victims += [Victim(kind, s, MAKERS[kind](rng)) for s in sites]
        flips = 2 if kind == "staged" else RANDOM_FLIPS
        victims += [Victim(kind, f"random byte #{i}", MAKERS[kind](rng)) for i in range(flips)]
    healthy = {kind: MAKERS[kind](rng) for kind in SITES}
    near = {k: [MAKERS[k](rng) for _ in range(NEIGHBOURS)] for k in ("zstd", "dict", "tiny")}

    d = daemon_factory(tmp_path / "data")
    with hoard.connect(d.target, timeout=30) as client:
        repo = client.repository("default")
        # small objects in one batch per kind, so that a victim and its neighbours share a run
        for kind in ("tiny", "zstd", "raw"):
            batch = [v.content for v in victims if v.kind == kind] + near.get(kind, [])
            repo.put_objects(batch)
        assert _store_dictionary_objects(repo, rng), "no dictionary was trained in time"
        for kind in ("dict", "frames", "frames-raw", "staged"):
            repo.put_objects([v.content for v in victims if v.kind == kind] + near.get(kind, []))
        repo.put_objects(list(healthy.values()))
        for v in victims:
            v.key = hashlib.sha256(v.content).hexdigest()
        stats = repo.stat_many([v.key for v in victims])
        for v, st in zip(victims, stats, strict=True):
            assert st is not None and st.encoding == ENCODING[v.kind], (v.kind, st)
        staged_packs = {
            st.pack_id for v, st in zip(victims, stats, strict=True) if v.kind == "staged"
        }
        assert len(staged_packs) == sum(v.kind == "staged" for v in victims)  # one pack each
    d.stop()

    records = pack_records(tmp_path / "data")
    for v in victims:
        rec = records[bytes.fromhex(v.key)]
        if v.site.startswith("random"):
            at = rec.offset + rng.randrange(HEADER_SIZE + len(rec.body))
            v.flips = [(at, 1 << rng.randrange(8))]
        else:
            v.flips = SITES[v.kind][v.site](rec, v.content)
        flip(v.flips, rec.pack)
    first_pack = sorted(tmp_path.glob("data/repositories/default/packs/*.pack"))[0]
    flip([(2, 0x40)], first_pack)  # the pack magic

    d.start()
    failures: list[str] = []
    with hoard.connect(d.target, timeout=30) as client:
        repo = client.repository("default")
        neighbour_keys = {k: [hashlib.sha256(c).hexdigest() for c in cs] for k, cs in near.items()}
        for v in victims:
            paths = read_paths(repo, v.key, v.content, neighbour_keys.get(v.kind, []))
            for path, call in paths.items():
                try:
                    got, want = call()
                except DataCorruptionError:
                    continue
                except Exception as exc:
                    failures.append(f"{v.kind} / {v.site} / {path}: {type(exc).__name__}: {exc}")
                    continue
                if got != want:
                    failures.append(f"{v.kind} / {v.site} / {path}: returned other bytes")
        for kind, content in healthy.items():
            key = hashlib.sha256(content).hexdigest()
            for path, call in read_paths(repo, key, content, []).items():
                got, want = call()
                assert got == want, f"healthy {kind} / {path}"
        try:
            problems = repo.verify()["problems"]
        except Exception as exc:
            failures.append(f"verify fails: {type(exc).__name__}: {exc}")
            problems = []
    named = {p["key"] for p in problems}
    for v in victims:
        if v.key not in named:
            failures.append(f"{v.kind} / {v.site}: verify does not name it")
    if named - {v.key for v in victims} != {""}:  # only the victims, and the pack by its id
        failures.append(f"verify names other keys or not the pack: {named}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)


# -- engine-level checks ------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path):
    reg = RepositoryRegistry(str(tmp_path / "data"), StorageSettings(train_dictionary=False))
    yield reg.create("r")[0]
    reg.close()


def _frames_object(seed: int) -> bytes:
    return b"".join(repeated(random.Random(seed + i), 1024, FRAME) for i in range(3))[:-999]


def _record(repo, key: str) -> tuple[str, int, bytes]:
    loc = repo.index.get_many([bytes.fromhex(key)])[0]
    path = repo.pack_path(loc.pack_id)
    with open(path, "rb") as fh:
        fh.seek(loc.body_offset)
        return path, loc.body_offset, fh.read(loc.body_size)


def _read(repo, key: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join(repo.read(key, offset, length)[1])


def test_frame_table_inconsistent_with_record_is_data_loss():
    table = FrameTable(FRAME, (100, 200, 50), (False, False, True), (1, 2, 3))
    body_size = 350 + len(table.encode())
    raw_size = 2 * FRAME + 50
    assert table.check_fits(raw_size, body_size) is table
    for raw, body in [
        (raw_size + FRAME, body_size),  # count does not match raw_size
        (raw_size - 100, body_size),  # ... nor does the raw last frame
        (raw_size, body_size + 1),  # frames + table do not add up to the body
        (raw_size, body_size - 1),
    ]:
        with pytest.raises(DataLoss):
            table.check_fits(raw, body)
    for bad in [
        FrameTable(0, (100,), (False,), (0,)),
        FrameTable(FRAME, (0, 200, 50), (False, False, True), (0, 0, 0)),
    ]:
        with pytest.raises(DataLoss):
            bad.check_fits(raw_size, 250 + len(bad.encode()))
    with pytest.raises(DataLoss):
        FrameTable.trailer_length(struct.pack("<I", 1000), 500)
    with pytest.raises(DataLoss):  # table bytes longer than their count says
        FrameTable.decode(table.encode()[:-4] + b"\0")


def test_impossible_pack_reads_are_data_loss(engine):
    engine.put_many([b"x" * 100])
    for offset, length in [(-4, 4), (8, -1)]:
        with pytest.raises(DataLoss):
            engine.reader.read(1, offset, length)


@pytest.mark.parametrize("where", ["trailer high byte", "trailer low byte", "frame_size"])
def test_damaged_frame_table_is_data_loss_on_every_path(engine, where):
    content = _frames_object(1)
    ((key, _),) = engine.put_many([content])
    ((ok_key, _),) = engine.put_many([b"healthy " * 100])
    path, start, body = _record(engine, key)
    at = {"trailer high byte": len(body) - 1, "trailer low byte": len(body) - 4}.get(
        where, parse_table(body).start
    )
    flip([(start + at, 0x40)], Path(path))
    with pytest.raises(DataLoss):
        _read(engine, key)
    with pytest.raises(DataLoss):
        _read(engine, key, FRAME + 10, 100)
    with pytest.raises(DataLoss):
        list(engine.read_many([key]))
    problems = [p for s in engine.verify() for p in s.problems]
    assert [p.key for p in problems] == [key]
    assert _read(engine, ok_key) == b"healthy " * 100


def test_verify_reports_any_failure_and_carries_on(engine, monkeypatch):
    from hoard_server.maintenance import verifier as verify

    keys = [k for k, _ in engine.put_many([b"object %d " % i * 50 for i in range(5)])]
    real = verify.Verifier._check_at

    def failing(self, digest, loc):
        if digest.hex() == keys[2]:
            raise ValueError("unexpected")
        return real(self, digest, loc)

    monkeypatch.setattr(verify.Verifier, "_check_at", failing)
    last = list(engine.verify())[-1]
    assert [p.key for p in last.problems] == [keys[2]]
    assert "ValueError" in last.problems[0].problem
    assert last.checked_objects == 5


@pytest.mark.parametrize("kind", ["zstd", "frames"])
def test_cleared_checksum_flag_and_changed_literal(engine, kind):
    """The issue's two flips: without the frame's checksum, a changed literal decodes."""
    content = _frames_object(2) if kind == "frames" else repeated(random.Random(3), 500, 3000)
    ((key, _),) = engine.put_many([content])
    path, start, body = _record(engine, key)
    frame_at, raw = 0, content
    if kind == "frames":
        t = parse_table(body)
        frame_at, raw = t.frame_offsets[1], content[FRAME : 2 * FRAME]
    at = start + frame_at
    flip(
        [(at + _ZSTD_FHD, _FHD_CHECKSUM), (at + literal_offset(body[frame_at:], raw), 1)],
        Path(path),
    )
    for call in [
        lambda: _read(engine, key),
        lambda: _read(engine, key, FRAME if kind == "frames" else 0, 2000),
        lambda: list(engine.read_many([key])),
    ]:
        with pytest.raises(DataLoss):
            call()


def test_small_objects_are_checked_against_their_key_in_batches(engine):
    """ReadMany decodes runs of zstd bodies in one call; each is still hashed."""
    rng = random.Random(4)
    objs = [repeated(rng, 300, 2000) for _ in range(20)]
    keys = [k for k, _ in engine.put_many(objs)]
    path, start, body = _record(engine, keys[7])
    lit = literal_offset(body, objs[7])
    flip([(start + _ZSTD_FHD, _FHD_CHECKSUM), (start + lit, 1)], Path(path))
    with pytest.raises(DataLoss):
        list(engine.read_many(keys))
    got = {k: c for k, _, c in engine.read_many(keys[:7] + keys[8:])}
    assert all(hashlib.sha256(c).hexdigest() == k for k, c in got.items())


def _legacy(table: FrameTable) -> FrameTable:
    """The table as written before frames carried a check value of their decoded bytes."""
    return FrameTable(
        table.frame_size,
        table.stored,
        table.raw,
        tuple(c if r else 0 for c, r in zip(table.crc, table.raw, strict=True)),
    )


def test_new_tables_check_every_frame_and_legacy_tables_still_read(engine, tmp_path):
    content = _frames_object(5) + random.Random(6).randbytes(FRAME)  # compressed and raw frames
    ((key, _),) = engine.put_many([content])
    path, start, body = _record(engine, key)
    n = FrameTable.trailer_length(body[-4:], len(body))
    table = FrameTable.decode(body[-4 - n : -4])
    assert table.checks_all and not all(table.raw) and any(table.raw)
    for i, r in enumerate(table.raw):
        frame = content[i * FRAME : (i + 1) * FRAME]
        assert table.crc[i] == zlib.crc32(frame), f"frame {i} (raw={r})"

    # rewrite it as a legacy table (same length): still served
    legacy = _legacy(table).encode()
    assert len(legacy) == n + 4 and not FrameTable.decode(legacy[:-4]).checks_all
    with open(path, "r+b") as fh:
        fh.seek(start + len(body) - len(legacy))
        fh.write(legacy)
    engine.forget_pack(engine.index.get_many([bytes.fromhex(key)])[0].pack_id)
    assert _read(engine, key) == content
    assert _read(engine, key, FRAME - 5, 10) == content[FRAME - 5 : FRAME + 5]
    # ... but a legacy compressed frame without its zstd checksum is refused
    flip([(start + parse_table(body).frame_offsets[1] + _ZSTD_FHD, _FHD_CHECKSUM)], Path(path))
    with pytest.raises(DataLoss):
        _read(engine, key, FRAME + 5, 10)

    # streamed uploads write the new table too
    codec = Codec(frame_size=FRAME)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        staged = StagedUpload(str(tmp_path), codec, pool)
        staged.write(content)
        rec = staged.finish()
    data = Path(rec.path).read_bytes()
    header = RecordHeader.decode(data[len(PACK_MAGIC) : len(PACK_MAGIC) + HEADER_SIZE])
    sbody = data[len(PACK_MAGIC) + HEADER_SIZE :]
    assert header.body_size == len(sbody)
    sn = FrameTable.trailer_length(sbody[-4:], len(sbody))
    stable = FrameTable.decode(sbody[-4 - sn : -4]).check_fits(len(content), len(sbody))
    assert stable.checks_all
    frames = [content[i : i + FRAME] for i in range(0, len(content), FRAME)]
    assert stable.crc == tuple(zlib.crc32(f) for f in frames)


def test_zstd_frame_parameters_guard():
    """A compressed frame that claims another size or lacks its checksum never decodes."""
    codec = Codec()
    data = repeated(random.Random(7), 400, 4000)
    body = zstandard.ZstdCompressor(write_checksum=False).compress(data)
    with pytest.raises(DataLoss):
        codec.decode_frame(body, False, len(data), 0, checked=False)
    good = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    assert codec.decode_frame(good, False, len(data), 0, checked=False) == data
    with pytest.raises(DataLoss):
        codec.decode_frame(good, False, len(data) - 1, 0, checked=False)


def test_whole_reads_of_legacy_tables_are_hashed_against_the_key(engine, monkeypatch):
    """A legacy compressed frame is checked by zstd alone: whole reads add the key."""
    content = _frames_object(8)
    ((key, _),) = engine.put_many([content])
    path, start, body = _record(engine, key)
    n = FrameTable.trailer_length(body[-4:], len(body))
    legacy = _legacy(FrameTable.decode(body[-4 - n : -4])).encode()
    with open(path, "r+b") as fh:
        fh.seek(start + len(body) - len(legacy))
        fh.write(legacy)
    real = Codec.decode_frame

    def lying(self, frame, is_raw, raw_size, crc, checked=False):  # zstd fooled, somehow
        out = real(self, frame, is_raw, raw_size, crc, checked)
        return out[:-1] + bytes([out[-1] ^ 1]) if raw_size < FRAME else out

    monkeypatch.setattr(Codec, "decode_frame", lying)
    with pytest.raises(DataLoss):
        _read(engine, key)
    with pytest.raises(DataLoss):
        list(engine.read_many([key]))
