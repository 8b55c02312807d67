"""File-system helpers shared by the training commands."""

from __future__ import annotations

import os
import pathlib
import shutil


def replace_directory(staging: pathlib.Path, out: pathlib.Path) -> None:
    """Move the finished ``staging`` folder to ``out``, replacing any folder already there.

    The old folder is renamed aside first and deleted only once ``out`` holds the new one, so
    a crash leaves either the old or the new model in place, never a half-written one.
    """
    if not out.exists():
        staging.rename(out)
        return
    old = out.parent / f'.{out.name}.old-{os.getpid()}'
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
