"""The lifecycle manager's logic without ROS: bring-up order, node states, restarts, backoff.

Like nav2's lifecycle_manager, ``lifecycle_manager_node`` brings an ordered list of lifecycle
nodes up (configure, activate) and down (deactivate, cleanup, in reverse). ``Supervisor`` is
that logic as a plain state machine: the node feeds it what it observes (each managed node's
answer to ``get_state``, or no answer) and the results of the transitions it requested, and
asks it for the next transition to request. One transition at a time, in this order:

- goal ``up``: the first node of ``node_names`` that is not at its target gets the next
  transition towards it: configure, then activate. A ``configure_only`` node's target is
  inactive, and it counts as up when active too (another node activates it: the episode
  runner activates the policy node for each episode). A node that is not at its target and
  cannot get there now (never answered, stopped answering, finalized, between two states,
  waiting out a backoff, lost without ``restart``) blocks every node after it: a later node
  never comes up before an earlier one.
- goal ``down``: every active node is deactivated, the last one first, then every inactive
  node is cleaned up, the last one first. A node that does not answer counts as down. Once all
  are down the goal becomes ``idle``.
- goal ``idle`` (before any start-up, or after a bring-down): watch and report only.

A node is lost when, after the manager brought it up, it stops answering (``missed_checks``
checks in a row, or at once when its service leaves the graph) or answers unconfigured or
finalized (it died and a supervisor such as launch's ``respawn`` started it again). With
``restart`` a lost node is brought back to its target in order once its backoff has passed:
``retry_backoff`` s after its first failure in a row (a failed transition or a loss), doubling
with each further one up to ``retry_backoff_max``; a node that stays at its target for
``retry_backoff_max`` s starts counting afresh. Without ``restart`` it is reported and left.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
import enum
import re
import time
from typing import Any, Callable

from vlac_models.config import doc

UNKNOWN = 'unknown'
"""Never answered yet."""
DEAD = 'dead'
"""Answered once, then stopped answering (or its service left the graph)."""
UNCONFIGURED, INACTIVE, ACTIVE, FINALIZED = 'unconfigured', 'inactive', 'active', 'finalized'
PRIMARY_STATES = (UNCONFIGURED, INACTIVE, ACTIVE, FINALIZED)
"""The lifecycle primary states; any other answer (e.g. 'configuring') is a transition state."""
_LEVEL = {UNCONFIGURED: 0, INACTIVE: 1, ACTIVE: 2}
_NAME = re.compile(r'^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$')
EVENTS_KEPT = 100


class Goal(str, enum.Enum):
    """What the manager is asked to do with the managed nodes."""

    IDLE = 'idle'
    UP = 'up'
    DOWN = 'down'


class Transition(str, enum.Enum):
    """The lifecycle transitions the manager requests (lifecycle_msgs/Transition labels)."""

    CONFIGURE = 'configure'
    ACTIVATE = 'activate'
    DEACTIVATE = 'deactivate'
    CLEANUP = 'cleanup'


RESULT = {Transition.CONFIGURE: INACTIVE, Transition.ACTIVATE: ACTIVE,
          Transition.DEACTIVATE: INACTIVE, Transition.CLEANUP: UNCONFIGURED}
"""The primary state a successful transition ends in."""


@dataclass(frozen=True)
class LifecycleManagerConfig:
    """Parameters of ``lifecycle_manager`` (SI units)."""

    node_names: tuple[str, ...] = field(
        default=('vlac_reward_node', 'vlac_policy_node', 'episode_runner'), metadata=doc(
            'lifecycle nodes to manage, in bring-up order (brought down in reverse); relative '
            "to the manager's namespace unless they start with '/'"))
    configure_only: tuple[str, ...] = field(default=('vlac_policy_node',), metadata=doc(
        'nodes of node_names brought up to inactive only: another node activates them (the '
        "episode runner activates the policy for each episode); [''] for none"))
    autostart: bool = field(default=False, metadata=doc(
        'bring the nodes up at start (else wait for ~/startup)'))
    restart: bool = field(default=True, metadata=doc(
        'bring a node that died and came back (respawned) to its state again, in order'))
    check_period: float = field(default=1.0, metadata=doc(
        "s between two polls of every managed node's get_state service"))
    check_timeout: float = field(default=2.0, metadata=doc(
        'longest wait for a get_state answer, s'))
    missed_checks: int = field(default=2, metadata=doc(
        'unanswered polls in a row after which a node counts as dead'))
    transition_timeout: float = field(default=300.0, metadata=doc(
        'longest wait for one transition (configure loads a model), s; also how long '
        '~/startup and ~/shutdown wait without progress'))
    retry_backoff: float = field(default=1.0, metadata=doc(
        'wait after a failure (failed transition, lost node) before trying that node again, '
        's; doubles with each failure in a row'))
    retry_backoff_max: float = field(default=60.0, metadata=doc(
        'longest backoff, s; a node up this long starts counting failures afresh'))

    def validate(self) -> 'LifecycleManagerConfig':
        """Raise ValueError naming the bad value; return self."""
        if not self.node_names:
            raise ValueError('node_names is empty: nothing to manage')
        for name in self.node_names:
            if not _NAME.match(name):
                raise ValueError(f'node_names: {name!r} is not a node name')
        if len(set(self.node_names)) != len(self.node_names):
            raise ValueError(f'node_names lists a node twice: {list(self.node_names)}')
        unknown = [n for n in self.configure_only if n and n not in self.node_names]
        if unknown:
            raise ValueError(f'configure_only names {unknown} not in node_names '
                             f"{list(self.node_names)} (set configure_only to [''] for none)")
        for name in ('check_period', 'check_timeout', 'transition_timeout', 'retry_backoff'):
            if not getattr(self, name) > 0.0:
                raise ValueError(f'{name} must be > 0, got {getattr(self, name)}')
        if self.missed_checks < 1:
            raise ValueError(f'missed_checks must be >= 1, got {self.missed_checks}')
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError(f'retry_backoff_max {self.retry_backoff_max} s is below '
                             f'retry_backoff {self.retry_backoff} s')
        return self


def resolve_name(name: str, namespace: str) -> str:
    """The fully qualified name of ``name`` seen from ``namespace`` ('/' + name if absolute)."""
    if name.startswith('/'):
        return name
    return f'{namespace.rstrip("/")}/{name}'


def backoff(failures: int, first: float, longest: float) -> float:
    """Seconds to wait after ``failures`` failures in a row: first, 2 x first, ... longest."""
    if failures <= 0:
        return 0.0
    return min(longest, first * 2.0 ** min(failures - 1, 30))


@dataclass
class ManagedNode:
    """What the manager knows about one managed node."""

    name: str
    """Fully qualified name."""
    target: str
    """ACTIVE, or INACTIVE for a configure-only node: its state while the system is up."""
    state: str = UNKNOWN
    """Last answer (a primary or transition state label), DEAD or UNKNOWN."""
    expected: int = 0
    """Level (0 unconfigured, 1 inactive, 2 active) the manager last brought it to."""
    misses: int = 0
    lost: bool = False
    """It died (or was restarted) after the manager brought it up, and is not back yet."""
    restarts: int = 0
    """Times the manager brought it back after losing it."""
    failures: int = 0
    """Failures in a row (failed transitions, losses): the backoff exponent."""
    retry_at: float = 0.0
    error: str = ''
    """The last failure, for the states report."""
    stable_since: float | None = None

    @property
    def alive(self) -> bool:
        """It answered the last poll (or the misses have not yet made it dead)."""
        return self.state not in (UNKNOWN, DEAD)

    @property
    def up(self) -> bool:
        """It is in its target state (a configure-only node may also be active)."""
        if self.target == INACTIVE:
            return self.state in (INACTIVE, ACTIVE)
        return self.state == self.target

    @property
    def down(self) -> bool:
        """It holds nothing: unconfigured, finalized, dead or never seen."""
        return self.state in (UNCONFIGURED, FINALIZED, DEAD, UNKNOWN)


class Supervisor:
    """Bring-up plan, states and restart policy of the managed nodes (not thread-safe).

    ``clock`` gives seconds (monotonic); every time in the report comes from it.
    """

    def __init__(self, config: LifecycleManagerConfig, namespace: str = '/',
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        only = {resolve_name(n, namespace) for n in config.configure_only if n}
        self.nodes = [ManagedNode(name, INACTIVE if name in only else ACTIVE)
                      for name in (resolve_name(n, namespace) for n in config.node_names)]
        self._by_name = {node.name: node for node in self.nodes}
        self.goal = Goal.IDLE
        self.transitions = 0
        """Transitions requested so far (progress, for whoever waits on the manager)."""
        self.failures = 0
        """Failed transitions so far."""
        self.last_failure = ''
        """The last failed transition: node and why."""
        self.events: collections.deque = collections.deque(maxlen=EVENTS_KEPT)

    def node(self, name: str) -> ManagedNode:
        """The record of ``name`` (fully qualified; KeyError if it is not managed)."""
        return self._by_name[name]

    def _event(self, node: ManagedNode | None, text: str) -> str:
        name = node.name if node is not None else ''
        self.events.append((round(self.clock(), 3), name, text))
        return f'{name}: {text}' if name else text

    # -- requests --------------------------------------------------------------------------
    def startup(self) -> None:
        """Bring every node to its target in order and keep it there (restarts)."""
        self.goal = Goal.UP
        for node in self.nodes:  # an operator asks: try now, whatever the backoff said
            node.retry_at = 0.0
        self._event(None, 'startup requested')

    def shutdown(self) -> None:
        """Deactivate every node, then clean every node up, the last one first."""
        self.goal = Goal.DOWN
        for node in self.nodes:
            node.retry_at = 0.0
        self._event(None, 'shutdown requested')

    # -- observations ----------------------------------------------------------------------
    def observe(self, name: str, state: str | None, absent: bool = False) -> list[str]:
        """Take one poll of ``name``: its state label, or None when it did not answer.

        ``absent``: its get_state service is not in the graph (dead at once if it was alive).
        Returns what changed, as log lines.
        """
        node, now, notes = self._by_name[name], self.clock(), []
        if state is None:
            node.misses += 1
            if node.state in (UNKNOWN, DEAD):
                return notes
            if absent or node.misses >= self.config.missed_checks:
                was = node.state
                node.state, node.stable_since = DEAD, None
                notes.append(self._event(node, f'not answering (was {was})'))
                if node.expected > 0 and self.goal != Goal.DOWN:
                    notes += self._lose(node, now, 'died')
                else:
                    node.expected = 0
            return notes
        node.misses, previous = 0, node.state
        if state != previous:
            if previous in (UNKNOWN, DEAD):
                notes.append(self._event(node, f'answers: {state}'))
            node.state = state
        if state in (UNCONFIGURED, FINALIZED) and node.expected > 0:
            # It holds nothing although the manager brought it up: it died and was respawned.
            if self.goal != Goal.DOWN and not node.lost:
                notes += self._lose(node, now, f'{state}, expected '
                                    f'{"active" if node.expected == 2 else "inactive"}')
            node.expected = 0
        elif previous == DEAD and node.lost and _LEVEL.get(state, -1) >= node.expected > 0:
            node.lost = False  # it kept its state: it was slow to answer, not restarted
            notes.append(self._event(node, 'was only slow to answer: not restarted'))
        if node.up and self.goal == Goal.UP:
            notes += self._reached(node, now)
        else:
            node.stable_since = None
        return notes

    def _lose(self, node: ManagedNode, now: float, why: str) -> list[str]:
        node.lost = True
        node.failures += 1
        node.retry_at = now + backoff(node.failures, self.config.retry_backoff,
                                      self.config.retry_backoff_max)
        node.error = f'lost: {why}'
        if not self.config.restart:
            plan = 'restart is off: leaving it'
        elif self.goal != Goal.UP:
            plan = 'not brought back: no startup asked'
        else:
            plan = f'bringing it back in {node.retry_at - now:.1f} s'
        return [self._event(node, f'lost ({why}); {plan}')]

    def _reached(self, node: ManagedNode, now: float) -> list[str]:
        notes = []
        node.expected = max(node.expected, _LEVEL[node.target])  # up, whoever brought it
        if node.lost:
            node.lost = False
            node.restarts += 1
            notes.append(self._event(node, f'back {node.state} (restart {node.restarts})'))
        if node.stable_since is None:
            node.stable_since = now
        elif now - node.stable_since >= self.config.retry_backoff_max:
            node.failures = 0
        return notes

    def record(self, name: str, transition: Transition, success: bool, error: str = ''
               ) -> list[str]:
        """Take the result of a transition the manager requested; returns log lines."""
        node, now = self._by_name[name], self.clock()
        if not success:
            self.failures += 1
            node.failures += 1
            node.retry_at = now + backoff(node.failures, self.config.retry_backoff,
                                          self.config.retry_backoff_max)
            node.error = f'{transition.value} failed: {error or "refused"}'
            self.last_failure = f'{node.name}: {node.error}'
            return [self._event(node, f'{node.error}; next try in '
                                f'{node.retry_at - now:.1f} s')]
        node.state, node.misses = RESULT[transition], 0
        node.expected = _LEVEL[node.state]
        notes = [self._event(node, f'{transition.value}: {node.state}')]
        if node.up and self.goal == Goal.UP:
            notes += self._reached(node, now)
        return notes

    # -- the plan --------------------------------------------------------------------------
    def next_transition(self) -> tuple[str, Transition] | None:
        """The transition to request now (node name, transition), or None: nothing or wait."""
        step = None
        if self.goal == Goal.UP:
            step = self._next_up()
        elif self.goal == Goal.DOWN:
            step = self._next_down()
            if step is None:
                self.goal = Goal.IDLE
                self._event(None, 'all down')
        if step is None or isinstance(step, str):
            return None
        self.transitions += 1
        return step

    def _next_up(self) -> tuple[str, Transition] | str:
        """The next bring-up transition, or why the bring-up waits ('' when all are up)."""
        now = self.clock()
        for node in self.nodes:
            if node.up:
                continue
            if node.state == UNKNOWN:
                return f'waiting for {node.name} to answer'
            if node.state == DEAD:
                return f'waiting for {node.name} (dead) to come back'
            if node.state == FINALIZED:
                return f'{node.name} is finalized: it must be restarted'
            if node.state not in PRIMARY_STATES:
                return f'waiting for {node.name} ({node.state})'
            if node.lost and not self.config.restart:
                return f'{node.name} was lost and restart is off'
            if now < node.retry_at:
                return f'{node.name}: backing off until {node.retry_at:.1f}'
            if node.state == UNCONFIGURED:
                return node.name, Transition.CONFIGURE
            return node.name, Transition.ACTIVATE
        return ''

    def _next_down(self) -> tuple[str, Transition] | str | None:
        """The next bring-down transition, why it waits, or None when all are down."""
        now = self.clock()
        for source, transition in ((ACTIVE, Transition.DEACTIVATE),
                                   (INACTIVE, Transition.CLEANUP)):
            waiting = ''
            for node in reversed(self.nodes):
                if node.state == source and now >= node.retry_at:
                    return node.name, transition
                if node.state == source:
                    waiting = waiting or f'{node.name}: backing off until {node.retry_at:.1f}'
                elif node.alive and node.state not in PRIMARY_STATES:
                    waiting = waiting or f'waiting for {node.name} ({node.state})'
            if waiting:
                return waiting
        return None

    def blocker(self) -> str:
        """Why nothing is being done now ('' when a transition is due or nothing is asked)."""
        if self.goal == Goal.UP:
            step = self._next_up()
        elif self.goal == Goal.DOWN:
            step = self._next_down()
        else:
            return ''
        return step if isinstance(step, str) else ''

    # -- report ----------------------------------------------------------------------------
    def all_up(self) -> bool:
        """Every node is at its target."""
        return all(node.up for node in self.nodes)

    def all_down(self) -> bool:
        """No node holds anything (unconfigured, finalized, dead or never seen)."""
        return all(node.down for node in self.nodes)

    def system_state(self) -> str:
        """'active' (up as asked), 'starting', 'stopping', 'down' or 'unmanaged' (idle)."""
        if self.goal == Goal.UP:
            return 'active' if self.all_up() else 'starting'
        if self.goal == Goal.DOWN:
            return 'stopping'
        return 'down' if self.all_down() else 'unmanaged'

    def report(self) -> dict[str, Any]:
        """Everything the states topic carries (JSON-ready; no wall-clock stamp)."""
        return {
            'goal': self.goal.value, 'system': self.system_state(), 'waiting': self.blocker(),
            'nodes': [{'name': n.name, 'state': n.state, 'target': n.target,
                       'restarts': n.restarts, 'failures': n.failures, 'lost': n.lost,
                       'error': n.error} for n in self.nodes],
            'events': [list(event) for event in self.events],
        }
