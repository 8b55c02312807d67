"""DDS environment that keeps every test (and the simulated demo) on loopback.

``loopback_env`` returns the environment variables a process needs so that its ROS 2
participants use the Fast DDS profile in ``vlac_core/resources/fastdds_loopback.xml``: shared
memory for large frames, UDP bound to 127.0.0.1, no multicast on the LAN. A missing profile
is an error, never a silent fallback (Fast DDS would then multicast on the network card).

``DomainLease`` hands out a ROS_DOMAIN_ID that no other test run on this machine holds, using
an exclusive file lock per domain id that the kernel releases when the holder dies.
"""

from __future__ import annotations

import fcntl
from importlib import resources
import os
import pathlib
import tempfile

# Domain ids 1..101 are valid for any participant count on Linux (port ranges); 0 is the
# default that interactive ROS sessions use, so tests never take it.
_DOMAIN_RANGE = range(1, 102)

# Variables that would override or bypass the profile's transport settings.
_CONFLICTING = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY', 'ROS_STATIC_PEERS',
                'FASTDDS_DEFAULT_PROFILES_FILE')


def loopback_profile() -> pathlib.Path:
    """Return the path of the loopback-only Fast DDS profile shipped with vlac_core."""
    path = pathlib.Path(str(resources.files('vlac_core') / 'resources' / 'fastdds_loopback.xml'))
    if not path.is_file():
        raise FileNotFoundError(
            f'Fast DDS loopback profile missing at {path}: refusing to run DDS without it '
            '(the default would multicast discovery on the LAN)')
    return path


def loopback_env(base: dict[str, str] | None = None, *, domain_id: int | None = None,
                 log_dir: os.PathLike | None = None) -> dict[str, str]:
    """Return a copy of ``base`` (default os.environ) set up for loopback-only DDS."""
    env = dict(os.environ if base is None else base)
    for key in _CONFLICTING:
        env.pop(key, None)
    env['RMW_IMPLEMENTATION'] = 'rmw_fastrtps_cpp'
    env['FASTRTPS_DEFAULT_PROFILES_FILE'] = str(loopback_profile())
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(domain_id)
    if log_dir is not None:
        env['ROS_LOG_DIR'] = str(log_dir)
    env.setdefault('ROS_LOG_DIR', str(pathlib.Path(tempfile.gettempdir()) / 'vlac_ros_log'))
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_COLORIZED_OUTPUT'] = '0'
    return env


def apply_loopback_env(**kwargs) -> None:
    """Set up this process's own environment for loopback-only DDS (before rclpy.init)."""
    env = loopback_env(**kwargs)
    for key in _CONFLICTING:
        os.environ.pop(key, None)
    os.environ.update(env)


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
