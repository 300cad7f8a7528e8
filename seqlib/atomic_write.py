"""``atomic_write``: replace a file all at once, with the permissions a plain ``open`` gives.

A crash mid-write must never leave a half-written checkpoint, so the data goes to a temporary
file in the same directory, which is fsynced and renamed over the target (a rename within one
file system is atomic). ``tempfile.mkstemp`` would create that file with mode 0600 whatever the
umask, so the temporary file is created here with ``os.open(..., 0o666)`` instead: the kernel
applies the umask exactly as it does for ``open(path, "w")``, and that mode is set again after
the write, because some writers (safetensors' ``save_file``) replace the file they are given
with a 0600 temporary of their own.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path) -> Iterator[Path]:
    """Yield a temporary path to write instead of ``path``; on success it replaces ``path``.

    The new file's permissions are those ``open(path, "w")`` would give: an existing file keeps
    its mode, a new one gets ``0o666`` less the umask. If the body raises, the temporary file is
    removed and ``path`` is left as it was.

    Args:
        path: the file to (re)write; its directory must exist.
    Returns:
        a context manager yielding the temporary ``Path`` to write to.
    """
    path = Path(path)
    temporary = _create_temporary(path)
    try:
        # as open() would: rewriting a file does not change its mode
        mode = stat.S_IMODE((path if path.exists() else temporary).stat().st_mode)
        yield temporary
        # NOTE: the body may have replaced the file: safetensors' save_file writes a 0600
        # temporary of its own and renames it over the path it is given
        os.chmod(temporary, mode)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _create_temporary(path: Path) -> Path:
    """A new empty file next to ``path``, created with mode 0o666 less the umask."""
    for _ in range(100):
        candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # a concurrent writer drew the same name; draw again
            continue
        return candidate
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
