"""Closed-loop policy evaluation in the simulator (ROS-free)."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import torch
from vlac_models.policy.base import EefAction, PolicyOutput
from vlac_models.policy.compact import (
    CompactPolicy,
    CompactPolicyNet,
    PolicyConfig,
    save_model_dir,
)
from vlac_models.state import rotation_of
from vlac_sim.control import ArmController
from vlac_sim.record import record_dataset
from vlac_sim.scene import MAX_GRIPPER_WIDTH, CameraSpec, PandaScene
from vlac_sim.tasks import get_task
from vlac_training.policy_dataset import load_bag_episode

from vlac_training import rollout as policy_rollout

SMALL_CAMERA = CameraSpec(width=32, height=32, rate_hz=10.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-0.03, 0.03), min_size=3, max_size=3),
       st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=3), st.floats(0.0, 1.0))
def test_servo_twist_performs_the_delta_in_one_period(translation, rpy, gripper):
    action = EefAction(tuple(translation), tuple(rpy), gripper)
    linear, angular = policy_rollout.servo_twist(action, 0.1)
    np.testing.assert_allclose(linear * 0.1, translation, atol=1e-12)
    # The controller turns the target by rotvec(angular * dt) on the left: over one period
    # that is exactly the roll/pitch/yaw delta rotation.
    turned = Rotation.from_rotvec(angular * 0.1)
    assert (turned * rotation_of(rpy).inv()).magnitude() < 1e-9
    assert policy_rollout.gripper_opening(action) == (MAX_GRIPPER_WIDTH if gripper >= 0.5
                                                      else 0.0)


class ReplayPolicy:
    """Plays recorded actions in order, then holds (a test double of the Policy protocol)."""

    backend = 'replay'

    def __init__(self, actions: np.ndarray) -> None:
        self.actions = actions
        self.states = []

    def reset(self) -> None:
        self.states.clear()

    def act(self, observation, deterministic=True):
        k = len(self.states)
        self.states.append(observation.state)
        vector = self.actions[k] if k < len(self.actions) else np.r_[np.zeros(6),
                                                                     self.actions[-1, 6]]
        return PolicyOutput(EefAction.from_vector(vector), np.zeros(7, np.int64), 0.0, 0.0)


@pytest.mark.parametrize('task_name', ['press_button', 'pick_place_red'])
def test_replaying_derived_actions_reproduces_the_demonstration(tmp_path, task_name):
    """Dataset derivation and servo execution are inverse: a demo's actions replay it."""
    record_dataset(tmp_path, [task_name], 1, 0, first_seed=7, camera=SMALL_CAMERA,
                   log=lambda _: None)
    episode = load_bag_episode(next((tmp_path / task_name).glob('expert_*')), 0.1, 32)
    replay = ReplayPolicy(episode.actions)
    scene = PandaScene()
    try:
        outcome = policy_rollout.run_episode(scene, ArmController(scene), replay,
                                             get_task(task_name), 7, [SMALL_CAMERA], 0.1)
    finally:
        scene.close()
    assert outcome.success
    # The rollout stops at success; the demonstration goes on until the arm has withdrawn.
    n = min(len(replay.states), len(episode))
    assert n >= 0.6 * len(episode), (len(replay.states), len(episode))
    states, demo = np.array(replay.states[:n]), episode.states[:n]
    assert np.abs(states[:, :3] - demo[:, :3]).max() < 0.005  # m, open loop
    angles = np.abs((states[:, 3:6] - demo[:, 3:6] + math.pi) % (2 * math.pi) - math.pi)
    assert angles.max() < 0.05  # rad


def test_evaluate_policy_cli(tmp_path, capsys):
    torch.manual_seed(0)
    config = PolicyConfig(frame_size=32, channels=(4, 8, 8, 4), embed_dim=16, hidden_dim=32)
    save_model_dir(CompactPolicy(CompactPolicyNet(config)), tmp_path / 'model')
    code = policy_rollout.main(['--model', str(tmp_path / 'model'), '--tasks',
                                'press_button,push_red', '--episodes', '2', '--width', '48',
                                '--height', '48', '--max-duration', '0.3', '--json',
                                str(tmp_path / 'out.json')])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'press_button      : success 0/2 (0 %)' in printed
    assert 'all               : success 0/4 (0 %)' in printed
    result = json.loads((tmp_path / 'out.json').read_text())
    assert [e['seed'] for e in result['episodes']] == [1000, 1001, 1000, 1001]
    assert all(e['steps'] == 3 for e in result['episodes'])
    assert policy_rollout.main(['--model', str(tmp_path / 'nowhere'), '--episodes', '1']) == 2
    assert policy_rollout.main(['--model', str(tmp_path / 'model'), '--tasks', 'fly']) == 2
