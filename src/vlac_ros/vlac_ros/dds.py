"""Loopback-only DDS for machines without a robot network (tests, the simulated demo, laptops).

``loopback_env`` returns the environment variables a process needs so that its ROS 2
participants use the Fast DDS profile in ``vlac_ros/resources/fastdds_loopback.xml``: shared
memory for large frames, UDP bound to 127.0.0.1, no multicast on the LAN. A missing profile
is an error, never a silent fallback (Fast DDS would then multicast on the network card).

``vlac_dds_env`` prints the same settings as shell exports: ``eval "$(vlac_dds_env)"`` before
running nodes by hand on a machine without a robot network.

``peers_env`` is the set-up for robot PCs and a trainer on separate hosts (docs/deploy.md):
a profile written by ``peers_profile`` with UDP only on the host's own address, discovery by a
static list of peer addresses (unicast, never multicast), no shared memory and no data sharing
(so every byte between participants crosses the network, even when two "hosts" are network
namespaces of one machine). ``vlac_dds_env --own ADDR --peer ADDR --profile FILE`` writes that
profile and prints its exports.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib import resources
import ipaddress
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


def _ipv4(address: str, what: str) -> str:
    """``address`` as a normalised IPv4 unicast address; ValueError naming it otherwise."""
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        raise ValueError(f'{what} {address!r} is not an IPv4 address') from None
    if parsed.is_multicast or parsed.is_unspecified or parsed.is_loopback:
        raise ValueError(f'{what} {address!r} must be a unicast address of a network card')
    return str(parsed)


PEERS_MAX_PARTICIPANTS = 32
"""Participants per host reached through the peer list (one per node process; ports tried)."""


def peers_profile(own_address: str, peers: Sequence[str],
                  max_participants: int = PEERS_MAX_PARTICIPANTS,
                  shared_memory: bool = False) -> str:
    """Fast DDS profile (XML text) for a host at ``own_address`` talking to ``peers``.

    - UDPv4 bound to ``own_address``: this host's nodes talk to each other over it too
      (the kernel keeps local traffic off the wire), and nothing is sent on other cards.
    - Discovery by unicast to the initial peers ``own_address`` + ``peers``: participant ids
      0..``max_participants - 1`` at each (one per node process), never multicast.
    - No shared memory transport (unless ``shared_memory``) and data sharing off: hosts that
      share /dev/shm (network namespaces, containers on one machine) would otherwise bypass
      the network. ``shared_memory`` adds the 16 MiB-segment SHM transport of the loopback
      profile for large camera frames between one real host's own nodes; Fast DDS uses it only
      between participants of one machine, so never set it for namespaces of one machine.
    """
    own = _ipv4(own_address, 'own address')
    others = [_ipv4(p, 'peer address') for p in peers]
    if not others:
        raise ValueError('peers must list at least one other host address')
    if own in others:
        raise ValueError(f'own address {own} is also listed as a peer')
    if not 1 <= max_participants <= 120:
        raise ValueError(f'max_participants {max_participants} outside 1..120')
    shm = ('' if not shared_memory else """
    <transport_descriptor>
      <transport_id>vlac_shm</transport_id>
      <type>SHM</type>
      <segment_size>16777216</segment_size>
    </transport_descriptor>""")
    locators = '\n'.join(f'          <locator><udpv4><address>{a}</address></udpv4></locator>'
                         for a in [own, *others])
    shm_use = '\n        <transport_id>vlac_shm</transport_id>' if shared_memory else ''
    no_sharing = '<qos><data_sharing><kind>OFF</kind></data_sharing></qos>'
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<!--
  Fast DDS profile for a host at {own} with static peers {', '.join(others)}
  (written by vlac_ros.dds.peers_profile; see docs/deploy.md). Use it by exporting
  FASTRTPS_DEFAULT_PROFILES_FILE=<this file> with ROS_AUTOMATIC_DISCOVERY_RANGE unset.
-->
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>vlac_udp_peers</transport_id>
      <type>UDPv4</type>
      <maxInitialPeersRange>{max_participants}</maxInitialPeersRange>
      <interfaceWhiteList>
        <address>{own}</address>
      </interfaceWhiteList>
    </transport_descriptor>{shm}
  </transport_descriptors>
  <participant profile_name="vlac_peers" is_default_profile="true">
    <rtps>
      <builtin>
        <!-- A unicast metatraffic locator and no multicast one: discovery is unicast only. -->
        <metatrafficUnicastLocatorList>
          <locator/>
        </metatrafficUnicastLocatorList>
        <initialPeersList>
{locators}
        </initialPeersList>
      </builtin>
      <userTransports>
        <transport_id>vlac_udp_peers</transport_id>{shm_use}
      </userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
    </rtps>
  </participant>
  <data_writer profile_name="vlac_peers_writer" is_default_profile="true">
    {no_sharing}
  </data_writer>
  <data_reader profile_name="vlac_peers_reader" is_default_profile="true">
    {no_sharing}
  </data_reader>
</profiles>
"""


def peers_env(own_address: str, peers: Sequence[str], profile: os.PathLike,
              base: dict[str, str] | None = None, *, domain_id: int | None = None,
              log_dir: os.PathLike | None = None, shared_memory: bool = False
              ) -> dict[str, str]:
    """Environment for a host at ``own_address`` whose DDS peers are ``peers`` (other hosts).

    Writes ``peers_profile(own_address, peers, shared_memory=shared_memory)`` to ``profile``
    and returns a copy of
    ``base`` (default os.environ) pointing Fast DDS at it, with the variables that would
    override it removed. Every host of one deployment uses the same ``domain_id``.
    """
    path = pathlib.Path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(peers_profile(own_address, peers, shared_memory=shared_memory))
    env = loopback_env(base, domain_id=domain_id, log_dir=log_dir)
    env['FASTRTPS_DEFAULT_PROFILES_FILE'] = str(path.resolve())
    return env


def main(argv: Sequence[str] | None = None) -> None:
    """Print ``export``/``unset`` lines: the loopback profile, or with ``--own`` static peers."""
    parser = argparse.ArgumentParser(
        prog='vlac_dds_env', description="Print shell exports for this stack's DDS set-up: "
        'loopback only (default), or a host talking to static peers (docs/deploy.md).')
    parser.add_argument('--own', help="this host's address on the robot network")
    parser.add_argument('--peer', action='append', default=[],
                        help='address of another host (robot PC or trainer); repeat per host')
    parser.add_argument('--profile', help='where to write the peers profile (with --own)')
    parser.add_argument('--shm', action='store_true',
                        help="also shared memory between this host's own nodes (real hosts "
                        'only, never network namespaces of one machine)')
    args = parser.parse_args(argv)
    if args.own is None:
        env = loopback_env({})
    elif not args.peer or not args.profile:
        parser.error('--own needs at least one --peer and --profile')
    else:
        env = peers_env(args.own, args.peer, args.profile, {}, shared_memory=args.shm)
    print('unset ROS_AUTOMATIC_DISCOVERY_RANGE ROS_LOCALHOST_ONLY ROS_STATIC_PEERS '
          'FASTDDS_DEFAULT_PROFILES_FILE')
    for key in ('RMW_IMPLEMENTATION', 'FASTRTPS_DEFAULT_PROFILES_FILE'):
        print(f'export {key}={shlex.quote(env[key])}')


if __name__ == '__main__':
    main()
