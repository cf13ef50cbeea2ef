"""The AiiDA face: :class:`Repository`, one repository with AiiDA's
``AbstractRepositoryBackend`` method set and contract, and ``HoardRepositoryBackend``, a real
subclass of that ABC delegating to it (needs aiida-core: ``pip install 'hoard[aiida]'``).

    from hoard.aiida import HoardRepositoryBackend
    backend = HoardRepositoryBackend(target="unix:/run/hoard.sock", repository="my-profile")

On this face any string that is not a key is simply an object that is not stored, as in
disk-objectstore: ``False`` from ``has_objects``, FileNotFoundError from reads and deletes
(such strings are never sent). The extensions (batched puts, ranged reads, stat, paging,
verify, backup) are additive; they delegate to :class:`~hoard.objects.Objects` and
:class:`~hoard.admin.Admin`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from hoard.admin import Admin
from hoard.errors import InvalidArgumentError, ObjectNotFoundError, RepositoryNotFoundError
from hoard.io import READER_BUFFER_BYTES, open_object
from hoard.objects import Objects, ProgressCallback
from hoard.reports import (
    BackupProgress,
    MaintainProgress,
    ObjectStat,
    VerifyProgress,
    VerifyResult,
)
from hoard.requests import is_key

if TYPE_CHECKING:
    from hoard.aiida_backend import HoardRepositoryBackend
    from hoard.client import Client

__all__ = ["HoardRepositoryBackend", "Repository", "is_readable_byte_stream"]

# AiiDA's get_info names for the InfoResponse fields it spells differently.
_AIIDA_INFO_NAMES = {"object_count": "objects", "pack_count": "packs", "packs": "pack_details"}


def is_readable_byte_stream(handle: Any) -> bool:
    """AiiDA's check that ``handle`` yields bytes: a buffered or raw binary stream, or any
    object with ``read`` and a binary ``mode``."""
    if isinstance(handle, io.BufferedIOBase | io.RawIOBase):
        return True
    return hasattr(handle, "read") and "b" in str(getattr(handle, "mode", ""))


def _missing(key: str) -> ObjectNotFoundError:
    return ObjectNotFoundError(f"object with key `{key}` does not exist.", keys=[key])


@contextlib.contextmanager
def _in_aiida_words(key: str) -> Iterator[None]:
    """A missing ``key`` reported as AiiDA words it (a not-found repository passes)."""
    if not is_key(key):
        raise _missing(key)
    try:
        yield
    except ObjectNotFoundError as error:
        if error.keys in ([key], []):
            raise _missing(key) from None
        raise


class Repository:
    """A named repository on a daemon; obtained with ``Client.repository(name)``.

    Making the handle makes no call and the repository need not exist: ``initialise()``
    creates it, ``is_initialised`` tells, and every object call on a missing repository
    raises :class:`~hoard.errors.RepositoryNotFoundError` (a ``FileNotFoundError``).
    ``objects`` and ``admin`` are the typed APIs underneath.
    """

    def __init__(self, client: Client, name: str = "default") -> None:
        self.client = client
        self.name = name
        self.objects = Objects(client.transport, name)
        self.admin = Admin(client.transport, name)

    def __repr__(self) -> str:
        return f"<hoard.Repository {self.name!r} at {self.client.target!r}>"

    def __str__(self) -> str:
        return f"hoard repository {self.name!r} at {self.client.target}"

    # -- the repository itself ----------------------------------------------------------------

    @property
    def uuid(self) -> str | None:
        """The repository's unique id, or None when it has not been initialised."""
        try:
            return self.client.get_repository(self.name).uuid
        except RepositoryNotFoundError:
            return None

    @property
    def key_format(self) -> str:
        """How keys are made: "sha256", the hex digest of the content."""
        return "sha256"

    def initialise(self, **kwargs: Any) -> None:
        """Create the repository if it does not exist yet; safe to call many times. Keyword
        arguments are accepted for AiiDA and ignored: storage settings are the daemon's."""
        self.client.create_repository(self.name)

    @property
    def is_initialised(self) -> bool:
        """Whether the repository exists on the daemon."""
        return self.uuid is not None

    def erase(self) -> None:
        """Delete the repository and every resource it holds; nothing happens if it is absent."""
        with contextlib.suppress(RepositoryNotFoundError):
            self.client.erase_repository(self.name)

    # -- writing ------------------------------------------------------------------------------

    def put_object_from_filelike(
        self, handle: BinaryIO, *, progress: ProgressCallback | None = None
    ) -> str:
        """Store the bytes read from ``handle`` (to its end) and return their key; TypeError
        when it is not a binary stream. Streamed, so objects of any size work; a seekable
        ``handle`` is read again from its start position when the put is retried."""
        if not is_readable_byte_stream(handle):
            raise TypeError(f"handle does not seem to be a byte stream: {type(handle)}.")
        return self.objects.put_stream(handle, progress=progress)

    def put_object_from_file(self, filepath: str | os.PathLike[str]) -> str:
        """Store the content of the file at ``filepath`` and return its key."""
        with open(filepath, "rb") as handle:
            return self.put_object_from_filelike(handle)

    def put_object(self, content: bytes) -> str:
        """Store ``content`` and return its key."""
        return self.put_objects([content])[0]

    def put_objects(self, contents: Iterable[bytes]) -> list[str]:
        """Store many objects and return their keys in input order (batched)."""
        return self.objects.put_many(contents)

    # -- existence and metadata -----------------------------------------------------------

    def has_objects(self, keys: Iterable[str]) -> list[bool]:
        """Whether each key is stored, in the order given (False for a non-key)."""
        keys = list(keys)
        if not all(isinstance(key, str) for key in keys):
            is_key(next(key for key in keys if not isinstance(key, str)))  # TypeError
        try:  # as they are: checking every key here would cost more than the call
            return self.objects.has(keys)
        except InvalidArgumentError as exc:
            if exc.reason != "INVALID_KEY":
                raise
        asked = [key for key in keys if is_key(key)]  # some string is not a key at all
        found = iter(self.objects.has(asked))
        return [next(found) if is_key(key) else False for key in keys]

    def has_object(self, key: str) -> bool:
        """Whether an object with ``key`` is stored."""
        return self.has_objects([key])[0]

    def stat_many(self, keys: Iterable[str]) -> list[ObjectStat | None]:
        """How each object is stored, in the order given; None for a missing key."""
        keys = list(keys)
        stats = iter(self.objects.stat([key for key in keys if is_key(key)]))
        return [next(stats) if is_key(key) else None for key in keys]

    def stat(self, key: str) -> ObjectStat:
        """How the object ``key`` is stored; FileNotFoundError when it is missing."""
        found = self.stat_many([key])[0]
        if found is None:
            raise _missing(key)
        return found

    # -- reading ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[io.BufferedReader]:
        """Open the object ``key`` for reading: a seekable ``io.BufferedReader``.

        Opening reads the object's first few KiB in one call (which also gives its size), so
        a missing object raises FileNotFoundError here, as AiiDA requires. Seeking downloads
        nothing; a read elsewhere is one ranged call of about what it asks for; sequential
        reads are streamed (see :mod:`hoard.io`).
        """
        with _in_aiida_words(key):
            handle = open_object(self.objects, key, prefetch=READER_BUFFER_BYTES)
        try:
            yield handle
        finally:
            handle.close()

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes of the object from ``offset`` (to the end when None), in one round
        trip up to 4 MiB. A range past the end is cut short; an offset past the end raises
        :class:`~hoard.errors.OutOfRangeError` (a ValueError)."""
        with _in_aiida_words(key):
            return self.objects.read(key, offset, length)

    def get_object_content(self, key: str) -> bytes:
        """The whole content of the object ``key``; FileNotFoundError when it is missing."""
        return b"".join(self.iter_chunks(key))

    def get_object_hash(self, key: str) -> str:
        """SHA-256 hex digest of the object's content, computed over the streamed bytes."""
        digest = hashlib.sha256()
        for chunk in self.iter_chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    def iter_chunks(
        self,
        key: str,
        offset: int = 0,
        length: int | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> Iterator[bytes]:
        """Stream the object (or a range of it) as chunks of about 1 MiB, in one Read call.
        A missing object raises FileNotFoundError on the first ``next()``."""
        with _in_aiida_words(key):
            yield from self.objects.iter_chunks(key, offset, length, progress=progress)

    def copy_object_to(
        self,
        key: str,
        handle: BinaryIO,
        offset: int = 0,
        length: int | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Write the object (or a range of it) to a writable binary ``handle``; return bytes
        written. Streams: memory use does not grow with the object."""
        written = 0
        for chunk in self.iter_chunks(key, offset, length, progress=progress):
            handle.write(chunk)
            written += len(chunk)
        return written

    def iter_object_streams(self, keys: Iterable[str]) -> Iterator[tuple[str, BinaryIO]]:
        """Yield ``(key, handle)`` for every key once, in storage order (not request order).

        Each handle is a seekable ``io.BufferedReader``, valid only until the next step: small
        objects arrive inlined, large ones are read lazily. A missing key raises
        FileNotFoundError."""
        for key, size, data in self._read_many(keys):
            handle: BinaryIO
            if data is not None:
                handle = io.BufferedReader(io.BytesIO(data))
            else:
                handle = open_object(self.objects, key, size=size)
            try:
                yield key, handle
            finally:
                handle.close()

    def get_objects_content(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The content of every key, as a dict; FileNotFoundError if any is missing."""
        return {
            key: data if data is not None else self.get_object_content(key)
            for key, _size, data in self._read_many(keys)
        }

    def _read_many(self, keys: Iterable[str]) -> Iterator[tuple[str, int, bytes | None]]:
        keys = list(keys)
        absent = [key for key in dict.fromkeys(keys) if not is_key(key)]
        if absent:
            raise ObjectNotFoundError(f"Missing objects: {absent}", keys=absent)
        return self.objects.read_many(keys)

    # -- listing, deleting -------------------------------------------------------------------

    def list_objects(self) -> Iterator[str]:
        """Every key in the repository, in key order, streamed."""
        return self.objects.list()

    def list_objects_page(self, page_size: int, page_token: str = "") -> tuple[list[str], str]:
        """At most ``page_size`` keys after ``page_token``, and the token of the next page
        ("" when there is nothing more)."""
        return self.objects.list_page(page_size, page_token)

    def delete_objects(self, keys: Iterable[str], *, require_all: bool = True) -> list[str]:
        """Delete the objects with these keys; return the keys deleted.

        With ``require_all`` (AiiDA's contract) a missing key deletes nothing and raises
        FileNotFoundError naming every missing key; without it, missing keys are skipped.
        Space comes back through :meth:`maintain`.
        """
        keys = list(keys)
        absent = [key for key in dict.fromkeys(keys) if not is_key(key)]
        keys = [key for key in keys if is_key(key)]
        if absent and require_all:
            stored = self.objects.has(keys)
            missing = absent + [k for k, found in zip(keys, stored, strict=True) if not found]
            raise ObjectNotFoundError(f"Missing objects: {missing}", keys=missing)
        if not keys:
            return []
        deleted, missing = self.objects.delete(keys, require_all=require_all)
        if require_all and missing:
            raise ObjectNotFoundError(f"Missing objects: {missing}", keys=missing)
        return deleted

    def delete_object(self, key: str) -> None:
        """Delete the object ``key``; FileNotFoundError when it does not exist."""
        try:
            self.delete_objects([key])
        except ObjectNotFoundError:
            raise _missing(key) from None

    # -- housekeeping --------------------------------------------------------------------------

    def get_info(self, detailed: bool = False, **kwargs: Any) -> dict[str, Any]:
        """AiiDA's info dict: the fields of :meth:`Admin.info <hoard.admin.Admin.info>` with
        ``objects`` and ``packs`` for the counts, ``pack_details`` (when ``detailed``) for the
        packs, and None for a maintenance or verification that never ran."""
        info = {
            _AIIDA_INFO_NAMES.get(k, k): v for k, v in self.admin.info(detailed).to_dict().items()
        }
        if not detailed:
            del info["pack_details"]
        for when in ("last_maintenance", "last_verification"):
            info[when] = info[when] or None
        return info

    def maintain(
        self,
        dry_run: bool = False,
        live: bool = True,
        *,
        dead_fraction: float | None = None,
        max_packs: int | None = None,
        progress: Callable[[MaintainProgress], None] | None = None,
        **kwargs: Any,
    ) -> MaintainProgress:
        """Compact packs and reclaim the space of deleted objects; see
        :meth:`Admin.maintain <hoard.admin.Admin.maintain>`.

        The daemon runs everything live, so ``live=True`` is never refused (unlike AiiDA's
        disk-objectstore backend). Other keyword arguments (AiiDA's ``compress``,
        ``do_repack``, ``clean_storage``, ``do_vacuum``, ...) are accepted and ignored.
        """
        return self.admin.maintain(
            dry_run, live, dead_fraction=dead_fraction, max_packs=max_packs, progress=progress
        )

    def verify(
        self,
        *,
        pack_id: int | None = None,
        sample: float | None = None,
        progress: Callable[[VerifyProgress], None] | None = None,
    ) -> VerifyResult:
        """Re-read and re-hash stored objects; see
        :meth:`Admin.verify <hoard.admin.Admin.verify>`."""
        return self.admin.verify(pack_id=pack_id, sample=sample, progress=progress)

    def backup(
        self,
        destination: str | os.PathLike[str],
        *,
        progress: Callable[[BackupProgress], None] | None = None,
    ) -> BackupProgress:
        """Snapshot the repository on the daemon's host; see
        :meth:`Admin.backup <hoard.admin.Admin.backup>`."""
        return self.admin.backup(destination, progress=progress)


def __getattr__(name: str) -> Any:
    # The ABC subclass needs aiida-core, which is slow to import: load it on first use only.
    if name == "HoardRepositoryBackend":
        from hoard.aiida_backend import HoardRepositoryBackend

        return HoardRepositoryBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
