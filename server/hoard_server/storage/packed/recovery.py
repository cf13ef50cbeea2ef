"""Start-up recovery of a packed store: cheap, growing with the number of packs only.

Opening never scans objects: each pack's size is checked against the committed end the
index records (bytes past it are crash leftovers and are cut off), pack files the index does
not know are deleted (a crash before their commit) and staging is emptied.
"""

from __future__ import annotations

import logging
import os
import shutil

from hoard_server.storage import modes
from hoard_server.storage.index import ObjectIndex
from hoard_server.storage.layout import RepositoryLayout, parse_pack_name

log = logging.getLogger(__name__)


def recover(
    name: str, index: ObjectIndex, layout: RepositoryLayout, pack_max_bytes: int
) -> tuple[tuple[int, int] | None, int]:
    """Bring the files in line with the index; return (the pack to append to and its end,
    or None; the next pack id)."""
    packs = index.packs()
    for entry in os.listdir(layout.packs_dir):
        pid = parse_pack_name(entry)
        if pid is None or pid not in packs:
            log.warning("repository %s: removing pack %s unknown to the index", name, entry)
            os.unlink(os.path.join(layout.packs_dir, entry))
    for pid, state in packs.items():
        path = layout.pack_path(pid)
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            log.error("repository %s: pack %d is missing", name, pid)
            continue
        if size > state.end:
            log.info(
                "repository %s: cutting %d uncommitted bytes off pack %d",
                name,
                size - state.end,
                pid,
            )
            os.truncate(path, state.end)
        elif size < state.end:
            log.error("repository %s: pack %d is shorter than committed", name, pid)
    shutil.rmtree(layout.staging_dir, ignore_errors=True)
    modes.makedirs(layout.staging_dir, exist_ok=True)
    open_packs = [
        (pid, st.end) for pid, st in packs.items() if not st.single and st.end < pack_max_bytes
    ]
    current = max(open_packs) if open_packs else None
    # never reuse a pack id, even of a pack compacted away: backups rely on it
    next_id = int(index.get_meta("next_pack_id") or b"1")
    return current, max(next_id, max(packs, default=0) + 1)
