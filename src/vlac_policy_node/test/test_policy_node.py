"""vlac_policy_node over real DDS: the simulated arm through several adapters, and safety.

The policy is the real compact backend saved by its real code into files the tests create
(randomly initialised: these tests are about plumbing and safety, not skill) and loaded by the
node's real loading code. The arm configurations are the repository's config/arms files.
"""

import pathlib
import re
import threading
import time

from geometry_msgs.msg import PoseStamped, TwistStamped
import numpy as np
import pybullet_data
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
import torch
from trajectory_msgs.msg import JointTrajectory
from vlac_bench.policy import direct_figures, node_figures
from vlac_models.policy.compact import (
    CompactPolicy,
    CompactPolicyNet,
    PolicyConfig,
    save_model_dir,
)
from vlac_models.stamps import stamp_seconds
from vlac_ros.images import numpy_to_image
from vlac_ros.qos import LATCHED, RELIABLE, SENSOR
from vlac_testing.arm_state import PANDA_JOINTS, still_panda

from vlac_interfaces.msg import PolicyVersion, Transition

ARMS = pathlib.Path(__file__).resolve().parents[3] / 'config' / 'arms'
TASK = 'press the yellow button'
URDF = pathlib.Path(pybullet_data.getDataPath(), 'franka_panda', 'panda.urdf').read_text()
JOINTS = PANDA_JOINTS


# A random deterministic policy repeats much the same action in an unchanging scene. At the
# arm configs' step limits (5 cm, 0.3 rad) it can reach a joint limit within 15 steps, where
# no joint solution near the current one exists and the joint-space adapters hold, as they
# must. Tighter steps (15 x 1 cm, 15 x 0.02 rad at most) keep the plumbing test in reach.
SMALL_STEPS = {'safety.max_step_translation': 0.01, 'safety.max_step_rotation': 0.02}

pytestmark = pytest.mark.slow(115)  # s on 2 cores: scheduled first


def make_policy(seed: int, poison: bool = False) -> CompactPolicy:
    torch.manual_seed(seed)
    # A soft keypoint softmax (temperature 1): the random policy's actions stay small.
    net = CompactPolicyNet(PolicyConfig(frame_size=64, channels=(8, 16, 16, 8), embed_dim=32,
                                        hidden_dim=64, keypoint_temperature=1.0))
    if poison:  # finite weights (the loader refuses NaN ones) whose outputs overflow
        with torch.no_grad():
            for parameter in net.parameters():
                parameter.mul_(1e30)
    return CompactPolicy(net, seed=seed)


@pytest.fixture(scope='module')
def policy_dir(tmp_path_factory) -> pathlib.Path:
    return save_model_dir(make_policy(0), tmp_path_factory.mktemp('policy') / 'model')


class Stamped:
    """Messages with their receipt time (monotonic)."""

    def __init__(self):
        self.items, self.lock = [], threading.Lock()

    def __call__(self, msg):
        with self.lock:
            self.items.append((time.monotonic(), msg))

    def since(self, t0: float) -> list:
        with self.lock:
            return [m for t, m in self.items if t >= t0]

    def count(self) -> int:
        with self.lock:
            return len(self.items)


def position(msg: PoseStamped) -> np.ndarray:
    p = msg.pose.position
    return np.array([p.x, p.y, p.z])


@pytest.mark.parametrize('arm', ['servo', 'pose', 'joint_trajectory'])
def test_the_same_policy_drives_the_sim_through_each_adapter(ros_graph, policy_dir, arm):
    ros_graph.start_node('sim_node', package='vlac_sim', name='sim_node', namespace='robot_1',
                         parameters={'task': 'press_button', 'seed': 3,
                                     'cameras.camera.rate_hz': 15.0})
    poses = ros_graph.subscribe(PoseStamped, '/robot_1/ee_pose', SENSOR)
    transitions = ros_graph.subscribe(Transition, '/robot_1/transitions', RELIABLE)
    ros_graph.wait_for(lambda: poses.count() > 0, 30.0, 'sim running')
    start = position(poses.last)
    ros_graph.start_node('vlac_policy_node', package='vlac_policy_node',
                         name='vlac_policy_node', namespace='robot_1',
                         params_files=[ARMS / f'sim_panda_{arm}.yaml'],
                         parameters={'model_path': str(policy_dir), 'autostart': True,
                                     'task': TASK, 'deterministic': True, **SMALL_STEPS})
    ros_graph.wait_for(lambda: transitions.count() >= 15, 60.0, 'control steps')
    moved = np.linalg.norm(position(poses.last) - start)
    assert moved > 0.01, f'the arm moved only {moved:.4f} m through the {arm} adapter'
    steps = [t.step for t in transitions.messages]
    assert steps == list(range(steps[0], steps[0] + len(steps)))
    last = transitions.last
    assert last.robot_id == 'robot_1' and last.policy_version == 0
    assert len(last.observation.images) == 1 and last.observation.ee_pose.header.frame_id
    assert np.isfinite(last.log_prob) and len(last.action_tokens) == 7
    logs = ros_graph.logs()
    assert 'DRY RUN' not in logs and 'scaled to 0.02 rad' in logs  # SMALL_STEPS took effect
    for failure in ('action rejected', 'no joint command', 'no valid action'):
        assert failure not in logs, logs[-3000:]


class FakeSensors:
    """The test plays the arm driver and camera: images, joint states and pose at 20 Hz."""

    def __init__(self, graph):
        node = graph.node
        self.graph = graph
        self.camera = node.create_publisher(Image, '/robot_1/camera/image_raw', SENSOR)
        self.joints = node.create_publisher(JointState, '/robot_1/joint_states', RELIABLE)
        self.pose = node.create_publisher(PoseStamped, '/robot_1/ee_pose', RELIABLE)
        rng = np.random.default_rng(0)
        self.image = numpy_to_image(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), 'rgb8')
        self.images_on = True
        self.images_stamped = True
        self.pose_x = 0.5
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        joint, pose = still_panda()
        while not self._stop.wait(0.05):
            stamp = self.graph.node.get_clock().now().to_msg()
            joint.header.stamp = pose.header.stamp = stamp
            pose.pose.position.x = self.pose_x
            self.joints.publish(joint)
            self.pose.publish(pose)
            if self.images_on:
                self.image.header.stamp = stamp if self.images_stamped else type(stamp)()
                self.camera.publish(self.image)

    def stop(self):
        self._stop.set()
        self._thread.join()


@pytest.fixture
def sensors(ros_graph):
    fake = FakeSensors(ros_graph)
    yield fake
    fake.stop()


def policy_node(graph, model_dir, **parameters):
    return graph.start_node('vlac_policy_node', package='vlac_policy_node',
                            name='vlac_policy_node', namespace='robot_1',
                            params_files=[ARMS / 'sim_panda_servo.yaml'],
                            parameters={'model_path': str(model_dir), 'autostart': True,
                                        'task': TASK, 'deterministic': True, **parameters})


def moving(twist: TwistStamped) -> bool:
    t = twist.twist
    return any(abs(v) > 1e-9 for v in (t.linear.x, t.linear.y, t.linear.z,
                                       t.angular.x, t.angular.y, t.angular.z))


def test_estop_and_stale_observations_hold_the_arm(ros_graph, policy_dir, sensors):
    commands = Stamped()
    ros_graph.node.create_subscription(TwistStamped, '/robot_1/servo_node/delta_twist_cmds',
                                       commands, RELIABLE)
    estop = ros_graph.node.create_publisher(Bool, '/robot_1/estop', LATCHED)
    release = ros_graph.node.create_client(Trigger, '/robot_1/vlac_policy_node/release_estop')
    policy_node(ros_graph, policy_dir)
    period = 0.1
    ros_graph.wait_for(lambda: sum(moving(m) for m in commands.since(0)) >= 5, 60.0, 'motion')
    # E-stop: nothing but holds from one period after it was sent, until released.
    pressed = time.monotonic()
    estop.publish(Bool(data=True))
    time.sleep(1.0)
    after = commands.since(pressed + period)
    assert not any(moving(m) for m in after), 'commands moved the arm after the e-stop'
    assert 'E-STOP engaged' in ros_graph.logs()
    assert release.wait_for_service(timeout_sec=10.0)
    refused = release.call(Trigger.Request(), timeout_sec=10.0)
    assert refused is not None and not refused.success  # the e-stop signal is still true
    estop.publish(Bool(data=False))
    time.sleep(0.3)
    assert not any(moving(m) for m in commands.since(pressed + period)), \
        'clearing the e-stop signal alone must not resume motion'
    assert release.call(Trigger.Request(), timeout_sec=10.0).success
    released = time.monotonic()
    ros_graph.wait_for(lambda: any(moving(m) for m in commands.since(released)), 10.0,
                       'motion after release')
    # Stale observation: the camera stops; within max_observation_age + one period the arm
    # gets only zero twists, and the node says why.
    sensors.images_on = False
    stopped = time.monotonic()
    time.sleep(1.5)
    late = commands.since(stopped + 0.3 + period)
    assert late and not any(moving(m) for m in late)
    assert 'stale observation' in ros_graph.logs()
    # Frames without a stamp (header.stamp 0): held, and reported as unstamped, not as
    # decades old.
    sensors.images_stamped, sensors.images_on = False, True
    unstamped = time.monotonic()
    time.sleep(1.0)
    late = commands.since(unstamped + 0.3 + period)
    assert late and not any(moving(m) for m in late)
    logs = ros_graph.logs()
    assert 'a camera image has no stamp (header.stamp is 0): holding' in logs
    assert not any(float(age) > 1e6 for age in re.findall(r'newest image is ([0-9.]+) s old',
                                                             logs))


def test_a_joint_space_arm_holds_until_its_robot_description_arrives(ros_graph, policy_dir,
                                                                   sensors):
    # The URDF is latched, but it can arrive after the first control tick: until then the
    # joint-trajectory adapter has no kinematics, so the arm gets nothing and the policy is
    # not even asked for an action; once it arrives, commands start.
    commands = ros_graph.subscribe(
        JointTrajectory, '/robot_1/joint_trajectory_controller/joint_trajectory', RELIABLE)
    transitions = ros_graph.subscribe(Transition, '/robot_1/transitions', RELIABLE)
    ros_graph.start_node('vlac_policy_node', package='vlac_policy_node',
                         name='vlac_policy_node', namespace='robot_1',
                         params_files=[ARMS / 'sim_panda_joint_trajectory.yaml'],
                         parameters={'model_path': str(policy_dir), 'autostart': True,
                                     'task': TASK, 'deterministic': True})
    ros_graph.wait_for(lambda: 'no usable robot_description yet' in ros_graph.logs(), 60.0,
                       'the wait for robot_description')
    time.sleep(1.0)
    assert commands.count() == 0 and transitions.count() == 0
    description = ros_graph.node.create_publisher(String, '/robot_1/robot_description',
                                                  LATCHED)
    description.publish(String(data=URDF))
    ros_graph.wait_for(lambda: commands.count() >= 3, 30.0, 'joint commands')
    assert len(commands.last.points) == 1 and commands.last.joint_names == JOINTS[:7]
    assert 'no joint command' not in ros_graph.logs()


def test_nan_policy_output_is_never_commanded(ros_graph, policy_dir, sensors, tmp_path):
    commands = Stamped()
    ros_graph.node.create_subscription(TwistStamped, '/robot_1/servo_node/delta_twist_cmds',
                                       commands, RELIABLE)
    # A model whose outputs overflow is refused at configure: the arm never gets a command.
    poisoned = save_model_dir(make_policy(1, poison=True), tmp_path / 'poisoned')
    node = policy_node(ros_graph, poisoned)
    ros_graph.wait_for(lambda: 'configure failed' in ros_graph.logs(), 60.0, 'refusal')
    assert 'non-finite network output' in ros_graph.logs()
    time.sleep(1.0)
    assert commands.count() == 0
    node.stop()
    # At run time: an observation that makes the network overflow gives a NaN action, which
    # is never commanded; the arm holds and the node says why.
    policy_node(ros_graph, policy_dir)
    ros_graph.wait_for(lambda: sum(moving(m) for m in commands.since(0)) >= 3, 60.0, 'motion')
    sensors.pose_x = 1e38
    changed = time.monotonic()
    time.sleep(1.5)
    late = commands.since(changed + 0.2)
    assert late and not any(moving(m) for m in late)
    assert 'no valid action' in ros_graph.logs()


def test_hot_swap_and_bad_weight_files(ros_graph, policy_dir, sensors, tmp_path):
    """Served through ONNX Runtime: each new version's weights are written into the graph.

    (The torch runtime's hot swap runs in every trainer-to-node test of vlac_bench.)
    """
    weights = tmp_path / 'weights'
    weights.mkdir()
    transitions = Stamped()
    ros_graph.node.create_subscription(Transition, '/robot_1/transitions', transitions,
                                       RELIABLE)
    versions = ros_graph.node.create_publisher(PolicyVersion, '/robot_1/policy_version',
                                               LATCHED)
    policy_node(ros_graph, policy_dir, weights_dir=str(weights), runtime='onnx')
    ros_graph.wait_for(lambda: transitions.count() >= 5, 90.0, 'control steps')
    assert 'policy compact (onnx) ready' in ros_graph.logs()
    # Bad files: a wrong sha256, a pickle, a path outside weights_dir. Old weights stay.
    good = make_policy(7)
    digest = good.save_weights(weights / 'policy_v2.safetensors')
    (weights / 'policy_v1.pt').write_bytes(b'\x80\x04K\x01.')
    outside = tmp_path / 'policy_v3.safetensors'
    good.save_weights(outside)
    for version, path, sha in ((1, weights / 'policy_v2.safetensors', '0' * 64),
                               (1, weights / 'policy_v1.pt', digest),
                               (1, outside, digest)):
        versions.publish(PolicyVersion(version=version, artifact_uri=f'file://{path}',
                                       sha256=sha, backend='compact'))
        time.sleep(1.0)
    # A log line may reach the log file a moment after the message it reports.
    ros_graph.wait_for(
        lambda: ros_graph.logs().count('policy version 1 rejected, keeping version 0') >= 3,
        15.0, 'three rejections logged')
    logs = ros_graph.logs()
    assert logs.count('policy version 1 rejected, keeping version 0') == 3, logs[-3000:]
    assert all(m.policy_version == 0 for m in transitions.since(0))
    # A good file: later transitions carry version 2, with no gap in steps or ticks.
    versions.publish(PolicyVersion(version=2, artifact_uri=f'file://{weights}/'
                                   'policy_v2.safetensors', sha256=digest, backend='compact'))
    ros_graph.wait_for(lambda: any(m.policy_version == 2 for m in transitions.since(0)), 30.0,
                       'version 2 in transitions')
    time.sleep(1.0)
    items = transitions.since(0)
    steps = [m.step for m in items]
    assert steps == list(range(steps[0], steps[0] + len(steps)))
    swap = next(i for i, m in enumerate(items) if m.policy_version == 2)
    assert all(m.policy_version == 2 for m in items[swap:])
    stamps = [stamp_seconds(m.action_stamp)
              for m in items[max(0, swap - 5):swap + 5]]
    assert max(np.diff(stamps)) < 0.15, f'missed tick around the swap: {np.diff(stamps)}'


def test_the_control_loop_keeps_30_hz_under_a_30_hz_camera_and_100_hz_states(policy_dir):
    """The benchmark's driver, shortened: the loop keeps its rate while the sensors stream.

    With rclpy 7.x's stock MultiThreadedExecutor this node managed 1-3 of the 30 commands/s
    (see vlac_ros.executor); the bound leaves room for a loaded CI machine.
    """
    direct_s = direct_figures('compact', str(policy_dir), 'cpu', repeats=20)
    figures = node_figures(str(policy_dir), 'cpu', 30.0, 5.0, direct_s)
    assert figures and figures['commands_per_s'] >= 20.0, figures
