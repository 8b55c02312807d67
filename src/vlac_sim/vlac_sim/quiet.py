"""Keep the C libraries' start-up banners out of the user's console (ROS-free).

pybullet prints its build time (to stderr) when imported and ``argv[0]=...`` lines (to stdout)
when a physics client connects, from C, straight to the file descriptors: a demo, a
benchmark report or a node log then shows lines nobody asked for. ``quiet_c_output``
silences fds 1 and 2 (C buffers flushed) for the duration of such a call only. Python
exceptions raised inside still propagate and are reported by the caller after the block.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def quiet_c_output() -> Iterator[None]:
    """Send what C code writes to stdout and stderr inside the block to /dev/null."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    libc.fflush(None)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in saved:
            os.dup2(devnull, fd)
        yield
    finally:
        libc.fflush(None)
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
