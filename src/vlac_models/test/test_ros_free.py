"""vlac_models imports and runs in a Python where no ROS module can be imported.

A subprocess blocks every ROS package (rclpy, message packages, ament, this stack's ROS
helpers) with an import hook, then writes a small compact critic and policy with the real
export code, loads them with the real loaders, scores a pair, asks for done and acts.
"""

import subprocess
import sys

SCRIPT = r"""
import importlib.abc
import sys

BLOCKED = {'rclpy', 'rcl_interfaces', 'rosidl_runtime_py', 'rosidl_parser', 'rpyutils',
           'builtin_interfaces', 'std_msgs', 'sensor_msgs', 'geometry_msgs', 'lifecycle_msgs',
           'trajectory_msgs', 'vlac_interfaces', 'ament_index_python', 'vlac_ros',
           'vlac_testing', 'vlac_training', 'vlac_sim', 'rl_trainer', 'rl_runner'}


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{name} is blocked: vlac_models must not need ROS')
        return None


sys.meta_path.insert(0, Block())
import pathlib
import tempfile

import numpy as np
import torch

from vlac_models.critic import DoneQuery, PairQuery, load_critic
from vlac_models.critic.compact import CompactConfig, CompactCriticNet, export_model_dir
from vlac_models.policy.base import PolicyObservation, load_policy
from vlac_models.policy.compact import (CompactPolicy, CompactPolicyNet, PolicyConfig,
                                        save_model_dir)
from vlac_models.state import policy_state, rotation_of

torch.manual_seed(0)
root = pathlib.Path(tempfile.mkdtemp())
export_model_dir(CompactCriticNet(CompactConfig(frame_size=32)), root / 'critic')
save_model_dir(CompactPolicy(CompactPolicyNet(PolicyConfig(
    frame_size=32, channels=(4, 8, 8, 4), embed_dim=16, hidden_dim=32))), root / 'policy')

critic = load_critic('compact', str(root / 'critic'))
rng = np.random.default_rng(0)
a, b = (rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(2))
delta = critic.score_pairs([PairQuery('press the button', a, b)])
done = critic.done_probability([DoneQuery('press the button', b)])
policy = load_policy('compact', str(root / 'policy'))
state = policy_state([0.5, 0.0, 0.3], rotation_of([np.pi, 0.0, 0.0]), 1.0)
output = policy.act(PolicyObservation([a], state, 'press the button'), deterministic=True)
assert delta.shape == (1,) and -1.0 <= float(delta[0]) <= 1.0, delta
assert done.shape == (1,) and 0.0 <= float(done[0]) <= 1.0, done
assert output.action.is_finite(), output
ros = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)
assert not ros, ros
print('scored', float(delta[0]), 'done', float(done[0]), 'action', output.action)
"""


def test_model_library_scores_and_acts_with_ros_blocked():
    result = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'scored' in result.stdout and 'action' in result.stdout
