"""The one check every client path goes through: nothing resolves outside its repository."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoard_server.errors import InvalidArgument
from hoard_server.storage import sandbox

BAD = [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("../x.h5", "'..'"),
    ("a/../../x.h5", "'..'"),
    ("a/./x.h5", "'.'"),
    ("a//x.h5", "empty segment"),
    ("a/", "empty segment"),
    ("a\\..\\x.h5", "backslash"),
    ("a\x00b.h5", "NUL"),
    ("x" * 256, "longer than 255"),
    ("a/" * 2100 + "x", "longer than 4096"),
]


@pytest.mark.parametrize(("path", "why"), BAD)
def test_malformed_paths_are_refused_with_the_reason(tmp_path, path: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why) as caught:
        sandbox.resolve(str(tmp_path), path, repository="r")
    assert caught.value.reason == "INVALID_PATH"
    assert caught.value.details["repository"] == "r"


def test_the_top_is_allowed_only_when_asked(tmp_path) -> None:
    assert sandbox.resolve(str(tmp_path), "", allow_top=True) == os.path.realpath(tmp_path)
    with pytest.raises(InvalidArgument):
        sandbox.resolve(str(tmp_path), "")


def test_links_leading_out_are_refused_and_links_inside_are_followed(tmp_path) -> None:
    root = tmp_path / "repo"
    (root / "inside").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "out")
    os.symlink(outside / "f.h5", root / "f.h5")
    os.symlink(root / "inside", root / "alias")
    for path in ("out", "out/x.h5", "out/new/deeper.h5", "f.h5"):
        with pytest.raises(InvalidArgument, match="symbolic link"):
            sandbox.resolve(str(root), path)
    assert sandbox.resolve(str(root), "alias/x.h5").startswith(os.path.realpath(root))


segments = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12
)


@given(st.lists(segments, min_size=0, max_size=6))
def test_whatever_is_accepted_lies_inside(tmp_path_factory, parts: list[str]) -> None:
    root = tmp_path_factory.mktemp("root")
    path = "/".join(parts)
    try:
        full = sandbox.resolve(str(root), path, allow_top=True)
    except InvalidArgument:
        return
    real_root = os.path.realpath(root)
    assert os.path.commonpath([os.path.realpath(full), real_root]) == real_root
    assert sandbox.relative(str(root), full) == path
