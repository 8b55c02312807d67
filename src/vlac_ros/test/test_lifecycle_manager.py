"""The lifecycle manager's core without ROS: order, bring-down, losses, restarts, backoff.

A ``World`` of fake lifecycle nodes answers the polls and carries out the transitions the
``Supervisor`` asks for, on a clock the test moves.
"""

import dataclasses
import json

import pytest
from vlac_ros.lifecycle_manager import (
    ACTIVE,
    DEAD,
    INACTIVE,
    RESULT,
    UNCONFIGURED,
    UNKNOWN,
    Goal,
    LifecycleManagerConfig,
    Supervisor,
    Transition,
    backoff,
    resolve_name,
)

NAMES = ('reward', 'policy', 'trainer', 'runner')
TICK = 0.125  # s per round, exact in binary so backoff deadlines fall on a round
CONFIG = LifecycleManagerConfig(node_names=NAMES, configure_only=('policy',),
                                retry_backoff=1.0, retry_backoff_max=8.0, missed_checks=2)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class World:
    """Fake lifecycle nodes: their states, which ones run, which transitions they refuse."""

    def __init__(self, names) -> None:
        self.state = {f'/robot/{n}': UNCONFIGURED for n in names}
        self.running = set(self.state)
        self.refuse: dict[str, set] = {}
        self.log: list[tuple[str, str]] = []

    def kill(self, name: str) -> None:
        self.running.discard(f'/robot/{name}')

    def respawn(self, name: str) -> None:
        self.running.add(f'/robot/{name}')
        self.state[f'/robot/{name}'] = UNCONFIGURED


def step(sup: Supervisor, world: World, clock: Clock) -> tuple[str, Transition] | None:
    """One round of the node's worker: poll everyone, then at most one transition."""
    for name in world.state:
        sup.observe(name, world.state[name] if name in world.running else None)
    action = sup.next_transition()
    if action is not None:
        name, transition = action
        ok = transition not in world.refuse.get(name, ())
        if ok:
            world.state[name] = RESULT[transition]
            world.log.append((name.rsplit('/', 1)[1], transition.value))
        sup.record(name, transition, ok, '' if ok else 'refused')
    clock.t += TICK
    return action


def settle(sup: Supervisor, world: World, clock: Clock, rounds: int = 60) -> None:
    for _ in range(rounds):
        step(sup, world, clock)


@pytest.fixture
def system():
    clock = Clock()
    return Supervisor(CONFIG, '/robot', clock), World(NAMES), clock


def states(sup: Supervisor) -> dict[str, str]:
    return {n.name.rsplit('/', 1)[1]: n.state for n in sup.nodes}


def test_the_default_config_is_valid_and_bad_values_are_named():
    assert LifecycleManagerConfig().validate().configure_only == ('vlac_policy_node',)
    bad = [({'node_names': ()}, 'empty'), ({'node_names': ('a', 'a')}, 'twice'),
           ({'node_names': ('a b',)}, "'a b'"),
           ({'node_names': ('a',), 'configure_only': ('b',)}, "['b']"),
           ({'check_period': 0.0}, 'check_period'), ({'missed_checks': 0}, 'missed_checks'),
           ({'retry_backoff': 2.0, 'retry_backoff_max': 1.0}, 'retry_backoff_max 1.0')]
    for fields, named in bad:
        with pytest.raises(ValueError, match=named.replace('[', r'\[').replace(']', r'\]')):
            dataclasses.replace(LifecycleManagerConfig(), **fields).validate()
    # '' means none, and absolute names are allowed.
    dataclasses.replace(LifecycleManagerConfig(), node_names=('a', '/trainer_node'),
                        configure_only=('',)).validate()


def test_names_resolve_against_the_namespace_and_backoff_doubles_to_its_cap():
    assert resolve_name('vlac_policy_node', '/robot_1') == '/robot_1/vlac_policy_node'
    assert resolve_name('vlac_policy_node', '/') == '/vlac_policy_node'
    assert resolve_name('/trainer_node', '/robot_1') == '/trainer_node'
    assert [backoff(n, 1.0, 8.0) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_idle_manager_only_watches(system):
    sup, world, clock = system
    settle(sup, world, clock, 5)
    assert world.log == [] and sup.goal == Goal.IDLE and sup.system_state() == 'down'


def test_startup_brings_nodes_up_in_order_one_after_the_other(system):
    sup, world, clock = system
    sup.startup()
    settle(sup, world, clock)
    assert world.log == [('reward', 'configure'), ('reward', 'activate'),
                         ('policy', 'configure'),  # configure-only: the runner activates it
                         ('trainer', 'configure'), ('trainer', 'activate'),
                         ('runner', 'configure'), ('runner', 'activate')]
    assert sup.all_up() and sup.system_state() == 'active' and sup.blocker() == ''
    assert states(sup) == {'reward': ACTIVE, 'policy': INACTIVE, 'trainer': ACTIVE,
                           'runner': ACTIVE}
    # The runner activating the configure-only policy for an episode is no concern of it.
    world.state['/robot/policy'] = ACTIVE
    settle(sup, world, clock, 5)
    assert len(world.log) == 7 and sup.all_up()


def test_a_node_that_never_answers_blocks_the_ones_after_it(system):
    sup, world, clock = system
    world.kill('policy')
    sup.startup()
    settle(sup, world, clock)
    assert world.log == [('reward', 'configure'), ('reward', 'activate')]
    assert 'waiting for /robot/policy to answer' in sup.blocker()
    assert states(sup)['policy'] == UNKNOWN and sup.system_state() == 'starting'
    world.respawn('policy')
    settle(sup, world, clock)
    assert sup.all_up() and [n for n, _ in world.log][2:] == ['policy', 'trainer', 'trainer',
                                                             'runner', 'runner']


def test_shutdown_deactivates_all_then_cleans_all_up_last_first(system):
    sup, world, clock = system
    sup.startup()
    settle(sup, world, clock)
    world.state['/robot/policy'] = ACTIVE  # mid-episode
    world.log.clear()
    sup.shutdown()
    assert sup.system_state() == 'stopping'
    settle(sup, world, clock)
    assert world.log == [('runner', 'deactivate'), ('trainer', 'deactivate'),
                         ('policy', 'deactivate'), ('reward', 'deactivate'),
                         ('runner', 'cleanup'), ('trainer', 'cleanup'), ('policy', 'cleanup'),
                         ('reward', 'cleanup')]
    assert sup.goal == Goal.IDLE and sup.all_down() and sup.system_state() == 'down'
    assert all(n.expected == 0 and not n.lost for n in sup.nodes)
    # Down is not a loss: nobody is restarted; a later startup brings everything up again.
    settle(sup, world, clock, 10)
    assert len(world.log) == 8
    sup.startup()
    settle(sup, world, clock)
    assert sup.all_up() and all(n.restarts == 0 for n in sup.nodes)


def test_shutdown_skips_dead_nodes(system):
    sup, world, clock = system
    sup.startup()
    settle(sup, world, clock)
    world.kill('trainer')
    settle(sup, world, clock, 3)
    assert states(sup)['trainer'] == DEAD
    world.log.clear()
    sup.shutdown()
    settle(sup, world, clock)
    assert [n for n, _ in world.log] == ['runner', 'reward', 'runner', 'policy', 'reward']
    assert sup.goal == Goal.IDLE and sup.all_down()


def test_a_killed_node_is_dead_after_missed_checks_and_restored_when_it_respawns(system):
    sup, world, clock = system
    sup.startup()
    settle(sup, world, clock)
    world.log.clear()
    world.kill('reward')
    step(sup, world, clock)
    assert states(sup)['reward'] == ACTIVE  # one miss is not yet death
    step(sup, world, clock)
    reward = sup.node('/robot/reward')
    assert reward.state == DEAD and reward.lost and reward.failures == 1
    assert reward.error == 'lost: died'
    assert sup.system_state() == 'starting' and 'dead' in sup.blocker()
    assert states(sup)['runner'] == ACTIVE  # later nodes keep running
    world.respawn('reward')
    step(sup, world, clock)  # answers unconfigured; the backoff (1 s) has not passed yet
    assert world.log == [] and 'backing off' in sup.blocker()
    settle(sup, world, clock, 15)
    assert world.log == [('reward', 'configure'), ('reward', 'activate')]
    assert reward.restarts == 1 and not reward.lost and sup.all_up()
    assert any('back active (restart 1)' in text for _, _, text in sup.events)


def test_a_fast_respawn_is_a_loss_too_and_later_nodes_wait_for_earlier_ones(system):
    sup, world, clock = system
    sup.startup()
    settle(sup, world, clock)
    world.log.clear()
    # Both die and are respawned (unconfigured) before any poll notices they were gone.
    world.respawn('reward')
    world.respawn('runner')
    world.kill('reward')  # ... and the reward node is slow to come back
    settle(sup, world, clock, 30)
    assert states(sup) == {'reward': DEAD, 'policy': INACTIVE, 'trainer': ACTIVE,
                           'runner': UNCONFIGURED}
    assert world.log == [] and sup.node('/robot/runner').lost
    world.respawn('reward')
    settle(sup, world, clock, 60)
    assert world.log == [('reward', 'configure'), ('reward', 'activate'),
                         ('runner', 'configure'), ('runner', 'activate')]
    assert [n.restarts for n in sup.nodes] == [1, 0, 0, 1]


def test_a_node_only_slow_to_answer_is_not_restarted(system):
    sup, world, clock = system
    sup.startup()
    settle(sup, world, clock)
    world.log.clear()
    world.kill('trainer')  # a long pause: no answers, yet the process lives on
    settle(sup, world, clock, 3)
    trainer = sup.node('/robot/trainer')
    assert trainer.state == DEAD and trainer.lost
    world.running.add('/robot/trainer')  # it answers again, still active
    settle(sup, world, clock, 20)
    assert world.log == [] and not trainer.lost and trainer.restarts == 0 and sup.all_up()
    assert any('only slow' in text for _, _, text in sup.events)


def test_without_restart_a_lost_node_is_reported_and_left(system):
    _, world, clock = system
    sup = Supervisor(dataclasses.replace(CONFIG, restart=False), '/robot', clock)
    sup.startup()
    settle(sup, world, clock)
    world.log.clear()
    world.respawn('trainer')
    settle(sup, world, clock, 100)
    assert world.log == [] and sup.node('/robot/trainer').lost
    assert 'restart is off' in sup.blocker()


def test_failed_transitions_back_off_doubling_then_recover_and_reset(system):
    sup, world, clock = system
    world.refuse['/robot/policy'] = {Transition.CONFIGURE}
    sup.startup()
    tries = []
    for _ in range(int(40 / TICK)):
        action = step(sup, world, clock)
        if action == ('/robot/policy', Transition.CONFIGURE):
            tries.append(clock.t - TICK)
    gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0] and set(gaps[4:]) == {8.0}, gaps
    policy = sup.node('/robot/policy')
    assert policy.error == 'configure failed: refused' and sup.failures == len(tries)
    assert ('trainer', 'configure') not in world.log  # it waits for the policy
    del world.refuse['/robot/policy']
    sup.startup()  # asked again: no waiting out the backoff
    settle(sup, world, clock)
    assert sup.all_up() and policy.failures == len(tries)
    settle(sup, world, clock, int(8 / TICK) + 1)  # up for retry_backoff_max: failures count afresh
    assert policy.failures == 0


def test_a_service_leaving_the_graph_is_death_at_once(system):
    sup, world, clock = system
    sup.startup()
    settle(sup, world, clock)
    sup.observe('/robot/trainer', None, absent=True)
    assert sup.node('/robot/trainer').state == DEAD and sup.node('/robot/trainer').lost


def test_report_is_json_and_stable_between_changes(system):
    sup, world, clock = system
    sup.startup()
    settle(sup, world, clock)
    report = sup.report()
    assert json.loads(json.dumps(report)) == report
    assert report['system'] == 'active' and report['goal'] == 'up'
    assert [n['name'] for n in report['nodes']] == [f'/robot/{n}' for n in NAMES]
    settle(sup, world, clock, 5)
    assert sup.report() == report  # nothing changed: the states topic stays quiet
