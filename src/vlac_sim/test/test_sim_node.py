"""sim_node over real DDS: every command interface moves the arm; bad commands leave it holding."""

import pathlib
import time

from ament_index_python.packages import get_package_share_directory
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PoseStamped, TwistStamped
import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, Header, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from vlac_models.stamps import stamp_seconds, to_time
from vlac_ros.images import image_to_rgb
from vlac_ros.qos import LATCHED, RELIABLE, SENSOR
from vlac_sim.ros_msgs import pose_msg
from vlac_sim.scene import ARM_JOINTS, DOWN, NEUTRAL_ARM

from vlac_interfaces.msg import GroundTruth
from vlac_interfaces.srv import GetSnapshot, ResetScene

SERVO = 'servo_node/delta_twist_cmds'
POSE = 'target_pose'
TRAJECTORY = 'joint_trajectory_controller/joint_trajectory'
POSITION = 'forward_position_controller/commands'
GRIPPER = 'gripper_controller/commands'

pytestmark = pytest.mark.slow(45)  # s on 2 cores: scheduled first


class Arm:
    """Test-side view of the simulated arm: its state topics and command publishers."""

    def __init__(self, graph, namespace: str = 'robot_1', parameters: dict | None = None):
        self.graph = graph
        self.ns = namespace
        # The real bringup config, as `ros2 launch vlac_bringup sim.launch.py` passes it.
        config = pathlib.Path(get_package_share_directory('vlac_bringup'), 'config', 'sim.yaml')
        self.process = graph.start_node(
            'sim_node', package='vlac_sim', name='sim_node', namespace=namespace,
            params_files=[config],
            parameters={'task': 'pick_place_red', 'seed': 3, **(parameters or {})})
        self.joints = graph.subscribe(JointState, self.t('joint_states'), RELIABLE)
        self.pose = graph.subscribe(PoseStamped, self.t('ee_pose'), RELIABLE)
        self.images = graph.subscribe(Image, self.t('camera/image_raw'), SENSOR)
        self.truth = graph.subscribe(GroundTruth, self.t('eval_only/ground_truth'), RELIABLE)
        graph.wait_for(lambda: self.joints.count() > 2 and self.images.count() > 0, 20.0,
                       'sim_node joint states and a camera frame')

    def t(self, name: str) -> str:
        return f'/{self.ns}/{name}'

    def publisher(self, msg_type, name):
        pub = self.graph.node.create_publisher(msg_type, self.t(name), RELIABLE)
        self.graph.wait_for_subscribers(self.t(name))
        return pub

    def q(self) -> np.ndarray:
        return np.array(self.joints.last.position[:7])

    def ee(self) -> np.ndarray:
        p = self.pose.last.pose.position
        return np.array([p.x, p.y, p.z])

    def after(self, log, when: float):
        """The newest message of ``log`` once one stamped at or after ``when`` (ROS time)."""
        def fresh():
            msg = log.last
            return msg if msg and stamp_seconds(msg.header.stamp) >= when \
                else None
        return self.graph.wait_for(fresh, 5.0, f'a message stamped after {when}')

    def ee_after(self, when: float) -> np.ndarray:
        p = self.after(self.pose, when).pose.position
        return np.array([p.x, p.y, p.z])

    def q_after(self, when: float) -> np.ndarray:
        return np.array(self.after(self.joints, when).position[:7])

    def now(self) -> float:
        return self.graph.node.get_clock().now().nanoseconds * 1e-9

    def gripper(self) -> float:
        return float(sum(self.joints.last.position[7:9]))

    def stamp(self, offset: float = 0.0):
        return to_time(self.graph.node.get_clock().now().nanoseconds * 1e-9 + offset)

    def settle(self, seconds: float) -> None:
        time.sleep(seconds)  # the arm is moving under its controller; we observe, not wait

    def call(self, srv_type, name, request):
        client = self.graph.node.create_client(srv_type, self.t(name))
        assert client.wait_for_service(timeout_sec=10.0)
        response = client.call(request, timeout_sec=10.0)
        assert response is not None
        return response


@pytest.fixture
def arm(ros_graph):
    return Arm(ros_graph)


def twist(arm: Arm, vx=0.0, vy=0.0, vz=0.0, stamp=None) -> TwistStamped:
    msg = TwistStamped()
    msg.header.frame_id = 'panda_link0'
    msg.header.stamp = arm.stamp() if stamp is None else stamp
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = vx, vy, vz
    return msg


def test_servo_twist_moves_the_end_effector_and_a_timeout_stops_it(arm, ros_graph):
    pub = arm.publisher(TwistStamped, SERVO)
    samples = []
    for i in range(24):  # 1.2 s at 20 Hz: 0.1 m/s along +y, -0.05 m/s along z
        pub.publish(twist(arm, vy=0.1, vz=-0.05))
        if i in (8, 22):
            msg = arm.pose.last
            samples.append((stamp_seconds(msg.header.stamp), arm.ee()))
        time.sleep(0.05)
    (t0, p0), (t1, p1) = samples
    velocity = (p1 - p0) / (t1 - t0)
    np.testing.assert_allclose(velocity, [0.0, 0.1, -0.05], atol=0.015)
    # No refresh: the driver stops the arm within its 0.25 s timeout.
    last_command = arm.now()
    stopped = arm.ee_after(last_command + 0.4)
    assert np.linalg.norm(arm.ee_after(last_command + 1.0) - stopped) < 0.003
    assert 'servo command timeout' in ros_graph.logs()


def test_pose_target_reaches_the_pose(arm):
    pub = arm.publisher(PoseStamped, POSE)
    target = np.array([0.5, 0.12, 0.18])
    pub.publish(PoseStamped(header=Header(stamp=arm.stamp(), frame_id='panda_link0'),
                            pose=pose_msg(target, DOWN)))
    arm.graph.wait_for(lambda: np.linalg.norm(arm.ee() - target) < 0.01, 5.0,
                       f'EE at {target} (now {arm.ee()})')
    q = arm.pose.last.pose.orientation
    assert abs(q.x) == pytest.approx(1.0, abs=0.02)  # still pointing down


def test_joint_trajectory_honours_time_from_start(arm):
    pub = arm.publisher(JointTrajectory, TRAJECTORY)
    start = arm.q()
    target = NEUTRAL_ARM + np.array([0.3, 0.15, -0.2, 0.2, 0.1, -0.15, 0.3])
    msg = JointTrajectory(joint_names=list(reversed(ARM_JOINTS)))  # any order, as JTC
    msg.points = [JointTrajectoryPoint(positions=list(reversed(target.tolist())),
                                       time_from_start=Duration(sec=2))]
    pub.publish(msg)
    arm.settle(1.0)
    halfway = (arm.q() - start) / (target - start)
    assert np.all((halfway > 0.25) & (halfway < 0.75)), halfway  # moving, on schedule
    arm.graph.wait_for(lambda: np.all(np.abs(arm.q() - target) < 0.01), 4.0,
                       f'joints at target (now {arm.q()})')


def test_forward_position_controller(arm):
    pub = arm.publisher(Float64MultiArray, POSITION)
    target = NEUTRAL_ARM + np.array([-0.25, 0.1, 0.15, -0.1, 0.2, 0.1, -0.3])
    pub.publish(Float64MultiArray(data=target.tolist()))
    arm.graph.wait_for(lambda: np.all(np.abs(arm.q() - target) < 0.01), 5.0,
                       f'joints at target (now {arm.q()})')


def test_gripper_command(arm):
    pub = arm.publisher(Float64MultiArray, GRIPPER)
    assert arm.gripper() == pytest.approx(0.08, abs=0.003)
    pub.publish(Float64MultiArray(data=[0.03]))
    arm.graph.wait_for(lambda: abs(arm.gripper() - 0.03) < 0.003, 5.0,
                       f'gripper at 0.03 m (now {arm.gripper():.4f})')


def _holds(arm: Arm, seconds: float = 0.8, tolerance: float = 0.002) -> bool:
    """The arm stays put from 0.3 s after now (its 0.25 s timeouts included) for ``seconds``."""
    start = arm.now() + 0.3
    before = arm.q_after(start)
    return bool(np.all(np.abs(arm.q_after(start + seconds) - before) < tolerance))


def test_stale_and_malformed_commands_leave_the_arm_holding(arm, ros_graph):
    servo = arm.publisher(TwistStamped, SERVO)
    trajectory = arm.publisher(JointTrajectory, TRAJECTORY)
    position = arm.publisher(Float64MultiArray, POSITION)
    gripper = arm.publisher(Float64MultiArray, GRIPPER)
    for _ in range(10):  # stale: stamped 2 s ago
        servo.publish(twist(arm, vx=0.2, stamp=arm.stamp(-2.0)))
        time.sleep(0.05)
    assert _holds(arm)
    for _ in range(10):  # NaN velocity
        servo.publish(twist(arm, vx=float('nan')))
        time.sleep(0.05)
    assert _holds(arm)
    bad = JointTrajectory(joint_names=list(ARM_JOINTS[:6]) + ['elbow_joint'])
    bad.points = [JointTrajectoryPoint(positions=[0.1] * 7, time_from_start=Duration(sec=1))]
    trajectory.publish(bad)
    position.publish(Float64MultiArray(data=[0.1] * 6))  # wrong length
    position.publish(Float64MultiArray(data=[0.0, float('inf'), 0, 0, 0, 0, 0]))
    gripper.publish(Float64MultiArray(data=[0.5]))  # 50 cm: beyond the hardware
    assert _holds(arm)
    assert arm.gripper() == pytest.approx(0.08, abs=0.003)
    # A malformed command in the middle of a motion stops the motion.
    target = arm.q() + np.array([1.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    position.publish(Float64MultiArray(data=target.tolist()))
    arm.settle(0.15)
    position.publish(Float64MultiArray(data=[float('nan')] * 7))
    assert _holds(arm, tolerance=0.01)
    assert abs(arm.q()[0] - target[0]) > 0.3, 'the arm must not reach the old target'
    logs = ros_graph.logs()
    for reason in ('stale command', 'non-finite', "unknown joint names ['elbow_joint']",
                   'needs 7 values', 'gripper width 0.5 m outside'):
        assert reason in logs, reason
    assert arm.process.is_running()


def _first_frame_after(arm: Arm, when: float) -> np.ndarray:
    """The first camera frame stamped at or after ``when`` (the reset's own stamp)."""
    def first():
        return next((m for m in list(arm.images.messages)
                     if stamp_seconds(m.header.stamp) >= when), None)
    return np.array(image_to_rgb(arm.graph.wait_for(first, 5.0, 'a frame of the reset scene')))


def test_reset_with_the_same_seed_gives_identical_first_images(arm):
    frames = []
    for task, seed in (('stack_red_on_blue', 11), ('stack_red_on_blue', 11),
                       ('stack_red_on_blue', 12)):
        response = arm.call(ResetScene, 'sim/reset', ResetScene.Request(task=task, seed=seed))
        assert response.success, response.message
        assert response.instruction == 'stack the red cube on top of the blue cube'
        frames.append(_first_frame_after(arm, response.stamp.sec
                                         + response.stamp.nanosec * 1e-9 - 1e-9))
    assert np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])
    bad = arm.call(ResetScene, 'sim/reset', ResetScene.Request(task='juggle', seed=1))
    assert not bad.success and 'unknown task' in bad.message


def test_snapshot_restores_robot_and_objects(arm):
    pub = arm.publisher(Float64MultiArray, POSITION)
    snapshot = arm.call(GetSnapshot, 'sim/snapshot', GetSnapshot.Request())
    assert snapshot.success and snapshot.task == 'pick_place_red'
    saved_q = arm.q()
    target = NEUTRAL_ARM + np.array([0.3, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0])
    pub.publish(Float64MultiArray(data=target.tolist()))
    arm.graph.wait_for(lambda: np.all(np.abs(arm.q() - target) < 0.02), 5.0, 'moved')
    restored = arm.call(ResetScene, 'sim/reset', ResetScene.Request(snapshot=snapshot.snapshot))
    assert restored.success, restored.message
    arm.graph.wait_for(lambda: np.all(np.abs(arm.q() - saved_q) < 0.005), 3.0,
                       'joints back at the snapshot')
    assert _holds(arm)
    garbage = arm.call(ResetScene, 'sim/reset', ResetScene.Request(snapshot=b'\x80not json'))
    assert not garbage.success and 'not UTF-8 JSON' in garbage.message


def test_latched_description_instruction_and_eval_only_truth(arm, ros_graph):
    description = ros_graph.subscribe(String, arm.t('robot_description'), LATCHED)
    instruction = ros_graph.subscribe(String, arm.t('sim/instruction'), LATCHED)
    ros_graph.wait_for(lambda: description.last and instruction.last, 10.0, 'latched topics')
    assert '<robot' in description.last.data and 'panda_joint7' in description.last.data
    assert instruction.last.data == 'pick up the red cube and put it on the green pad'
    ros_graph.wait_for(lambda: arm.truth.last, 5.0, 'ground truth')
    truth = arm.truth.last
    assert truth.task == 'pick_place_red' and 0.0 <= truth.progress < 1.0 and not truth.success
    assert set(truth.object_names) == {'red_cube', 'blue_cube', 'green_pad', 'yellow_button'}
    image = arm.images.last
    assert (image.encoding, image.width, image.height) == ('rgb8', 96, 96)
    assert image.header.frame_id == 'camera_color_optical_frame'


@pytest.mark.parametrize('size', [(224, 224), (640, 480)])
def test_camera_sizes_and_frames_from_parameters(ros_graph, size):
    width, height = size
    ns = 'robot_2'
    ros_graph.start_node('sim_node', package='vlac_sim', name='sim', namespace=ns, parameters={
        'camera_names': ['front', 'side'],
        'cameras.front.width': width, 'cameras.front.height': height,
        'cameras.front.rate_hz': 10.0,
        'cameras.side.position': [0.45, -0.8, 0.5], 'cameras.side.look_at': [0.45, 0.0, 0.05],
        'cameras.side.frame_id': 'side_cam_optical', 'cameras.side.rate_hz': 5.0})
    front = ros_graph.subscribe(Image, f'/{ns}/front/image_raw', SENSOR)
    side = ros_graph.subscribe(Image, f'/{ns}/side/image_raw', SENSOR)
    ros_graph.wait_for(lambda: front.count() >= 3 and side.count() >= 2, 20.0, 'both cameras')
    assert (front.last.width, front.last.height) == (width, height)
    assert front.last.header.frame_id == 'front_color_optical_frame'
    assert side.last.header.frame_id == 'side_cam_optical'
    assert not np.array_equal(image_to_rgb(front.last)[:100, :100],
                              image_to_rgb(side.last)[:100, :100])
