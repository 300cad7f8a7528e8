"""``atomic_write``: replace a file all at once, with the permissions a plain ``open`` gives.

A crash mid-write must never leave a half-written checkpoint, so the data goes to a temporary
file, which is fsynced and renamed over the target (a rename within one file system is atomic).
The temporary file lives in a private folder ``.<name>.<8 hex digits>.tmp`` next to the target,
because some writers (safetensors' ``save_file``) write a temporary of their own next to the
file they are given and rename it over that file: in the private folder, everything one write
leaves behind is in one place, which is removed when the write ends, whether it succeeds or
raises (``KeyboardInterrupt`` and ``SystemExit`` included).

A process killed mid-write (SIGKILL, a power cut) cannot clean up, so every write first removes
the folders that earlier writes to the same target left behind: those older than its own whose
writer is gone. Each writer holds an ``flock`` on its folder while it writes, and the kernel
drops that lock when the process dies, so a live writer's folder is never taken for stale.

``tempfile.mkstemp`` would create the file with mode 0600 whatever the umask, so it is created
here with ``os.open(..., 0o666)`` instead: the kernel applies the umask exactly as it does for
``open(path, "w")``, and that mode is set again after the write, because a writer that replaces
the file (safetensors) leaves a 0600 file.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, so stale folders cannot be told from live ones
    fcntl = None


@contextmanager
def atomic_write(path) -> Iterator[Path]:
    """Yield a temporary path to write instead of ``path``; on success it replaces ``path``.

    The new file's permissions are those ``open(path, "w")`` would give: an existing file keeps
    its mode, a new one gets ``0o666`` less the umask. If the body raises, the temporary file is
    removed and ``path`` is left as it was. Temporaries of earlier writes to ``path`` whose
    process died are removed first.

    Args:
        path: the file to (re)write; its directory must exist.
    Returns:
        a context manager yielding the temporary ``Path`` to write to.
    """
    path = Path(path)
    folder, lock = _create_folder(path)
    try:
        remove_stale_temporaries(path, newest=folder)
        temporary = folder / path.name
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        # as open() would: rewriting a file does not change its mode
        mode = stat.S_IMODE((path if path.exists() else temporary).stat().st_mode)
        yield temporary
        # NOTE: the body may have replaced the file: safetensors' save_file writes a 0600
        # temporary of its own and renames it over the path it is given
        os.chmod(temporary, mode)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:  # after a success the folder is empty; after a failure it holds the partial file
        shutil.rmtree(folder, ignore_errors=True)
        if lock is not None:
            os.close(lock)
    _fsync_directory(path.parent)


def remove_stale_temporaries(path, newest: Path | None = None) -> list:
    """Remove what interrupted writes (``atomic_write``) of ``path`` left next to it.

    Only entries named as ``atomic_write`` names the temporaries of ``path``
    (``.<name>.<8 hex digits>.tmp``) are considered, never symbolic links, and of those only
    the ones no live process is writing (no ``flock`` on them) and, if ``newest`` is given, not
    modified after it. Without ``fcntl`` (Windows) nothing is removed.

    Args:
        path: the target file whose stale temporaries to remove.
        newest: the current write's temporary, which bounds the age of those removed.
    Returns:
        the paths removed.
    """
    path = Path(path)
    if fcntl is None or not path.parent.is_dir():
        return []
    name = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp")
    bound = os.stat(newest).st_mtime_ns if newest is not None else None
    with os.scandir(path.parent) as scan:
        entries = list(scan)
    removed = []
    for entry in entries:
        if not name.fullmatch(entry.name) or (newest is not None and entry.path == str(newest)):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode) or (bound is not None and info.st_mtime_ns > bound):
                continue
            descriptor = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer lives
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(entry.path)
            else:  # a temporary file of an earlier version of this module
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(descriptor)
    return removed


def _create_folder(path: Path) -> tuple:
    """``(folder, descriptor)``: a new private folder next to ``path``, locked through the
    descriptor (so also until this process dies); the descriptor is None without ``fcntl``."""
    for _ in range(100):
        folder = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.mkdir(folder)
        except FileExistsError:  # a concurrent writer drew the same name; draw again
            continue
        if fcntl is None:  # and nothing removes stale folders either
            return folder, None
        try:
            descriptor = os.open(folder, os.O_RDONLY)
        except FileNotFoundError:  # taken for stale already (see below)
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: no cleanup can lock it either
            return folder, descriptor
        # NOTE: another writer's cleanup may have taken the folder for stale between mkdir
        # and flock; once locked it is safe, so check that it is still there, else draw again
        try:
            if os.path.samestat(os.fstat(descriptor), os.stat(folder)):
                return folder, descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)
    raise FileExistsError(f"atomic_write: no free temporary name next to {path}")


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (the directory entry lives in the directory's own blocks)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
