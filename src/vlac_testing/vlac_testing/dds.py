"""A private ROS_DOMAIN_ID per test run (the loopback profile itself is ``vlac_ros.dds``).

``DomainLease`` hands out a ROS_DOMAIN_ID that no other test run on this machine holds, using
an exclusive file lock per domain id that the kernel releases when the holder dies.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import tempfile

# Domain ids 1..101 are valid for any participant count on Linux (port ranges); 0 is the
# default that interactive ROS sessions use, so tests never take it.
_DOMAIN_RANGE = range(1, 102)


class DomainLease:
    """An exclusive ROS_DOMAIN_ID for as long as this object is open.

    The lock is a ``flock`` on a file per domain id in the system temp directory; a crashed
    holder releases it automatically, so leases never leak.
    """

    def __init__(self, lock_dir: os.PathLike | None = None) -> None:
        self._dir = pathlib.Path(lock_dir or pathlib.Path(tempfile.gettempdir())
                                 / 'vlac_ros_domains')
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self.domain_id = -1
        for domain_id in _DOMAIN_RANGE:
            fd = os.open(self._dir / f'{domain_id}.lock', os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._fd, self.domain_id = fd, domain_id
            return
        raise RuntimeError(f'all ROS domain ids {_DOMAIN_RANGE.start}..{_DOMAIN_RANGE.stop - 1} '
                           f'are leased (lock files in {self._dir})')

    def release(self) -> None:
        """Give the domain id back."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
