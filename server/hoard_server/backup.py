"""Online backup and offline restore of one repository.

A backup directory holds a copy that a daemon can open as it is::

    <dest>/packs/00000001.pack ...   pack files, each cut at its committed end
    <dest>/index/data.mdb            a compacted snapshot of the LMDB index
    <dest>/backup.json               what was backed up, and when (written last)

Consistency: the index snapshot is taken in one read transaction, and it records how far
each pack was committed at that instant; packs are append-only below that end, and no pack
is deleted while a backup runs (the backup counts as a reader, so compaction waits). So the
copied packs, cut at those ends, hold exactly what the snapshot indexes.

Incremental and resumable: a pack already in the destination is copied only from where the
copy ends (sealed packs: not at all). The index is replaced only after every pack is in
place, and packs that compaction removed are deleted from the backup only after that.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator

from hoard_server.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from hoard_server.storage.pack import fsync_dir, raise_if_full
from hoard_server.storage.registry import check_repository_name
from hoard_server.storage.repository import Repository, StorageSettings

MANIFEST = "backup.json"
_COPY_CHUNK = 8 << 20


def check_destination(destination: str, roots: tuple[str, ...]) -> str:
    """The one place a backup destination is checked: absolute, and inside an allowed root."""
    if not roots:
        raise FailedPrecondition(
            "backups are not enabled on this daemon: the admin must configure a backup root "
            "(hoard serve --backup-root DIR, or backup_roots in the [server] section)"
        )
    if not destination or not os.path.isabs(destination):
        raise InvalidArgument(f"backup destination {destination!r} must be an absolute path")
    real = os.path.realpath(destination)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base + os.sep):
            return real
    raise PermissionDenied(
        f"backup destination {destination} is outside the daemon's backup roots "
        f"({', '.join(roots)})"
    )


def _copy_range(src: str, dst: str, start: int, end: int) -> int:
    """Append src[start:end] to dst (which must be `start` bytes long); fsync; bytes copied."""
    with open(src, "rb") as fin, open(dst, "ab") as fout:
        fout.truncate(start)
        fin.seek(start)
        left = end - start
        while left:
            chunk = fin.read(min(_COPY_CHUNK, left))
            if not chunk:
                raise FailedPrecondition(f"pack {src} is shorter than its committed size")
            fout.write(chunk)
            left -= len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return end - start


def backup(repo: Repository, destination: str) -> Iterator[dict]:
    """Write a consistent, incremental snapshot of ``repo`` into ``destination``."""
    packs_dir = os.path.join(destination, "packs")
    index_dir = os.path.join(destination, "index")
    partial = os.path.join(destination, "index.partial")
    try:
        os.makedirs(packs_dir, exist_ok=True)
        manifest_path = os.path.join(destination, MANIFEST)
        if os.path.exists(manifest_path):
            with open(manifest_path) as fh:
                previous = json.load(fh)
            if previous.get("uuid") != repo.uuid:
                raise FailedPrecondition(
                    f"{destination} holds a backup of another repository "
                    f"({previous.get('repository')!r}, uuid {previous.get('uuid')}); "
                    "use an empty directory"
                )
        with repo.activity.hold():  # no pack may be deleted until we are done
            shutil.rmtree(partial, ignore_errors=True)
            os.makedirs(partial)
            with repo.index.read() as txn:
                packs = repo.index.packs(txn)
                totals = repo.index.totals(txn)
                repo.index.env.copy(partial, compact=True, txn=txn)
            progress = {
                "stage": "snapshot",
                "message": f"index snapshot taken: {totals.objects} objects in {len(packs)} packs",
                "packs_total": len(packs),
                "packs_copied": 0,
                "packs_unchanged": 0,
                "bytes_copied": 0,
                "bytes_total": sum(st.end for st in packs.values()),
                "objects": totals.objects,
            }
            yield dict(progress)
            for pid, st in sorted(packs.items()):
                target = os.path.join(packs_dir, f"{pid:08d}.pack")
                have = os.path.getsize(target) if os.path.exists(target) else 0
                if have == st.end:
                    progress["packs_unchanged"] += 1
                    continue
                start = have if have < st.end else 0
                progress["bytes_copied"] += _copy_range(repo.pack_path(pid), target, start, st.end)
                progress["packs_copied"] += 1
                progress["stage"] = "packs"
                progress["message"] = f"pack {pid}: copied {st.end - start} bytes"
                yield dict(progress)
        fsync_dir(packs_dir)
        # the new index goes in only now that every pack it needs is complete
        old = os.path.join(destination, "index.old")
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(index_dir):
            os.rename(index_dir, old)
        os.rename(partial, index_dir)
        fsync_dir(destination)
        shutil.rmtree(old, ignore_errors=True)
        for entry in os.listdir(packs_dir):
            stem = entry.removesuffix(".pack")
            if not stem.isdigit() or int(stem) not in packs:
                os.unlink(os.path.join(packs_dir, entry))  # compacted away since last time
        manifest = {
            "repository": repo.name,
            "uuid": repo.uuid,
            "created_at": time.time(),
            "objects": totals.objects,
            "raw_bytes": totals.raw_bytes,
            "packs": {str(pid): st.end for pid, st in sorted(packs.items())},
            "format": 1,
        }
        tmp = manifest_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, manifest_path)
        fsync_dir(destination)
    except OSError as exc:
        raise_if_full(exc, f"writing the backup to {destination}")
    progress["stage"] = "done"
    progress["message"] = (
        f"backup of {repo.name!r} complete: {progress['packs_copied']} pack(s) copied, "
        f"{progress['packs_unchanged']} unchanged, {progress['bytes_copied']} bytes"
    )
    yield progress


def restore(backup_dir: str, data_dir: str, repository: str | None = None) -> dict:
    """Bring a backup into ``data_dir`` as repository ``repository`` (default: its own name).

    Runs without a daemon, or beside one under a new repository name. The repository must
    not exist yet. Returns a summary of what was restored.
    """
    manifest_path = os.path.join(backup_dir, MANIFEST)
    if not os.path.exists(manifest_path):
        raise NotFound(f"{backup_dir} is not a complete hoard backup (no {MANIFEST})")
    with open(manifest_path) as fh:
        manifest = json.load(fh)
    name = check_repository_name(repository or manifest["repository"])
    root = os.path.join(os.path.abspath(data_dir), "repositories")
    target = os.path.join(root, name)
    if os.path.exists(target):
        raise FailedPrecondition(
            f"repository {name!r} already exists in {data_dir}; erase it first or restore "
            "under another name (--repository)"
        )
    os.makedirs(root, exist_ok=True)
    tmp = f"{target}.creating-restore"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(os.path.join(tmp, "staging"))
        shutil.copytree(os.path.join(backup_dir, "index"), os.path.join(tmp, "index"))
        os.makedirs(os.path.join(tmp, "packs"))
        total = 0
        for pid, end in manifest["packs"].items():
            src = os.path.join(backup_dir, "packs", f"{int(pid):08d}.pack")
            if not os.path.exists(src) or os.path.getsize(src) < end:
                raise InvalidArgument(f"backup is incomplete: pack {pid} is missing or short")
            total += _copy_range(src, os.path.join(tmp, "packs", f"{int(pid):08d}.pack"), 0, end)
        fsync_dir(os.path.join(tmp, "packs"))
        os.rename(tmp, target)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        repo = Repository(name, target, StorageSettings(), pool)
        try:
            objects = repo.index.totals().objects
        finally:
            repo.close()
    return {"repository": name, "objects": objects, "packs": len(manifest["packs"]), "bytes": total}
