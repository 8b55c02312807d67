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
import torch
from vlac_bench.sim_loop import run_episode, start_loop, start_trainer
from vlac_models.policy.compact import (
    CompactPolicy,
    CompactPolicyNet,
    PolicyConfig,
    save_model_dir,
)
from vlac_ros.bags import bag_metadata, read_messages
from vlac_ros.qos import LATCHED, TRANSITIONS
from vlac_sim.record import record_dataset
from vlac_sim.scene import CameraSpec
from vlac_training.train_critic import main as train_critic

from vlac_interfaces.msg import PolicyVersion, Transition

TASK = 'press_button'


@pytest.fixture(scope='module')
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('loop_models')
    record_dataset(root / 'data', [TASK], episodes=2, failures=0,
                   camera=CameraSpec(width=96, height=96, rate_hz=10.0), log=lambda *_: None)
    assert train_critic(['--data', str(root / 'data'), '--out', str(root / 'critic'),
                         '--seed', '0', '--epochs', '1', '--holdout', '0.0',
                         '--no-progress']) == 0
    torch.manual_seed(0)
    net = CompactPolicyNet(PolicyConfig(frame_size=64, channels=(8, 16, 16, 8), embed_dim=32,
                                        hidden_dim=64))
    return {'critic': root / 'critic',
            'policy': save_model_dir(CompactPolicy(net, seed=0), root / 'policy')}


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

