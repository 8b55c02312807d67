"""Run ROS 2 nodes for a test: real OS processes (or in-process), real DDS, loopback only.

``RosGraph`` owns one private ROS_DOMAIN_ID for its lifetime, starts node executables as child
processes with a parameter file, gives the test its own rclpy context and node (spun in a
background thread) on the same domain, waits on graph state instead of sleeping, keeps every
child's output in a log file, and on ``close()`` tears everything down: SIGINT to each child's
process group, then SIGTERM, then SIGKILL, and verifies nothing survived.

Children are also killed if the test process itself dies (``setpriv --pdeathsig``), so a
crashed or killed test run leaves no orphans behind.

Nodes may also run on another "host": ``graph.host(netns, env)`` starts them inside a Linux
network namespace (``ip netns exec``, see ``vlac_testing.netns``) with that host's DDS
environment (e.g. ``vlac_ros.dds.peers_env``); the test's own node stays on loopback in the
root namespace and cannot see them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from vlac_ros.dds import loopback_env
import yaml

from vlac_testing.dds import DomainLease


def is_live(pid: int) -> bool:
    """Return True if process ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        state = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ('Z', 'X')


def _live_group_members(pgid: int) -> list[int]:
    """Pids of non-zombie processes in process group ``pgid`` (Linux /proc)."""
    members = []
    for stat in pathlib.Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ('Z', 'X'):
            members.append(int(stat.parent.name))
    return members


class NodeProcess:
    """A child process running one or more ROS nodes, with its output in ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str],
                 log_path: pathlib.Path, cwd: os.PathLike | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, 'wb')  # noqa: SIM115 - closed in stop()
        prefix = []
        setpriv = shutil.which('setpriv')
        if setpriv is not None:
            prefix = [setpriv, '--pdeathsig', 'KILL', '--']
        self.popen = subprocess.Popen(
            prefix + self.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        """Process id (also the process group id: each child leads its own group)."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status, or None while running."""
        return self.popen.poll()

    def is_running(self) -> bool:
        """Return True while the process has not exited."""
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (the node and anything it started)."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for exit; return the exit status or None."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sigint_timeout: float = 5.0, sigterm_timeout: float = 3.0) -> int:
        """Stop the process group: SIGINT, then SIGTERM, then SIGKILL. Return the exit status."""
        for sig, timeout in ((signal.SIGINT, sigint_timeout), (signal.SIGTERM, sigterm_timeout)):
            if self.popen.poll() is not None:
                break
            self.signal(sig)
            self.wait(timeout)
        self.signal(signal.SIGKILL)  # also reaps grandchildren that outlived their parent
        code = self.popen.wait()
        self._log.close()
        return code

    def group_alive(self, timeout: float = 2.0) -> bool:
        """Return True if a live (non-zombie) process of this child's group remains.

        Killed grandchildren become zombies until their new parent reaps them, so this polls
        for up to ``timeout`` s before answering True.
        """
        deadline = time.monotonic() + timeout
        while _live_group_members(self.popen.pid):
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.05)
        return False

    def output(self) -> str:
        """Return everything the process has printed so far."""
        return self.log_path.read_text(errors='replace')


class MessageLog:
    """Messages received on one topic by the test node, newest last (bounded)."""

    def __init__(self, limit: int = 1000) -> None:
        self.messages: list[Any] = []
        self.limit = limit
        self._lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        """Keep ``msg`` (subscription callback)."""
        with self._lock:
            self.messages.append(msg)
            if len(self.messages) > self.limit:
                del self.messages[0]

    @property
    def last(self) -> Any:
        """The newest message, or None."""
        with self._lock:
            return self.messages[-1] if self.messages else None

    def count(self) -> int:
        """Return the number of messages kept."""
        with self._lock:
            return len(self.messages)

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._lock:
            self.messages.clear()


class RosGraph:
    """A private ROS 2 graph for one test. Use as a context manager or call ``close()``."""

    def __init__(self, workdir: os.PathLike) -> None:
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lease = DomainLease()
        self.domain_id = self._lease.domain_id
        self.env = loopback_env(domain_id=self.domain_id, log_dir=self.workdir / 'ros_log')
        self.processes: list[NodeProcess] = []
        self._context = None
        self._executor = None
        self._spin_thread: threading.Thread | None = None
        self._node = None
        self._in_process_nodes: list[Any] = []

    # -- in-process side -------------------------------------------------------------------
    @property
    def context(self):
        """The rclpy context of this graph's domain in the test process (created on first use)."""
        if self._context is None:
            import rclpy
            from rclpy.executors import SingleThreadedExecutor

            os.environ.setdefault('ROS_LOG_DIR', self.env['ROS_LOG_DIR'])
            self._context = rclpy.Context()
            rclpy.init(context=self._context, domain_id=self.domain_id)
            # One background thread: cheap (rclpy executors are GIL-bound) and enough, since
            # the test thread only waits on futures and events the executor completes.
            self._executor = SingleThreadedExecutor(context=self._context)
            self._spin_thread = threading.Thread(
                target=self._spin, name=f'ros_graph_spin_{self.domain_id}', daemon=True)
            self._spin_thread.start()
        return self._context

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    @property
    def node(self):
        """A node of the test itself on this graph's domain, spun in the background."""
        if self._node is None:
            from rclpy.node import Node

            self._node = Node(f'test_probe_{os.getpid()}', context=self.context)
            self._executor.add_node(self._node)
        return self._node

    def subscribe(self, msg_type: type, topic: str, qos, limit: int = 1000) -> MessageLog:
        """Record messages of ``topic`` on the test node; returns the growing log."""
        log = MessageLog(limit)
        self.node.create_subscription(msg_type, topic, log, qos)
        return log

    def add_node(self, node) -> None:
        """Spin an in-process node (created with ``context=graph.context``) in the background.

        The graph takes ownership: ``close()`` destroys the node.
        """
        self._executor.add_node(node)
        self._in_process_nodes.append(node)

    # -- child processes -------------------------------------------------------------------
    def resolve_executable(self, executable: str, package: str | None = None) -> str:
        """Find a node executable: ``lib/<package>/`` of an ament prefix, else PATH, else venv."""
        if package is not None:
            try:
                from ament_index_python.packages import PackageNotFoundError, get_package_prefix

                prefix = pathlib.Path(get_package_prefix(package))
                candidate = prefix / 'lib' / package / executable
                if candidate.is_file():
                    return str(candidate)
            except (ImportError, PackageNotFoundError):
                pass
        for where in (shutil.which(executable),
                      shutil.which(executable, path=str(pathlib.Path(sys.executable).parent))):
            if where:
                return where
        raise FileNotFoundError(f'node executable {executable!r} (package {package!r}) not found '
                                'in any ament prefix, on PATH or beside the interpreter')

    def write_params(self, node_name: str, namespace: str, parameters: dict[str, Any]
                     ) -> pathlib.Path:
        """Write a ROS 2 parameter file for one node, keyed by its fully qualified name."""
        fqn = '/'.join(p for p in (namespace.strip('/'), node_name) if p)
        path = self.workdir / f'params_{fqn.replace("/", "_")}_{len(self.processes)}.yaml'
        path.write_text(yaml.safe_dump({f'/{fqn}': {'ros__parameters': parameters}}))
        return path

    def start_node(self, executable: str, *, name: str, package: str | None = None,
                   namespace: str = '', parameters: dict[str, Any] | None = None,
                   params_files: Sequence[os.PathLike] = (),
                   remappings: dict[str, str] | None = None, arguments: Sequence[str] = (),
                   env: dict[str, str] | None = None, netns: str | None = None
                   ) -> NodeProcess:
        """Start a node executable as a child process, as ``ros2 run`` would.

        ``params_files`` (e.g. the package's real config YAML) are passed first, then
        ``parameters`` written to a file keyed by the node's name, so the dict wins.
        ``env`` entries override the graph's environment; ``netns`` runs the node inside that
        network namespace.
        """
        argv = [self.resolve_executable(executable, package), *arguments, '--ros-args',
                '-r', f'__node:={name}']
        if namespace:
            argv += ['-r', f'__ns:=/{namespace.strip("/")}']
        for path in params_files:
            argv += ['--params-file', str(path)]
        if parameters:
            argv += ['--params-file', str(self.write_params(name, namespace, parameters))]
        for src, dst in (remappings or {}).items():
            argv += ['-r', f'{src}:={dst}']
        return self.start_process(argv, name=name, env=env, netns=netns)

    def start_process(self, argv: Sequence[str], *, name: str,
                      env: dict[str, str] | None = None, netns: str | None = None
                      ) -> NodeProcess:
        """Start any command (e.g. ``[sys.executable, '-m', ...]``) on this graph's domain.

        With ``netns`` it runs inside that network namespace (``ip netns exec``: same pid, so
        stopping and the orphan guard work as for any child).
        """
        proc_env = dict(self.env)
        proc_env.update(env or {})
        if netns is not None:
            from vlac_testing.netns import TwoHosts

            argv = [*TwoHosts.exec_prefix(netns), *argv]
        log_path = self.workdir / f'{len(self.processes):02d}_{name}.log'
        process = NodeProcess(name, argv, proc_env, log_path, cwd=self.workdir)
        self.processes.append(process)
        return process

    def host(self, netns: str, env: dict[str, str]) -> 'GraphHost':
        """A view of this graph whose ``start_node``/``start_process`` run in ``netns``.

        ``env`` (that host's DDS set-up, e.g. ``vlac_ros.dds.peers_env``) overrides the
        graph's loopback environment for those processes. Pass the view wherever a graph is
        expected for starting nodes (e.g. ``vlac_bench.sim_loop.start_robot``); the processes
        still belong to this graph (logs, teardown).
        """
        return GraphHost(self, netns, env)

    # -- waiting on graph state ------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = '',
                 period: float = 0.02) -> Any:
        """Poll ``predicate`` until it returns a truthy value (returned) or ``timeout`` s pass.

        Raises TimeoutError naming ``what`` and listing any child that has already exited.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                dead = [f'{p.name} (exit {p.returncode})' for p in self.processes
                        if not p.is_running()]
                raise TimeoutError(f'timed out after {timeout:.1f} s waiting for '
                                   f'{what or predicate!r}; exited children: {dead or "none"}')
            time.sleep(period)

    def wait_for_node(self, fqn: str, timeout: float = 10.0) -> None:
        """Wait until a node with fully qualified name ``fqn`` (e.g. '/ns/name') is discovered."""
        def seen() -> bool:
            return any(f'{ns.rstrip("/")}/{name}' == fqn
                       for name, ns in self.node.get_node_names_and_namespaces())
        self.wait_for(seen, timeout, f'node {fqn}')

    def wait_for_subscribers(self, topic: str, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``topic`` has at least ``count`` subscribers in the graph."""
        self.wait_for(lambda: self.node.count_subscribers(topic) >= count, timeout,
                      f'{count} subscriber(s) on {topic}')

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``topic`` has at least ``count`` publishers in the graph."""
        self.wait_for(lambda: self.node.count_publishers(topic) >= count, timeout,
                      f'{count} publisher(s) on {topic}')

    # -- teardown --------------------------------------------------------------------------
    def logs(self) -> str:
        """Return every child's output, labelled, for a failure report."""
        parts = []
        for p in self.processes:
            status = 'running' if p.is_running() else f'exit {p.returncode}'
            parts.append(f'----- {p.name} ({status}): {" ".join(p.argv)}\n{p.output()}')
        return '\n'.join(parts)

    def close(self, sigint_timeout: float = 5.0, sigterm_timeout: float = 3.0) -> list[str]:
        """Stop every child and the in-process side; return names of children that survived.

        Every running child gets SIGINT at once and ``sigint_timeout`` s in all to exit
        (shutting down one after the other cost 10-15 s for a fleet of nodes); then each is
        stopped as ``NodeProcess.stop`` does (SIGTERM, ``sigterm_timeout``, then SIGKILL of
        its group).
        """
        running = [p for p in reversed(self.processes) if p.popen.poll() is None]
        for p in running:
            p.signal(signal.SIGINT)
        deadline = time.monotonic() + sigint_timeout
        for p in running:
            p.wait(max(0.0, deadline - time.monotonic()))
        for p in reversed(self.processes):
            p.stop(sigint_timeout=0.0, sigterm_timeout=sigterm_timeout)
        survivors = [p.name for p in self.processes if p.group_alive()]
        if self._context is not None:
            import rclpy

            for node in self._in_process_nodes + [self._node] * (self._node is not None):
                self._executor.remove_node(node)
                node.destroy_node()
            self._executor.shutdown(timeout_sec=5.0)
            rclpy.try_shutdown(context=self._context)
            if self._spin_thread is not None:
                self._spin_thread.join(timeout=5.0)
            self._context = None
        self._lease.release()
        return survivors

    def __enter__(self) -> 'RosGraph':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GraphHost:
    """``RosGraph.host``: the same graph, starting its processes on another (network) host."""

    def __init__(self, graph: RosGraph, netns: str, env: dict[str, str]) -> None:
        self.graph = graph
        self.netns = netns
        self.env = dict(env)

    def start_node(self, executable: str, *, env: dict[str, str] | None = None,
                   **kwargs: Any) -> NodeProcess:
        """``RosGraph.start_node`` inside this host's namespace, with its environment."""
        return self.graph.start_node(executable, env={**self.env, **(env or {})},
                                     netns=self.netns, **kwargs)

    def start_process(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                      **kwargs: Any) -> NodeProcess:
        """``RosGraph.start_process`` inside this host's namespace, with its environment."""
        return self.graph.start_process(argv, env={**self.env, **(env or {})},
                                        netns=self.netns, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Everything else (workdir, logs, wait_for, processes) is the graph's own.
        return getattr(self.graph, name)
