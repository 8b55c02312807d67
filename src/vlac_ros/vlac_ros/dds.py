"""Loopback-only DDS for machines without a robot network (tests, the simulated demo, laptops).

``loopback_env`` returns the environment variables a process needs so that its ROS 2
participants use the Fast DDS profile in ``vlac_ros/resources/fastdds_loopback.xml``: shared
memory for large frames, UDP bound to 127.0.0.1, no multicast on the LAN. A missing profile
is an error, never a silent fallback (Fast DDS would then multicast on the network card).

``vlac_dds_env`` prints the same settings as shell exports: ``eval "$(vlac_dds_env)"`` before
running nodes by hand on a machine without a robot network. On a lab robot leave DDS at its
LAN defaults (or the discovery set-up in docs/).
"""

from __future__ import annotations

from importlib import resources
import os
import pathlib
import shlex
import tempfile

# Variables that would override or bypass the profile's transport settings.
_CONFLICTING = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY', 'ROS_STATIC_PEERS',
                'FASTDDS_DEFAULT_PROFILES_FILE')


def loopback_profile() -> pathlib.Path:
    """Return the path of the loopback-only Fast DDS profile shipped with vlac_ros."""
    path = pathlib.Path(str(resources.files('vlac_ros') / 'resources' / 'fastdds_loopback.xml'))
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


def main() -> None:
    """Print ``export``/``unset`` lines for the loopback profile."""
    env = loopback_env({})
    print('unset ROS_AUTOMATIC_DISCOVERY_RANGE ROS_LOCALHOST_ONLY ROS_STATIC_PEERS '
          'FASTDDS_DEFAULT_PROFILES_FILE')
    for key in ('RMW_IMPLEMENTATION', 'FASTRTPS_DEFAULT_PROFILES_FILE'):
        print(f'export {key}={shlex.quote(env[key])}')


if __name__ == '__main__':
    main()
