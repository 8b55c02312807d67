"""Dry run over DDS: every adapter, and every real-arm config as shipped, commands nothing.

Five vlac_policy_node processes run side by side, one per config, each in its own namespace
(absolute topics of the real-arm configs are remapped into it): the real-arm configs
``moveit_servo`` (servo adapter), ``franka_fr3_joint_trajectory`` and ``ur_joint_trajectory``
(joint trajectory, forward kinematics from robot_description) as shipped, and the simulator's
``pose`` and ``forward_position`` configs with ``dry_run`` set. The test plays each arm's
driver and camera. Every node previews actions on ``~/action_preview``; no message reaches any
command or gripper topic, and no node even has a publisher on one.
"""

import pathlib
import threading

from geometry_msgs.msg import PoseStamped, TwistStamped
import numpy as np
import pybullet_data
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory
from vlac_ros.images import numpy_to_image
from vlac_ros.qos import LATCHED, RELIABLE, SENSOR
from vlac_testing.arm_state import PANDA_JOINTS, chain_urdf, still_panda
from vlac_testing.models import tiny_policy
import yaml

from vlac_interfaces.msg import DeltaAction

ARMS = pathlib.Path(__file__).resolve().parents[3] / 'config' / 'arms'
CONFIGS = {'moveit_servo': {}, 'franka_fr3_joint_trajectory': {},
           'ur_joint_trajectory': {}, 'sim_panda_pose': {'dry_run': True},
           'sim_panda_forward_position': {'dry_run': True}}
COMMAND_TYPES = {'servo': TwistStamped, 'pose': PoseStamped,
                 'joint_trajectory': JointTrajectory, 'forward_position': Float64MultiArray}
PANDA_URDF = (pathlib.Path(pybullet_data.getDataPath()) / 'franka_panda' / 'panda.urdf')


class Arm:
    """One config: its node's namespace, resolved topics and what its driver publishes."""

    def __init__(self, name: str):
        params = yaml.safe_load((ARMS / f'{name}.yaml').read_text())
        self.params = params['/**/vlac_policy_node']['ros__parameters']
        self.arm = self.params['arm']
        self.ns = 'dry_' + name
        self.remappings = {}
        for topic in (*self.params['image_topics'],
                      self.params.get('joint_state_topic', 'joint_states'),
                      self.params.get('ee_pose_topic', ''),
                      self.arm.get('robot_description_topic', 'robot_description'),
                      self.arm['command_topic'], self.arm.get('gripper_topic', '')):
            if topic.startswith('/'):  # absolute: into this node's namespace
                self.remappings[topic] = f'/{self.ns}{topic}'

    def resolved(self, topic: str) -> str:
        return self.remappings.get(topic, topic if topic.startswith('/') else
                                   f'/{self.ns}/{topic}')

    def joint_state_and_pose(self):
        joint, pose = still_panda(self.arm['base_frame'])
        arm_joints = list(self.arm.get('joint_names', []))
        fingers = list(self.arm.get('gripper_joint_names', []))
        if arm_joints and arm_joints + fingers != PANDA_JOINTS:  # a UR, an FR3
            joint.name = arm_joints + fingers
            joint.position = [0.0] * len(arm_joints) + [0.04] * len(fingers)
        return joint, pose

    def description(self) -> str:
        joints = list(self.arm.get('joint_names', []))
        panda = PANDA_URDF.read_text()
        # Cartesian adapters do not use it; the simulated Panda's tip is in its own URDF.
        if not joints or (joints[0] == 'panda_joint1' and self.arm['tip_link'] in panda):
            return panda
        return chain_urdf(self.arm['base_frame'], joints, self.arm['tip_link'])


@pytest.fixture(scope='module')
def policy_dir(tmp_path_factory) -> pathlib.Path:
    return tiny_policy(tmp_path_factory.mktemp('policy') / 'model', keypoint_temperature=1.0)


def test_dry_run_previews_and_commands_nothing_on_every_adapter(ros_graph, policy_dir):
    arms = [Arm(name) for name in CONFIGS]
    assert {a.arm['adapter'] for a in arms} == set(COMMAND_TYPES)  # every adapter
    node = ros_graph.node
    previews, commands, drivers = {}, {}, []
    for arm, (name, overrides) in zip(arms, CONFIGS.items(), strict=True):
        previews[arm.ns] = ros_graph.subscribe(
            DeltaAction, f'/{arm.ns}/vlac_policy_node/action_preview', RELIABLE)
        command = arm.resolved(arm.arm['command_topic'])
        commands[command] = ros_graph.subscribe(COMMAND_TYPES[arm.arm['adapter']], command,
                                                RELIABLE)
        if arm.arm.get('gripper_adapter', 'none') != 'none':
            gripper = arm.resolved(arm.arm['gripper_topic'])
            commands[gripper] = ros_graph.subscribe(Float64MultiArray, gripper, RELIABLE)
        node.create_publisher(String, arm.resolved(arm.arm.get(
            'robot_description_topic', 'robot_description')), LATCHED).publish(
                String(data=arm.description()))
        joint, pose = arm.joint_state_and_pose()
        drivers.append((
            [node.create_publisher(Image, arm.resolved(t), SENSOR)
             for t in arm.params['image_topics']],
            node.create_publisher(type(joint), arm.resolved(
                arm.params.get('joint_state_topic', 'joint_states')), RELIABLE), joint,
            node.create_publisher(PoseStamped, arm.resolved(arm.params['ee_pose_topic']),
                                  RELIABLE) if arm.params.get('ee_pose_topic') else None,
            pose))
        ros_graph.start_node('vlac_policy_node', package='vlac_policy_node',
                             name='vlac_policy_node', namespace=arm.ns,
                             params_files=[ARMS / f'{name}.yaml'], remappings=arm.remappings,
                             parameters={'model_path': str(policy_dir), 'autostart': True,
                                         'task': 'press the yellow button', **overrides})
    image = numpy_to_image(np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                             dtype=np.uint8), 'rgb8')
    stop = threading.Event()

    def drive():
        while not stop.wait(0.05):
            stamp = node.get_clock().now().to_msg()
            for cameras, joint_pub, joint, pose_pub, pose in drivers:
                image.header.stamp = joint.header.stamp = pose.header.stamp = stamp
                for camera in cameras:
                    camera.publish(image)
                joint_pub.publish(joint)
                if pose_pub is not None:
                    pose_pub.publish(pose)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        ros_graph.wait_for(lambda: all(p.count() >= 5 for p in previews.values()), 180.0,
                           'action previews from every node')
    finally:
        stop.set()
        thread.join()
    for arm in arms:  # no publisher on any command topic, let alone a message
        published = {topic for topic, _ in node.get_publisher_names_and_types_by_node(
            'vlac_policy_node', f'/{arm.ns}')}
        assert not published & set(commands), (arm.ns, published & set(commands))
    assert {topic: c.count() for topic, c in commands.items()} == dict.fromkeys(commands, 0)
    logs = ros_graph.logs()
    assert logs.count('DRY RUN: actions only on ~/action_preview') == len(arms), logs[-3000:]
