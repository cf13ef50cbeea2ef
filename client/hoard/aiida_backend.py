"""``hoard.aiida.HoardRepositoryBackend``: a real ``AbstractRepositoryBackend`` backed by a
hoard repository. Import it from :mod:`hoard.aiida`, which loads this module (and aiida-core)
on first use.

Every method delegates to :class:`hoard.Repository`, which already follows AiiDA's contract;
this class only supplies the ABC. ``tests/test_aiida.py`` checks it against aiida-core's ABC.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

try:
    from aiida.repository.backend.abstract import AbstractRepositoryBackend
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("hoard.aiida needs aiida-core: pip install 'hoard[aiida]'") from exc

from hoard.aiida import Repository
from hoard.client import Client, connect

__all__ = ["HoardRepositoryBackend"]


class HoardRepositoryBackend(AbstractRepositoryBackend):
    """AiiDA repository backend storing objects in a hoard daemon's repository.

    Give either an existing :class:`hoard.Repository`, or a ``target`` (default
    ``$HOARD_TARGET`` or 127.0.0.1:50051) and a ``repository`` name.
    """

    def __init__(
        self,
        repository: Repository | str = "default",
        *,
        target: str | None = None,
        client: Client | None = None,
    ) -> None:
        if isinstance(repository, Repository):
            self._repository = repository
        else:
            self._repository = (client or connect(target)).repository(repository)

    def __str__(self) -> str:
        return f"HoardRepositoryBackend: {self._repository}"

    @property
    def repository(self) -> Repository:
        """The hoard repository this backend delegates to."""
        return self._repository

    @property
    def uuid(self) -> str | None:
        return self._repository.uuid

    @property
    def key_format(self) -> str | None:
        return self._repository.key_format

    def initialise(self, **kwargs: Any) -> None:
        self._repository.initialise(**kwargs)

    @property
    def is_initialised(self) -> bool:
        return self._repository.is_initialised

    def erase(self) -> None:
        self._repository.erase()

    def _put_object_from_filelike(self, handle: BinaryIO) -> str:
        return self._repository.put_object_from_filelike(handle)

    def has_objects(self, keys: list[str]) -> list[bool]:
        return self._repository.has_objects(keys)

    def has_object(self, key: str) -> bool:
        return self._repository.has_object(key)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        with self._repository.open(key) as handle:
            yield handle

    def get_object_content(self, key: str) -> bytes:
        return self._repository.get_object_content(key)

    def get_object_hash(self, key: str) -> str:
        return self._repository.get_object_hash(key)

    def iter_object_streams(self, keys: Iterable[str]) -> Iterator[tuple[str, BinaryIO]]:
        yield from self._repository.iter_object_streams(keys)

    def delete_objects(self, keys: list[str]) -> None:
        self._repository.delete_objects(keys)

    def delete_object(self, key: str) -> None:
        self._repository.delete_object(key)

    def list_objects(self) -> Iterable[str]:
        return self._repository.list_objects()

    def get_info(self, detailed: bool = False, **kwargs: Any) -> dict:
        return self._repository.get_info(detailed=detailed, **kwargs)

    def maintain(self, dry_run: bool = False, live: bool = True, **kwargs: Any) -> None:
        self._repository.maintain(dry_run=dry_run, live=live, **kwargs)
