"""Dataset files: the files and folders of a repository's datasets, as TVB's FilesHelper
handles them (list, delete, rename, copy, remove, disk usage, folders, XML metadata, zip),
plus moving whole files in and out (export, import, snapshot into the object store).

Plain Python over ``OpenFiles`` (the doors to a repository's HDF5 files):

- every client path goes through ``OpenFiles.resolve`` (the sandbox) before anything on
  disk is touched, both ends of a rename or copy included;
- a file is changed (deleted, renamed, overwritten) only inside ``exclusive``, so no open
  handle survives it; a folder renamed or removed, inside ``exclusive_under`` for every
  file below it;
- a file is read whole (export, copy, zip, snapshot) only inside ``consistent``, and only
  for as long as it takes to copy it locally: nothing waits on a client while a door is
  held. The copy's superblock "open for writing" flags are cleared, so it opens with plain
  h5py even while the daemon writes the original;
- new files are written under a hidden scratch name (``layout.dataset_scratch``), fsynced,
  and renamed into place: they appear whole or not at all.

Walks (listing, disk usage, zip) neither follow nor show symbolic links or scratch files.
"""

from __future__ import annotations

import errno
import heapq
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import IO

import h5py

from hoard_server.errors import FailedPrecondition, HoardError, InvalidArgument, NotFound
from hoard_server.services.datasets import xml_metadata
from hoard_server.services.repositories import open_repository
from hoard_server.storage import layout, modes
from hoard_server.storage.hdf5 import superblock
from hoard_server.storage.hdf5.files import OpenFiles
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.repository import Repository

CHUNK_BYTES = 1 << 20  # bytes per streamed message (export, zip) and per copy step
MAX_XML_BYTES = 16 << 20  # a metadata file larger than this is not read


# -- what the service returns ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # relative to the repository's top
    is_folder: bool
    size: int  # 0 for a folder
    modified: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class RemovedFiles:
    removed: list[str]
    missing: list[str]


@dataclass(frozen=True, slots=True)
class DiskUsage:
    bytes: int
    files: int
    kib: int  # whole KiB, as TVB reports sizes


@dataclass(frozen=True, slots=True)
class Snapshot:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class ImportHeader:
    """First part of an import: where the file goes."""

    repository: str
    path: str
    overwrite: bool = False


ImportPart = ImportHeader | bytes | None  # None: a message that holds no part


# -- the service ----------------------------------------------------------------------------


class DatasetFileService:
    """File and folder operations on the dataset files of the repositories of ``registry``."""

    def __init__(self, registry: RepositoryRegistry) -> None:
        self._registry = registry

    def _repo(self, name: str) -> Repository:
        repo = open_repository(self._registry, name)
        if not os.path.isdir(repo.files.root):  # a repository made before the datasets face
            modes.makedirs(repo.files.root, exist_ok=True)
        return repo

    def _files(self, name: str) -> OpenFiles:
        return self._repo(name).files

    def _files_to_write(self, name: str, incoming: int = 0) -> OpenFiles:
        """The files of a repository about to take ``incoming`` more bytes (0: not known
        yet); QUOTA_EXCEEDED when it is at its quota."""
        repo = self._repo(name)
        repo.usage.admit(incoming)
        return repo.files

    def _freed(self, name: str) -> None:
        self._repo(name).usage.changed()

    # -- listing and sizes ------------------------------------------------------------------

    def list_files(
        self, repository: str, folder: str = "", recursive: bool = False, h5_only: bool = False
    ) -> Iterator[FileEntry]:
        """Files and folders under ``folder`` ("" is the top) in path order (sorted as
        strings); with ``h5_only``, only files whose name ends with ".h5"."""
        files = self._files(repository)
        top = files.resolve(folder, allow_top=True)
        _require_folder(files, folder, top)
        return _listing(folder, top, recursive, h5_only)

    def disk_usage(self, repository: str, path: str = "", h5_only: bool = False) -> DiskUsage:
        """Bytes and files under a folder, or of one file; ``h5_only``: ".h5" files only.

        ``kib`` is TVB's: a folder's rounded (compute_recursive_h5_disk_usage), a single
        file's rounded down (compute_size_on_disk)."""
        files = self._files(repository)
        full = files.resolve(path, allow_top=True)
        st = _stat(files, path, full)
        if not stat.S_ISDIR(st.st_mode):
            counted = stat.S_ISREG(st.st_mode) and (not h5_only or path.endswith(".h5"))
            size = st.st_size if counted else 0
            return DiskUsage(size, int(counted), size // 1024)
        total = count = 0
        for entry in _walk(path, full, recursive=True):
            if not entry.is_folder and (not h5_only or entry.path.endswith(".h5")):
                total += entry.size
                count += 1
        return DiskUsage(total, count, round(total / 1024))

    # -- files --------------------------------------------------------------------------------

    def delete_file(self, repository: str, path: str) -> None:
        files = self._files(repository)
        with files.exclusive(path) as full:
            _require_file(files, path, full)
            os.unlink(full)
            _fsync_dir(os.path.dirname(full))
        self._freed(repository)

    def rename_file(
        self, repository: str, source: str, destination: str, overwrite: bool = False
    ) -> FileEntry:
        """Move a file (parents of ``destination`` are made); FILE_EXISTS if ``destination``
        exists and ``overwrite`` is not set."""
        files = self._files(repository)
        src, dst = files.resolve(source), files.resolve(destination)
        with files.exclusive_under(source, destination):
            _require_file(files, source, src)
            if _check_destination(files, destination, dst, overwrite, same=src == dst):
                _make_parents(files, destination, dst)
                os.rename(src, dst)
                _fsync_dir(os.path.dirname(dst))
                _fsync_dir(os.path.dirname(src))
            return _entry(destination, dst)

    def copy_file(
        self, repository: str, source: str, destination: str, overwrite: bool = False
    ) -> FileEntry:
        """A consistent copy of ``source`` at ``destination`` (parents made); FILE_EXISTS
        if ``destination`` exists and ``overwrite`` is not set."""
        files = self._files_to_write(repository)
        src, dst = files.resolve(source), files.resolve(destination)
        with _doors(files, (source, files.consistent), (destination, files.exclusive)):
            _require_file(files, source, src)
            if _check_destination(files, destination, dst, overwrite, same=src == dst):
                _make_parents(files, destination, dst)
                with open(src, "rb") as reader:
                    _write_into_place(files, dst, "copy", lambda fd: _copy(reader.fileno(), fd))
            return _entry(destination, dst)

    def remove_files(
        self, repository: str, paths: list[str], ignore_errors: bool = False
    ) -> RemovedFiles:
        """TVB remove_files: every path is tried (a folder is removed with what it holds);
        NOT_FOUND naming the missing ones unless ``ignore_errors`` (the others are removed
        all the same, and the error says which)."""
        files = self._files(repository)
        fulls = [files.resolve(p) for p in paths]  # every path checked before any removal
        removed: list[str] = []
        missing: list[str] = []
        for path, full in zip(paths, fulls, strict=True):
            try:
                if os.path.isdir(full) and not os.path.islink(full):
                    with files.exclusive_under(path):
                        shutil.rmtree(full)
                else:
                    with files.exclusive(path):
                        os.unlink(full)
                _fsync_dir(os.path.dirname(full))
            except FileNotFoundError:
                missing.append(path)
                continue
            except OSError:
                if not ignore_errors:
                    raise
                continue
            removed.append(path)
        if missing and not ignore_errors:
            self._freed(repository)
            raise NotFound(
                f"{_some(missing)} not found in repository {repository!r}"
                + (f"; removed all the same: {_some(removed)}" if removed else "; nothing removed"),
                reason="FILE_NOT_FOUND",
                repository=repository,
                path=missing[0],
                missing=",".join(missing)[:4000],
                removed=",".join(removed)[:4000],
            )
        self._freed(repository)
        return RemovedFiles(removed, missing)

    def export_file(self, repository: str, path: str) -> tuple[int, Generator[bytes, None, None]]:
        """(size, the chunks of a consistent copy): a plain HDF5 file, status flags cleared.
        The copy is taken before this returns; the chunks hold no door."""
        files = self._files(repository)
        copy = _consistent_copy(files, path)
        size = os.fstat(copy.fileno()).st_size
        return size, _chunks_then_close(copy)

    def snapshot_file(self, repository: str, path: str) -> Snapshot:
        """Store a consistent copy in the repository's object store; identical files give
        the same key."""
        repo = self._repo(repository)
        with _consistent_copy(repo.files, path) as copy:
            size = os.fstat(copy.fileno()).st_size
            repo.usage.admit(size)
            key, stored, _ = repo.put_stream(iter(lambda: copy.read(CHUNK_BYTES), b""), size=size)
        return Snapshot(key, stored)

    def import_file(self, parts: Iterator[ImportPart], is_active: Callable[[], bool]) -> FileEntry:
        """Write the file an upload carries (a header, then chunks) at the header's path.

        The upload goes to a scratch file, is checked to be HDF5 (NOT_HDF5 otherwise),
        fsynced and renamed into place inside ``exclusive``: the file appears whole or not
        at all, and an upload cut short (or no longer ``is_active`` when it ended) leaves
        nothing. FILE_EXISTS unless the header says ``overwrite``."""
        header = next(parts, None)
        if not isinstance(header, ImportHeader):
            raise InvalidArgument(
                "an ImportFile stream must start with a header naming the repository and path"
            )
        try:
            files = self._files_to_write(header.repository)
            full = files.resolve(header.path)
            _check_destination(files, header.path, full, header.overwrite)  # before the upload
            scratch = layout.dataset_scratch(files.root, "import")
            try:
                fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_EXCL, modes.file_mode())
                try:
                    _receive(parts, fd, is_active)
                    _clear_status_flags(fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _require_hdf5(scratch, header.path, header.repository)
                with files.exclusive(header.path):
                    _check_destination(files, header.path, full, header.overwrite)
                    _make_parents(files, header.path, full)
                    os.rename(scratch, full)
                    _fsync_dir(os.path.dirname(full))
            finally:
                _discard(scratch)
            return _entry(header.path, full)
        except HoardError as exc:
            exc.details.setdefault("repository", header.repository)
            raise

    # -- folders ------------------------------------------------------------------------------

    def create_folder(self, repository: str, path: str) -> FileEntry:
        """Make a folder and its parents; nothing to do if it exists."""
        files = self._files(repository)
        full = files.resolve(path)
        if os.path.lexists(full) and not os.path.isdir(full):
            raise _not_a_folder(files, path)
        _make_folder(files, path, full)
        return _entry(path, full)

    def rename_folder(
        self, repository: str, source: str, destination: str, overwrite: bool = False
    ) -> FileEntry:
        """Move a folder and what it holds (parents of ``destination`` made); handles on
        files below it are closed first. FILE_EXISTS if ``destination`` exists and
        ``overwrite`` is not set; with it, what was there is removed."""
        files = self._files(repository)
        src, dst = files.resolve(source), files.resolve(destination)
        if dst.startswith(src + os.sep):
            raise InvalidArgument(
                f"cannot move folder {source!r} into itself ({destination!r})",
                reason="INVALID_PATH",
                path=destination,
            )
        with files.exclusive_under(source, destination):
            _require_folder(files, source, src)
            if src != dst and os.path.lexists(dst):
                if not overwrite:
                    raise _exists(files, destination)
                if src.startswith(dst + os.sep):
                    raise InvalidArgument(
                        f"cannot replace folder {destination!r} with {source!r}, which it holds",
                        reason="INVALID_PATH",
                        path=destination,
                    )
                if os.path.isdir(dst) and not os.path.islink(dst):
                    shutil.rmtree(dst)
                else:
                    os.unlink(dst)
            if src != dst:
                _make_parents(files, destination, dst)
                os.rename(src, dst)
                _fsync_dir(os.path.dirname(dst))
                _fsync_dir(os.path.dirname(src))
            elif not overwrite:
                raise _exists(files, destination)
            return _entry(destination, dst)

    def remove_folder(
        self, repository: str, path: str, ignore_errors: bool = False
    ) -> RemovedFiles:
        """TVB remove_folder: the folder and what it holds; FOLDER_NOT_FOUND (or
        NOT_A_FOLDER) unless ``ignore_errors``, which also lets the removal go on past
        files it cannot remove."""
        files = self._files(repository)
        full = files.resolve(path)
        with files.exclusive_under(path):
            if not os.path.isdir(full) or os.path.islink(full):
                if ignore_errors:
                    return RemovedFiles([], [path])
                if os.path.lexists(full):
                    raise _not_a_folder(files, path)
                raise _folder_not_found(files, path)
            shutil.rmtree(full, ignore_errors=ignore_errors)
            _fsync_dir(os.path.dirname(full))
        self._freed(repository)
        return RemovedFiles([path], [])

    # -- TVB's XML metadata -----------------------------------------------------------------

    def write_xml_metadata(self, repository: str, path: str, metadata: dict[str, str]) -> FileEntry:
        """Write ``metadata`` at ``path`` in TVB's XML format (replacing the file whole)."""
        document = xml_metadata.dumps(metadata)  # checked before anything is touched
        files = self._files_to_write(repository, len(document))
        with files.exclusive(path) as full:
            if os.path.isdir(full):
                raise _not_a_file(files, path)
            _make_parents(files, path, full)
            _write_into_place(files, full, "xml", lambda fd: _write_all(fd, document))
            return _entry(path, full)

    def read_xml_metadata(self, repository: str, path: str) -> dict[str, str]:
        """The metadata of a TVB XML file (TVB's XMLReader's reading); INVALID_METADATA if
        the file is not one."""
        files = self._files(repository)
        full = files.resolve(path)
        _require_file(files, path, full)
        with open(full, "rb") as f:
            data = f.read(MAX_XML_BYTES + 1)
        if len(data) > MAX_XML_BYTES:
            raise _not_metadata(files, path, f"it is larger than {MAX_XML_BYTES >> 20} MiB")
        try:
            return xml_metadata.loads(data)
        except xml_metadata.FileDamaged as exc:
            raise _not_metadata(files, path, str(exc)) from None

    # -- zip ----------------------------------------------------------------------------------

    def zip_folder(
        self,
        repository: str,
        folder: str,
        exclude: list[str] | None = None,
        need_parent_folder: bool = False,
    ) -> Generator[bytes, None, None]:
        """A zip of ``folder`` ("" is the top) in chunks of about CHUNK_BYTES, as TVB's
        write_zip_folder makes it: files and folders named in ``exclude`` are left out at
        every level; member names are relative to the folder, or start with the folder's
        own name when ``need_parent_folder`` (the top has none). Each HDF5 file is a
        consistent copy with its status flags cleared."""
        files = self._files(repository)
        top = files.resolve(folder, allow_top=True)
        _require_folder(files, folder, top)
        prefix = folder.rsplit("/", 1)[-1] + "/" if need_parent_folder and folder else ""
        return _zip_chunks(files, folder, top, frozenset(exclude or ()), prefix)


# -- errors -----------------------------------------------------------------------------------


def _file_not_found(files: OpenFiles, path: str) -> NotFound:
    return NotFound(
        f"no file {path!r} in repository {files.repository!r}",
        reason="FILE_NOT_FOUND",
        path=path,
    )


def _folder_not_found(files: OpenFiles, path: str) -> NotFound:
    return NotFound(
        f"no folder {path!r} in repository {files.repository!r}",
        reason="FOLDER_NOT_FOUND",
        path=path,
    )


def _not_a_folder(files: OpenFiles, path: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{path!r} in repository {files.repository!r} is a file, not a folder",
        reason="NOT_A_FOLDER",
        path=path,
    )


def _not_a_file(files: OpenFiles, path: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{path!r} in repository {files.repository!r} is a folder, not a file",
        reason="NOT_A_FILE",
        path=path,
    )


def _exists(files: OpenFiles, path: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{path!r} already exists in repository {files.repository!r}; set overwrite to replace it",
        reason="FILE_EXISTS",
        path=path,
    )


def _not_metadata(files: OpenFiles, path: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"{path!r} in repository {files.repository!r} is not a TVB XML metadata file: {why}",
        reason="INVALID_METADATA",
        path=path,
    )


def _some(paths: list[str]) -> str:
    return ", ".join(repr(p) for p in paths[:20]) + (
        f" and {len(paths) - 20} more" if len(paths) > 20 else ""
    )


# -- checks -----------------------------------------------------------------------------------


def _stat(files: OpenFiles, path: str, full: str) -> os.stat_result:
    try:
        return os.stat(full)
    except (FileNotFoundError, NotADirectoryError):
        raise _file_not_found(files, path) from None


def _require_file(files: OpenFiles, path: str, full: str) -> None:
    if stat.S_ISDIR(_stat(files, path, full).st_mode):
        raise _not_a_file(files, path)


def _require_folder(files: OpenFiles, path: str, full: str) -> None:
    try:
        st = os.stat(full)
    except (FileNotFoundError, NotADirectoryError):
        raise _folder_not_found(files, path) from None
    if not stat.S_ISDIR(st.st_mode):
        raise _not_a_folder(files, path)


def _check_destination(
    files: OpenFiles, path: str, full: str, overwrite: bool, same: bool = False
) -> bool:
    """Whether a file may be written at ``full``: False for the source itself with
    ``overwrite`` (nothing to do); FILE_EXISTS or NOT_A_FILE when it may not."""
    if not os.path.lexists(full):
        return True
    if os.path.isdir(full):
        raise _not_a_file(files, path)
    if not overwrite:
        raise _exists(files, path)
    return not same


def _require_hdf5(full: str, path: str, repository: str) -> None:
    refused = InvalidArgument(
        f"the upload for {path!r} is not an HDF5 file; nothing was stored",
        reason="NOT_HDF5",
        path=path,
        repository=repository,
    )
    try:
        if not h5py.is_hdf5(full):
            raise refused
        h5py.File(full, "r").close()
    except (OSError, ValueError):
        raise refused from None


def _make_folder(files: OpenFiles, path: str, full: str) -> None:
    try:
        modes.makedirs(full, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _not_a_folder(files, _first_file_on(files, path)) from None


def _make_parents(files: OpenFiles, path: str, full: str) -> None:
    if "/" in path:
        _make_folder(files, path.rsplit("/", 1)[0], os.path.dirname(full))


def _first_file_on(files: OpenFiles, path: str) -> str:
    """The first leading part of ``path`` that is not a folder (for the error)."""
    parts = path.split("/")
    for n in range(1, len(parts) + 1):
        prefix = "/".join(parts[:n])
        if not os.path.isdir(files.resolve(prefix)):
            return prefix
    return path


# -- walking ----------------------------------------------------------------------------------


def _children(rel: str, full: str) -> list[tuple[str, str, bool]]:
    """(relative path, absolute path, is a folder) of a folder's entries, without links,
    scratch files or special files."""
    found = []
    try:
        with os.scandir(full) as it:
            for e in it:
                if layout.is_dataset_scratch(e.name) or e.is_symlink():
                    continue
                is_dir = e.is_dir(follow_symlinks=False)
                if is_dir or e.is_file(follow_symlinks=False):
                    found.append((f"{rel}/{e.name}" if rel else e.name, e.path, is_dir))
    except (FileNotFoundError, NotADirectoryError):
        pass  # removed while we walk
    return found


def _walk(rel: str, full: str, recursive: bool) -> Iterator[FileEntry]:
    """Entries under a folder in path order: a heap keyed by path yields them sorted as
    strings while holding only the folders still to visit."""
    heap = _children(rel, full)
    heapq.heapify(heap)
    while heap:
        path, absolute, is_dir = heapq.heappop(heap)
        if is_dir and recursive:
            for child in _children(path, absolute):
                heapq.heappush(heap, child)
        try:
            st = os.lstat(absolute)
        except FileNotFoundError:
            continue
        yield FileEntry(path, is_dir, 0 if is_dir else st.st_size, st.st_mtime)


def _listing(rel: str, full: str, recursive: bool, h5_only: bool) -> Iterator[FileEntry]:
    for entry in _walk(rel, full, recursive):
        if not h5_only or (not entry.is_folder and entry.path.endswith(".h5")):
            yield entry


def _entry(path: str, full: str) -> FileEntry:
    st = os.stat(full)
    is_dir = stat.S_ISDIR(st.st_mode)
    return FileEntry(path, is_dir, 0 if is_dir else st.st_size, st.st_mtime)


# -- bytes on disk ----------------------------------------------------------------------------


@contextmanager
def _doors(files: OpenFiles, *doors: tuple[str, Callable]) -> Iterator[None]:
    """Enter several doors of ``files`` in path order (so two callers cannot deadlock)."""
    with ExitStack() as stack:
        seen = set()
        for path, door in sorted(doors, key=lambda d: files.resolve(d[0])):
            if files.resolve(path) not in seen:
                seen.add(files.resolve(path))
                stack.enter_context(door(path))
        yield


def _copy(src: int, dst: int) -> None:
    """Every byte of file descriptor ``src`` (from its start) onto ``dst``, in the kernel
    when it can."""
    offset = 0
    try:
        while n := os.copy_file_range(src, dst, CHUNK_BYTES * 16, offset):
            offset += n
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    os.lseek(dst, offset, os.SEEK_SET)
    while chunk := os.pread(src, CHUNK_BYTES, offset):
        _write_all(dst, chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _clear_status_flags(fd: int) -> None:
    """Clear the superblock's "open for writing" flags of the file at ``fd`` (a copy no
    HDF5 library has open), so that plain h5py opens it."""
    head = bytearray(os.pread(fd, superblock.HEAD_BYTES, 0))
    if superblock.clear_status_flags(head):
        os.pwrite(fd, bytes(head), 0)


def _write_into_place(files: OpenFiles, full: str, kind: str, fill: Callable[[int], None]) -> None:
    """Make the file at ``full`` whole or not at all: ``fill`` a scratch file at the top
    of the datasets folder (where every scratch file is, so one listing finds leftovers),
    clear its HDF5 status flags, fsync it and rename it over ``full``."""
    scratch = layout.dataset_scratch(files.root, kind)
    try:
        fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_EXCL, modes.file_mode())
        try:
            fill(fd)
            _clear_status_flags(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(scratch, full)
        _fsync_dir(os.path.dirname(full))
    finally:
        _discard(scratch)


def _discard(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _consistent_copy(files: OpenFiles, path: str) -> IO[bytes]:
    """An anonymous temporary copy of the file at ``path`` (nothing is left of it once
    closed, even after a crash), taken inside ``consistent``, status flags cleared, read
    position at its start."""
    copy = tempfile.TemporaryFile(dir=files.root, prefix=layout.DATASET_SCRATCH_PREFIX)  # noqa: SIM115
    try:
        with files.consistent(path) as full:
            _require_file(files, path, full)
            with open(full, "rb") as reader:
                _copy(reader.fileno(), copy.fileno())
        _clear_status_flags(copy.fileno())
        copy.seek(0)
        return copy
    except BaseException:
        copy.close()
        raise


def _chunks_then_close(copy: IO[bytes]) -> Generator[bytes, None, None]:
    """The file's chunks (at least one, empty for an empty file); closed at the end or
    when the consumer stops."""
    with copy:
        chunk = copy.read(CHUNK_BYTES)
        yield chunk
        while chunk := copy.read(CHUNK_BYTES):
            yield chunk


def _receive(parts: Iterator[ImportPart], fd: int, is_active: Callable[[], bool]) -> None:
    """Write an import's chunks to ``fd``, enforcing the rest of the protocol."""
    for part in parts:
        if isinstance(part, bytes):
            _write_all(fd, part)
        elif isinstance(part, ImportHeader):
            raise InvalidArgument("only the first message of an ImportFile stream may be a header")
        else:
            raise InvalidArgument("an ImportFile message must hold a header or a chunk")
    if not is_active():
        raise InvalidArgument("the upload was cancelled; nothing was stored")


# -- zip --------------------------------------------------------------------------------------


class _ZipSink:
    """Where a ZipFile writes: a buffer drained into messages (no seek, so zipfile writes
    the sizes after each member's data and needs no going back)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._written = 0

    def write(self, data: bytes) -> int:
        self._buffer += data
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self, at_least: int) -> Iterator[bytes]:
        """The buffer, once it holds ``at_least`` bytes (0: whatever it holds)."""
        if self._buffer and len(self._buffer) >= at_least:
            data = bytes(self._buffer)
            self._buffer.clear()
            yield data


def _zip_members(rel: str, full: str, exclude: frozenset[str]) -> Iterator[tuple[str, str]]:
    """(path relative to the zipped folder, absolute path) of each file to zip, in path
    order, leaving out every file or folder whose name is in ``exclude``."""
    heap = [c for c in _children(rel, full) if c[0].rsplit("/", 1)[-1] not in exclude]
    heapq.heapify(heap)
    while heap:
        path, absolute, is_dir = heapq.heappop(heap)
        if is_dir:
            for child in _children(path, absolute):
                if child[0].rsplit("/", 1)[-1] not in exclude:
                    heapq.heappush(heap, child)
        else:
            yield path, absolute


def _zip_chunks(
    files: OpenFiles, folder: str, top: str, exclude: frozenset[str], prefix: str
) -> Generator[bytes, None, None]:
    sink = _ZipSink()
    cut = len(folder) + 1 if folder else 0
    with zipfile.ZipFile(
        sink,
        "w",
        zipfile.ZIP_DEFLATED,
        allowZip64=True,
        strict_timestamps=False,
    ) as archive:
        for path, absolute in _zip_members(folder, top, exclude):
            try:
                info = zipfile.ZipInfo.from_file(
                    absolute, prefix + path[cut:], strict_timestamps=False
                )
                copy = _consistent_copy(files, path)
            except (NotFound, FailedPrecondition, FileNotFoundError):
                continue  # removed (or replaced by a folder) while we zip
            info.compress_type = zipfile.ZIP_DEFLATED
            with copy, archive.open(info, "w", force_zip64=True) as member:
                while chunk := copy.read(CHUNK_BYTES):
                    member.write(chunk)
                    yield from sink.drain(CHUNK_BYTES)
            yield from sink.drain(CHUNK_BYTES)
    yield from sink.drain(0)
