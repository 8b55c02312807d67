"""lifecycle_manager: ordered bring-up and bring-down of the stack's lifecycle nodes.

The nav2 lifecycle_manager for this stack: it configures and activates the nodes of
``node_names`` one after the other (a ``configure_only`` node is only configured: the episode
runner activates the policy for each episode), polls every node's ``get_state`` service each
``check_period`` (a node whose service leaves the graph, or that misses ``missed_checks``
polls in a row, is dead), brings a node that died and came back (respawned by launch or a
supervisor: it returns unconfigured) to the state it should be in, in order and after a
backoff, and brings everything down in reverse order on request. The logic is
``vlac_ros.lifecycle_manager.Supervisor`` (ROS-free, unit-tested); this node only polls,
requests transitions and reports. Managed nodes run with ``autostart`` false.

Topics (relative to the manager's namespace):
  out  ~/states (std_msgs/String, latched: JSON of the goal, the system state, every node's
       state, target, restarts and last error, and the recent events; sent on change),
       /diagnostics (diagnostic_msgs/DiagnosticArray, 1 Hz: one status per managed node)
  srv  ~/startup, ~/shutdown, ~/restart, ~/is_active (std_srvs/Trigger). startup answers
       once every node is up (or a transition failed, or nothing moved for
       ``transition_timeout``); shutdown (deactivate all, then clean all up, last first) once
       all are down; restart is shutdown then startup; is_active says whether all are up.

Threads: one worker thread polls and requests transitions, one at a time, waiting on the
service clients' futures; the clients answer in a reentrant group on a multi-threaded
executor, the services in a second one (they wait for the worker), diagnostics in a third.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import State
from lifecycle_msgs.msg import Transition as LifecycleTransition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from vlac_ros.executor import ResponsiveExecutor
from vlac_ros.lifecycle_manager import (
    ACTIVE,
    DEAD,
    FINALIZED,
    INACTIVE,
    UNCONFIGURED,
    UNKNOWN,
    Goal,
    LifecycleManagerConfig,
    Supervisor,
    Transition,
)
from vlac_ros.params import declare_dataclass
from vlac_ros.qos import LATCHED, RELIABLE
from vlac_ros.spin import run_node

PRIMARY = {State.PRIMARY_STATE_UNCONFIGURED: UNCONFIGURED,
           State.PRIMARY_STATE_INACTIVE: INACTIVE, State.PRIMARY_STATE_ACTIVE: ACTIVE,
           State.PRIMARY_STATE_FINALIZED: FINALIZED}
TRANSITION_IDS = {Transition.CONFIGURE: LifecycleTransition.TRANSITION_CONFIGURE,
                  Transition.ACTIVATE: LifecycleTransition.TRANSITION_ACTIVATE,
                  Transition.DEACTIVATE: LifecycleTransition.TRANSITION_DEACTIVATE,
                  Transition.CLEANUP: LifecycleTransition.TRANSITION_CLEANUP}
WAIT_POLL_S = 0.02  # how often a wait (for an answer, for the worker) looks again


class LifecycleManagerNode(Node):
    """Brings the managed lifecycle nodes up in order, keeps them there, brings them down."""

    def __init__(self, **kwargs) -> None:
        super().__init__('lifecycle_manager', **kwargs)
        self.config = cfg = declare_dataclass(self, LifecycleManagerConfig)
        self.supervisor = Supervisor(cfg, self.get_namespace())
        self._lock = threading.Lock()  # the supervisor: worker, services and diagnostics
        self._request_lock = threading.Lock()  # one startup/shutdown/restart at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        clients = ReentrantCallbackGroup()
        self._lifecycle_clients = {
            node.name: (self.create_client(GetState, f'{node.name}/get_state',
                                           callback_group=clients),
                        self.create_client(ChangeState, f'{node.name}/change_state',
                                           callback_group=clients))
            for node in self.supervisor.nodes}
        self.states_pub = self.create_publisher(String, '~/states', LATCHED)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        self._last_report = ''
        services = ReentrantCallbackGroup()
        for name, handler in (('startup', self._on_startup), ('shutdown', self._on_shutdown),
                              ('restart', self._on_restart), ('is_active', self._on_is_active)):
            self.create_service(Trigger, f'~/{name}', handler, callback_group=services)
        self.create_timer(1.0, self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        if cfg.autostart:
            self.supervisor.startup()
        self._publish_states()
        self._worker = threading.Thread(target=self._work, name='lifecycle_manager',
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'managing {[n.name for n in self.supervisor.nodes]} (configure only: '
            f'{[n.name for n in self.supervisor.nodes if n.target == INACTIVE]}); '
            + ('bringing them up' if cfg.autostart else 'waiting for ~/startup'))

    # -- worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll(list(self._lifecycle_clients))
                acted = self._step()
                self._publish_states()
            except Exception as err:  # noqa: BLE001 - the manager must survive and say why
                if not self.context.ok():
                    return  # shutting down (Ctrl-C, SIGTERM): nothing left to manage
                self.get_logger().error(f'lifecycle manager error: {type(err).__name__}: {err}')
                acted = False
            if not acted:
                self._wake.wait(self.config.check_period)
                self._wake.clear()

    def _poll(self, names: list[str]) -> None:
        """Ask every node in ``names`` for its state at once; feed the answers (or none)."""
        pending, absent = {}, []
        for name in names:
            client = self._lifecycle_clients[name][0]
            if client.service_is_ready():
                pending[name] = (client, client.call_async(GetState.Request()))
            else:
                absent.append(name)
        answers = self._wait_all(pending, self.config.check_timeout)
        notes = []
        with self._lock:
            for name in absent:
                notes += self.supervisor.observe(name, None, absent=True)
            for name, response in answers.items():
                state = None if response is None else PRIMARY.get(
                    response.current_state.id, response.current_state.label or UNKNOWN)
                notes += self.supervisor.observe(name, state)
        self._log(notes)

    @staticmethod
    def _wait_all(client_futures: dict, timeout: float,
                  give_up: Callable[[], bool] = lambda: False) -> dict:
        """Each (client, future)'s result, or None for those not done within ``timeout`` s.

        ``give_up`` is asked every ``WAIT_POLL_S`` s; True ends the wait early.
        """
        futures = {name: future for name, (_, future) in client_futures.items()}
        deadline = time.monotonic() + timeout
        while not all(future.done() for future in futures.values()):
            if time.monotonic() >= deadline or give_up():
                break
            time.sleep(WAIT_POLL_S)
        results = {}
        for name, future in futures.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                results[name] = future.result()
            else:
                results[name] = None
                client_futures[name][0].remove_pending_request(future)  # drop a late answer
        return results

    def _step(self) -> bool:
        """Request the supervisor's next transition, if any; True when one was requested."""
        with self._lock:
            action = self.supervisor.next_transition()
        if action is None:
            return False
        name, transition = action
        started = time.monotonic()
        self.get_logger().info(f'{transition.value} {name}')
        success, error = self._change_state(name, transition)
        with self._lock:
            notes = self.supervisor.record(name, transition, success, error)
        self._log(notes, warning=not success)
        if success:
            self.get_logger().info(f'{name}: {transition.value} took '
                                   f'{time.monotonic() - started:.2f} s')
        self._poll([name])  # what it says now (a refused transition may have moved it)
        return True

    def _change_state(self, name: str, transition: Transition) -> tuple[bool, str]:
        client = self._lifecycle_clients[name][1]
        if not client.service_is_ready():
            return False, f'{client.srv_name} not available'
        request = ChangeState.Request(
            transition=LifecycleTransition(id=TRANSITION_IDS[transition]))
        # A node that dies mid-transition never answers: stop waiting when it leaves the graph.
        response = self._wait_all({name: (client, client.call_async(request))},
                                  self.config.transition_timeout,
                                  lambda: not client.service_is_ready())[name]
        if response is None and not client.service_is_ready():
            return False, 'the node left the graph during the transition'
        if response is None:
            return False, f'no answer within transition_timeout {self.config.transition_timeout} s'
        return bool(response.success), '' if response.success else 'the node refused'

    def _log(self, notes: list[str], warning: bool = False) -> None:
        for note in notes:
            if warning or 'lost' in note or 'not answering' in note:
                self.get_logger().warning(note)
            else:
                self.get_logger().info(note)

    # -- reports ---------------------------------------------------------------------------
    def _publish_states(self) -> None:
        with self._lock:
            report = json.dumps(self.supervisor.report(), sort_keys=True)
        if report != self._last_report:
            self._last_report = report
            self.states_pub.publish(String(data=report))

    def _publish_diagnostics(self) -> None:
        with self._lock:
            system, waiting = self.supervisor.system_state(), self.supervisor.blocker()
            nodes = [(n.name, n.state, n.target, n.up, n.lost, n.restarts, n.error)
                     for n in self.supervisor.nodes]
            goal = self.supervisor.goal
        statuses = []
        for name, state, target, up, lost, restarts, error in nodes:
            if up or goal != Goal.UP:
                level = DiagnosticStatus.ERROR if lost else DiagnosticStatus.OK
            elif state in (DEAD, FINALIZED) or lost:
                level = DiagnosticStatus.ERROR
            else:
                level = DiagnosticStatus.WARN
            statuses.append(DiagnosticStatus(
                level=level, name=f'{self.get_fully_qualified_name()}: {name}',
                message=state, hardware_id=name,
                values=[KeyValue(key='target', value=target),
                        KeyValue(key='restarts', value=str(restarts)),
                        KeyValue(key='last_error', value=error)]))
        worst = max((s.level for s in statuses), default=DiagnosticStatus.OK)
        statuses.insert(0, DiagnosticStatus(
            level=worst, name=self.get_fully_qualified_name(), message=system,
            values=[KeyValue(key='goal', value=goal.value),
                    KeyValue(key='waiting', value=waiting)]))
        self.diagnostics_pub.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()), status=statuses))

    # -- services --------------------------------------------------------------------------
    def _await(self, reached: Callable[[], bool], what: str) -> tuple[bool, str]:
        """Wait for the worker until ``reached``; fail on a failed transition or a stall."""
        with self._lock:
            failures, progress = self.supervisor.failures, self.supervisor.transitions
        deadline = time.monotonic() + self.config.transition_timeout
        self._wake.set()
        while not self._stop.is_set():
            with self._lock:
                if reached():
                    return True, f'{what}: {self.supervisor.system_state()}'
                if self.supervisor.failures > failures:
                    return False, f'{what} failed: {self.supervisor.last_failure}'
                if self.supervisor.transitions != progress:
                    progress = self.supervisor.transitions
                    deadline = time.monotonic() + self.config.transition_timeout
                waiting = self.supervisor.blocker()
            if time.monotonic() > deadline:
                return False, f'{what}: nothing moved for {self.config.transition_timeout} s ' \
                    f'({waiting or "no transition due"})'
            time.sleep(WAIT_POLL_S)
        return False, f'{what}: the manager is shutting down'

    def _bring_up(self) -> tuple[bool, str]:
        with self._lock:
            self.supervisor.startup()
        return self._await(lambda: self.supervisor.all_up(), 'startup')

    def _bring_down(self) -> tuple[bool, str]:
        with self._lock:
            self.supervisor.shutdown()
        return self._await(lambda: self.supervisor.goal == Goal.IDLE, 'shutdown')

    def _answer(self, response: Trigger.Response, result: tuple[bool, str]) -> Trigger.Response:
        response.success, response.message = result
        (self.get_logger().info if response.success else self.get_logger().error)(
            response.message)
        return response

    def _on_startup(self, request: Trigger.Request, response: Trigger.Response
                    ) -> Trigger.Response:
        with self._request_lock:
            return self._answer(response, self._bring_up())

    def _on_shutdown(self, request: Trigger.Request, response: Trigger.Response
                     ) -> Trigger.Response:
        with self._request_lock:
            return self._answer(response, self._bring_down())

    def _on_restart(self, request: Trigger.Request, response: Trigger.Response
                    ) -> Trigger.Response:
        with self._request_lock:
            down = self._bring_down()
            return self._answer(response, self._bring_up() if down[0] else down)

    def _on_is_active(self, request: Trigger.Request, response: Trigger.Response
                      ) -> Trigger.Response:
        with self._lock:
            response.success = self.supervisor.goal == Goal.UP and self.supervisor.all_up()
            response.message = self.supervisor.system_state()
        return response

    def destroy_node(self) -> None:
        """Stop the worker before the node goes (managed nodes are left as they are)."""
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=self.config.check_timeout + 5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Console entry point: ``ros2 run vlac_ros lifecycle_manager``."""
    run_node(LifecycleManagerNode, args, lambda: ResponsiveExecutor(num_threads=6))


if __name__ == '__main__':
    main()
