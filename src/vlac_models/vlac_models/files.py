"""File-system rules shared by every writer of the stack (ROS-free): one atomic write.

A file or folder the stack writes (weights, checkpoints, episode recordings, models, caches)
appears under its final name only when complete: it is written under a hidden temporary name
in the same folder, flushed to disk, then renamed into place, and the folder's entry is
flushed too. A crash leaves the old version or the new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import shutil
import tempfile
from typing import Callable, Iterator


def fsync_path(path: os.PathLike) -> None:
    """Flush a file's contents (or a folder's entries) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: os.PathLike) -> None:
    """Flush every file below ``path`` and the folder itself."""
    root = pathlib.Path(path)
    for item in sorted(root.rglob('*')):
        if item.is_file():
            fsync_path(item)
    fsync_path(root)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 22), b''):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: os.PathLike, write: Callable[[pathlib.Path], None],
                 mode: int = 0o644) -> pathlib.Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file next to it.

    The temporary file is flushed and renamed over ``path``, then the folder entry flushed.
    On any error the temporary file is removed and the error propagates; an existing ``path``
    is untouched.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(handle)
    tmp = pathlib.Path(name)
    try:
        write(tmp)
        fsync_path(tmp)
        os.chmod(tmp, mode)  # mkstemp makes 0600; models and recordings are no secret
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def atomic_write_bytes(path: os.PathLike, data: bytes, mode: int = 0o644) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), mode)


def replace_directory(staging: pathlib.Path, out: pathlib.Path) -> None:
    """Move the finished ``staging`` folder to ``out``, replacing any folder already there.

    The old folder is renamed aside first and deleted only once ``out`` holds the new one, so
    a crash leaves either the old or the new model in place, never a half-written one.
    """
    fsync_tree(staging)
    if not out.exists():
        staging.rename(out)
        fsync_path(out.parent)
        return
    old = out.parent / f'.{out.name}.old-{os.getpid()}'
    out.rename(old)
    staging.rename(out)
    fsync_path(out.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(out: os.PathLike) -> Iterator[pathlib.Path]:
    """A hidden staging folder beside ``out`` that becomes ``out`` when the block succeeds.

    On an exception the staging folder is deleted and ``out`` is untouched; on success it
    replaces ``out`` (``replace_directory``): readers never see a half-written model.
    """
    out = pathlib.Path(out)
    staging = out.parent / f'.{out.name}.tmp-{os.getpid()}'
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_directory(staging, out)
