"""One repository's objects, with AiiDA's ``AbstractRepositoryBackend`` method set.

Keys are the SHA-256 hex digest of the content (``key_format == "sha256"``), so
``get_object_hash(key) == key`` and every put is idempotent. Method names, arguments,
return values and exceptions follow AiiDA's contract; the extensions (batched puts, ranged
reads, stat, paging) are additive.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import ipaddress
import os
import re
import stat as stat_module
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import grpc

from hoard.errors import (
    InvalidArgumentError,
    ObjectNotFoundError,
    RepositoryNotFoundError,
    UnavailableError,
    from_rpc_error,
    translate_rpc_errors,
)
from hoard.v1 import objects_pb2 as pb
from hoard.v1 import repositories_pb2 as repo_pb

if TYPE_CHECKING:
    from hoard.client import Client

__all__ = [
    "ObjectStat",
    "Repository",
    "backup_destination",
    "is_local_target",
    "is_readable_byte_stream",
]

CHUNK_BYTES = 1 << 20  # Put/Read chunk: the daemon's sweet spot
BATCH_BYTES = 4 << 20  # a PutBatch call carries at most this much ...
BATCH_OBJECTS = 2_000  # ... or this many objects; bigger objects are streamed alone
BATCHES_IN_FLIGHT = 3  # PutBatch calls outstanding while the next one is serialised
KEYS_PER_CALL = 10_000  # Has / Stat / ReadMany keys per call
RANGE_CALL_BYTES = 4 << 20  # ranges up to this size are read in one unary ReadRange call

# The C BufferedReader fills its buffer with one raw read of this size, so a small read after a
# seek costs one RPC of this many bytes. Sequential reads are served by one streaming Read that
# the raw stream keeps open while reads continue where the previous one ended.
READER_BUFFER_BYTES = io.DEFAULT_BUFFER_SIZE

ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(bytes_done, total_bytes_or_None)`` while a transfer runs."""


@dataclass(frozen=True)
class ObjectStat:
    """Where and how an object is stored. ``stored_size`` includes the pack entry header;
    ``encoding`` is "raw", "zstd", "zstd-dict" or "zstd-frames"."""

    key: str
    raw_size: int
    stored_size: int
    encoding: str
    pack_id: int


def is_readable_byte_stream(handle: Any) -> bool:
    """AiiDA's check that ``handle`` yields bytes: a buffered or raw binary stream, or any
    object with ``read`` and a binary ``mode``."""
    if isinstance(handle, io.BufferedIOBase | io.RawIOBase):
        return True
    return hasattr(handle, "read") and "b" in str(getattr(handle, "mode", ""))


def _missing(key: str) -> ObjectNotFoundError:
    return ObjectNotFoundError(f"object with key `{key}` does not exist.", keys=[key])


_KEY = re.compile(r"[0-9a-f]{64}")


def _is_key(key: object) -> bool:
    """Whether ``key`` is spelt as a stored object's key can be (64 lowercase hex digits).

    On the AiiDA face any other string is simply an object that is not stored, as in
    disk-objectstore: ``False`` from ``has_objects``, FileNotFoundError from reads and
    deletes. Such keys are never sent (the daemon would answer INVALID_ARGUMENT)."""
    if not isinstance(key, str):
        raise TypeError(f"object keys are str, not {type(key).__name__}: {key!r:.80}")
    return _KEY.fullmatch(key) is not None


def _remaining_size(handle: Any) -> int | None:
    """Bytes left in ``handle`` when that is cheap to know (an in-memory or regular file)."""
    try:
        if isinstance(handle, io.BytesIO):
            with handle.getbuffer() as view:
                return max(0, view.nbytes - handle.tell())
        st = os.fstat(handle.fileno())
        if stat_module.S_ISREG(st.st_mode):
            return max(0, st.st_size - handle.tell())
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _batches(items: list[str], size: int = KEYS_PER_CALL) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Repository:
    """A named repository on a daemon; obtained with ``Client.repository(name)``.

    The repository need not exist for this handle to be made: ``initialise()`` creates it,
    ``is_initialised`` tells, and every object call on a missing repository raises
    :class:`~hoard.errors.RepositoryNotFoundError` (a ``FileNotFoundError``).
    """

    def __init__(self, client: Client, name: str = "default") -> None:
        self.client = client
        self.name = name

    @property
    def _objects(self) -> Any:
        return self.client.objects_stub  # looked up per call: the client may have reconnected

    @property
    def _repositories(self) -> Any:
        return self.client.repositories_stub

    def __repr__(self) -> str:
        return f"<hoard.Repository {self.name!r} at {self.client.target!r}>"

    def __str__(self) -> str:
        return f"hoard repository {self.name!r} at {self.client.target}"

    # -- the repository itself ------------------------------------------------------------

    @property
    def uuid(self) -> str | None:
        """The repository's unique id, or None when it has not been initialised."""
        request = repo_pb.GetRepositoryRequest(repository=self.name)
        try:
            with translate_rpc_errors():
                reply = self._repositories.GetRepository(request, timeout=self.client.timeout)
        except RepositoryNotFoundError:
            return None
        return reply.uuid

    @property
    def key_format(self) -> str:
        """How keys are made: "sha256", the hex digest of the content."""
        return "sha256"

    def initialise(self, **kwargs: Any) -> None:
        """Create the repository if it does not exist yet; safe to call many times.

        Keyword arguments are accepted for AiiDA compatibility and ignored: storage settings
        are the daemon's.
        """
        request = repo_pb.CreateRepositoryRequest(repository=self.name)
        with translate_rpc_errors():
            self._repositories.CreateRepository(request, timeout=self.client.timeout)

    @property
    def is_initialised(self) -> bool:
        """Whether the repository exists on the daemon."""
        return self.uuid is not None

    def erase(self) -> None:
        """Delete the repository and every resource it holds; nothing happens if it is absent."""
        request = repo_pb.EraseRepositoryRequest(repository=self.name)
        with contextlib.suppress(RepositoryNotFoundError), translate_rpc_errors():
            self._repositories.EraseRepository(request, timeout=self.client.timeout)

    # -- writing ------------------------------------------------------------------------------

    def put_object_from_filelike(
        self, handle: BinaryIO, *, progress: ProgressCallback | None = None
    ) -> str:
        """Store the bytes read from ``handle`` (to its end) and return their key.

        Raises TypeError when ``handle`` is not a binary stream. The content is streamed in
        1 MiB chunks, so objects of any size work. If the daemon becomes unavailable midway
        and ``handle`` is seekable, the put is retried from the handle's start position (puts
        are idempotent).
        """
        if not is_readable_byte_stream(handle):
            raise TypeError(f"handle does not seem to be a byte stream: {type(handle)}.")
        start: int | None = None
        try:
            if handle.seekable():
                start = handle.tell()
        except (AttributeError, OSError, ValueError):
            start = None
        size = _remaining_size(handle)
        attempt = 0
        while True:
            try:
                return self._put_stream(handle, size, progress)
            except UnavailableError:
                if start is None or attempt >= self.client.retries:
                    raise
                time.sleep(min(0.1 * 2**attempt, 5.0))
                attempt += 1
                handle.seek(start)

    def put_object_from_file(self, filepath: str | os.PathLike[str]) -> str:
        """Store the content of the file at ``filepath`` and return its key."""
        with open(filepath, "rb") as handle:
            return self.put_object_from_filelike(handle)

    def put_object(self, content: bytes) -> str:
        """Store ``content`` and return its key."""
        return self.put_objects([content])[0]

    def put_objects(self, contents: Iterable[bytes]) -> list[str]:
        """Store many objects and return their keys in input order.

        Small objects are grouped into PutBatch calls of at most 4 MiB or 2,000 objects, with
        up to three calls in flight so that building the next batch overlaps the daemon's
        work; objects over 4 MiB are streamed one by one.
        """
        keys: list[str] = []
        in_flight: collections.deque[tuple[list[int], Any]] = collections.deque()
        batch: list[bytes] = []
        positions: list[int] = []  # where each batched object's key goes in `keys`
        batch_bytes = 0

        def collect(where: list[int], future: Any) -> None:
            with translate_rpc_errors():
                reply = future.result()
            for index, key in zip(where, reply.keys, strict=True):
                keys[index] = key

        def send() -> None:
            nonlocal batch, positions, batch_bytes
            if len(in_flight) >= BATCHES_IN_FLIGHT:
                collect(*in_flight.popleft())
            request = pb.PutBatchRequest(repository=self.name, objects=batch)
            future = self._objects.PutBatch.future(request, timeout=self.client.timeout)
            in_flight.append((positions, future))
            batch, positions, batch_bytes = [], [], 0

        try:
            for content in contents:
                if not isinstance(content, bytes | bytearray | memoryview):
                    raise TypeError(f"objects must be bytes, not {type(content).__name__}")
                keys.append("")
                if len(content) > BATCH_BYTES:
                    keys[-1] = self.put_object_from_filelike(io.BytesIO(content))
                    continue
                if batch and (
                    batch_bytes + len(content) > BATCH_BYTES or len(batch) >= BATCH_OBJECTS
                ):
                    send()
                batch.append(bytes(content))
                positions.append(len(keys) - 1)
                batch_bytes += len(content)
            if batch:
                send()
            while in_flight:
                collect(*in_flight.popleft())
        finally:
            for _, future in in_flight:
                future.cancel()
        return keys

    def _put_stream(self, handle: Any, size: int | None, progress: ProgressCallback | None) -> str:
        header = pb.PutHeader(repository=self.name)
        if size is not None:
            header.size = size
        failures: list[BaseException] = []

        def requests() -> Iterator[pb.PutRequest]:
            # gRPC consumes this in its own thread and swallows what it raises; keep the
            # exception so that the caller sees the real cause instead of a cancelled call.
            try:
                yield pb.PutRequest(header=header)
                done = 0
                while True:
                    chunk = handle.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    yield pb.PutRequest(chunk=chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, size)
                if size is None:
                    # Without a declared size this is how the daemon knows the upload is
                    # whole: a stream that ends without it (cut off, cancelled) stores nothing.
                    yield pb.PutRequest(finish=pb.PutFinish(size=done))
            except Exception as exc:
                failures.append(exc)
                raise

        try:
            reply = self._objects.Put(requests(), timeout=self.client.stream_timeout)
        except grpc.RpcError as error:
            if failures:
                raise failures[0] from None
            raise from_rpc_error(error) from None
        return reply.key

    # -- existence and metadata -----------------------------------------------------------

    def has_objects(self, keys: Iterable[str]) -> list[bool]:
        """Whether each key is stored, in the order given (False for a string that is not a
        key at all)."""
        found: list[bool] = []
        for batch in _batches(list(keys)):
            if not all(isinstance(key, str) for key in batch):
                _is_key(next(key for key in batch if not isinstance(key, str)))  # TypeError
            request = pb.HasRequest(repository=self.name, keys=batch)
            try:
                with translate_rpc_errors():
                    found.extend(self._objects.Has(request, timeout=self.client.timeout).exists)
            except InvalidArgumentError:
                # some string is not a key at all (rare: checked only then, it costs time)
                asked = [key for key in batch if _is_key(key)]
                request = pb.HasRequest(repository=self.name, keys=asked)
                with translate_rpc_errors():
                    exists = iter(self._objects.Has(request, timeout=self.client.timeout).exists)
                found.extend(next(exists) if _is_key(key) else False for key in batch)
        return found

    def has_object(self, key: str) -> bool:
        """Whether an object with ``key`` is stored."""
        return self.has_objects([key])[0]

    def stat_many(self, keys: Iterable[str]) -> list[ObjectStat | None]:
        """How each object is stored, in the order given; None for a missing key."""
        keys = list(keys)
        stats: list[ObjectStat | None] = [None] * len(keys)
        asked = [i for i, key in enumerate(keys) if _is_key(key)]
        for start in range(0, len(asked), KEYS_PER_CALL):
            slots = asked[start : start + KEYS_PER_CALL]
            request = pb.StatRequest(repository=self.name, keys=[keys[i] for i in slots])
            with translate_rpc_errors():
                reply = self._objects.Stat(request, timeout=self.client.timeout)
            for i, s in zip(slots, reply.stats, strict=True):
                if s.exists:
                    stats[i] = ObjectStat(s.key, s.raw_size, s.stored_size, s.encoding, s.pack_id)
        return stats

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

        Seeking (whence 0, 1 or 2) downloads nothing; each read fetches about what it asks
        for with a ranged Read, sequential reads are read ahead, and ``read()`` streams the
        rest in one call. FileNotFoundError when the object does not exist.
        """
        stat = self.stat(key)
        handle = io.BufferedReader(
            ObjectStream(self, key, stat.raw_size), buffer_size=READER_BUFFER_BYTES
        )
        try:
            yield handle
        finally:
            handle.close()

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes of the object from ``offset`` (to the end when None).

        A range reaching past the end is cut short; an offset past the end raises
        :class:`~hoard.errors.OutOfRangeError` (a ValueError).
        """
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        if length is not None and length <= RANGE_CALL_BYTES:
            return self._read_range(key, offset, length)
        return b"".join(self.iter_chunks(key, offset, length))

    def _read_range(self, key: str, offset: int, length: int) -> bytes:
        """A small range in one unary ReadRange call (cheaper than a stream)."""
        if not _is_key(key):
            raise _missing(key)
        request = pb.ReadRequest(repository=self.name, key=key, offset=offset, length=length)
        try:
            with translate_rpc_errors():
                reply = self._objects.ReadRange(request, timeout=self.client.timeout)
        except ObjectNotFoundError as error:
            if error.keys == [key] or not error.keys:
                raise _missing(key) from None
            raise
        return reply.data

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

        A missing object raises FileNotFoundError in AiiDA's words, on the first ``next()``.
        """
        if not _is_key(key):
            raise _missing(key)
        request = pb.ReadRequest(repository=self.name, key=key, offset=offset)
        if length is not None:
            request.length = length
        call = self._objects.Read(request, timeout=self.client.stream_timeout)
        try:
            done = 0
            total: int | None = None
            with translate_rpc_errors():
                for message in call:
                    if total is None:
                        end = message.object_size if length is None else offset + length
                        total = max(0, min(end, message.object_size) - offset)
                    if message.data:
                        done += len(message.data)
                        if progress is not None:
                            progress(done, total)
                        yield message.data
        except ObjectNotFoundError as error:
            if error.keys == [key] or not error.keys:
                raise _missing(key) from None
            raise
        finally:
            call.cancel()

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
        """Yield ``(key, handle)`` for every key, in storage order (not request order).

        Each handle is a seekable ``io.BufferedReader``, valid only until the next step: small
        objects arrive inlined with the listing, large ones are read lazily with ranged Reads.
        A missing key raises FileNotFoundError. Duplicate keys are yielded once.
        """
        for key, size, data in self._read_many(keys):
            if data is not None:
                handle = io.BufferedReader(io.BytesIO(data))
            else:
                handle = io.BufferedReader(
                    ObjectStream(self, key, size), buffer_size=READER_BUFFER_BYTES
                )
            try:
                yield key, handle
            finally:
                handle.close()

    def get_objects_content(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The content of every key, as a dict; FileNotFoundError if any is missing."""
        contents: dict[str, bytes] = {}
        for key, _size, data in self._read_many(keys):
            contents[key] = data if data is not None else self.get_object_content(key)
        return contents

    def _read_many(self, keys: Iterable[str]) -> Iterator[tuple[str, int, bytes | None]]:
        """``(key, size, data or None if not inlined)`` per key, via ReadMany in batches."""
        unique = list(dict.fromkeys(keys))
        absent = [key for key in unique if not _is_key(key)]
        if absent:
            raise ObjectNotFoundError(f"Missing objects: {absent}", keys=absent)
        for batch in _batches(unique):
            request = pb.ReadManyRequest(repository=self.name, keys=batch)
            call = self._objects.ReadMany(request, timeout=self.client.stream_timeout)
            try:
                with translate_rpc_errors():
                    for message in call:
                        # Columnar reply: the inlined contents are concatenated in key order.
                        data = message.data
                        start = 0
                        for key, size, inlined in zip(
                            message.keys, message.sizes, message.inlined, strict=True
                        ):
                            if inlined:
                                yield key, size, data[start : start + size]
                                start += size
                            else:
                                yield key, size, None
            finally:
                call.cancel()

    # -- listing, deleting -------------------------------------------------------------------

    def list_objects(self) -> Iterator[str]:
        """Every key in the repository, in key order, streamed."""
        request = pb.ListRequest(repository=self.name, page_size=0)
        call = self._objects.List(request, timeout=self.client.stream_timeout)
        try:
            with translate_rpc_errors():
                for message in call:
                    yield from message.keys
        finally:
            call.cancel()

    def list_objects_page(self, page_size: int, page_token: str = "") -> tuple[list[str], str]:
        """At most ``page_size`` keys after ``page_token``, and the token of the next page
        ("" when there is nothing more)."""
        if page_size <= 0:
            raise ValueError("page_size must be positive; use list_objects() to stream all")
        request = pb.ListRequest(repository=self.name, page_size=page_size, page_token=page_token)
        call = self._objects.List(request, timeout=self.client.timeout)
        keys: list[str] = []
        token = ""
        with translate_rpc_errors():
            for message in call:
                keys.extend(message.keys)
                token = message.next_page_token
        return keys, token

    def delete_objects(self, keys: Iterable[str], *, require_all: bool = True) -> list[str]:
        """Delete the objects with these keys; return the keys deleted.

        With ``require_all`` (AiiDA's contract) a missing key deletes nothing and raises
        FileNotFoundError naming every missing key; without it, missing keys are skipped.
        Space comes back through :meth:`maintain`.
        """
        keys = list(keys)
        absent = [key for key in dict.fromkeys(keys) if not _is_key(key)]
        keys = [key for key in keys if _is_key(key)]
        if absent and require_all:
            stored = self.has_objects(keys)
            missing = absent + [k for k, found in zip(keys, stored, strict=True) if not found]
            raise ObjectNotFoundError(f"Missing objects: {missing}", keys=missing)
        if not keys:
            return []
        request = pb.DeleteRequest(repository=self.name, keys=keys, require_all=require_all)
        with translate_rpc_errors():
            reply = self._objects.Delete(request, timeout=self.client.timeout)
        if require_all and reply.missing:
            missing = list(reply.missing)
            raise ObjectNotFoundError(f"Missing objects: {missing}", keys=missing)
        return list(reply.deleted)

    def delete_object(self, key: str) -> None:
        """Delete the object ``key``; FileNotFoundError when it does not exist."""
        try:
            self.delete_objects([key])
        except ObjectNotFoundError:
            raise _missing(key) from None

    # -- housekeeping --------------------------------------------------------------------------

    def get_info(self, detailed: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Counts and sizes: objects, raw/stored/on-disk bytes, packs, reclaimable bytes.

        ``compression_ratio`` is raw bytes over stored bytes (2.0: half the space).
        ``last_maintenance`` and ``last_verification`` are seconds since the epoch (None when
        never); ``last_verification_errors`` counts the damaged or missing objects the last
        verification found. With ``detailed``, ``pack_details`` lists every pack.
        """
        request = pb.InfoRequest(repository=self.name, detailed=detailed)
        with translate_rpc_errors():
            reply = self._objects.Info(request, timeout=self.client.timeout)
        ratio = reply.compression_ratio
        if not ratio:  # a daemon that does not send it yet
            ratio = reply.raw_bytes / reply.stored_bytes if reply.stored_bytes else 1.0
        info: dict[str, Any] = {
            "repository": reply.repository or self.name,
            "uuid": reply.uuid,
            "key_format": reply.key_format or self.key_format,
            "objects": reply.object_count,
            "raw_bytes": reply.raw_bytes,
            "stored_bytes": reply.stored_bytes,
            "on_disk_bytes": reply.on_disk_bytes,
            "packs": reply.pack_count,
            "reclaimable_bytes": reply.reclaimable_bytes,
            "compression_ratio": ratio,
            "has_dictionary": reply.has_dictionary,
            "last_maintenance": reply.last_maintenance or None,
            "last_verification": reply.last_verification or None,
            "last_verification_errors": reply.last_verification_errors,
        }
        if detailed:
            info["pack_details"] = [
                {
                    "pack_id": p.pack_id,
                    "size": p.size,
                    "live_bytes": p.live_bytes,
                    "dead_bytes": p.dead_bytes,
                    "single_object": p.single_object,
                }
                for p in reply.packs
            ]
        return info

    def maintain(
        self,
        dry_run: bool = False,
        live: bool = True,
        *,
        dead_fraction: float | None = None,
        max_packs: int | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Compact packs and reclaim the space of deleted objects; return the final report.

        Packs whose dead bytes are at least ``dead_fraction`` of the pack (daemon default
        0.25; a tiny value such as 1e-9 compacts every pack with dead bytes) have their live
        objects moved to new packs while clients keep reading and writing. ``max_packs``
        stops after that many packs; a later call continues. With ``dry_run`` the daemon
        only reports what it would do and changes nothing.

        The daemon runs everything live, so ``live=True`` is never refused (unlike AiiDA's
        disk-objectstore backend); ``live`` is passed on as given. Other keyword arguments
        (AiiDA's ``compress``, ``do_repack``, ``clean_storage``, ``do_vacuum``, ...) are
        accepted and ignored: the daemon decides how to store objects.

        ``progress`` receives every report as a dict and the last one is returned (empty if
        the daemon sent none): ``stage`` ("plan", "compact", "done"), ``message``, ``done``
        and ``total`` (packs), ``reclaimable_bytes``, ``reclaimed_bytes``, ``moved_bytes``,
        ``moved_objects``, ``dry_run``, ``problem_count`` and ``problems`` (records that
        could not be moved safely, as dicts with ``key``, ``pack_id`` and ``problem``; their
        packs are kept; a report's ``problems`` are those new since the previous one, the
        returned one has them all). Interrupting the call (an exception in ``progress``,
        Ctrl-C) cancels it; the daemon stops after its current batch.
        """
        request = pb.MaintainRequest(repository=self.name, dry_run=dry_run, live=live)
        if dead_fraction is not None:
            if not 0 < dead_fraction <= 1:
                raise ValueError(f"dead_fraction must be in (0, 1], not {dead_fraction!r}")
            request.dead_fraction = dead_fraction
        if max_packs is not None:
            if max_packs < 0:
                raise ValueError(f"max_packs must not be negative, not {max_packs!r}")
            request.max_packs = max_packs
        last: dict[str, Any] = {}
        problems: list[dict[str, Any]] = []
        for message in self._stream(self._objects.Maintain, request):
            last = _fields(message)
            new = [
                {"key": p.key, "pack_id": p.pack_id, "problem": p.problem} for p in message.problems
            ]
            problems.extend(new)
            if progress is not None:
                progress({**last, "problems": new})
            last["problems"] = problems
        return last

    def verify(
        self,
        *,
        pack_id: int | None = None,
        sample: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Re-read and re-hash stored objects and check the index against the packs.

        Everything by default; only pack ``pack_id``, or a random ``sample`` (a fraction in
        (0, 1]) of the objects. Returns ``checked_objects``, ``total_objects``,
        ``checked_bytes``, ``problem_count``, ``problems`` (every problem found, as dicts
        with ``key`` -- empty for a problem with a pack -- ``pack_id`` and ``problem``) and
        ``ok`` (no problem found). ``progress`` receives every report as a dict; its
        ``problems`` are those new since the previous report.
        """
        request = pb.VerifyRequest(repository=self.name)
        if pack_id is not None:
            if pack_id <= 0:
                raise ValueError(f"pack_id must be positive, not {pack_id!r}")
            request.pack_id = pack_id
        if sample is not None:
            if not 0 < sample <= 1:
                raise ValueError(f"sample must be a fraction in (0, 1], not {sample!r}")
            request.sample = sample
        problems: list[dict[str, Any]] = []
        last = pb.VerifyProgress()
        for message in self._stream(self._objects.Verify, request):
            last = message
            new = [
                {"key": p.key, "pack_id": p.pack_id, "problem": p.problem} for p in message.problems
            ]
            problems.extend(new)
            if progress is not None:
                report = _fields(message)
                report["problems"] = new
                progress(report)
        problem_count = max(last.problem_count, len(problems))
        return {
            "checked_objects": last.checked_objects,
            "total_objects": last.total_objects,
            "checked_bytes": last.checked_bytes,
            "problem_count": problem_count,
            "problems": problems,
            "ok": problem_count == 0,
        }

    def backup(
        self,
        destination: str | os.PathLike[str],
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Write a consistent snapshot of the repository to ``destination``, a directory on
        the daemon's host under one of its backup roots (``hoard serve --backup-root``),
        while the daemon keeps serving. A repeated backup to the same directory copies only
        what is new; an interrupted one resumes. Restore with ``hoard restore``.

        A relative ``destination`` is made absolute here only when the daemon runs on this
        machine (a loopback or unix-socket target); otherwise it is sent as given and the
        daemon refuses it. Outside the backup roots: PermissionDeniedError; no root
        configured: FailedPreconditionError.

        ``progress`` receives every report as a dict; the last one is returned: ``stage``
        ("snapshot", "packs", "done"), ``message``, ``packs_total``, ``packs_copied``,
        ``packs_unchanged``, ``bytes_copied``, ``bytes_total``, ``objects``.
        """
        request = pb.BackupRequest(
            repository=self.name, destination=backup_destination(self.client.target, destination)
        )
        last: dict[str, Any] = {}
        for message in self._stream(self._objects.Backup, request):
            last = _fields(message)
            if progress is not None:
                progress(dict(last))
        return last

    def _stream(self, method: Any, request: Any) -> Iterator[Any]:
        """The messages of a server-streaming call, with errors translated; the call is
        cancelled if the consumer stops early."""
        call = method(request, timeout=self.client.stream_timeout)
        try:
            with translate_rpc_errors():
                yield from call
        finally:
            call.cancel()


def _fields(message: Any) -> dict[str, Any]:
    """Every scalar field of a progress message, by its proto name."""
    return {field.name: getattr(message, field.name) for field in message.DESCRIPTOR.fields}


def is_local_target(target: str) -> bool:
    """Whether a gRPC target reaches a daemon on this machine: a unix socket or a loopback
    address ("127.0.0.1:50051", "localhost:1", "[::1]:2", "ipv4:127.0.0.1:3", ...)."""
    if target.startswith(("unix:", "unix-abstract:", "/")):
        return True
    rest = target
    for scheme in ("dns:", "ipv4:", "ipv6:"):
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
            break
    if rest.startswith("//"):  # dns://authority/host:port
        rest = rest[2:].partition("/")[2]
    rest = rest.split(",")[0]  # ipv4:a:1,b:2 -- judge the first address
    if rest.startswith("["):
        host = rest[1:].partition("]")[0]
    elif rest.count(":") > 1:  # a bare IPv6 address without a port
        host = rest
    else:
        host = rest.partition(":")[0]
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def backup_destination(target: str, destination: str | os.PathLike[str]) -> str:
    """``destination`` as sent to the daemon at ``target``: made absolute (``~`` expanded)
    when the daemon is on this machine, else as given."""
    path = os.fspath(destination)
    if not isinstance(path, str):
        raise TypeError(f"destination must be a str path, not {type(path).__name__}")
    if not path:
        raise ValueError("destination must not be empty")
    if is_local_target(target):
        return os.path.abspath(os.path.expanduser(path))
    return path


class ObjectStream(io.RawIOBase):
    """A read-only, seekable raw stream over one stored object; reads are ranged Read calls.

    Seeking only moves a position. A read after a seek fetches exactly the bytes asked for
    (one small call: random access costs no download). When reads continue where the last
    one ended, the stream opens one streaming Read from there to the end and serves the
    following reads from it, as fast as ``iter_chunks``; a seek elsewhere cancels it.
    Wrap it in an ``io.BufferedReader`` (``Repository.open`` does).
    """

    def __init__(self, repository: Repository, key: str, size: int) -> None:
        super().__init__()
        self._repository = repository
        self._key = key
        self._size = size
        self._pos = 0
        self._window: bytes | memoryview = b""  # fetched bytes not yet read, at _window_start
        self._window_start = 0
        self._fetch_end = -1  # where the last fetch ended: a read starting here is sequential
        self._stream: Iterator[bytes] | None = None  # open streaming Read, while sequential
        self._stream_pos = 0  # the offset of the next byte _stream yields

    @property
    def name(self) -> str:
        return self._key

    @property
    def mode(self) -> str:
        return "rb"

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._pos = target
        return target

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        window_end = self._window_start + len(self._window)
        if self._window_start <= self._pos < window_end:
            n = min(want, window_end - self._pos)
            start = self._pos - self._window_start
            view[:n] = self._window[start : start + n]
            self._pos += n
            return n
        if self._stream is not None and self._pos != self._stream_pos:
            self._close_stream()
        if self._stream is None and self._pos == self._fetch_end:
            self._stream = self._repository.iter_chunks(self._key, self._pos)
            self._stream_pos = self._pos
        if self._stream is not None:
            chunk = next(self._stream, b"")
            if not chunk:
                self._close_stream()
                return 0
            self._stream_pos += len(chunk)
            n = min(want, len(chunk))
            view[:n] = memoryview(chunk)[:n]
            self._window = memoryview(chunk)[n:]
            self._window_start = self._pos + n
            self._fetch_end = self._stream_pos
            self._pos += n
            return n
        # a read after a seek: exactly what is asked for, in one call
        data = self._repository.read(self._key, self._pos, want)
        filled = len(data)
        view[:filled] = data
        self._window = b""
        self._fetch_end = self._pos + filled
        self._pos += filled
        return filled

    def readall(self) -> bytes:
        self._check_open()
        parts: list[bytes] = []
        window_end = self._window_start + len(self._window)
        if self._window_start <= self._pos < window_end:
            parts.append(bytes(self._window[self._pos - self._window_start :]))
            self._pos = window_end
        if self._stream is not None and self._pos == self._stream_pos:
            parts.extend(self._stream)
        elif self._pos < self._size:
            parts.extend(self._repository.iter_chunks(self._key, self._pos))
        self._close_stream()
        self._pos = max(self._pos, self._size)
        return b"".join(parts)

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()  # type: ignore[attr-defined]  # cancels the call
            self._stream = None

    def close(self) -> None:
        self._close_stream()
        self._window = b""
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def __repr__(self) -> str:
        return f"<hoard.ObjectStream key={self._key!r} size={self._size}>"
