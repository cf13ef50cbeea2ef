"""What an extractor is, the registry of extractors by name, and one file's extraction.

An extractor reads one kind of metadata from a file and returns typed fields; it raises
``ExtractionError`` (or lets an ``OSError`` through) when the file is not what it reads.
A new one is a small class:

    @register
    class SidecarJson(Extractor):
        name = "sidecar"

        def extract(self, path, st):
            ...
            return {"sample": "x", "temperature": 21.5}

and is then chosen by name: ``create("sidecar")`` or ``Extraction(["stat", "sidecar"])``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from hoard.metadata.records import (
    FileRecord,
    FileSignature,
    Value,
    check_field_name,
    check_value,
)


class ExtractionError(Exception):
    """The file is not what the extractor reads; the message is the reason users see."""


class Extractor:
    """One kind of metadata. Subclasses set ``name`` and implement ``extract``; options
    come as keyword arguments to the constructor."""

    name: ClassVar[str] = ""
    # True when every name and value ``extract`` returns is valid by construction (the
    # built-in extractors); others' fields are checked and a bad one becomes an error.
    trusted: ClassVar[bool] = False

    def extract(self, path: str, st: os.stat_result) -> dict[str, Value]:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The options this extractor was built with (to describe or rebuild it)."""
        return {}


_REGISTRY: dict[str, type[Extractor]] = {}


def register(cls: type[Extractor]) -> type[Extractor]:
    """Register an extractor class under its ``name`` (a class decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"an extractor named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, **options: Any) -> Extractor:
    """The extractor registered as ``name``; KeyError naming the known ones otherwise."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no extractor named {name!r}; known: {', '.join(available())}") from None
    return cls(**options)


ExtractorSpec = str | Extractor | tuple[str, Mapping[str, Any]]


class Extraction:
    """A list of extractors applied to each file, in order, into one record.

    The stat fields come first and are always there. A later extractor's field replaces
    an earlier one's of the same name. When an extractor fails, the record keeps what the
    others found and says which failed and why (``error``); the file is retried only when
    it changes.
    """

    def __init__(self, extractors: Iterable[ExtractorSpec] = ("buffer",)) -> None:
        self.extractors: list[Extractor] = []
        for spec in extractors:
            if isinstance(spec, Extractor):
                self.extractors.append(spec)
            elif isinstance(spec, str):
                self.extractors.append(create(spec))
            else:
                name, options = spec
                self.extractors.append(create(name, **dict(options)))
        self._stat = next((e for e in self.extractors if e.name == "stat"), None) or create(
            "stat"
        )
        self.extractors = [e for e in self.extractors if e.name != "stat"]

    @property
    def names(self) -> list[str]:
        return ["stat", *(e.name for e in self.extractors)]

    def record(self, path: str, machine_id: str = "", st: os.stat_result | None = None
               ) -> FileRecord:
        """The record of the file at ``path``. The signature is taken before the file is
        read, so a file that changes while it is read differs at the next sync.
        ``FileNotFoundError`` (the file is gone) goes to the caller; any other failure to
        read it is the record's ``error``."""
        if st is None:
            st = os.stat(path)
        fields = self._stat.extract(path, st)
        errors: list[str] = []
        for extractor in self.extractors:
            try:
                found = extractor.extract(path, st)
                if not extractor.trusted:
                    found = _checked(found, extractor.name, errors)
                fields.update(found)
            except FileNotFoundError:
                raise  # the file went away: not a parse failure
            except Exception as exc:  # any failure of one file is that file's error
                errors.append(f"{extractor.name}: {_reason(exc)}")
        return FileRecord(
            path=path,
            signature=FileSignature.of(st),
            fields=fields,
            machine_id=machine_id,
            error="; ".join(errors) if errors else None,
        )


def _checked(found: dict[str, Value], name: str, errors: list[str]) -> dict[str, Value]:
    """The fields that can be indexed; each one that cannot is named in ``errors``."""
    out: dict[str, Value] = {}
    for key, value in found.items():
        try:
            out[check_field_name(key)] = check_value(key, value)
        except (ValueError, TypeError) as exc:
            errors.append(f"{name}: {exc}")
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({type(exc).__name__})"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ExtractionError) else f"{type(exc).__name__}: {text}"
