"""vlac_reward_node: dense progress reward, accumulated value and done from camera frames.

Lifecycle node (the critic is a model):
  configure  read and validate parameters, load the critic and warm it up (FAILURE, with the
             reason logged, on a missing or bad checkpoint; no topic goes live),
  activate   subscribe to the camera and task, offer the scoring service and action,
  deactivate stop listening; cleanup frees the model.

Topics (relative to the node's namespace):
  in   <image_topic> (sensor_msgs/Image, best effort), task (std_msgs/String, latched)
  out  progress (vlac_interfaces/ProgressReward, reliable), ~/debug_image (sensor_msgs/Image),
       /diagnostics (diagnostic_msgs/DiagnosticArray, 1 Hz: scored, dropped, rejected frames)
  srv  score_pair (vlac_interfaces/ScorePair), ~/reset (std_srvs/Trigger: new episode)
  act  score_trajectory (vlac_interfaces/ScoreTrajectory)

Every received task message (even the same sentence again) starts a new episode.

One-shot (in-context) scoring, the paper's reference mode: ``reference_path`` names a
reference demonstration (a rosbag2 folder, its camera topic, or a folder of PNG/JPG frames)
by parameter only (the task topic carries the sentence, nothing else; a new reference means
reconfiguring the node). ``reference_frames`` of it are sampled, and every pair is scored
together with them and the episode's first frame (captured at episode start: the first
frame scored after the task message). The node says once per episode what the query holds
(images, reference block) and counts in-context pairs in diagnostics (``in_context_pairs``,
``images_per_pair``). A backend without an in-context mode (``compact``) refuses the
parameter at configure, and a service request carrying a reference, with the reason.

Threads: the camera callbacks run in their own reentrant callback group on the executor's
worker threads (never the spin thread); the task topic and diagnostics share a second group
and the services a third, so scoring never blocks them. A camera callback validates and
converts its frame and, if the frame is due for scoring, offers it to a one-slot mailbox.
One callback at a time is the scorer: it scores the pending frame, then any frame that
arrived meanwhile. When the model falls behind, a newer frame replaces the pending one
(counted as dropped, warned about, and reported in diagnostics), so frames are never queued
without bound and a reward always refers to the freshest frame. Scoring in the callback that
brought the frame saves the hand-off to a separate inference callback (a guard condition
cost 0.15-0.22 ms per reward here, 10 % of the model call).
"""

from __future__ import annotations

from collections import deque
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rclpy.action import ActionServer, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from vlac_models.critic import DoneQuery, PairQuery, accumulate_values, load_critic
from vlac_models.stamps import stamp_seconds
from vlac_models.throttle import RejectLog
from vlac_ros.executor import ResponsiveExecutor
from vlac_ros.images import ImageEncodingError, image_to_rgb, numpy_to_image
from vlac_ros.lifecycle import autostart
from vlac_ros.params import declare_dataclass, read_dataclass
from vlac_ros.qos import LATCHED, PROGRESS, RELIABLE, SENSOR
from vlac_ros.spin import run_node

from vlac_interfaces.action import ScoreTrajectory
from vlac_interfaces.msg import ProgressReward
from vlac_interfaces.srv import ScorePair
from vlac_reward_node.overlay import draw_progress
from vlac_reward_node.progress import (
    Frame,
    FrameMailbox,
    ProgressTracker,
    RewardConfig,
    Score,
    pair_query,
    progress_msg,
    score_frame,
)
from vlac_reward_node.reference import load_reference


class RewardNode(LifecycleNode):
    """The VLAC critic as a ROS 2 lifecycle node."""

    def __init__(self, **kwargs) -> None:
        super().__init__('vlac_reward_node', **kwargs)
        declare_dataclass(self, RewardConfig, validate=False)
        self.config: RewardConfig | None = None
        self.critic = None
        self.reference: tuple[np.ndarray, ...] = ()
        self._model_lock = threading.Lock()  # one model call at a time (stream or services)
        self._state_lock = threading.Lock()  # tracker state shared by camera and inference
        self.rejects = RejectLog(self.get_logger(), period=2.0)  # bad frames, counted
        self.notices = RejectLog(self.get_logger(), period=2.0)
        self._dropped_logged = 0
        self.mailbox = FrameMailbox()
        self.tracker = ProgressTracker(0.2, 0.9, 3)
        self.scored = 0
        self.in_context_pairs = 0  # published rewards whose query carried the reference
        self._described: Frame | None = None  # first frame of the episode last described
        self._shape = None  # QueryShape of that episode's pairs (reference given only)
        self._latency: deque[float] = deque(maxlen=300)  # model call, s
        self._node_latency: deque[float] = deque(maxlen=300)  # frame arrival to reward, s
        self._subscriptions_live: list = []
        self._services_live: list = []
        self._diagnostics_timer = None
        self._action = None
        self._serving = False  # score_trajectory goals accepted (active)
        self._stream_group = ReentrantCallbackGroup()  # camera frames, scored in place
        self._control_group = MutuallyExclusiveCallbackGroup()  # task topic, diagnostics
        self._service_group = ReentrantCallbackGroup()
        autostart(self)

    # -- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters, load and warm up the critic; publishers are created here."""
        try:
            self.config = read_dataclass(self, RewardConfig)
            started = time.perf_counter()
            self.critic = load_critic(self.config.backend, self.config.model_path,
                                      self.config.device, **self._backend_options())
            warm = np.zeros((64, 64, 3), np.uint8)
            if self.config.reference_path:
                self.reference = load_reference(self.config.reference_path,
                                                self.config.reference_frames)
                # A backend without an in-context mode refuses here (NoInContextMode, a
                # ValueError), instead of scoring without the reference it was given.
                self.critic.pair_shape(PairQuery('check', warm, warm, self.reference, warm))
            self.critic.score_pairs([PairQuery('warm up', warm, warm)])
            self.critic.done_probability([DoneQuery('warm up', warm)])
        except (ValueError, FileNotFoundError, OSError, RuntimeError) as err:
            self.get_logger().error(f'configure failed, staying unconfigured: {err}')
            self._free_model()
            return TransitionCallbackReturn.FAILURE
        self.tracker = ProgressTracker(self.config.stride, self.config.done_threshold,
                                       self.config.done_debounce)
        self.progress_pub = self.create_lifecycle_publisher(ProgressReward, 'progress',
                                                            PROGRESS)
        self.debug_pub = self.create_lifecycle_publisher(Image, '~/debug_image', SENSOR)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        self.get_logger().info(
            f'critic {self.critic.model_id} ready on {self.config.device} in '
            f'{time.perf_counter() - started:.1f} s; stride {self.config.stride} s, done at '
            f'{self.config.done_threshold} x{self.config.done_debounce}'
            + (f', {len(self.reference)} reference frames' if self.reference else ''))
        return TransitionCallbackReturn.SUCCESS

    def _backend_options(self) -> dict:
        if self.config.backend == 'vlac':
            return {'trust_remote_code': self.config.trust_remote_code}
        return {'threads': self.config.inference_threads}

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start listening and serving."""
        cfg = self.config
        self._subscriptions_live = [self.create_subscription(
            Image, cfg.image_topic, self._image_callback(), SENSOR,
            callback_group=self._stream_group)]
        if not cfg.task:
            self._subscriptions_live.append(self.create_subscription(
                String, 'task', self._on_task, LATCHED, callback_group=self._control_group))
        self._services_live = [
            self.create_service(ScorePair, 'score_pair', self._on_score_pair,
                                callback_group=self._service_group),
            self.create_service(Trigger, '~/reset', self._on_reset,
                                callback_group=self._service_group)]
        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics,
                                                    callback_group=self._control_group)
        if self._action is None:  # made once: rclpy cannot destroy one while spinning
            self._action = ActionServer(self, ScoreTrajectory, 'score_trajectory',
                                        self._on_score_trajectory,
                                        goal_callback=self._on_trajectory_goal,
                                        callback_group=self._service_group)
        self._serving = True
        self._new_episode(cfg.task)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop listening and serving (the model stays loaded)."""
        self._teardown_entities()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model."""
        self._free_model()
        for pub in (getattr(self, 'progress_pub', None), getattr(self, 'debug_pub', None)):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything."""
        self._teardown_entities()
        self._free_model()
        return TransitionCallbackReturn.SUCCESS

    def _teardown_entities(self) -> None:
        for sub in self._subscriptions_live:
            self.destroy_subscription(sub)
        for srv in self._services_live:
            self.destroy_service(srv)
        self._subscriptions_live, self._services_live = [], []
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        self._serving = False  # the action server stays; goals are refused until activated
        self.mailbox.clear()

    def _on_trajectory_goal(self, goal: ScoreTrajectory.Goal) -> GoalResponse:
        return GoalResponse.ACCEPT if self._serving else GoalResponse.REJECT

    def _free_model(self) -> None:
        with self._model_lock:
            if self.critic is not None:
                self.critic.close()
                self.critic = None

    # -- streaming -------------------------------------------------------------------------
    def _new_episode(self, task: str) -> None:
        with self._state_lock:
            self.tracker.reset(task)
            self.mailbox.clear()

    def _on_task(self, msg: String) -> None:
        self.get_logger().info(f'new episode, task: {msg.data!r}')
        self._new_episode(msg.data.strip())

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        self._new_episode(self.tracker.task)
        response.success, response.message = True, f'new episode: {self.tracker.task!r}'
        return response

    def _image_callback(self):
        """The camera callback, taking the message info where rclpy offers it (Iron on)."""
        if hasattr(Subscription, 'CallbackType'):
            return self._on_image
        return lambda msg: self._on_image(msg, None)  # Humble: arrival = callback entry

    def _on_image(self, msg: Image, info: dict | None) -> None:
        """Validate and convert the frame; score it here unless another callback is scoring."""
        arrival = (info or {}).get('received_timestamp') or 0
        arrival = arrival * 1e-9 if arrival else time.time()  # rmw receipt, system clock
        try:
            rgb = image_to_rgb(msg)
        except ImageEncodingError as err:
            self.rejects.report(f'image:{err}',
                                f'frame on {self.config.image_topic} rejected: {err}')
            return
        stamp = stamp_seconds(msg.header.stamp)
        if stamp <= 0.0:
            self.rejects.report('unstamped', f'frame on {self.config.image_topic} rejected: it '
                                'has no stamp (header.stamp is 0); the camera driver must stamp '
                                'its frames')
            return
        age = self.get_clock().now().nanoseconds * 1e-9 - stamp
        if age > self.config.max_frame_age:
            self.rejects.report('stale', f'stale frame rejected: {age:.2f} s old '
                                f'(max_frame_age {self.config.max_frame_age} s)')
            return
        # The view keeps the message buffer alive.
        frame = Frame(rgb, stamp, msg.header.stamp, arrival)
        with self._state_lock:
            if not self.tracker.task or not self.tracker.wants(frame):
                return
            self.mailbox.put(frame)
        self.mailbox.drain(self._score)

    def _score(self, frame: Frame) -> None:
        """Score ``frame`` against the anchor and publish the reward."""
        with self._state_lock:
            anchor, first, task = self.tracker.anchor, self.tracker.first, self.tracker.task
        started = time.perf_counter()
        with self._model_lock:
            if self.critic is None:
                return
            delta, done_p = score_frame(self.critic, task, anchor, frame, first,
                                        self.reference)
            if self.reference and first is not None and first is not self._described:
                self._describe(self.critic.pair_shape(pair_query(task, anchor, frame, first,
                                                                 self.reference)), first)
        latency = time.perf_counter() - started
        with self._state_lock:
            if self.tracker.anchor is not anchor:  # episode reset while scoring
                return
            score = self.tracker.record(frame, delta, done_p)
        if not np.isfinite(delta):
            self.rejects.report('nan',
                                f'critic output unparseable for the frame at {frame.stamp:.3f};'
                                ' no reward published for it')
            return
        self.scored += 1
        if self._shape is not None and self._shape.reference_frames:
            self.in_context_pairs += 1
        self._latency.append(latency)
        self.progress_pub.publish(self._progress_msg(task, score, latency))
        self._node_latency.append(time.time() - frame.arrival)
        if self.config.debug_image and self.debug_pub.get_subscription_count() > 0:
            self.debug_pub.publish(self._debug_image(score))

    def _describe(self, shape, first: Frame) -> None:
        """Say once per episode what each pair's query holds (the shape is the episode's)."""
        self._described, self._shape = first, shape
        self.get_logger().info(
                f'in-context scoring: {shape.images} images per pair ({shape.reference_frames} '
                f"reference frames, the episode's first frame, the pair); reference block: "
                f'{shape.reference_block!r}')

    def _progress_msg(self, task: str, score: Score, latency: float) -> ProgressReward:
        return progress_msg(task, score, latency, self.critic.model_id,
                            self.get_clock().now().to_msg())

    def _debug_image(self, score: Score) -> Image:
        """The scored frame with the episode's value curve and done state drawn on it."""
        with self._state_lock:
            values = [s.value for s in self.tracker.history[-120:]]
        canvas = draw_progress(score.frame.rgb, values, score.value, score.delta,
                               score.done_probability, score.done)
        return numpy_to_image(canvas, 'rgb8', Header(stamp=score.frame.stamp_msg))

    def _publish_diagnostics(self) -> None:
        latency = np.array(self._latency) * 1e3 if self._latency else np.zeros(1)
        node_latency = np.array(self._node_latency) * 1e3 if self._node_latency \
            else np.zeros(1)
        dropped = self.mailbox.dropped
        level = DiagnosticStatus.WARN if dropped else DiagnosticStatus.OK
        if dropped > self._dropped_logged:  # say it again only when the count has grown
            self._dropped_logged = dropped
            self.notices.report('dropped', f'critic falling behind: {dropped} frames dropped so '
                                f'far (inference p50 {np.percentile(latency, 50):.1f} ms)',
                                'warning')
        values = {'scored': self.scored, 'dropped': dropped, 'rejected': self.rejects.count,
                  'latency_p50_ms': f'{np.percentile(latency, 50):.1f}',
                  'latency_p99_ms': f'{np.percentile(latency, 99):.1f}',
                  'node_latency_p50_ms': f'{np.percentile(node_latency, 50):.2f}',
                  'node_latency_p99_ms': f'{np.percentile(node_latency, 99):.2f}',
                  'value': f'{self.tracker.value:.3f}', 'done': self.tracker.done,
                  'in_context_pairs': self.in_context_pairs,
                  'images_per_pair': self._shape.images if self._shape else 0}
        status = DiagnosticStatus(level=level, name=f'{self.get_fully_qualified_name()}: critic',
                                  message='frames dropped' if dropped else 'ok',
                                  hardware_id=self.critic.model_id if self.critic else '',
                                  values=[KeyValue(key=k, value=str(v))
                                          for k, v in values.items()])
        self.diagnostics_pub.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

    # -- services --------------------------------------------------------------------------
    def _on_score_pair(self, request: ScorePair.Request, response: ScorePair.Response
                       ) -> ScorePair.Response:
        response.delta = response.done_probability = float('nan')
        try:
            if not request.task.strip():
                raise ValueError('empty task')
            a, b = image_to_rgb(request.image_a), image_to_rgb(request.image_b)
            reference = tuple(image_to_rgb(r) for r in request.reference)
            first = image_to_rgb(request.first_frame) if request.first_frame.width else None
        except (ImageEncodingError, ValueError) as err:
            response.success, response.message = False, f'rejected: {err}'
            return response
        with self._model_lock:
            if self.critic is None:
                response.success, response.message = False, 'critic not loaded'
                return response
            try:  # e.g. a reference for a backend without an in-context mode
                delta = float(self.critic.score_pairs([PairQuery(request.task, a, b,
                                                                 reference, first)])[0])
                done_p = float(self.critic.done_probability([DoneQuery(request.task, b,
                                                                       reference)])[0])
            except ValueError as err:
                response.success, response.message = False, f'rejected: {err}'
                return response
            response.model_id = self.critic.model_id
        response.delta, response.done_probability = delta, done_p
        response.success = bool(np.isfinite(delta))
        response.message = 'ok' if response.success else 'model output unparseable'
        return response

    def _on_score_trajectory(self, goal_handle) -> ScoreTrajectory.Result:
        goal = goal_handle.request
        result = ScoreTrajectory.Result()
        try:
            frames = [image_to_rgb(f) for f in goal.frames]
            reference = tuple(image_to_rgb(r) for r in goal.reference)
            if len(frames) < 2:
                raise ValueError(f'need at least 2 frames, got {len(frames)}')
        except (ImageEncodingError, ValueError) as err:
            goal_handle.abort()
            result.success, result.message = False, f'rejected: {err}'
            return result
        deltas, done = [], []
        total = len(frames) - 1
        for start in range(0, total, 8):
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result.message = 'canceled'
                return result
            stop = min(total, start + 8)
            with self._model_lock:
                if self.critic is None:
                    goal_handle.abort()
                    result.message = 'critic not loaded'
                    return result
                try:
                    deltas += self.critic.score_pairs([
                        PairQuery(goal.task, frames[i], frames[i + 1], reference,
                                  frames[0] if reference else None)
                        for i in range(start, stop)]).tolist()
                    done += self.critic.done_probability([
                        DoneQuery(goal.task, frames[i + 1], reference)
                        for i in range(start, stop)]).tolist()
                except ValueError as err:
                    goal_handle.abort()
                    result.success, result.message = False, f'rejected: {err}'
                    return result
                result.model_id = self.critic.model_id
            goal_handle.publish_feedback(ScoreTrajectory.Feedback(scored=stop, total=total))
        goal_handle.succeed()
        result.deltas, result.done_probabilities = deltas, done
        result.values = accumulate_values(deltas).tolist()
        result.success, result.message = True, f'{total} pairs scored'
        return result


def main(args: list[str] | None = None) -> None:
    """Run the node until interrupted (camera, control and services on worker threads)."""
    run_node(RewardNode, args, lambda: ResponsiveExecutor(num_threads=4))


if __name__ == '__main__':
    main()
