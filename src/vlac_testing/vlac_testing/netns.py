"""Two hosts on one machine: Linux network namespaces joined by a veth pair (root only).

``TwoHosts`` creates two network namespaces (say a robot PC and a trainer PC), each with its
loopback up and one end of a veth pair carrying a private address (10.231.0.1/30 and
10.231.0.2/30 by default). The addresses exist only inside those namespaces, so nothing a
process there sends can leave the machine, and several test runs may use the same addresses at
once. ``link_down()`` cuts the link (both ends administratively down: every packet between the
hosts is lost, while each host still reaches its own address); ``link_up()`` restores it.
Processes are started inside a namespace with ``exec_prefix(host)`` (``ip netns exec <ns>``)
in front of their command line; ``vlac_testing.ros_graph.RosGraph.host`` does that for nodes.

Used as a context manager the namespaces are deleted on exit, also when the body raised or the
set-up failed half way; stop the processes inside first (deleting a namespace that still has
processes only removes its name).

``available()`` says whether this machine can do it (root, ``ip``, namespaces and veth pairs
permitted, ``ip netns exec`` working), with the reason when not, for ``pytest.skip``.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import shutil
import subprocess
import time

_counter = itertools.count()


def _ip() -> str:
    """Path of the iproute2 ``ip`` tool (root's PATH may lack /usr/sbin under some runners)."""
    for candidate in (shutil.which('ip'), '/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip'):
        if candidate and os.path.exists(candidate):
            return candidate
    raise FileNotFoundError('iproute2 "ip" not found (apt-get install iproute2)')


def _run(*args: str) -> None:
    """Run ``ip args...``; raise RuntimeError with its stderr on failure."""
    done = subprocess.run([_ip(), *args], capture_output=True, text=True, timeout=10.0)
    if done.returncode != 0:
        raise RuntimeError(f'ip {" ".join(args)} failed ({done.returncode}): '
                           f'{done.stderr.strip() or done.stdout.strip()}')


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    """Return (True, '') if two namespaces with a veth pair can be made here, else (False, why).

    Probes for real (a throw-away pair of namespaces, deleted again): being root is not enough
    in containers without CAP_SYS_ADMIN or with a read-only /sys.
    """
    if os.geteuid() != 0:
        return False, 'needs root to create network namespaces (ip netns)'
    try:
        _ip()
    except FileNotFoundError as err:
        return False, str(err)
    try:
        with TwoHosts(prefix=f'vlacprobe{os.getpid()}') as hosts:
            done = subprocess.run([*hosts.exec_prefix(hosts.robot), _ip(), 'addr', 'show'],
                                  capture_output=True, text=True, timeout=10.0)
            if done.returncode != 0 or hosts.robot_address not in done.stdout:
                return False, f'ip netns exec does not work here: {done.stderr.strip()}'
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
        return False, f'network namespaces unavailable: {err}'
    return True, ''


class TwoHosts:
    """Two network namespaces, ``robot`` and ``trainer``, joined by one veth link.

    ``prefix`` names the namespaces (``<prefix>_robot``, ``<prefix>_trainer``); by default it
    is unique per process and instance. ``subnet`` is a /30 (or larger) private network; the
    robot gets its first host address, the trainer its second.
    """

    VETH = 'vlac0'
    """Name of the veth end inside each namespace (names are per namespace, so never clash)."""

    def __init__(self, prefix: str | None = None, subnet: str = '10.231.0.0/30') -> None:
        network = ipaddress.ip_network(subnet)
        if network.version != 4 or not network.is_private or network.num_addresses < 4:
            raise ValueError(f'subnet {subnet!r} must be a private IPv4 network of /30 or larger')
        first, second = itertools.islice(network.hosts(), 2)
        self.prefix = prefix or f'vlac{os.getpid()}n{next(_counter)}'
        self.robot = f'{self.prefix}_robot'
        self.trainer = f'{self.prefix}_trainer'
        self.robot_address, self.trainer_address = str(first), str(second)
        self.prefixlen = network.prefixlen
        self.is_up = False
        self._made: list[str] = []

    # -- set-up and teardown ---------------------------------------------------------------
    def create(self) -> 'TwoHosts':
        """Make both namespaces and the link (up). On failure, undo what was made and raise."""
        try:
            for name in (self.robot, self.trainer):
                _run('netns', 'add', name)
                self._made.append(name)
            # Both ends are created straight inside their namespaces: the root namespace never
            # sees them, so their names cannot clash with a real card or another run's pair.
            _run('link', 'add', self.VETH, 'netns', self.robot, 'type', 'veth',
                 'peer', 'name', self.VETH, 'netns', self.trainer)
            for name, address in ((self.robot, self.robot_address),
                                  (self.trainer, self.trainer_address)):
                _run('-n', name, 'link', 'set', 'lo', 'up')
                _run('-n', name, 'addr', 'add', f'{address}/{self.prefixlen}', 'dev', self.VETH)
            self.link_up()
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> list[str]:
        """Delete the namespaces (and with them the veth pair); return error messages, if any.

        Never raises: it runs in teardown, where the first error must not hide the test's.
        """
        errors = []
        while self._made:
            name = self._made.pop()
            try:
                _run('netns', 'del', name)
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
                errors.append(str(err))
        self.is_up = False
        return errors

    def __enter__(self) -> 'TwoHosts':
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()

    # -- the link --------------------------------------------------------------------------
    def link_down(self) -> None:
        """Cut the link: both veth ends administratively down; no packet crosses.

        Each host keeps its own address (local traffic, e.g. between the robot's nodes, goes
        on); packets to the other host are lost (a send may fail with ENETUNREACH).
        """
        for name in (self.robot, self.trainer):
            _run('-n', name, 'link', 'set', self.VETH, 'down')
        self.is_up = False

    def link_up(self, timeout: float = 5.0) -> None:
        """Restore the link (both ends up) and wait until both report carrier (state UP).

        The kernel reports the carrier up to ~1 s after the link is set up (linkwatch); Fast
        DDS ignores a whitelisted card without it, so a node started earlier would have no
        transport.
        """
        for name in (self.robot, self.trainer):
            _run('-n', name, 'link', 'set', self.VETH, 'up')
        deadline = time.monotonic() + timeout
        while not all(self._running(name) for name in (self.robot, self.trainer)):
            if time.monotonic() >= deadline:
                raise RuntimeError(f'link {self.VETH} of {self.robot}/{self.trainer} not up '
                                   f'after {timeout} s')
            time.sleep(0.05)
        self.is_up = True

    def _running(self, name: str) -> bool:
        done = subprocess.run([_ip(), '-n', name, '-o', 'link', 'show', self.VETH],
                              capture_output=True, text=True, timeout=10.0)
        return 'LOWER_UP' in done.stdout and ' state UP ' in done.stdout

    # -- processes inside ------------------------------------------------------------------
    def address(self, host: str) -> str:
        """The address of namespace ``host`` (``self.robot`` or ``self.trainer``)."""
        return {self.robot: self.robot_address, self.trainer: self.trainer_address}[host]

    def peer_address(self, host: str) -> str:
        """The address of the other namespace, as seen from ``host``."""
        return {self.robot: self.trainer_address, self.trainer: self.robot_address}[host]

    @staticmethod
    def exec_prefix(host: str) -> list[str]:
        """Command prefix that runs a program inside namespace ``host`` (``ip netns exec``).

        ``ip netns exec`` execs the program in place (same pid), so signals and process
        groups behave as for a direct child.
        """
        return [_ip(), 'netns', 'exec', host]
