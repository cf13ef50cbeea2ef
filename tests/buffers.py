"""Synthetic Analyzer4D buffer files, written from the format description.

    header = "qassdata" int32(header_size) { key value }* "headsend"   (header_size: 2000)
    file   = header + N x (block header (dbhdsize bytes) + block data (db__size bytes))

Values are little-endian, of the width the key decides; ``sparemem`` is sized so that
``headsend`` ends exactly at ``header_size`` (padding would cost qass warnings). Block
headers carry ``blochead firstsam lastsamp dbfilled ... blockend`` and the data are uint16
samples. Used by the tests and by the benchmark of 20,000 files.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HEADER_SIZE = 2000

I64 = {"parentid", "epoctime", "auxpara5", "skipsamp", "skiptime", "trunsamp", "truntime",
       "baserate", "rngtibeg", "rngtiend", "realsoff"}
U64 = {"m_u_mask", "proj__id", "file__id", "extendid"}
F64 = {"datarate", "tc__real", "fc__real", "frqpband", "framedur", "sd_rsizf"}
U32 = {"proctime", "lmodtime", "frqmasks", "frqinmas", "eheaderf", "partnoid", "streamno"}
VAR = {"asc_part", "asc_desc", "comments", "sparemem"}


def encode_value(key: str, value: Any) -> bytes:
    """One header entry: the 8-character key and its value in the width the key decides."""
    if len(key) != 8:
        raise ValueError(f"header keys have 8 characters, not {key!r}")
    k = key.encode("ascii")
    if key in I64:
        return k + struct.pack("<q", value)
    if key in U64:
        return k + struct.pack("<Q", value)
    if key in F64:
        return k + struct.pack("<d", value)
    if key in U32:
        return k + struct.pack("<I", value)
    if key in VAR:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return k + struct.pack("<I", len(raw)) + raw
    if key == "an4dvers":
        raw = bytes(value)
        if len(raw) != 4:
            raise ValueError("an4dvers is 4 raw bytes")
        return k + raw
    return k + struct.pack("<i", value)


def header_bytes(values: Mapping[str, Any], header_size: int = HEADER_SIZE) -> bytes:
    """A whole header of ``header_size`` bytes with ``values`` in the given order;
    ``sparemem`` fills it up so that ``headsend`` ends at ``header_size``."""
    body = b"qassdata" + struct.pack("<i", header_size)
    body += b"".join(encode_value(k, v) for k, v in values.items() if k != "sparemem")
    spare = header_size - len(body) - 8 - 12  # key + length + filler + headsend
    if spare < 0:
        raise ValueError(f"the values do not fit in a {header_size}-byte header")
    body += encode_value("sparemem", b"\x00" * spare) + b"headsend"
    assert len(body) == header_size
    return body


BLOCK_KEYS_I32 = ("mux_port", "pampgain", "dispgain", "io_ports", "dversion", "sine_frq",
                  "sine_amp", "sd_dimen", "sd_rsize", "sd_dsize")


def block_header(size: int, first_sample: int, last_sample: int, filled: int) -> bytes:
    """A data block header of ``size`` bytes (zero padded before ``blockend``)."""
    out = b"blochead" + struct.pack("<i", 0)
    out += b"firstsam" + struct.pack("<q", first_sample)
    out += b"lastsamp" + struct.pack("<q", last_sample)
    out += b"dbfilled" + struct.pack("<i", filled)
    for key in BLOCK_KEYS_I32:
        out += key.encode() + struct.pack("<i", 0)
    out += b"begin_subdat" + b"end___subdat"
    tail = b"blockend"
    if len(out) + len(tail) > size:
        raise ValueError(f"a block header needs {len(out) + len(tail)} bytes, not {size}")
    return out + b"\x00" * (size - len(out) - len(tail)) + tail


@dataclass
class BufferSpec:
    """The header of one synthetic buffer, in the words of qass's fields; ``extra`` adds
    or overrides raw header keys, ``omit`` drops keys."""

    project_id: int = 1234
    process: int = 1
    channel: int = 1  # 1-based, as qass reports it (dumpchan + 1)
    datamode: int = 2  # DATAMODE_FFT
    datakind: int = 0
    datatype: int = 0  # COMP_RAW
    process_time: int = 1_700_000_000
    epoctime: int = 1_700_000_000_123
    compression_frq: int = 1
    compression_time: int = 1
    frq_bands: int = 512
    frq_per_band: float = 1525.87890625
    spec_duration: float = 81920.0
    db_size: int = 65536
    db_header_size: int = 256
    bytes_per_sample: int = 2
    adc_type: int = 1
    bit_resolution: int = 16
    fft_log_shift: int = 4
    preamp_gain: int = 10
    streamno: int | None = 0
    partnumber: str = "PN-0001"
    analyzer_version: bytes = bytes([0, 1, 5, 2])
    blocks: float = 2.5  # data blocks after the header; a fraction makes the last partial
    extra: dict[str, Any] = field(default_factory=dict)
    omit: tuple[str, ...] = ()

    def header_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "filevers": 5, "datavers": 3, "datamode": self.datamode,
            "datatype": self.datatype, "datakind": self.datakind,
            "frqbands": self.frq_bands, "b_p_samp": self.bytes_per_sample,
            "db__size": self.db_size, "max_ampl": 65535, "samplefr": 50_000_000,
            "fftovers": 0, "fftlogsh": self.fft_log_shift, "dbhdsize": self.db_header_size,
            "comratio": self.compression_time, "frqratio": self.compression_frq,
            "proj__id": self.project_id, "proc_cnt": self.process,
            "dumpchan": self.channel - 1, "proctime": self.process_time,
            "lmodtime": self.process_time + 5, "epoctime": self.epoctime,
            "pampgain": self.preamp_gain, "auxpara1": 1, "auxpara2": 1,
            "startfrq": 0, "frqpband": self.frq_per_band, "framedur": self.spec_duration,
            "adc_type": self.adc_type, "adbitres": self.bit_resolution,
            "an4dvers": self.analyzer_version, "asc_part": self.partnumber,
        }
        if self.streamno is not None:
            values["streamno"] = self.streamno
        values.update(self.extra)
        for key in self.omit:
            values.pop(key, None)
        return values

    def file_name(self, buffer_no: int = 0, project: str = "Synth") -> str:
        """qass's naming: <project>_<nnnnn>p<process>c<channel, 0-based>b<buffer>..."""
        return (f"{project}_{self.project_id % 100000:05d}p{self.process}"
                f"c{self.channel - 1}b{buffer_no:02d}_dump_00.000")


def buffer_bytes(spec: BufferSpec, rng: random.Random | None = None) -> bytes:
    """The whole file: header, full blocks and a partial last block of uint16 samples."""
    out = [header_bytes(spec.header_values())]
    rng = rng or random.Random(spec.process)
    remaining = int(spec.blocks * (spec.db_size + spec.db_header_size))
    first = 0
    while remaining > 0:
        data_len = min(spec.db_size, max(0, remaining - spec.db_header_size))
        samples = data_len // spec.bytes_per_sample
        out.append(block_header(spec.db_header_size, first, first + samples - 1, data_len))
        out.append(rng.randbytes(data_len) if data_len else b"")
        first += samples
        remaining -= spec.db_header_size + spec.db_size
    return b"".join(out)


def write_buffer(path: str | os.PathLike[str], spec: BufferSpec | None = None,
                 **fields: Any) -> str:
    """Write one buffer file (a spec, or a default spec with ``fields`` changed)."""
    spec = spec or BufferSpec(**fields)
    with open(path, "wb") as f:
        f.write(buffer_bytes(spec))
    return os.fspath(path)


def random_spec(rng: random.Random, process: int) -> BufferSpec:
    """A plausible buffer with the fields queries select on spread over small ranges."""
    return BufferSpec(
        project_id=rng.choice([1001, 1002, 1003]),
        process=process,
        channel=rng.randint(1, 4),
        datamode=rng.choice([1, 2]),
        datatype=rng.choice([0, 1, 2, 3]),
        compression_frq=rng.choice([1, 2, 4, 8]),
        compression_time=rng.choice([1, 2, 4, 8, 16]),
        process_time=1_700_000_000 + process * 60,
        epoctime=(1_700_000_000 + process * 60) * 1000 + rng.randint(0, 999),
        preamp_gain=rng.choice([0, 10, 20]),
        frq_bands=rng.choice([128, 256, 512]),
        db_size=rng.choice([512, 1024, 2048]),
        db_header_size=256,
        blocks=rng.choice([0.5, 1, 1.5, 2]),
    )


def write_buffer_tree(root: str | os.PathLike[str], count: int, seed: int = 0,
                      per_directory: int = 1000) -> list[str]:
    """``count`` small buffer files under ``root`` in subdirectories of ``per_directory``
    files, named as qass names them; their paths."""
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        spec = random_spec(rng, process=i + 1)
        directory = os.path.join(os.fspath(root), f"d{i // per_directory:03d}")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, spec.file_name(buffer_no=i % 100))
        with open(path, "wb") as f:
            f.write(buffer_bytes(spec, rng))
        paths.append(path)
    return paths
