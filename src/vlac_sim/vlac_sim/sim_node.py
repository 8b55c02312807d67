"""ROS 2 node of the simulated Panda: publishes and accepts what a real arm driver stack does.

Publishes (in the node's namespace):
  joint_states (sensor_msgs/JointState, reliable) at control_rate_hz: 7 arm + 2 finger joints.
  ee_pose (geometry_msgs/PoseStamped in panda_link0, reliable) at control_rate_hz.
  <camera>/image_raw (sensor_msgs/Image rgb8, best effort depth 1) and <camera>/camera_info.
  robot_description (std_msgs/String, latched): the Panda URDF, as robot_state_publisher does.
  sim/instruction (std_msgs/String, latched): the current task sentence.
  eval_only/ground_truth (vlac_interfaces/GroundTruth): EVALUATION ONLY, never a model input.
Subscribes (each named by parameters, empty disables): servo TwistStamped, PoseStamped target,
  JointTrajectory, Float64MultiArray forward positions, Float64MultiArray gripper opening.
Services: sim/reset (vlac_interfaces/ResetScene), sim/snapshot (vlac_interfaces/GetSnapshot).

All simulator access runs in one mutually exclusive callback group (pybullet has one owner).
Cameras render in a worker process (``render_worker``) so physics keeps its rate; each frame is
stamped with the time its scene state was captured. A rejected command is logged (throttled)
and leaves the arm holding.
"""

from __future__ import annotations

import pathlib
import threading

from geometry_msgs.msg import PoseStamped, TwistStamped
import pybullet_data
from rclpy._rclpy_pybind11 import RCLError
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, Header, String
from trajectory_msgs.msg import JointTrajectory
from vlac_models.stamps import stamp_seconds
from vlac_models.throttle import KeyedThrottle
from vlac_ros.images import numpy_to_image
from vlac_ros.params import declare_dataclass
from vlac_ros.qos import LATCHED, RELIABLE, SENSOR
from vlac_ros.spin import run_node

from vlac_interfaces.msg import GroundTruth
from vlac_interfaces.srv import GetSnapshot, ResetScene
from vlac_sim import ros_msgs
from vlac_sim.commands import apply_gripper, apply_twist
from vlac_sim.config import SimConfig
from vlac_sim.control import ArmController, CommandRejected
from vlac_sim.render_worker import RenderWorker, pose_state
from vlac_sim.scene import CameraSpec, PandaScene
from vlac_sim.tasks import get_task, reset_scene

# Control periods the simulation may fall behind before it skips time instead of catching up.
_MAX_CATCH_UP = 5


class SimNode(Node):
    """Simulated Franka Panda arm driver, cameras and task scene."""

    def __init__(self, **kwargs) -> None:
        super().__init__('sim_node', **kwargs)
        self.config = declare_dataclass(self, SimConfig)
        self.cameras = [declare_dataclass(self, CameraSpec, f'cameras.{name}.', {
            'name': name, 'frame_id': f'{name}_color_optical_frame'})
            for name in self.config.camera_names]
        self.scene = PandaScene()
        self.controller = ArmController(self.scene, self.config.safety)
        self.task = get_task(self.config.task)
        self.seed = self.config.seed
        self.start = reset_scene(self.scene, self.task, self.seed)
        self.period = 1.0 / self.config.control_rate_hz
        self._sim_zero = None  # (ROS time, sim time) when real-time tracking (re)started
        self.ticks = 0
        self._log_throttle = KeyedThrottle(period=1.0)

        group = MutuallyExclusiveCallbackGroup()  # the one owner of the pybullet client
        self.joint_pub = self.create_publisher(JointState, 'joint_states', RELIABLE)
        self.pose_pub = self.create_publisher(PoseStamped, 'ee_pose', RELIABLE)
        self.truth_pub = self.create_publisher(GroundTruth, 'eval_only/ground_truth', RELIABLE)
        self.instruction_pub = self.create_publisher(String, 'sim/instruction', LATCHED)
        description = pathlib.Path(pybullet_data.getDataPath(), 'franka_panda', 'panda.urdf')
        self.create_publisher(String, 'robot_description', LATCHED).publish(
            String(data=description.read_text()))
        self.camera_pubs = []
        self.renderer = RenderWorker(self.cameras)
        self._pending_stamps = [None] * len(self.cameras)
        # After a reset, physics waits until every camera has captured the reset state, so
        # the first frame of an episode depends only on task and seed.
        self._awaiting_capture = set(range(len(self.cameras)))
        self.frames_published = [0] * len(self.cameras)
        self.frames_skipped = [0] * len(self.cameras)
        for camera in self.cameras:
            self.camera_pubs.append((
                camera,
                self.create_publisher(Image, f'{camera.name}/image_raw', SENSOR),
                self.create_publisher(CameraInfo, f'{camera.name}/camera_info', SENSOR)))
            self.create_timer(1.0 / camera.rate_hz,
                              self._camera_callback(len(self.camera_pubs) - 1),
                              callback_group=group)
        self.create_timer(self.period, self.on_tick, callback_group=group)
        self.create_timer(1.0 / self.config.ground_truth_rate_hz, self.on_ground_truth,
                          callback_group=group)

        topics = self.config.commands
        subscriptions = ((topics.servo, TwistStamped, self.on_twist),
                         (topics.pose, PoseStamped, self.on_pose),
                         (topics.trajectory, JointTrajectory, self.on_trajectory),
                         (topics.position, Float64MultiArray, self.on_position),
                         (topics.gripper, Float64MultiArray, self.on_gripper))
        for topic, msg_type, callback in subscriptions:
            if topic:
                self.create_subscription(msg_type, topic, callback, RELIABLE,
                                         callback_group=group)
        self.create_service(ResetScene, 'sim/reset', self.on_reset, callback_group=group)
        self.create_service(GetSnapshot, 'sim/snapshot', self.on_snapshot, callback_group=group)
        self.instruction_pub.publish(String(data=self.task.instruction))
        self._stop = threading.Event()
        self._frames_thread = threading.Thread(target=self._publish_frames, daemon=True,
                                               name='sim_camera_frames')
        self._frames_thread.start()
        self.get_logger().info(
            f'simulated Panda ready: task {self.task.name!r} seed {self.seed}, '
            f'{self.config.control_rate_hz:g} Hz control, cameras '
            f'{[f"{c.name} {c.width}x{c.height}@{c.rate_hz:g}Hz" for c in self.cameras]}')

    # -- time ------------------------------------------------------------------------------
    def now(self) -> float:
        """ROS clock time, seconds."""
        return self.get_clock().now().nanoseconds * 1e-9

    def stamp(self):
        """ROS clock time as builtin_interfaces/Time."""
        return self.get_clock().now().to_msg()

    # -- periodic work ---------------------------------------------------------------------
    def on_tick(self) -> None:
        """Advance physics in real time, then publish joint states and the EE pose."""
        now = self.now()
        if self._awaiting_capture:
            self._sim_zero = None
            steps_allowed = False
        else:
            steps_allowed = True
        if self._sim_zero is None:
            self._sim_zero = (now - self.period, self.scene.time)
        behind = (now - self._sim_zero[0]) - (self.scene.time - self._sim_zero[1])
        steps = int(behind / self.period)
        if steps > _MAX_CATCH_UP:  # stalled (e.g. a slow render): drop time, do not race
            self._sim_zero = (now - self.period, self.scene.time)
            steps = 1
        for _ in range(max(steps, 0) if steps_allowed else 0):
            self.controller.update(now, self.period)
            self.scene.step(self.period)
            self.ticks += 1
        self._report_controller_events()
        stamp = self.stamp()
        self.joint_pub.publish(ros_msgs.joint_state_msg(self.scene, stamp))
        self.pose_pub.publish(ros_msgs.ee_pose_msg(self.scene, stamp))

    def _camera_callback(self, index: int):
        def trigger() -> None:
            stamp = self.stamp()
            if self.renderer.request(index, pose_state(self.scene)):
                self._pending_stamps[index] = stamp
                self._awaiting_capture.discard(index)
            else:
                self.frames_skipped[index] += 1
        return trigger

    def _publish_frames(self) -> None:
        """Thread: publish each rendered frame with the stamp of the state it shows."""
        while not self._stop.is_set():
            frame = self.renderer.receive(timeout=0.1)
            if frame is None:
                if not self.renderer.alive():
                    self.get_logger().error('render worker died; cameras stopped')
                    return
                continue
            index, pixels = frame
            camera, image_pub, info_pub = self.camera_pubs[index]
            header = Header(stamp=self._pending_stamps[index], frame_id=camera.frame_id)
            if not self.context.ok():
                return  # shutting down
            try:
                image_pub.publish(numpy_to_image(pixels, 'rgb8', header))
                info_pub.publish(ros_msgs.camera_info_msg(camera, header))
            except RCLError:  # context shut down between the check and the publish
                return
            self.frames_published[index] += 1

    def on_ground_truth(self) -> None:
        """Publish evaluation-only progress and success."""
        self.truth_pub.publish(ros_msgs.ground_truth_msg(self.scene, self.task, self.start,
                                                         self.stamp()))

    def _report_controller_events(self) -> None:
        events = self.controller.state.events
        while events:
            event = events.pop(0)
            if event.startswith('rejected'):
                continue  # already logged where the command arrived
            self.get_logger().warn(f'arm holding: {event}', throttle_duration_sec=1.0)

    # -- commands --------------------------------------------------------------------------
    def _guard(self, interface: str, apply) -> None:
        try:
            apply()
        except CommandRejected as err:
            suppressed = self._log_throttle.allow(interface)
            if suppressed is not None:
                more = f' ({suppressed} more since the last report)' if suppressed else ''
                self.get_logger().error(f'{interface} command rejected, arm holding: {err}{more}')

    def on_twist(self, msg: TwistStamped) -> None:
        """Servo: Cartesian velocity of the end effector."""
        self._guard('servo', lambda: apply_twist(self.controller, msg, self.now()))

    def on_pose(self, msg: PoseStamped) -> None:
        """Cartesian target pose of the end effector."""
        p, q = msg.pose.position, msg.pose.orientation
        self._guard('pose', lambda: self.controller.pose_target(
            [p.x, p.y, p.z], [q.x, q.y, q.z, q.w], msg.header.frame_id, self.now(),
            ros_msgs.to_seconds(msg.header.stamp)))

    def on_trajectory(self, msg: JointTrajectory) -> None:
        """Joint trajectory, as joint_trajectory_controller's topic interface takes it."""
        points = [(stamp_seconds(pt.time_from_start),
                   list(pt.positions)) for pt in msg.points]
        self._guard('trajectory', lambda: self.controller.trajectory(
            list(msg.joint_names), points, self.now(), ros_msgs.to_seconds(msg.header.stamp)))

    def on_position(self, msg: Float64MultiArray) -> None:
        """Forward position controller: absolute arm joint positions."""
        self._guard('position', lambda: self.controller.forward_position(list(msg.data),
                                                                          self.now()))

    def on_gripper(self, msg: Float64MultiArray) -> None:
        """Gripper opening command, metres."""
        self._guard('gripper', lambda: apply_gripper(self.controller, msg, self.now()))

    # -- services --------------------------------------------------------------------------
    def on_reset(self, request: ResetScene.Request, response: ResetScene.Response
                 ) -> ResetScene.Response:
        """Seeded reset of a task, or restore of a snapshot."""
        try:
            if len(request.snapshot):
                self.task, self.seed, self.start = ros_msgs.restore_snapshot(
                    self.scene, bytes(request.snapshot))
                how = 'restored snapshot'
            else:
                task = get_task(request.task) if request.task else self.task
                self.start = reset_scene(self.scene, task, request.seed)
                self.task, self.seed = task, request.seed
                how = f'seed {request.seed}'
        except ValueError as err:
            response.success, response.message = False, str(err)
            self.get_logger().error(f'reset refused: {err}')
            return response
        self.controller.hold('reset')
        self._sim_zero = None
        self._awaiting_capture = set(range(len(self.cameras)))
        self.instruction_pub.publish(String(data=self.task.instruction))
        response.success, response.message = True, f'{self.task.name}: {how}'
        response.task, response.instruction = self.task.name, self.task.instruction
        response.stamp = self.stamp()
        self.get_logger().info(f'reset: {response.message}')
        return response

    def on_snapshot(self, request: GetSnapshot.Request, response: GetSnapshot.Response
                    ) -> GetSnapshot.Response:
        """Return the current state as snapshot bytes."""
        response.snapshot = ros_msgs.encode_snapshot(self.task, self.seed, self.start, self.scene)
        response.success, response.task = True, self.task.name
        return response

    def destroy_node(self) -> None:
        """Stop the cameras and release pybullet with the node."""
        self._stop.set()
        self._frames_thread.join(timeout=2.0)
        self.renderer.close()
        self.scene.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the simulated arm until interrupted.

    One executor thread: every callback touches pybullet and shares one mutually exclusive
    group; camera frames are published from their own thread.
    """
    run_node(SimNode, args)


if __name__ == '__main__':
    main()
