"""vlac_policy_node: the VLAC actor driving an arm through standard ROS 2 interfaces.

Lifecycle: configure loads and warms up the policy, creates publishers and starts listening
(cameras, joint states, end-effector pose, task, e-stop, policy versions); activate starts the
fixed-rate control loop; deactivate stops it and holds the arm; cleanup frees the model.

Topics (relative to the node's namespace; the arm topics come from ``arm.*``):
  in   <image_topics> (sensor_msgs/Image), joint_states, ee_pose (or forward kinematics),
       robot_description (std_msgs/String, latched; joint-space adapters), task and episode
       (std_msgs/String, latched), estop (std_msgs/Bool, latched), policy_version
       (vlac_interfaces/PolicyVersion, latched), intervention/active (std_msgs/Bool,
       latched) and intervention/action (vlac_interfaces/DeltaAction) from the teleop node,
       episode_mode (std_msgs/String, latched; 'demonstration': the operator alone drives)
  out  <arm.command_topic>, <arm.gripper_topic> (unless dry_run), ~/action_preview
       (vlac_interfaces/DeltaAction), transitions (vlac_interfaces/Transition, one per control
       step; transient local, the last 1000 kept for a restarting trainer), /diagnostics
       (1 Hz: ticks, holds by reason, latency, missed ticks, version)
  srv  ~/release_estop (std_srvs/Trigger)

Safety: an observation older than ``safety.max_observation_age`` (or a state not matching the
image stamp), a NaN/unparseable action, an IK failure, a missing task or an engaged e-stop holds
the arm (servo: a zero twist every period; other adapters: no new target) and logs why. The
e-stop latches: after ``estop`` goes false, motion resumes only after ``~/release_estop``.

Interventions: while ``intervention/active`` is true the node executes the operator's newest
action (``intervention/action``, at most ``intervention_timeout`` old, else it holds) instead of
the policy's, through the same safety limits, adapter, e-stop and dry-run, and publishes its
Transition with ``is_intervention`` true and the policy's tokens (``tokens_for``), log-prob
and value for the executed action. The switch happens at the next control step, both ways.
In a demonstration episode (``episode_mode`` 'demonstration') the policy never acts: the arm
holds whenever the operator does not drive.

Hot swap: a PolicyVersion whose artifact is a safetensors file inside ``weights_dir`` with a
matching sha256 is loaded into a standby copy of the policy off the control thread; the control
loop switches to it at the start of its next tick. A failed load keeps the running weights.
"""

from __future__ import annotations

import collections
import pathlib
import threading
import time
from urllib.parse import unquote, urlparse

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
import numpy as np
import pinocchio as pin
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import Trigger
from vlac_models.policy.base import PolicyError, PolicyObservation, load_policy
from vlac_models.stamps import stamp_seconds
from vlac_models.throttle import RejectLog
from vlac_ros.executor import ResponsiveExecutor
from vlac_ros.images import ImageEncodingError, image_to_rgb
from vlac_ros.lifecycle import autostart
from vlac_ros.params import declare_dataclass, read_dataclass
from vlac_ros.qos import LATCHED, RELIABLE, SENSOR, TRANSITIONS
from vlac_ros.spin import run_node

from vlac_interfaces.msg import DeltaAction, PolicyVersion, Transition
from vlac_policy_node.actions import ArmAdapter, ArmState
from vlac_policy_node.config import PolicyNodeConfig
from vlac_policy_node.kinematics import IkError
from vlac_policy_node.step import (
    Hold,
    arm_gripper,
    decide,
    decide_operator,
    delta_msg,
    joint_map,
    operator_action,
    pose_arm_state,
    transition_msg,
)

STATE_HISTORY = 64  # joint-state / pose messages kept for stamp matching


def weights_path(uri: str, weights_dir: str) -> pathlib.Path:
    """The artifact path of a PolicyVersion (ValueError unless it is allowed).

    It must be a local .safetensors file inside ``weights_dir``, symlinks resolved.
    """
    if not weights_dir:
        raise ValueError('hot swap is disabled (weights_dir is empty)')
    parsed = urlparse(uri)
    if parsed.scheme not in ('', 'file'):
        raise ValueError(f'only local file artifacts are accepted, got {uri!r}')
    path = pathlib.Path(unquote(parsed.path) if parsed.scheme else uri)
    if not path.is_absolute():
        raise ValueError(f'artifact path must be absolute: {uri!r}')
    resolved = path.resolve()
    root = pathlib.Path(weights_dir).resolve()
    if root not in resolved.parents:
        raise ValueError(f'artifact {resolved} is outside weights_dir {root}')
    if resolved.suffix != '.safetensors':
        raise ValueError(f'artifact {resolved.name} is not a .safetensors file')
    return resolved


class PolicyNode(LifecycleNode):
    """The VLAC policy as a ROS 2 lifecycle node."""

    def __init__(self, **kwargs) -> None:
        super().__init__('vlac_policy_node', **kwargs)
        declare_dataclass(self, PolicyNodeConfig, validate=False)
        self.config: PolicyNodeConfig | None = None
        self.policy = None
        self.adapter: ArmAdapter | None = None
        self.version = 0
        self._lock = threading.Lock()  # observation buffers, task, e-stop, pending swap
        self.rejects = RejectLog(self.get_logger(), period=2.0)
        self._images: list = []
        self._joints: collections.deque = collections.deque(maxlen=STATE_HISTORY)
        self._poses: collections.deque = collections.deque(maxlen=STATE_HISTORY)
        self.task = ''
        self.episode_id = ''
        self.step = 0
        self.estop_engaged = False
        self._estop_signal = False
        self.operator_active = False
        self.episode_mode = ''
        self._operator_action = None  # (DeltaAction, monotonic receive time)
        self.interventions = 0
        self._pending = None  # (policy, PolicyVersion) waiting for the next tick
        self._timer = None
        self._entities: list = []
        self._last_tick: float | None = None
        self.ticks = self.missed_ticks = self.actions = 0
        self.holds: collections.Counter = collections.Counter()
        self.latency: collections.deque = collections.deque(maxlen=1000)
        self.activations = 0
        self._sensor_group = MutuallyExclusiveCallbackGroup()
        self._control_group = MutuallyExclusiveCallbackGroup()
        self._swap_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        autostart(self)

    # -- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters, load and warm up the policy, create publishers, listen."""
        try:
            self.config = cfg = read_dataclass(self, PolicyNodeConfig)
            started = time.perf_counter()
            self.policy = self._load_policy()
            self._warm_up(self.policy)
        except (ValueError, OSError, RuntimeError, PolicyError) as err:
            self.get_logger().error(f'configure failed, staying unconfigured: {err}')
            self.policy = None
            return TransitionCallbackReturn.FAILURE
        self.period = 1.0 / cfg.rate_hz
        self.adapter = ArmAdapter(cfg.arm, self.period)
        # The URDF is needed for joint-space commands, and for the tip pose without ee_pose.
        self._kinematics_required = not cfg.ee_pose_topic or (self.adapter.needs_kinematics
                                                              and not cfg.dry_run)
        self.robot_id = cfg.robot_id or self.get_namespace().strip('/') or 'robot'
        self.task = cfg.task
        self._images = [None] * len(cfg.image_topics)
        self.arm_pub = self.gripper_pub = None
        if not cfg.dry_run:
            self.arm_pub = self.create_lifecycle_publisher(
                self.adapter.message_type, cfg.arm.command_topic, RELIABLE)
            if self.adapter.gripper_message_type is not None:
                self.gripper_pub = self.create_lifecycle_publisher(
                    self.adapter.gripper_message_type, cfg.arm.gripper_topic, RELIABLE)
        self.preview_pub = self.create_lifecycle_publisher(DeltaAction, '~/action_preview',
                                                           RELIABLE)
        self.transition_pub = self.create_lifecycle_publisher(Transition, 'transitions',
                                                              TRANSITIONS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        sensor = self._sensor_group
        self._entities = [
            self.create_subscription(Image, topic, lambda m, i=i: self._on_image(i, m), SENSOR,
                                     callback_group=sensor)
            for i, topic in enumerate(cfg.image_topics)]
        self._entities += [
            self.create_subscription(JointState, cfg.joint_state_topic, self._on_joints,
                                     SENSOR, callback_group=sensor),
            self.create_subscription(String, 'task', self._on_task, LATCHED,
                                     callback_group=sensor),
            self.create_subscription(String, 'episode', self._on_episode, LATCHED,
                                     callback_group=sensor),
            self.create_subscription(Bool, 'estop', self._on_estop, LATCHED,
                                     callback_group=sensor),
            self.create_subscription(Bool, 'intervention/active', self._on_intervention,
                                     LATCHED, callback_group=sensor),
            self.create_subscription(DeltaAction, 'intervention/action', self._on_operator_action,
                                     RELIABLE, callback_group=sensor),
            self.create_subscription(String, 'episode_mode', self._on_episode_mode, LATCHED,
                                     callback_group=sensor),
            self.create_subscription(PolicyVersion, 'policy_version', self._on_version,
                                     LATCHED, callback_group=self._swap_group),
            self.create_service(Trigger, '~/release_estop', self._on_release_estop,
                                callback_group=self._service_group),
            self.create_timer(1.0, self._publish_diagnostics, callback_group=sensor)]
        if cfg.ee_pose_topic:
            self._entities.append(self.create_subscription(
                PoseStamped, cfg.ee_pose_topic, self._on_pose, SENSOR, callback_group=sensor))
        if self.adapter.needs_kinematics or not cfg.ee_pose_topic:
            self._entities.append(self.create_subscription(
                String, cfg.arm.robot_description_topic, self._on_description, LATCHED,
                callback_group=sensor))
        self.get_logger().info(
            f'policy {cfg.backend} ({cfg.runtime}) ready on {cfg.device} in '
            f'{time.perf_counter() - started:.1f} s; {cfg.rate_hz} Hz, adapter '
            f'{cfg.arm.adapter} on {cfg.arm.command_topic!r}'
            + (' (DRY RUN: actions only on ~/action_preview)' if cfg.dry_run else ''))
        return TransitionCallbackReturn.SUCCESS

    def _load_policy(self):
        cfg = self.config
        if cfg.inference_threads > 0:
            import torch

            torch.set_num_threads(cfg.inference_threads)  # this process's model only
        options = {'trust_remote_code': cfg.trust_remote_code} if cfg.backend == 'vlac' \
            else {'runtime': cfg.runtime, 'threads': cfg.inference_threads}
        return load_policy(cfg.backend, cfg.model_path, cfg.device, **options)

    def _warm_up(self, policy) -> None:
        images = [np.zeros((64, 64, 3), np.uint8)] * len(self.config.image_topics)
        state = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 1.0])
        policy.act(PolicyObservation(images, state, 'warm up'), deterministic=True)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the control loop (a new episode starts at step 0)."""
        self.activations += 1
        with self._lock:
            self.step = 0
            if not self.episode_id:
                self.episode_id = f'{time.strftime("%Y%m%d-%H%M%S")}-{self.activations}'
        self._last_tick = None
        self._timer = self.create_timer(self.period, self._tick,
                                        callback_group=self._control_group)
        result = super().on_activate(state)
        self.get_logger().info(f'active: episode {self.episode_id!r}, task {self.task!r}')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the control loop and hold the arm."""
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        self._send_hold()
        with self._lock:
            self.episode_id = ''  # the next activation needs a new episode id
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop listening and free the model."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything."""
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        for entity in self._entities:
            if hasattr(entity, 'timer_period_ns'):
                self.destroy_timer(entity)
            elif hasattr(entity, 'srv_type'):
                self.destroy_service(entity)
            else:
                self.destroy_subscription(entity)
        self._entities = []
        for pub in ('arm_pub', 'gripper_pub', 'preview_pub', 'transition_pub'):
            if getattr(self, pub, None) is not None:
                self.destroy_lifecycle_publisher(getattr(self, pub))
                setattr(self, pub, None)
        self.policy = None
        self._pending = None

    # -- inputs ----------------------------------------------------------------------------
    def _on_image(self, index: int, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg)
        except ImageEncodingError as err:
            self.rejects.report(f'image{index}:{err}', f'frame on '
                                f'{self.config.image_topics[index]} rejected: {err}')
            return
        with self._lock:
            self._images[index] = (msg, rgb, stamp_seconds(msg.header.stamp))

    def _on_joints(self, msg: JointState) -> None:
        if len(msg.name) != len(msg.position):
            self.rejects.report('joints', f'joint_states with {len(msg.name)} names and '
                                f'{len(msg.position)} positions rejected')
            return
        with self._lock:
            self._joints.append((stamp_seconds(msg.header.stamp), msg))

    def _on_pose(self, msg: PoseStamped) -> None:
        frame = self.config.arm.base_frame
        if msg.header.frame_id and msg.header.frame_id != frame:
            self.rejects.report('pose_frame',
                                f'end-effector pose in frame {msg.header.frame_id!r} '
                                f'rejected: expected the base frame {frame!r}')
            return
        with self._lock:
            self._poses.append((stamp_seconds(msg.header.stamp), msg))

    def _on_description(self, msg: String) -> None:
        try:
            self.adapter.set_robot_description(msg.data)
        except ValueError as err:
            self.get_logger().error(f'robot_description unusable, the arm will hold: {err}')
            return
        self.get_logger().info('kinematics built from robot_description')

    def _on_task(self, msg: String) -> None:
        task = msg.data.strip()
        with self._lock:
            self.task = task
        self.get_logger().info(f'task: {task!r}')

    def _on_episode(self, msg: String) -> None:
        with self._lock:
            self.episode_id, self.step = msg.data.strip(), 0
        self.get_logger().info(f'episode: {msg.data.strip()!r}')

    def _on_intervention(self, msg: Bool) -> None:
        with self._lock:
            changed = self.operator_active != bool(msg.data)
            self.operator_active = bool(msg.data)
            if not msg.data:
                self._operator_action = None
        if changed:
            self.get_logger().info('operator drives (intervention)' if msg.data
                                   else 'policy drives (operator gave back)')

    def _on_operator_action(self, msg: DeltaAction) -> None:
        with self._lock:
            self._operator_action = (msg, time.monotonic())

    def _on_episode_mode(self, msg: String) -> None:
        with self._lock:
            self.episode_mode = msg.data.strip()

    def _operator_step(self) -> tuple[bool, DeltaAction | None]:
        """(operator drives this step, its action); Hold when it drives without a fresh one."""
        with self._lock:
            active, demo = self.operator_active, self.episode_mode == 'demonstration'
            pending = self._operator_action
        if not active:
            if demo:
                raise Hold('operator', 'demonstration: waiting for the operator to drive',
                           'info')
            return False, None
        if pending is None or time.monotonic() - pending[1] > self.config.intervention_timeout:
            raise Hold('operator', 'operator drives but sent no action within '
                       f'intervention_timeout {self.config.intervention_timeout} s: holding',
                       'warning')
        return True, pending[0]

    def _on_estop(self, msg: Bool) -> None:
        with self._lock:
            self._estop_signal = bool(msg.data)
            engage = self._estop_signal and not self.estop_engaged
            if engage:
                self.estop_engaged = True
        if engage:
            self._send_hold()
            self.get_logger().error('E-STOP engaged: no commands until it is released '
                                    '(estop false, then ~/release_estop)')

    def _on_release_estop(self, request: Trigger.Request, response: Trigger.Response
                          ) -> Trigger.Response:
        with self._lock:
            if self._estop_signal:
                response.success = False
                response.message = 'e-stop signal still true: clear it first'
            else:
                response.success, response.message = True, 'e-stop released'
                self.estop_engaged = False
        self.get_logger().warning(response.message)
        return response

    def _on_version(self, msg: PolicyVersion) -> None:
        """Load new weights into a standby policy (off the control thread)."""
        if msg.version <= self.version:
            return
        started = time.perf_counter()
        try:
            if msg.backend and msg.backend != self.config.backend:
                raise ValueError(f'weights for backend {msg.backend!r}, running '
                                 f'{self.config.backend!r}')
            path = weights_path(msg.artifact_uri, self.config.weights_dir)
            standby = self._load_policy()
            standby.load_weights(path, msg.sha256)
            self._warm_up(standby)
        except (ValueError, OSError, RuntimeError, PolicyError) as err:
            self.get_logger().error(f'policy version {msg.version} rejected, keeping version '
                                    f'{self.version}: {err}')
            return
        with self._lock:
            self._pending = (standby, msg)
        self.get_logger().info(f'policy version {msg.version} loaded in '
                               f'{time.perf_counter() - started:.2f} s; active from the '
                               f'next control step')

    # -- control loop ----------------------------------------------------------------------
    def _observation(self, now: float):
        """Match the newest images with the state closest in stamp; Hold if impossible."""
        cfg, safety = self.config, self.config.safety
        with self._lock:
            images = list(self._images)
            joints, poses = list(self._joints), list(self._poses)
            task = self.task
        if not task:
            raise Hold('task', 'no task yet (task parameter or task topic): holding', 'info')
        if any(image is None for image in images):
            raise Hold('no_image', 'no camera image yet: holding', 'info')
        if self._kinematics_required and self.adapter.kinematics is None:
            raise Hold('kinematics', 'no usable robot_description yet on '
                       f'{cfg.arm.robot_description_topic!r}: holding', 'info')
        stamp = min(image[2] for image in images)
        if stamp <= 0.0:
            raise Hold('unstamped', 'a camera image has no stamp (header.stamp is 0): holding; '
                       'the camera driver must stamp its frames', 'warning')
        age = now - stamp
        if age > safety.max_observation_age:
            raise Hold('stale', f'stale observation: newest image is {age:.3f} s old '
                       f'(max_observation_age {safety.max_observation_age} s): holding', 'warning')
        joint = _closest(joints, stamp, safety.max_state_skew)
        if joint is None:
            raise Hold('stale', 'no joint state within max_state_skew '
                       f'{safety.max_state_skew} s of the image: holding', 'warning')
        if cfg.ee_pose_topic:
            pose = _closest(poses, stamp, safety.max_state_skew)
            if pose is None:
                raise Hold('stale', 'no end-effector pose within max_state_skew '
                           f'{safety.max_state_skew} s of the image: holding', 'warning')
            arm = pose_arm_state(joint, pose, cfg.arm)
        else:
            joints = joint_map(joint)
            try:
                tip = self.adapter.kinematics.forward(
                    [joints[n] for n in cfg.arm.joint_names])
            except (KeyError, IkError) as err:
                raise Hold('bad_state', f'forward kinematics failed: {err}') from err
            position, rotation = tip.translation.copy(), tip.rotation.copy()
            pose = PoseStamped(header=Header(stamp=joint.header.stamp,
                                             frame_id=cfg.arm.base_frame))
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = \
                (float(v) for v in position)
            q = pin.Quaternion(rotation)
            pose.pose.orientation.x, pose.pose.orientation.y = q.x, q.y
            pose.pose.orientation.z, pose.pose.orientation.w = q.z, q.w
            arm = ArmState(position, rotation, joints, arm_gripper(joint, cfg.arm))
        observation = PolicyObservation([image[1] for image in images], arm.state_vector(),
                                        task)
        return observation, arm, images, joint, pose

    def _tick(self) -> None:
        now_time = self.get_clock().now()
        now = now_time.nanoseconds * 1e-9
        started = time.perf_counter()
        if self._last_tick is not None and started - self._last_tick > 1.5 * self.period:
            self.missed_ticks += 1
        self._last_tick = started
        self.ticks += 1
        with self._lock:
            if self._pending is not None:
                self.policy, version_msg = self._pending
                self.version, self._pending = version_msg.version, None
                self.get_logger().info(f'now acting with policy version {self.version}')
            estop = self.estop_engaged
        if estop:
            self.holds['estop'] += 1
            return  # the hold was sent when the e-stop engaged; send nothing more
        header = Header(stamp=now_time.to_msg(), frame_id=self.config.arm.base_frame)
        try:
            operated, operator_msg = self._operator_step()
            observation, arm, images, joint, pose = self._observation(now)
            if operated:
                decision = decide_operator(
                    self.policy, observation, arm,
                    operator_action(operator_msg, self.config.arm.base_frame),
                    self.config.safety, self.adapter, header, self.config.dry_run)
            else:
                decision = decide(self.policy, observation, arm, self.config.safety,
                                  self.adapter, header, self.config.deterministic,
                                  self.config.dry_run)
            output, action, notes = decision.output, decision.action, decision.notes
            command, gripper = decision.command, decision.gripper
        except Hold as hold:
            self.holds[hold.key] += 1
            self.rejects.report(hold.key, str(hold), hold.level)
            self._send_hold(header)
            return
        latency = time.perf_counter() - started
        with self._lock:
            if self.estop_engaged:  # engaged while the policy was thinking
                self.holds['estop'] += 1
                return
            step, episode_id, version = self.step, self.episode_id, self.version
            self.step += 1
        if command is not None:
            self.arm_pub.publish(command)
        if gripper is not None and self.gripper_pub is not None:
            self.gripper_pub.publish(gripper)
        if notes:
            self.rejects.report('limited', 'action limited: ' + '; '.join(notes), 'warning')
        delta = delta_msg(action, header)
        self.preview_pub.publish(delta)
        self.actions += 1
        self.interventions += operated
        self.latency.append(latency)
        self.transition_pub.publish(self._transition(
            step, episode_id, version, observation, output, delta, images, joint, pose,
            latency, header, operated))

    def _transition(self, step, episode_id, version, observation, output, delta, images,
                    joint, pose, latency, header, operated: bool = False) -> Transition:
        return transition_msg(
            self.robot_id, episode_id, step, version, observation, output, delta,
            [image[0] for image in images], joint, pose, latency, header,
            None if self.config.transition_images else list(self.config.image_topics),
            is_intervention=operated)

    def _send_hold(self, header: Header | None = None) -> None:
        if self.adapter is None or getattr(self, 'arm_pub', None) is None:
            return
        if header is None:
            header = Header(stamp=self.get_clock().now().to_msg(),
                            frame_id=self.config.arm.base_frame)
        message = self.adapter.hold(header)
        if message is not None and self.arm_pub.is_activated:
            self.arm_pub.publish(message)

    def _publish_diagnostics(self) -> None:
        latency = np.array(self.latency) if self.latency else np.zeros(1)
        values = {'ticks': self.ticks, 'actions': self.actions,
                  'missed_ticks': self.missed_ticks, 'policy_version': self.version,
                  'interventions': self.interventions, 'operator_active': self.operator_active,
                  'estop': self.estop_engaged,
                  'latency_p50_ms': round(float(np.percentile(latency, 50)) * 1e3, 2),
                  'latency_p99_ms': round(float(np.percentile(latency, 99)) * 1e3, 2),
                  **{f'holds_{key}': count for key, count in self.holds.items()}}
        level = DiagnosticStatus.WARN if self.estop_engaged or self.holds else \
            DiagnosticStatus.OK
        self.diagnostics_pub.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()),
            status=[DiagnosticStatus(level=level, name=self.get_fully_qualified_name(),
                                     message='e-stop engaged' if self.estop_engaged
                                     else 'running',
                                     values=[KeyValue(key=k, value=str(v))
                                             for k, v in values.items()])]))


def _closest(history: list, stamp: float, tolerance: float):
    """The message whose stamp is closest to ``stamp`` within ``tolerance`` (or None)."""
    best = min(history, key=lambda item: abs(item[0] - stamp), default=None)
    if best is None or abs(best[0] - stamp) > tolerance:
        return None
    return best[1]


def main(args: list[str] | None = None) -> None:
    """Console entry point: ``ros2 run vlac_policy_node vlac_policy_node``."""
    run_node(PolicyNode, args, lambda: ResponsiveExecutor(num_threads=4))


if __name__ == '__main__':
    main()
