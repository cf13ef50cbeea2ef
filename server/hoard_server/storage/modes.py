"""Permissions of everything hoard creates on disk: private unless the admin shares it.

Packs, the index and backups hold every object in clear, so by default only the daemon's
user may read them (files 0600, directories 0700). ``group_access`` opens them to the
daemon's group for deployments where, say, a backup agent in that group reads the data
directory: ``"read"`` gives 0640/0750, ``"write"`` 0660/0770.

The modes are applied explicitly where hoard creates a file or directory, and the process
umask is set to match so that files made on our behalf by libraries (LMDB's ``lock.mdb``,
copies) follow the same rule.
"""

from __future__ import annotations

import os

GROUP_ACCESS = {"none": (0o600, 0o700), "read": (0o640, 0o750), "write": (0o660, 0o770)}

_file_mode, _dir_mode = GROUP_ACCESS["none"]


def configure(group_access: str = "none") -> None:
    """Set the modes for this process (the daemon calls it once at start-up)."""
    global _file_mode, _dir_mode
    if group_access not in GROUP_ACCESS:
        raise ValueError(
            f"group_access must be one of {', '.join(GROUP_ACCESS)}, not {group_access!r}"
        )
    _file_mode, _dir_mode = GROUP_ACCESS[group_access]
    os.umask(0o777 & ~_dir_mode)


def file_mode() -> int:
    """Mode for a new data file (pack, staging file, manifest, copied index)."""
    return _file_mode


def dir_mode() -> int:
    """Mode for a new directory."""
    return _dir_mode


def makedirs(path: str, exist_ok: bool = False) -> None:
    """``os.makedirs`` with hoard's directory mode on every level it creates."""
    parent = os.path.dirname(os.path.abspath(path))
    if parent and not os.path.isdir(parent):
        makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, _dir_mode)
    except FileExistsError:
        if not exist_ok or not os.path.isdir(path):
            raise
        return
    os.chmod(path, _dir_mode)  # mkdir's mode is filtered by the umask; be exact
