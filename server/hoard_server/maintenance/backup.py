"""Online backup and offline restore of one repository.

A backup directory holds a copy that a daemon can open as it is::

    <dest>/packs/00000001.pack ...   pack files, each cut at its committed end
    <dest>/index/data.mdb            a compacted snapshot of the LMDB index
    <dest>/datasets/<path>           the dataset (HDF5) files, each a consistent copy
    <dest>/metadata/data.mdb         a compacted snapshot of the metadata cache (if any)
    <dest>/backup.json               what was backed up, and when (written last)
    <dest>/backup.lock               held (flock) by the backup writing here

Consistency: the index snapshot is taken in one read transaction, and it records how far
each pack was committed at that instant; packs are append-only below that end, and no pack
is deleted while a backup runs (the backup counts as a reader, so compaction waits). So the
copied packs, cut at those ends, hold exactly what the snapshot indexes.

Incremental and resumable: a pack already in the destination is copied only from where the
copy ends (sealed packs: not at all). The index is replaced only after every pack is in
place, and packs that compaction removed are deleted from the backup only after that.

The metadata cache: its LMDB environment is copied in one read transaction (compacted,
like the index) to a temporary folder that replaces the previous copy once complete. It
is independent of the objects: any consistent snapshot will do.

Dataset files: each is copied whole while its writes are paused and it is flushed
(``OpenFiles.consistent``), so the copy is a valid HDF5 file holding every write acknowledged
before the copy began (a writer of that file waits for the copy to finish). The superblock's
"open for writing" flags, set while the daemon has the file open, are cleared in the copy so
that any HDF5 reader opens it. A copy is written
under a hidden temporary name and renamed into place; it keeps its source's modification
time, so a file of the same size and mtime is not copied again. Files deleted from the
repository are deleted from the backup. They are updated after the index swap, while the
backup has no manifest (it is incomplete until the new one is written).

Safety: the destination must lie under a backup root and neither inside nor around the live
data. Below the root, every directory and file is reached relative to an open directory and
without following links (``O_NOFOLLOW``); a link found there is refused, never followed or
deleted through. One backup at a time writes to a destination (the lock), and every
temporary name is unique to its run. Files and directories get hoard's modes
(``storage.modes``), whatever the umask.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from hoard_server.errors import (
    FailedPrecondition,
    HoardError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from hoard_server.observe.metrics import BackupRun
from hoard_server.reports import BackupProgress
from hoard_server.storage import modes
from hoard_server.storage.activity import Activity
from hoard_server.storage.hdf5 import superblock
from hoard_server.storage.hdf5.files import OpenFiles
from hoard_server.storage.hdf5.inventory import dataset_files, is_hidden
from hoard_server.storage.index import ObjectIndex
from hoard_server.storage.layout import (
    BACKUP_LOCK,
    BACKUP_MANIFEST,
    DATASETS,
    INDEX,
    INDEX_DATA,
    METADATA,
    METADATA_DATA,
    PACKS,
    DataDirLayout,
    RepositoryLayout,
    pack_name,
    parse_pack_name,
)
from hoard_server.storage.pack import fsync_dir, raise_if_full
from hoard_server.storage.registry import check_repository_name
from hoard_server.storage.repository import Repository, StorageSettings
from hoard_server.storage.sandbox import check_relative_path

if TYPE_CHECKING:  # the objects face does not load the metadata code
    from hoard_server.storage.metadata.index import MetadataIndex

MANIFEST = BACKUP_MANIFEST
LOCK = BACKUP_LOCK
MANIFEST_FORMAT = 1
_COPY_CHUNK = 8 << 20
# temporary names of this and earlier versions: anything so named is a crashed run's leftover
_TEMP_PREFIXES = ("index.partial", "index.old", "metadata.partial", "metadata.old",
                  MANIFEST + ".tmp")
_FILE_TEMP = ".partial-"  # a dataset file's copy in progress (hidden: never a dataset file)
_NAME_MAX = 255  # Linux's limits, checked up front so that a long name is the user's mistake
_PATH_MAX = 4096
_PATH_RESERVE = 64  # room for the longest name a backup creates below the destination

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a planted FIFO must fail or return at once, not hang the backup
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class BackupSource(Protocol):
    """What a backup needs of a repository: its identity, where its files are, its index
    (one read transaction is the snapshot), its activity (a hold keeps packs from being
    retired while they are copied) and its open dataset files (to copy each consistently)."""

    name: str
    uuid: str
    layout: RepositoryLayout
    index: ObjectIndex
    activity: Activity
    files: OpenFiles

    @property
    def metadata(self) -> MetadataIndex: ...

    def has_metadata(self) -> bool: ...


# -- the destination ---------------------------------------------------------------------


def resolve_destination(
    destination: str, roots: tuple[str, ...], data_dir: str | None = None
) -> tuple[str, str]:
    """``(root, destination)`` as real paths, for a destination the daemon may write to.

    FailedPrecondition: no backup root is configured, or the destination is inside or
    contains ``data_dir``. InvalidArgument: not absolute, a NUL byte, a name or the path too
    long. PermissionDenied: outside every root (after resolving links).
    """
    if not roots:
        raise FailedPrecondition(
            "backups are not enabled on this daemon: the admin must configure a backup root "
            "(hoard serve --backup-root DIR, or backup_roots in the [server] section)"
        )
    if not destination or not os.path.isabs(destination):
        raise InvalidArgument(f"backup destination {destination!r} must be an absolute path")
    if "\0" in destination:
        raise InvalidArgument(f"backup destination {destination!r} holds a NUL byte")
    real = os.path.realpath(destination)
    _check_length(destination, real)
    for root in roots:
        base = os.path.realpath(root)
        if os.path.commonpath([real, base]) == base:
            if data_dir is not None:
                refuse_live_data(destination, real, data_dir, "the daemon's data directory")
            return base, real
    raise PermissionDenied(
        f"backup destination {destination} is outside the daemon's backup roots "
        f"({', '.join(roots)})"
    )


def check_destination(destination: str, roots: tuple[str, ...], data_dir: str | None = None) -> str:
    """The real path of an allowed destination; see ``resolve_destination``."""
    return resolve_destination(destination, roots, data_dir)[1]


def refuse_live_data(destination: str, real: str, live: str, what: str) -> None:
    """FailedPrecondition if ``real`` (a real path) is ``live`` or lies inside or around it."""
    live_real = os.path.realpath(live)
    common = os.path.commonpath([real, live_real])
    if common == live_real:
        where = "is" if real == live_real else "is inside"
    elif common == real:
        where = "contains"
    else:
        return
    raise FailedPrecondition(
        f"backup destination {destination} {where} {what} ({live_real}): a backup there "
        "would overwrite the live data; choose a directory outside the data directory"
    )


def _check_length(destination: str, real: str) -> None:
    encoded = os.fsencode(real)
    if len(encoded) > _PATH_MAX - _PATH_RESERVE:
        raise InvalidArgument(
            f"backup destination {destination[:80]}... is too long ({len(encoded)} bytes; "
            f"at most {_PATH_MAX - _PATH_RESERVE})"
        )
    for part in encoded.split(b"/"):
        if len(part) > _NAME_MAX:
            raise InvalidArgument(
                f"backup destination {destination[:80]}...: a name is too long "
                f"({len(part)} bytes; at most {_NAME_MAX})"
            )


# -- link-safe file operations relative to an open directory ------------------------------


def _explain(exc: OSError, dir_fd: int, name: str, path: str, want_dir: bool) -> Exception:
    """The error to raise for a failed open of ``name``: a planted link or a wrong kind of
    file is the user's problem (FailedPrecondition); anything else stays an OSError."""
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidArgument(f"{path}: the name is too long")
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return exc
    if stat.S_ISLNK(st.st_mode):
        return FailedPrecondition(
            f"{path} is a symbolic link; a backup never follows links: remove it"
        )
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return FailedPrecondition(f"{path} is not a directory")
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return FailedPrecondition(f"{path} is not a regular file")
    return exc


def _open_dir(dir_fd: int, name: str, path: str, create: bool = False) -> int:
    """Open directory ``name`` under ``dir_fd`` without following a link; with ``create``,
    make it first (hoard's mode) if it does not exist."""
    created = False
    if create:
        try:
            os.mkdir(name, modes.dir_mode(), dir_fd=dir_fd)
            created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise _explain(exc, dir_fd, name, path, want_dir=True) from exc
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _explain(exc, dir_fd, name, path, want_dir=True) from exc
    if created:
        os.fchmod(fd, modes.dir_mode())  # mkdir's mode went through the umask
    return fd


def _open_file(dir_fd: int, name: str, path: str, flags: int) -> int:
    """Open regular file ``name`` under ``dir_fd`` without following a link; created files
    get hoard's file mode."""
    try:
        fd = os.open(name, flags | _FILE_FLAGS, modes.file_mode(), dir_fd=dir_fd)
    except OSError as exc:
        raise _explain(exc, dir_fd, name, path, want_dir=False) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FailedPrecondition(f"{path} is not a regular file")
    return fd


def _remove(dir_fd: int, name: str, path: str) -> None:
    """Delete file or tree ``name`` under ``dir_fd`` (absent: nothing to do). A link is
    refused rather than deleted through; the tree is removed without following links."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise FailedPrecondition(
            f"{path} is a symbolic link; a backup never follows links: remove it"
        )
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # fd-based: refuses a link, follows none below
    else:
        os.unlink(name, dir_fd=dir_fd)


def _open_destination(root: str, destination: str) -> int:
    """Open ``destination`` (under ``root``), creating what is missing below the root;
    nothing below the root may be a link."""
    modes.makedirs(root, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    path = root
    rel = os.path.relpath(destination, root)
    for part in [] if rel == os.curdir else rel.split(os.sep):
        path = os.path.join(path, part)
        try:
            sub = _open_dir(fd, part, path, create=True)
        finally:
            os.close(fd)
        fd = sub
    return fd


def _read_small_file(dir_fd: int, name: str, path: str) -> bytes | None:
    """The content of regular file ``name`` under ``dir_fd``, None if it does not exist."""
    try:
        fd = _open_file(dir_fd, name, path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _copy_into(src: str, fd: int, start: int, end: int) -> int:
    """Make ``fd`` hold src[:end], given it holds src[:start] already; fsync; bytes copied."""
    os.ftruncate(fd, start)
    with open(src, "rb") as fin:
        fin.seek(start)
        pos = start
        while pos < end:
            chunk = fin.read(min(_COPY_CHUNK, end - pos))
            if not chunk:
                raise FailedPrecondition(f"{src} is shorter than its committed size {end}")
            _write_all(fd, chunk, pos)
            pos += len(chunk)
    os.fsync(fd)
    return end - start


# -- the manifest ----------------------------------------------------------------------------


def _parse_manifest(raw: bytes, path: str) -> dict:
    """The manifest in ``raw``; FailedPrecondition naming what is wrong with it."""
    bad = f"{path} is not a valid backup manifest"
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FailedPrecondition(f"{bad}: it is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise FailedPrecondition(f"{bad}: it holds a JSON {type(manifest).__name__}, not an object")
    fields = {"repository": str, "uuid": str, "format": int, "objects": int, "packs": dict}
    wrong = [f for f, t in fields.items() if type(manifest.get(f)) is not t]
    if wrong:
        raise FailedPrecondition(f"{bad}: missing or malformed {', '.join(wrong)}")
    if manifest["format"] != MANIFEST_FORMAT:
        raise FailedPrecondition(
            f"{bad}: format {manifest['format']}, this version reads format {MANIFEST_FORMAT}"
        )
    for pid, end in manifest["packs"].items():
        if not pid.isdigit() or type(end) is not int or end < 0:
            raise FailedPrecondition(f"{bad}: malformed pack entry {pid!r}: {end!r}")
    files = manifest.setdefault("files", {})  # absent in backups older than dataset files
    if type(files) is not dict:
        raise FailedPrecondition(f"{bad}: malformed files")
    for rel, stamp in files.items():
        try:
            check_relative_path(rel)
        except InvalidArgument as exc:
            raise FailedPrecondition(f"{bad}: malformed file entry: {exc}") from None
        if (
            type(stamp) is not list
            or len(stamp) != 2
            or any(type(v) is not int or v < 0 for v in stamp)
        ):
            raise FailedPrecondition(f"{bad}: malformed file entry {rel!r}: {stamp!r}")
    return manifest


# -- backup ------------------------------------------------------------------------------------


def backup(
    repo: BackupSource, destination: str, root: str | None = None
) -> Generator[BackupProgress, None, None]:
    """Write a consistent, incremental snapshot of ``repo`` into ``destination``.

    ``root`` is the real path of the backup root holding ``destination`` (default: its
    parent); below it nothing is created or opened through a link. Yields progress reports,
    the last with ``stage == "done"``. FailedPrecondition: another backup is writing there,
    the destination holds a link, a wrong kind of file, a malformed manifest or another
    repository's backup, or it is the repository's own directory (or inside or around it).
    """
    destination = os.path.abspath(destination)
    refuse_live_data(destination, os.path.realpath(destination), repo.layout.root, "the repository")
    if root is None:
        root = os.path.dirname(destination)
    tag = f"{os.getpid()}-{secrets.token_hex(6)}"
    fds: list[int] = []
    try:
        dfd = _open_destination(root, destination)
        fds.append(dfd)
        lock = _open_file(dfd, LOCK, os.path.join(destination, LOCK), os.O_RDWR | os.O_CREAT)
        fds.append(lock)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FailedPrecondition(
                f"another backup is writing to {destination}; try again when it has finished"
            ) from None
        os.fchmod(lock, modes.file_mode())
        with BackupRun(repo.name) as run:
            yield from _backup_locked(repo, destination, dfd, tag, fds, run)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise InvalidArgument(f"backup destination {destination}: a name is too long") from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise FailedPrecondition(
                f"the daemon cannot write the backup to {destination}: {exc.strerror}"
            ) from exc
        raise_if_full(exc, f"writing the backup to {destination}")
    finally:
        for fd in reversed(fds):
            os.close(fd)


def _backup_locked(
    repo: BackupSource, destination: str, dfd: int, tag: str, fds: list[int], run: BackupRun
) -> Iterator[BackupProgress]:
    """The backup proper, with the destination open as ``dfd`` and locked."""

    def path(*names: str) -> str:
        return os.path.join(destination, *names)

    for entry in os.listdir(dfd):  # leftovers of crashed runs (we hold the lock)
        if entry.startswith(_TEMP_PREFIXES):
            _remove(dfd, entry, path(entry))
    try:
        st = os.lstat(INDEX, dir_fd=dfd)
        if not stat.S_ISDIR(st.st_mode):
            raise _explain(OSError(errno.ENOTDIR, INDEX), dfd, INDEX, path(INDEX), True)
    except FileNotFoundError:
        pass
    raw = _read_small_file(dfd, MANIFEST, path(MANIFEST))
    if raw is not None:
        previous = _parse_manifest(raw, path(MANIFEST))
        if previous["uuid"] != repo.uuid:
            raise FailedPrecondition(
                f"{destination} holds a backup of another repository "
                f"({previous['repository']!r}, uuid {previous['uuid']}); use an empty directory"
            )
    pfd = _open_dir(dfd, PACKS, path(PACKS), create=True)
    fds.append(pfd)
    os.fchmod(pfd, modes.dir_mode())

    partial = f"index.partial-{tag}"
    swapped = False
    try:
        with repo.activity.hold():  # no pack may be deleted until we are done
            # a fresh unique name: mkdir fails rather than follows anything already there
            os.mkdir(partial, modes.dir_mode(), dir_fd=dfd)
            ifd = _open_dir(dfd, partial, path(partial))
            try:
                os.fchmod(ifd, modes.dir_mode())
                mfd = _open_file(
                    ifd,
                    INDEX_DATA,
                    path(partial, INDEX_DATA),
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                )
                try:
                    os.fchmod(mfd, modes.file_mode())
                    with repo.index.read() as txn:
                        packs = repo.index.packs(txn)
                        totals = repo.index.totals(txn)
                        repo.index.copy_to_fd(mfd, txn)
                    os.fsync(mfd)
                finally:
                    os.close(mfd)
                os.fsync(ifd)
            finally:
                os.close(ifd)
            progress = BackupProgress(
                stage="snapshot",
                message=f"index snapshot taken: {totals.objects} objects in {len(packs)} packs",
                packs_total=len(packs),
                bytes_total=sum(state.end for state in packs.values()),
                objects=totals.objects,
            )
            sources = dataset_files(repo.layout.datasets_dir)
            run.expect(progress.bytes_total + sum(entry.size for entry in sources))
            yield replace(progress)
            for pid, state in sorted(packs.items()):
                name = pack_name(pid)
                fd = _open_file(pfd, name, path(PACKS, name), os.O_RDWR | os.O_CREAT)
                try:
                    os.fchmod(fd, modes.file_mode())
                    have = os.fstat(fd).st_size
                    if have == state.end:
                        progress.packs_unchanged += 1
                        run.handled(state.end)
                        continue
                    start = have if have < state.end else 0
                    copied = _copy_into(repo.layout.pack_path(pid), fd, start, state.end)
                    progress.bytes_copied += copied
                    run.handled(state.end, copied)
                finally:
                    os.close(fd)
                progress.packs_copied += 1
                progress.stage = "packs"
                progress.message = f"pack {pid}: copied {state.end - start} bytes"
                yield replace(progress)
        os.fsync(pfd)
        # From here until the new manifest is in, the backup is incomplete rather than a
        # previous manifest beside an index and packs it does not describe.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(MANIFEST, dir_fd=dfd)
        # the new index goes in only now that every pack it needs is complete
        old = f"index.old-{tag}"
        try:
            os.rename(INDEX, old, src_dir_fd=dfd, dst_dir_fd=dfd)
        except FileNotFoundError:
            old = ""
        os.rename(partial, INDEX, src_dir_fd=dfd, dst_dir_fd=dfd)
        swapped = True
        os.fsync(dfd)
        if old:
            _remove(dfd, old, path(old))
    finally:
        if not swapped:
            with contextlib.suppress(OSError, HoardError):  # else the next run removes it
                _remove(dfd, partial, path(partial))
    for entry in os.listdir(pfd):
        if parse_pack_name(entry) in packs:
            continue
        if not stat.S_ISDIR(os.lstat(entry, dir_fd=pfd).st_mode):
            os.unlink(entry, dir_fd=pfd)  # compacted away since last time (unlink: no follow)
    metadata_records = _backup_metadata(repo, destination, dfd, tag)
    files: dict[str, list[int]] = {}
    yield from _backup_files(repo, destination, dfd, tag, progress, files, run)
    manifest = {
        "repository": repo.name,
        "uuid": repo.uuid,
        "created_at": time.time(),
        "objects": totals.objects,
        "raw_bytes": totals.raw_bytes,
        "packs": {str(pid): st.end for pid, st in sorted(packs.items())},
        "files": files,
        "format": MANIFEST_FORMAT,
    }
    if metadata_records is not None:
        manifest["metadata_records"] = metadata_records
    tmp = f"{MANIFEST}.tmp-{tag}"
    fd = _open_file(dfd, tmp, path(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.fchmod(fd, modes.file_mode())
        _write_all(fd, json.dumps(manifest, indent=1).encode(), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, MANIFEST, src_dir_fd=dfd, dst_dir_fd=dfd)
    os.fsync(dfd)
    progress.stage = "done"
    progress.message = (
        f"backup of {repo.name!r} complete: {progress.packs_copied} pack(s) copied, "
        f"{progress.packs_unchanged} unchanged, {progress.bytes_copied} bytes; "
        f"{progress.files_copied} dataset file(s) copied of {len(files)}, "
        f"{progress.file_bytes} bytes"
    )
    yield progress


# -- the metadata cache ------------------------------------------------------------------------


def _backup_metadata(repo: BackupSource, destination: str, dfd: int, tag: str) -> int | None:
    """Replace ``<dest>/metadata/`` with a snapshot of the repository's metadata cache; its
    record count (None: the repository has no cache, and nothing is written)."""
    if not repo.has_metadata():
        return None
    index = repo.metadata
    partial = f"metadata.partial-{tag}"
    shown = os.path.join(destination, partial)
    swapped = False
    try:
        os.mkdir(partial, modes.dir_mode(), dir_fd=dfd)
        pfd = _open_dir(dfd, partial, shown)
        try:
            os.fchmod(pfd, modes.dir_mode())
            fd = _open_file(pfd, METADATA_DATA, os.path.join(shown, METADATA_DATA),
                            os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                os.fchmod(fd, modes.file_mode())
                records = index.count()
                with index.lmdb.read() as txn:
                    index.lmdb.copy_to_fd(fd, txn)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.fsync(pfd)
        finally:
            os.close(pfd)
        old = f"metadata.old-{tag}"
        try:
            os.rename(METADATA, old, src_dir_fd=dfd, dst_dir_fd=dfd)
        except FileNotFoundError:
            old = ""
        os.rename(partial, METADATA, src_dir_fd=dfd, dst_dir_fd=dfd)
        swapped = True
        os.fsync(dfd)
        if old:
            _remove(dfd, old, os.path.join(destination, old))
    finally:
        if not swapped:
            with contextlib.suppress(OSError, HoardError):  # else the next run removes it
                _remove(dfd, partial, shown)
    return records


# -- dataset files -----------------------------------------------------------------------------


def _backup_files(
    repo: BackupSource,
    destination: str,
    dfd: int,
    tag: str,
    progress: BackupProgress,
    copied: dict[str, list[int]],
    run: BackupRun,
) -> Iterator[BackupProgress]:
    """Bring ``<dest>/datasets/`` in line with the repository's dataset files; ``copied``
    receives ``[size, mtime_ns]`` of every file now in the backup."""
    shown = os.path.join(destination, DATASETS)
    sfd = _open_dir(dfd, DATASETS, shown, create=True)
    try:
        os.fchmod(sfd, modes.dir_mode())
        sources = list(dataset_files(repo.layout.datasets_dir))
        wanted = {entry.path for entry in sources}
        folders = {rel.rsplit("/", i)[0] for rel in wanted for i in range(1, rel.count("/") + 1)}
        _prune(sfd, "", wanted, folders, shown)  # first: a deleted file may be a folder now
        for entry in sources:
            try:
                repo.files.resolve(entry.path)
            except InvalidArgument as exc:  # a name the sandbox refuses: no file we serve
                run.handled(entry.size)
                progress.message = f"file {entry.path} skipped: {exc}"
                yield replace(progress, stage="files")
                continue
            result = _backup_file(repo.files, entry.path, sfd, shown, tag)
            if result is None:  # deleted since it was listed (and from the backup)
                run.handled(entry.size)
                continue
            copied[entry.path], n = result
            run.handled(entry.size, n or 0)
            if n is not None:
                progress.files_copied += 1
                progress.file_bytes += n
                progress.stage = "files"
                progress.message = f"file {entry.path}: copied {n} bytes"
                yield replace(progress)
        os.fsync(sfd)
    finally:
        os.close(sfd)


def _prune(dir_fd: int, prefix: str, files: set[str], folders: set[str], shown: str) -> None:
    """Delete what is under ``dir_fd`` but is neither one of ``files`` nor one of
    ``folders`` (repository-relative), links and leftover temporary copies included. A
    link is deleted, never followed."""
    for name in os.listdir(dir_fd):
        rel = prefix + name
        st = os.lstat(name, dir_fd=dir_fd)
        if stat.S_ISDIR(st.st_mode):
            if rel in folders and not is_hidden(name):
                sub = _open_dir(dir_fd, name, os.path.join(shown, rel))
                try:
                    _prune(sub, rel + "/", files, folders, shown)
                finally:
                    os.close(sub)
            else:
                shutil.rmtree(name, dir_fd=dir_fd)  # fd-based: follows no link
        elif not (stat.S_ISREG(st.st_mode) and rel in files and not is_hidden(name)):
            os.unlink(name, dir_fd=dir_fd)


def _backup_file(
    files: OpenFiles, rel: str, sfd: int, shown: str, tag: str
) -> tuple[list[int], int | None] | None:
    """Copy dataset file ``rel`` to the same path under ``sfd``, unless the copy there has
    its size and mtime: ``([size, mtime_ns], bytes copied or None if unchanged)``; None if
    the file no longer exists (its copy is deleted)."""
    parts = rel.split("/")
    opened: list[int] = []
    try:
        dir_fd = sfd
        for i, part in enumerate(parts[:-1]):
            dir_fd = _open_dir(dir_fd, part, os.path.join(shown, *parts[: i + 1]), create=True)
            opened.append(dir_fd)
        name = parts[-1]
        with files.consistent(rel) as full:  # writes paused, file flushed: a valid file
            try:
                src = os.open(full, os.O_RDONLY | _FILE_FLAGS)
            except FileNotFoundError:
                with contextlib.suppress(FileNotFoundError):
                    _remove(dir_fd, name, os.path.join(shown, rel))
                return None
            try:
                st = os.fstat(src)
                stamp = [st.st_size, st.st_mtime_ns]
                try:
                    have = os.lstat(name, dir_fd=dir_fd)
                    if stat.S_ISREG(have.st_mode) and [have.st_size, have.st_mtime_ns] == stamp:
                        return stamp, None
                except FileNotFoundError:
                    pass
                tmp = f"{_FILE_TEMP}{tag}"
                fd = _open_file(
                    dir_fd, tmp, os.path.join(shown, rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL
                )
                try:
                    os.fchmod(fd, modes.file_mode())
                    n = _copy_hdf5(src, fd, st.st_size)
                    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                    os.fsync(fd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=dir_fd)
                    raise
                finally:
                    os.close(fd)
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # replaces a link
                os.fsync(dir_fd)
            finally:
                os.close(src)
        return stamp, n
    finally:
        for fd in reversed(opened):
            os.close(fd)


def _copy_hdf5(src: int, fd: int, size: int) -> int:
    """Copy ``size`` bytes of HDF5 file ``src`` into empty ``fd``, the superblock's
    open-for-writing flags cleared in the copy; bytes copied."""
    pos = 0
    while pos < size:
        chunk = os.pread(src, min(_COPY_CHUNK, size - pos), pos)
        if not chunk:
            raise FailedPrecondition(f"a dataset file shrank while it was copied ({pos} of {size})")
        if pos == 0:
            head = bytearray(chunk)
            superblock.clear_status_flags(head)
            chunk = bytes(head)
        _write_all(fd, chunk, pos)
        pos += len(chunk)
    return pos


# -- restore -----------------------------------------------------------------------------------


def _copy_new_file(src: str, dst: str, end: int | None = None) -> int:
    """Copy src[:end] (all of it by default) into new file ``dst`` with hoard's file mode."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, modes.file_mode())
    try:
        os.fchmod(fd, modes.file_mode())
        return _copy_into(src, fd, 0, os.path.getsize(src) if end is None else end)
    finally:
        os.close(fd)


def restore(backup_dir: str, data_dir: str, repository: str | None = None) -> dict:
    """Bring a backup into ``data_dir`` as repository ``repository`` (default: its own name).

    Runs without a daemon, or beside one under a new repository name. The repository must
    not exist yet. Everything created gets hoard's modes (``storage.modes``), whatever the
    umask. NotFound: no manifest; FailedPrecondition: a malformed manifest, no index, or the
    repository exists; InvalidArgument: a pack is missing or short, or a dataset file is
    missing or not the size the manifest says. Returns a summary.
    """
    manifest_path = os.path.join(backup_dir, MANIFEST)
    try:
        with open(manifest_path, "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"{backup_dir} is not a complete hoard backup (no {MANIFEST})") from None
    except IsADirectoryError:
        raise FailedPrecondition(f"{manifest_path} is not a regular file") from None
    manifest = _parse_manifest(raw, manifest_path)
    index_src = RepositoryLayout(backup_dir).index_data
    if not os.path.isfile(index_src):
        raise FailedPrecondition(
            f"{backup_dir} is not a complete hoard backup: its index ({index_src}) is missing; "
            "run the backup again"
        )
    sources = {}
    for pid, end in manifest["packs"].items():
        src = RepositoryLayout(backup_dir).pack_path(int(pid))
        if not os.path.isfile(src) or os.path.getsize(src) < end:
            raise InvalidArgument(f"backup is incomplete: pack {pid} ({src}) is missing or short")
        sources[int(pid)] = (src, end)
    files = {}
    for rel, (size, _mtime) in manifest["files"].items():
        src = os.path.join(backup_dir, DATASETS, *rel.split("/"))
        if not os.path.isfile(src) or os.path.getsize(src) != size:
            raise InvalidArgument(
                f"backup is incomplete: dataset file {rel} ({src}) is missing or changed"
            )
        files[rel] = src
    metadata_src = RepositoryLayout(backup_dir).metadata_data
    with_metadata = "metadata_records" in manifest
    if with_metadata and not os.path.isfile(metadata_src):
        raise InvalidArgument(
            f"backup is incomplete: its metadata cache ({metadata_src}) is missing")
    name = check_repository_name(repository or manifest["repository"])
    data = DataDirLayout(os.path.abspath(data_dir))
    root = data.repositories_dir
    target = data.repository(name).root
    if os.path.lexists(target):
        raise FailedPrecondition(
            f"repository {name!r} already exists in {data_dir}; erase it first or restore "
            "under another name (--repository)"
        )
    modes.makedirs(root, exist_ok=True)
    tmp = data.scratch("creating")  # a leftover the registry removes at start-up
    os.mkdir(tmp, modes.dir_mode())
    try:
        os.chmod(tmp, modes.dir_mode())
        new = RepositoryLayout(tmp)
        for sub in new.directories:
            modes.makedirs(sub)
        _copy_new_file(index_src, new.index_data)
        if with_metadata:
            modes.makedirs(new.metadata_dir)
            _copy_new_file(metadata_src, new.metadata_data)
        total = 0
        for pid, (src, end) in sorted(sources.items()):
            total += _copy_new_file(src, new.pack_path(pid), end)
        folders = {new.datasets_dir}
        for rel, src in sorted(files.items()):
            dst = os.path.join(new.datasets_dir, *rel.split("/"))
            folder = os.path.dirname(dst)
            modes.makedirs(folder, exist_ok=True)
            while folder not in folders:  # each new folder's entry in its parent, too
                folders.add(folder)
                folder = os.path.dirname(folder)
            total += _copy_new_file(src, dst)
        synced = [new.metadata_dir] if with_metadata else []
        for sub in (new.index_dir, new.packs_dir, *synced, *sorted(folders, reverse=True), tmp):
            fsync_dir(sub)
        os.rename(tmp, target)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with ThreadPoolExecutor(2) as pool:
        repo = Repository(name, target, StorageSettings(), pool)
        try:
            restored = repo.info()
        finally:
            repo.close()
    return {
        "repository": name,
        "objects": restored.object_count,
        "metadata_records": restored.metadata_records,
        "packs": len(sources),
        "files": len(files),
        "bytes": total,
    }
