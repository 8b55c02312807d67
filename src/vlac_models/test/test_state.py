"""The one policy state vector: conventions, batches, bad input."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from vlac_models.state import (
    policy_state,
    quaternion_matrix,
    rotation_of,
    rpy_from_matrix,
    rpy_of,
    state_from_pose,
)


def test_rpy_matches_scipy_fixed_axis_xyz_on_random_rotations():
    rotations = Rotation.random(2000, random_state=0)
    np.testing.assert_allclose(rpy_from_matrix(rotations.as_matrix()),
                               rotations.as_euler('xyz'), atol=1e-12)
    np.testing.assert_allclose(rpy_of(rotation_of([0.3, -0.2, 1.1])), [0.3, -0.2, 1.1],
                               atol=1e-12)


def test_quaternion_matrix_matches_scipy_and_normalises():
    for quat in Rotation.random(200, random_state=1).as_quat():
        np.testing.assert_allclose(quaternion_matrix(*(2.0 * quat)),
                                   Rotation.from_quat(quat).as_matrix(), atol=1e-12)


@pytest.mark.parametrize('quat', [(0, 0, 0, 0), (0.1, 0, 0, 0.1), (float('nan'), 0, 0, 1)])
def test_a_garbage_orientation_is_rejected(quat):
    with pytest.raises(ValueError, match='invalid orientation'):
        quaternion_matrix(*quat)


def test_one_pose_and_a_batch_give_the_same_numbers():
    rotations = Rotation.random(5, random_state=2)
    positions = np.arange(15.0).reshape(5, 3)
    batch = policy_state(positions, rotations, np.linspace(0, 1, 5))
    assert batch.shape == (5, 7)
    for k in range(5):
        np.testing.assert_allclose(policy_state(positions[k], rotations[k].as_matrix(),
                                                batch[k, 6]), batch[k])


def test_state_from_a_pose_message():
    pose = SimpleNamespace(position=SimpleNamespace(x=0.5, y=0.0, z=0.3),
                           orientation=SimpleNamespace(x=1.0, y=0.0, z=0.0, w=0.0))
    state = state_from_pose(pose, 0.25)
    np.testing.assert_allclose(state[[0, 1, 2, 4, 5, 6]], [0.5, 0.0, 0.3, 0.0, 0.0, 0.25],
                               atol=1e-12)
    assert abs(abs(state[3]) - np.pi) < 1e-12  # gripper down: roll +-pi
    pose.position.x = float('inf')
    with pytest.raises(ValueError, match='non-finite'):
        state_from_pose(pose, 0.25)
