"""ROS-free parts of vlac_policy_node: config validation, kinematics, safety, adapters."""

import math
import pathlib

import numpy as np
import pinocchio as pin
import pybullet_data
import pytest
from std_msgs.msg import Header
from vlac_models.policy.base import EefAction
from vlac_policy_node.actions import (
    ArmAdapter,
    ArmState,
    UnsafeAction,
    gripper_opening,
    limit_action,
    target_pose,
)
from vlac_policy_node.config import ArmConfig, PolicyNodeConfig, SafetyConfig
from vlac_policy_node.kinematics import ArmKinematics, IkError
from vlac_policy_node.policy_node import weights_path
from vlac_sim.scene import PandaScene

URDF = pathlib.Path(pybullet_data.getDataPath(), 'franka_panda', 'panda.urdf').read_text()
JOINTS = tuple(f'panda_joint{i}' for i in range(1, 8))
HOME = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8])


def state_at(q=HOME) -> ArmState:
    tip = ArmKinematics(URDF, JOINTS, 'panda_grasptarget').forward(q)
    joints = dict(zip(JOINTS, q, strict=True))
    return ArmState(tip.translation.copy(), tip.rotation.copy(), joints, 1.0)


def test_forward_kinematics_matches_the_simulator():
    scene = PandaScene()
    kinematics = ArmKinematics(URDF, JOINTS, 'panda_grasptarget')
    rng = np.random.default_rng(0)
    lower, upper = kinematics.lower, kinematics.upper
    for _ in range(5):
        q = rng.uniform(lower * 0.5, upper * 0.5)
        scene.set_arm(q, 0.04)
        position, quat = scene.ee_pose()
        tip = kinematics.forward(q)
        np.testing.assert_allclose(tip.translation, position, atol=1e-5)
        x, y, z, w = quat
        np.testing.assert_allclose(tip.rotation, pin.Quaternion(w, x, y, z).matrix(),
                                   atol=1e-5)


def test_inverse_kinematics_reaches_a_nearby_target_and_refuses_an_unreachable_one():
    kinematics = ArmKinematics(URDF, JOINTS, 'panda_grasptarget')
    start = kinematics.forward(HOME)
    target = pin.SE3(pin.rpy.rpyToMatrix(0.1, 0.0, -0.1) @ start.rotation,
                     start.translation + [0.03, -0.02, 0.04])
    q = kinematics.inverse(HOME, target)
    assert np.all(q >= kinematics.lower) and np.all(q <= kinematics.upper)
    reached = kinematics.forward(q)
    assert np.linalg.norm(reached.translation - target.translation) < 1e-4
    with pytest.raises(IkError):
        kinematics.inverse(HOME, pin.SE3(start.rotation, np.array([3.0, 0.0, 0.5])))
    with pytest.raises(IkError):
        kinematics.inverse([0.0] * 6, target)  # wrong length


def test_inverse_kinematics_converges_on_every_reachable_nearby_target():
    # Targets are the forward kinematics of a joint configuration near a random start, so a
    # solution exists within the limits. Plain damped Gauss-Newton with clipping missed
    # 3-6 % of these (it overshoots and then stalls against a limit); the arm then held
    # where it could have moved.
    kinematics = ArmKinematics(URDF, JOINTS, 'panda_grasptarget')
    rng = np.random.default_rng(1)
    misses = []
    for _ in range(300):
        q = np.clip(HOME + rng.normal(0.0, 0.6, 7), kinematics.lower, kinematics.upper)
        goal = np.clip(q + rng.normal(0.0, 0.1, 7), kinematics.lower, kinematics.upper)
        target = kinematics.forward(goal)
        try:
            reached = kinematics.forward(kinematics.inverse(q, target))
        except IkError as err:
            misses.append(str(err))
            continue
        assert np.linalg.norm(pin.log6(reached.actInv(target)).vector) < 1e-4
    assert not misses, misses


def test_unknown_joint_or_link_names_are_configuration_errors():
    with pytest.raises(ValueError, match='unknown joint'):
        ArmKinematics(URDF, ('panda_joint1', 'shoulder_pan_joint'), 'panda_grasptarget')
    with pytest.raises(ValueError, match='tip link'):
        ArmKinematics(URDF, JOINTS, 'tool0')
    with pytest.raises(ValueError, match='URDF'):
        ArmKinematics('<robot', JOINTS, 'panda_grasptarget')


def test_limit_action_scales_clips_and_refuses_nan():
    safety = SafetyConfig(max_step_translation=0.05, max_step_rotation=0.2)
    state = state_at()
    action, notes = limit_action(EefAction((0.3, 0.0, 0.4), (0.0, 0.0, 1.0), 2.0), state,
                                 safety)
    assert np.linalg.norm(action.translation) <= 0.05 + 1e-9
    assert np.linalg.norm(pin.log3(pin.rpy.rpyToMatrix(*action.rotation))) <= 0.2 + 1e-9
    assert action.gripper == 1.0 and len(notes) == 2
    # The workspace box bounds the target position.
    near_wall = ArmState(np.array([0.84, 0.0, 0.3]), np.eye(3), {}, 1.0)
    action, notes = limit_action(EefAction((0.04, 0.0, 0.0), (0, 0, 0), 0.0), near_wall, safety)
    assert action.translation[0] == pytest.approx(0.01) and 'workspace' in notes[0]
    for bad in (math.nan, math.inf):
        with pytest.raises(UnsafeAction):
            limit_action(EefAction((bad, 0.0, 0.0), (0, 0, 0), 0.0), state, safety)


def test_adapters_build_the_driver_messages():
    state = state_at()
    action = EefAction((0.01, -0.02, 0.005), (0.0, 0.0, 0.05), 0.0)
    header = Header(frame_id='panda_link0')
    servo = ArmAdapter(ArmConfig(), period=0.1)
    twist = servo.command(action, state, header).twist
    assert (twist.linear.x, twist.linear.y, twist.linear.z) == pytest.approx((0.1, -0.2, 0.05))
    assert twist.angular.z == pytest.approx(0.5) and twist.angular.x == pytest.approx(0.0)
    assert servo.hold(header).twist.linear.x == 0.0
    assert list(servo.gripper_command(action, header).data) == [0.0]
    pose = ArmAdapter(ArmConfig(adapter='pose', command_topic='target_pose'), 0.1)
    msg = pose.command(action, state, header)
    expected = target_pose(action, state)
    assert msg.pose.position.x == pytest.approx(expected.translation[0])
    assert pose.hold(header) is None
    trajectory = ArmAdapter(ArmConfig(adapter='joint_trajectory', command_topic='jtc'), 0.1)
    with pytest.raises(IkError, match='robot_description'):
        trajectory.command(action, state, header)
    trajectory.set_robot_description(URDF)
    msg = trajectory.command(action, state, header)
    assert msg.joint_names == list(JOINTS) and msg.points[0].time_from_start.nanosec == 10**8
    reached = ArmKinematics(URDF, JOINTS, 'panda_grasptarget').forward(msg.points[0].positions)
    np.testing.assert_allclose(reached.translation, expected.translation, atol=1e-4)
    forward = ArmAdapter(ArmConfig(adapter='forward_position', command_topic='fpc'), 0.1)
    forward.set_robot_description(URDF)
    np.testing.assert_allclose(forward.command(action, state, header).data,
                               msg.points[0].positions, atol=1e-9)


def test_gripper_opening_is_normalised_from_the_finger_joints():
    names = list(JOINTS) + ['panda_finger_joint1', 'panda_finger_joint2']
    assert gripper_opening(names, [0.0] * 7 + [0.02, 0.02], ArmConfig()) == pytest.approx(0.5)
    assert math.isnan(gripper_opening(list(JOINTS), [0.0] * 7, ArmConfig()))


def test_configuration_errors_name_the_bad_value():
    with pytest.raises(ValueError, match='model_path'):
        PolicyNodeConfig().validate()
    with pytest.raises(ValueError, match='adapter'):
        PolicyNodeConfig(model_path='m', arm=ArmConfig(adapter='teleport')).validate()
    with pytest.raises(ValueError, match='workspace'):
        PolicyNodeConfig(model_path='m', safety=SafetyConfig(
            workspace_min=(1.0, 0.0, 0.0), workspace_max=(0.5, 1.0, 1.0))).validate()
    with pytest.raises(ValueError, match='rate_hz'):
        PolicyNodeConfig(model_path='m', rate_hz=0.0).validate()


def test_weight_paths_must_be_safetensors_inside_the_weights_dir(tmp_path):
    inside = tmp_path / 'weights' / 'policy_v1.safetensors'
    inside.parent.mkdir()
    inside.write_bytes(b'x')
    assert weights_path(f'file://{inside}', str(tmp_path / 'weights')) == inside
    assert weights_path(str(inside), str(tmp_path / 'weights')) == inside
    (tmp_path / 'weights' / 'escape.safetensors').symlink_to(tmp_path / 'outside.safetensors')
    bad = [(str(tmp_path / 'other' / 'p.safetensors'), 'outside'),
           (f'{tmp_path}/weights/../p.safetensors', 'outside'),
           (str(tmp_path / 'weights' / 'escape.safetensors'), 'outside'),
           (str(tmp_path / 'weights' / 'policy.pt'), 'safetensors'),
           ('http://example.org/p.safetensors', 'local'),
           ('weights/p.safetensors', 'absolute')]
    for uri, reason in bad:
        with pytest.raises(ValueError, match=reason):
            weights_path(uri, str(tmp_path / 'weights'))
    with pytest.raises(ValueError, match='disabled'):
        weights_path(str(inside), '')
