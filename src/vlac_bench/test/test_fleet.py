"""Several robots, one learner, over real DDS: two simulated robots and one trainer.

Each robot (simulator, policy node, critic, runner) runs in its own namespace and processes;
one trainer_node learns from both. Both robots' episodes are stored, one update uses both,
and both robots act with the new version.
"""

import csv

import pytest
from vlac_bench.sim_loop import drive_fleet, start_fleet
from vlac_ros.qos import LATCHED, TRANSITIONS
from vlac_testing.models import tiny_policy

from vlac_interfaces.msg import PolicyVersion, Transition

TASK = 'press_button'
# An episode of EPISODE_S at 10 Hz has at most 40 steps, so one robot's episode alone never
# reaches min_transitions; both together do even at 60 % of the nominal rate (a loaded CI box
# ran 20 and 23 steps in 3 s episodes).
EPISODE_S = 4.0
TRAINER = {'learner.min_transitions': 45, 'ppo.epochs': 1, 'ppo.minibatch_size': 32,
           'rewards.max_uncovered_fraction': 0.9}

pytestmark = pytest.mark.slow(90)  # s on 2 cores: scheduled first


@pytest.fixture(scope='module')
def models(loop_critic, tmp_path_factory) -> dict:
    return {'critic': loop_critic,
            'policy': tiny_policy(tmp_path_factory.mktemp('policy') / 'policy')}


def test_two_robots_feed_one_trainer_and_both_get_the_new_version(ros_graph, models,
                                                                  tmp_path):
    work = tmp_path / 'fleet'
    _, clients = start_fleet(ros_graph, 2, models['critic'], models['policy'], work, TASK,
                             trainer=TRAINER)
    versions = {ns: ros_graph.subscribe(PolicyVersion, f'/{ns}/policy_version', LATCHED)
                for ns in ('robot_1', 'robot_2')}
    transitions = {ns: ros_graph.subscribe(Transition, f'/{ns}/transitions', TRANSITIONS,
                                           limit=5000) for ns in ('robot_1', 'robot_2')}
    first = drive_fleet(clients, TASK, EPISODE_S, episodes=1)
    assert all(len(r) == 1 and not r[0].termination_reason.startswith('aborted')
               for r in first), first
    # One update trains on both robots' episodes (together more than min_transitions).
    ros_graph.wait_for(lambda: all(v.last is not None and v.last.version >= 1
                                   for v in versions.values()), 180.0, 'an update for both')
    with (work / 'logs' / 'robots.csv').open() as handle:
        rows = list(csv.DictReader(handle))
    first_update = [r for r in rows if r['policy_version'] == '1']
    assert {r['robot'] for r in first_update} == {'robot_1', 'robot_2'}, rows
    assert all(int(r['episodes']) == 1 for r in first_update)
    stored = sorted(p.name for p in (work / 'episodes').iterdir() if not p.name.startswith('.'))
    assert stored == ['robot_1', 'robot_2']
    # Both policy nodes load it, and their next episodes act with it.
    for ns in ('robot_1', 'robot_2'):
        ros_graph.wait_for(lambda ns=ns: f'[{ns}.vlac_policy_node]: policy version 1 loaded'
                           in ros_graph.logs(), 60.0, f'{ns} loaded version 1')
    second = drive_fleet(clients, TASK, EPISODE_S, episodes=1, first_seed=50)
    for ns, results in zip(('robot_1', 'robot_2'), second, strict=True):
        ids = {r.episode_id for r in results}
        acted = [t.policy_version for t in transitions[ns].messages if t.episode_id in ids]
        assert acted and min(acted) >= 1, (ns, acted)
