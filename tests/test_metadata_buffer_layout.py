"""The buffer parser's layout replay reads every header as the key-by-key walk does: headers
of one size that differ in a key, in a text entry's length, in an unknown key or in what
they omit are never read with another header's layout."""

from __future__ import annotations

import random

from buffers import BufferSpec, header_bytes, random_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from hoard.metadata.extractors import buffer as parser

OMITTABLE = ("framedur", "streamno", "auxpara1", "fftlogsh", "adbitres", "startfrq")


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    spec = random_spec(random.Random(draw(st.integers(0, 10_000))), draw(st.integers(1, 99)))
    spec.partnumber = draw(st.sampled_from(["PN-0001", "PN-01", "", "PN-0001-LONGER"]))
    spec.omit = tuple(draw(st.lists(st.sampled_from(OMITTABLE), max_size=3, unique=True)))
    values = spec.header_values()
    if draw(st.booleans()):  # a key this parser does not know, somewhere
        keys = list(values)
        at = draw(st.integers(0, len(keys)))
        values = {**dict(list(values.items())[:at]), "zzunknwn": 7,
                  **dict(list(values.items())[at:])}
    return header_bytes(values, draw(st.sampled_from([2000, 2048])))


@settings(max_examples=300, deadline=None)
@given(st.lists(headers(), min_size=2, max_size=6))
def test_a_replayed_layout_reads_what_the_walk_reads(batch: list[bytes]) -> None:
    for data in batch:
        assert parser.parse_header(data) == parser._walk_header(data)


def test_headers_of_one_layout_are_replayed() -> None:
    first, second = (header_bytes(BufferSpec(process=p).header_values()) for p in (3, 4))
    parser._LAYOUTS.clear()
    parser.parse_header(first)
    layout = parser._LAYOUTS[2000]
    assert layout.read(second) == parser._walk_header(second)[1]
    changed = second.replace(b"proc_cnt", b"proc_cnu")  # the same size, another key
    assert layout.read(changed) is None
    assert parser.parse_header(changed) == parser._walk_header(changed)
