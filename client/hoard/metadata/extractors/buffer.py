"""``buffer``: the header of an Analyzer4D buffer file, in one pass.

The header is ``"qassdata" int32(header_size) { key value }* "headsend"``: 8-character
keys, each followed by a value whose width the key decides (``docs``: the format notes in
the project brief). The parser reads the header once, walks it key by key with
precompiled ``struct`` readers and derives the fields qass's cache stores, under qass's
names, with its enums as numbers (so they sort as numbers) and ``epoctime`` and
``lmodtime`` besides. Keys it does not know are skipped as qass skips them (12 bytes, or
16 when what follows is not a plausible key).
"""

from __future__ import annotations

import hashlib
import math
import operator
import os
import struct
from datetime import UTC, datetime
from typing import Any

from hoard.metadata.extractors.base import ExtractionError, Extractor, register
from hoard.metadata.records import Value

MAGIC = b"qassdata"
END = b"headsend"
READ_AHEAD = 4096  # what qass reads; a larger header_size reads the rest
MAX_HEADER = 1 << 20  # a larger header_size is damage, not a header to read

_I64 = "parentid epoctime auxpara5 skipsamp skiptime trunsamp truntime baserate rngtibeg " \
       "rngtiend realsoff"
_U64 = "m_u_mask proj__id file__id extendid"
_F64 = "datarate tc__real fc__real frqpband framedur sd_rsizf"
_U32 = "proctime lmodtime frqmasks frqinmas eheaderf partnoid streamno"
_VAR = "asc_part asc_desc comments sparemem"
_I32 = "filevers datavers savefrom datamode datatype datakind framsize smplsize frqbands " \
       "db_words avgtimba avgfrqba b_p_samp s_p_fram db__size max_ampl nul_ampl samplert " \
       "samplefr frqshift fftovers fftlogsh fftwinfu dbhdsize comratio frqratio proc_cnt " \
       "proc_rng proc_sub poly_cnt polycyid dumpchan del_lock mux_port pampgain dispgain " \
       "linfgain auxpara0 auxpara1 auxpara2 auxpara3 auxpara4 skiplfrq trunhfrq startfrq " \
       "end__frq frameoff p__flags realfrqc sub_data sd_dimen sd_rsize sd_dsize adc_type " \
       "adbitres interpol dcoffset dispralo disprahi sim_mode"

_VARIABLE = "var"
_RAW4 = "raw4"
# key -> (a struct reader, its width) or a marker for the variable-length and raw values
KEYS: dict[bytes, tuple[struct.Struct | str, int]] = {}
for _names, _fmt in ((_I64, "<q"), (_U64, "<Q"), (_F64, "<d"), (_U32, "<I"), (_I32, "<i")):
    for _name in _names.split():
        _reader = struct.Struct(_fmt)
        KEYS[_name.encode()] = (_reader, _reader.size)
for _name in _VAR.split():
    KEYS[_name.encode()] = (_VARIABLE, 4)
KEYS[b"an4dvers"] = (_RAW4, 4)

_KEY_CHARS = frozenset(b"0123456789_`abcdefghijklmnopqrstuvwxyz")  # qass: 48-57, 95-122
_U32_READER = struct.Struct("<I")
_I32_READER = struct.Struct("<i")

DATAMODE_FFT = 2
DATAMODE_SIGNAL = 1

# The fields, in qass's order, then hoard's additions.
FIELDS = (
    "project_id", "header_size", "process", "channel", "datamode", "datakind", "datatype",
    "process_time", "process_date_time", "db_header_size", "bytes_per_sample", "db_count",
    "full_blocks", "db_size", "db_sample_count", "frq_bands", "db_spec_count",
    "compression_frq", "compression_time", "avg_time", "avg_frq", "spec_duration",
    "frq_start", "frq_end", "frq_per_band", "sample_count", "spec_count", "adc_type",
    "bit_resolution", "fft_log_shift", "streamno", "preamp_gain", "analyzer_version",
    "partnumber", "header_hash", "epoctime", "lmodtime", "max_ampl",
)


class _Layout:
    """Where a header's entries were: files of one instrument setup share it, so a header
    with the same size, the same keys at the same places and the same lengths of its text
    entries is read with one ``struct`` call instead of a walk key by key. Only headers
    whose walk met no unknown key get a layout (skipping one depends on the bytes after
    it); the walk stays the definition, the layout a replay of it."""

    def __init__(self, steps: list[tuple[bytes, object, int]], end: int) -> None:
        fmt = ["<"]
        checks: list[int] = []  # positions (in the unpacked tuple) of keys and lengths
        expected: list[object] = []
        values: list[int] = []
        names: list[str] = []
        pos = 0
        for key, reader, length in steps:
            fmt.append("8s")
            checks.append(pos)
            expected.append(key)
            pos += 1
            if reader is None:  # the end marker
                continue
            names.append(key.decode())
            if reader is _VARIABLE:
                fmt.append(f"I{length}s")
                checks.append(pos)
                expected.append(length)
                values.append(pos + 1)
                pos += 2
            elif reader is _RAW4:
                fmt.append("4s")
                values.append(pos)
                pos += 1
            else:
                assert isinstance(reader, struct.Struct)
                fmt.append(reader.format.lstrip("<"))
                values.append(pos)
                pos += 1
        self.end = end
        self.reader = struct.Struct("".join(fmt))
        self.check = operator.itemgetter(*checks)
        self.expected = tuple(expected) if len(expected) > 1 else expected[0]
        self.pick = operator.itemgetter(*values) if len(values) > 1 else (
            lambda t: (t[values[0]],))
        self.names = names

    def read(self, data: bytes) -> dict[str, Any] | None:
        """The header's raw values when it has this layout, else None."""
        if len(data) < 12 + self.reader.size:
            return None
        t = self.reader.unpack_from(data, 12)
        if self.check(t) != self.expected:
            return None
        picked = self.pick(t)
        return dict(zip(self.names, picked if isinstance(picked, tuple) else (picked,),
                        strict=True))


_LAYOUTS: dict[int, _Layout] = {}  # header_size -> the last layout seen with it


def parse_header(data: bytes) -> tuple[int, dict[str, Any]]:
    """(header_size, {key: raw value}) of a buffer header; ExtractionError when ``data``
    is not one. ``data`` must hold at least ``header_size`` bytes when it is whole."""
    if data[:8] == MAGIC and len(data) >= 12:
        layout = _LAYOUTS.get(_I32_READER.unpack_from(data, 8)[0])
        if layout is not None and len(data) >= layout.end:
            found = layout.read(data)
            if found is not None:
                return layout.end, found
    return _walk_header(data)


def _walk_header(data: bytes) -> tuple[int, dict[str, Any]]:
    """``parse_header`` key by key (the definition); remembers the layout it found."""
    if data[:8] != MAGIC:
        raise ExtractionError("not an Analyzer4D buffer (no 'qassdata' magic)")
    if len(data) < 12:
        raise ExtractionError("the header is cut short")
    (header_size,) = _I32_READER.unpack_from(data, 8)
    if not 12 <= header_size <= MAX_HEADER:
        raise ExtractionError(f"header_size {header_size} is implausible")
    if len(data) < header_size:
        raise ExtractionError(f"the file ends inside its header ({len(data)} of "
                              f"{header_size} bytes)")
    end = header_size
    meta: dict[str, Any] = {}
    idx = 12
    keys = KEYS
    steps: list[tuple[bytes, object, int]] | None = []  # None once an unknown key is met
    while idx < end:
        key = data[idx : idx + 8]
        spec = keys.get(key)
        if spec is None:
            if key == END:
                if steps is not None:
                    steps.append((key, None, 0))
                break
            # unknown key: skip it as qass does (8 bytes of key, 4 or 8 of value)
            steps = None
            idx += 12
            if not _KEY_CHARS.issuperset(data[idx : idx + 8]):
                idx += 4
            continue
        reader, width = spec
        start = idx + 8
        idx = start + width
        if idx > end:
            raise ExtractionError(f"the header ends inside the value of {key.decode()!r}")
        length = 0
        if reader is _VARIABLE:
            (length,) = _U32_READER.unpack_from(data, start)
            value: Any = data[idx : idx + length]
            idx += length
        elif reader is _RAW4:
            value = data[start:idx]
        else:
            assert isinstance(reader, struct.Struct)
            (value,) = reader.unpack_from(data, start)
        meta[key.decode()] = value
        if steps is not None:
            steps.append((key, reader, length))
    if steps and idx <= end and len(_LAYOUTS) < 64:
        layout = _Layout(steps, header_size)
        if layout.reader.size + 12 <= header_size:
            _LAYOUTS[header_size] = layout
    return header_size, meta


def _number(value: float) -> float | None:
    """A header double as a field: NaN (damage; it has no order) is null."""
    return None if value != value else float(value)


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return raw.decode("utf-8", errors="replace").replace("\x00", "")


def buffer_fields(data: bytes, file_size: int) -> dict[str, Value]:
    """The fields of a buffer whose first bytes (at least its header) are ``data`` and
    whose size is ``file_size``."""
    header_size, m = parse_header(data)
    for need in ("dbhdsize", "db__size", "frqpband"):
        if need not in m:
            raise ExtractionError(f"the header has no {need!r}")
    frq_bands = None
    for key in ("frqbands", "s_p_fram", "framsize"):
        if key in m:
            frq_bands = m[key]
    if not frq_bands:
        raise ExtractionError("the header gives no frequency bands (frqbands, s_p_fram, framsize)")
    db_header_size = m["dbhdsize"]
    db_size = m["db__size"]
    bytes_per_sample = m.get("b_p_samp", 2)
    if db_size + db_header_size <= 0 or bytes_per_sample <= 0:
        raise ExtractionError("the header gives blocks of no size")
    frq_per_band = _number(m["frqpband"])
    datamode = m.get("datamode")
    spec_duration = m.get("framedur")
    if spec_duration is None:
        samplefr, comratio = m.get("samplefr"), m.get("comratio")
        if datamode == DATAMODE_FFT and samplefr and comratio is not None and "fftovers" in m:
            spec_duration = 1e9 / ((samplefr * (1 << m["fftovers"])) / 1024) * comratio
        elif datamode == DATAMODE_SIGNAL and samplefr and comratio is not None:
            spec_duration = float(int(1e9 / samplefr * comratio))
    payload = file_size - header_size
    block = db_size + db_header_size
    db_count = math.ceil(payload / block)
    sample_count = int((payload - db_count * db_header_size) / bytes_per_sample)
    db_sample_count = db_size // bytes_per_sample
    proctime = m.get("proctime")
    version = m.get("an4dvers")
    hexed = version.hex() if version is not None else None
    dumpchan = m.get("dumpchan")
    return {
        "project_id": m.get("proj__id"),
        "header_size": header_size,
        "process": m.get("proc_cnt"),
        "channel": dumpchan + 1 if dumpchan is not None else None,
        "datamode": datamode,
        "datakind": m.get("datakind"),
        "datatype": m.get("datatype", -1),
        "process_time": proctime if proctime is not None else 0,
        "process_date_time": (
            datetime.fromtimestamp(proctime, UTC).strftime("%Y-%m-%d %H:%M:%S")
            if proctime is not None else None
        ),
        "db_header_size": db_header_size,
        "bytes_per_sample": bytes_per_sample,
        "db_count": db_count,
        "full_blocks": payload // block,
        "db_size": db_size,
        "db_sample_count": db_sample_count,
        "frq_bands": frq_bands,
        "db_spec_count": int(db_sample_count / frq_bands),
        "compression_frq": m.get("frqratio"),
        "compression_time": m.get("comratio"),
        "avg_time": m.get("auxpara1", 1),
        "avg_frq": m.get("auxpara2", 1),
        "spec_duration": _number(float(spec_duration)) if spec_duration is not None else None,
        "frq_start": m.get("startfrq", 0),
        "frq_end": (m["end__frq"] if "end__frq" in m
                    else _number(frq_bands * frq_per_band) if frq_per_band is not None else None),
        "frq_per_band": frq_per_band,
        "sample_count": sample_count,
        "spec_count": int(sample_count / frq_bands),
        "adc_type": m.get("adc_type"),
        "bit_resolution": m.get("adbitres"),
        "fft_log_shift": m.get("fftlogsh"),
        "streamno": m.get("streamno"),
        "preamp_gain": m.get("pampgain"),
        # qass shows the raw bytes' hex pairs in reverse order: 00 01 05 02 -> 02.05.01.00
        "analyzer_version": (
            ".".join(hexed[i : i + 2] for i in range(len(hexed) - 2, -1, -2))
            if hexed is not None else None
        ),
        "partnumber": _text(m.get("asc_part")) or "",
        "header_hash": hashlib.sha256(data[:header_size]).hexdigest(),
        "epoctime": m.get("epoctime"),
        "lmodtime": m.get("lmodtime"),
        "max_ampl": m.get("max_ampl"),
    }


@register
class BufferExtractor(Extractor):
    """The header fields of an Analyzer4D buffer file (see ``FIELDS``); a field the header
    lacks is null, so every buffer record has the same fields."""

    name = "buffer"
    trusted = True

    def extract(self, path: str, st: os.stat_result) -> dict[str, Value]:
        with open(path, "rb", buffering=0) as f:
            data = f.read(READ_AHEAD)
            if len(data) >= 12 and data[:8] == MAGIC:
                (header_size,) = _I32_READER.unpack_from(data, 8)
                if READ_AHEAD < header_size <= MAX_HEADER and len(data) == READ_AHEAD:
                    data += f.read(header_size - len(data))
        return buffer_fields(data, st.st_size)
