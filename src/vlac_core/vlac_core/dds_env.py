"""Print shell exports that keep ROS 2 traffic on this machine (loopback-only Fast DDS).

Usage: ``eval "$(vlac_dds_env)"`` before running nodes by hand on a machine without a robot
network, e.g. the simulated loop on a laptop. On a lab robot leave DDS at its LAN defaults.
"""

import shlex

from vlac_core.testing.dds import loopback_env


def main() -> None:
    """Print ``export``/``unset`` lines for the loopback profile."""
    env = loopback_env({})
    print('unset ROS_AUTOMATIC_DISCOVERY_RANGE ROS_LOCALHOST_ONLY ROS_STATIC_PEERS '
          'FASTDDS_DEFAULT_PROFILES_FILE')
    for key in ('RMW_IMPLEMENTATION', 'FASTRTPS_DEFAULT_PROFILES_FILE'):
        print(f'export {key}={shlex.quote(env[key])}')


if __name__ == '__main__':
    main()
