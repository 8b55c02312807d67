"""The whole asynchronous loop over real DDS, each node in its own process.

Simulated arm + compact policy node + compact critic (reward node) + episode runner +
trainer: episodes run, the trainer updates and publishes a new version, the policy node loads
it and later transitions carry it, the episode bags exist and read back. The trainer is then
killed (SIGKILL) and restarted while the robot keeps running episodes: no episode is lost and
none is trained twice.
"""

import json
import signal

import numpy as np
import pytest
from rl_trainer.learner import episode_batches
from rl_trainer.rewards import RewardOptions
from rl_trainer.storage import EpisodeStore
from vlac_bench.sim_loop import run_episode, start_loop, start_trainer
from vlac_models.stamps import stamp_ns
from vlac_ros.bags import bag_metadata, read_messages
from vlac_ros.qos import LATCHED, TRANSITIONS
from vlac_testing.models import tiny_policy

from vlac_interfaces.msg import PolicyVersion, Transition

TASK = 'press_button'

pytestmark = pytest.mark.slow(65)  # s on 2 cores: scheduled first


@pytest.fixture(scope='module')
def models(loop_critic, tmp_path_factory) -> dict:
    return {'critic': loop_critic,
            'policy': tiny_policy(tmp_path_factory.mktemp('policy') / 'policy')}


TRAINER = {'learner.min_transitions': 40, 'ppo.epochs': 2, 'ppo.minibatch_size': 32,
           'rewards.max_uncovered_fraction': 0.6}


def test_episodes_train_ship_and_survive_a_trainer_crash(ros_graph, models, tmp_path):
    work = tmp_path / 'trainer'
    trainer, client = start_loop(ros_graph, models['critic'], models['policy'], work, TASK,
                                 trainer=TRAINER)
    versions = ros_graph.subscribe(PolicyVersion, '/robot_1/policy_version', LATCHED)
    transitions = ros_graph.subscribe(Transition, '/robot_1/transitions', TRANSITIONS,
                                      limit=5000)

    def run(seed: int):
        result = run_episode(client, TASK, seed, 3.0)
        assert not result.termination_reason.startswith('aborted'), result
        return result

    results = [run(1), run(2)]
    ros_graph.wait_for(lambda: versions.last is not None and versions.last.version >= 1,
                       120.0, 'first update')
    ros_graph.wait_for(lambda: 'policy version 1 loaded' in ros_graph.logs(), 60.0,
                       'policy node loaded version 1')
    results.append(run(3))
    assert 'now acting with policy version 1' in ros_graph.logs()
    third = [t for t in transitions.messages if t.episode_id == results[2].episode_id]
    assert third and all(t.policy_version == 1 for t in third)
    # Crash the trainer, keep the robot working, restart the trainer.
    trainer.signal(signal.SIGKILL)
    trainer.wait(10.0)
    results.append(run(4))
    start_trainer(ros_graph, models['policy'], work, **TRAINER)
    ros_graph.wait_for(lambda: versions.last.version >= 2, 180.0, 'update after restart')
    logs = ros_graph.logs()
    for result in results[:2]:
        assert f'episode robot_1/{result.episode_id} already stored; ignored' in logs
    state = json.loads(sorted((work / 'checkpoints').glob('checkpoint_*'))[-1]
                       .joinpath('trainer_state.json').read_text())
    assert sorted(state['consumed_episodes']) == sorted(
        f'robot_1/{r.episode_id}' for r in results)
    with (work / 'logs' / 'updates.csv').open() as handle:
        header, *rows = [line.strip().split(',') for line in handle]
    trained = [float(row[header.index('train/episodes')]) for row in rows]
    assert sum(trained) == 4 and len(trained) == 2, (header, rows)  # each episode once
    # The robot-side recordings: one bag per episode, readable, with images and actions.
    for result in results:
        meta = bag_metadata(result.bag_path)
        assert meta['topics']['/robot_1/camera/image_raw'][1] > 5
        steps = [m.step for topic, _, m in read_messages(result.bag_path)
                 if topic == '/robot_1/transitions']
        assert steps and steps == list(range(len(steps))) and len(steps) == result.steps
    assert np.isfinite([r.episode_return for r in results]).all()

    # The reward join (live run): every score the trainer stored lies inside the episode's
    # bounds, and the transitions' rewards sum to the progress over the steps the policy
    # acted (each score weighted by its share of [first observation, end]) - nothing lost or
    # counted twice at the seams - which is also the return the runner reported.
    store = EpisodeStore(work / 'episodes')
    by_id = {r.episode_id: r for r in results}
    for key in store.keys():
        episode = store.load(key)
        start, end = stamp_ns(episode.result.start_time), stamp_ns(episode.result.end_time)
        assert episode.progress and all(stamp_ns(s.stamp_a) >= start and
                                        stamp_ns(s.stamp_b) <= end for s in episode.progress)
        acted_from = stamp_ns(episode.transitions[0].observation_stamp)
        expected = sum(
            s.delta * max(0, min(stamp_ns(s.stamp_b), end) - max(stamp_ns(s.stamp_a),
                                                                   acted_from))
            / (stamp_ns(s.stamp_b) - stamp_ns(s.stamp_a)) for s in episode.progress)
        rewards = episode_batches(episode, RewardOptions(max_uncovered_fraction=1.0)).rollout
        assert len(rewards.rewards) == len(episode.transitions)
        tolerance = 0.15 * max(abs(s.delta) for s in episode.progress) + 1e-6  # 20 ms snaps
        assert abs(rewards.rewards.sum() - expected) <= tolerance, (key, expected)
        assert rewards.rewards.sum() == pytest.approx(
            by_id[episode.result.episode_id].episode_return, abs=1e-6)
