"""episode_runner: the robot side of the asynchronous loop, one RunEpisode goal at a time.

For each goal (vlac_interfaces/action/RunEpisode) it:
  1. resets the scene: the simulator's ``sim/reset`` service (task, seed, optional snapshot
     for return-and-explore: the goal's ``reset_state``, or when it is empty the next return
     point of ``return_point_service``), or on a real arm waits for the operator's ready
     signal (``operator/ready``, std_msgs/Bool true) up to ``ready_timeout``;
  2. publishes the episode's mode (``episode_mode``: 'autonomous', 'return_and_explore',
     'human_guided' or 'demonstration'), id (``episode``) and task sentence (``task``), all
     latched:
     the critic starts a new episode and the policy node tags its transitions; it waits for
     the critic's first score of the new task (up to ``service_timeout``) before starting;
  3. starts recording the episode as a rosbag2 folder (MCAP) in
     ``<episodes_dir>/<robot_id>/<episode_id>/``: cameras, joint states, end-effector pose,
     transitions (actions, tokens, policy version, intervention flags), progress rewards and
     the episode result;
  4. activates the policy node (lifecycle; configures it first if needed): it runs the
     policy, or the operator's actions while the teleop node says the operator drives (in a
     demonstration only those); records operator takeovers (``intervention/active``), help
     requests (``help_request``) and, in the simulator, a snapshot every ``snapshot_period``
     (``sim/snapshot`` as std_msgs/String JSON) from which return points are picked later;
  5. ends on the critic's done (ProgressReward.done), the time limit, an operator stop
     (``operator/stop``), the operator's verdict (``operator/success``,
     ``operator/failure``; std_msgs/Bool true) or a cancelled goal;
  6. deactivates the policy node (it holds the arm), waits ``rest_time`` for the arm to come to
     rest, publishes the vlac_interfaces/EpisodeResult on ``episode_results`` (reliable,
     transient local for late trainers) and closes the bag atomically.
Lifecycle (``autostart`` true by default: it brings itself up; false: the lifecycle manager
does): configure creates the publishers, the recording subscriptions and the service clients;
activate offers ``run_episode`` (accepts goals); deactivate ends a running episode (as an
operator stop) and rejects further goals; cleanup destroys the rest.
Which transitions and scores make up the episode is decided by ``vlac_models.episodes``, the
rules the trainer applies too: the episode's bounds run from the moment the arm is handed to
the policy (after the reset) to the moment it is taken back, and ``EpisodeResult.start_time``
and ``end_time`` carry them. The episode return is the progress over the steps the policy
acted, by the trainer's own join (``rl_runner.results``): the sum of the transitions'
progress rewards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import pathlib
import threading
import time

from geometry_msgs.msg import PoseStamped
from lifecycle_msgs.msg import State
from lifecycle_msgs.msg import Transition as LifecycleTransition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from vlac_models.config import doc
from vlac_models.episodes import Episode
from vlac_models.stamps import stamp_ns
from vlac_ros.bags import BagWriter
from vlac_ros.executor import ResponsiveExecutor
from vlac_ros.lifecycle import autostart
from vlac_ros.params import declare_dataclass, read_dataclass
from vlac_ros.qos import LATCHED, RELIABLE, RESULTS, SENSOR
from vlac_ros.spin import run_node

from rl_runner.results import episode_result
from vlac_interfaces.action import RunEpisode
from vlac_interfaces.msg import EpisodeResult, HelpRequest, ProgressReward, Transition
from vlac_interfaces.srv import GetReturnPoint, GetSnapshot, ResetScene

MODE_NAMES = {RunEpisode.Goal.MODE_AUTONOMOUS: 'autonomous',
              RunEpisode.Goal.MODE_RETURN_AND_EXPLORE: 'return_and_explore',
              RunEpisode.Goal.MODE_HUMAN_GUIDED: 'human_guided',
              RunEpisode.Goal.MODE_DEMONSTRATION: 'demonstration'}
"""``episode_mode`` values, by RunEpisode mode."""


@dataclass(frozen=True)
class RunnerConfig:
    """Parameters of ``episode_runner`` (SI units)."""

    robot_id: str = field(default='', metadata=doc('robot identifier; empty: the namespace'))
    episodes_dir: str = field(default='episodes', metadata=doc(
        'root folder of the episode recordings (one rosbag2 folder per episode)'))
    reset_service: str = field(default='sim/reset', metadata=doc(
        'vlac_interfaces/ResetScene service; empty: wait for the operator (real arm)'))
    ready_timeout: float = field(default=300.0, metadata=doc(
        'real arm: longest wait for operator/ready, s'))
    policy_node: str = field(default='vlac_policy_node', metadata=doc(
        'name of the policy lifecycle node (relative to the namespace)'))
    image_topics: tuple[str, ...] = field(default=('camera/image_raw',), metadata=doc(
        'camera topics recorded with the episode'))
    default_max_duration: float = field(default=30.0, metadata=doc(
        'episode time limit when the goal gives none, s'))
    rest_time: float = field(default=0.3, metadata=doc(
        'wait after deactivating the policy for the arm to come to rest, s'))
    service_timeout: float = field(default=30.0, metadata=doc(
        'longest wait for a service (reset, lifecycle), s'))
    snapshot_service: str = field(default='sim/snapshot', metadata=doc(
        'vlac_interfaces/GetSnapshot service recorded during episodes (return points); '
        'empty: none (real arm)'))
    snapshot_period: float = field(default=0.5, metadata=doc(
        's between two recorded snapshots'))
    return_point_service: str = field(default='return_points/next', metadata=doc(
        'vlac_interfaces/GetReturnPoint service asked for a start state when a '
        "return-and-explore goal brings none; empty: the task's own reset"))
    autostart: bool = field(default=True, metadata=doc(
        'configure and activate at start-up (false: a lifecycle manager brings it up)'))

    def validate(self) -> 'RunnerConfig':
        """Raise ValueError naming the bad value; return self."""
        if not self.episodes_dir:
            raise ValueError('episodes_dir is empty')
        if not self.policy_node:
            raise ValueError('policy_node is empty')
        for name in ('ready_timeout', 'default_max_duration', 'service_timeout'):
            if not getattr(self, name) > 0.0:
                raise ValueError(f'{name} must be > 0, got {getattr(self, name)}')
        if self.rest_time < 0.0:
            raise ValueError(f'rest_time must be >= 0, got {self.rest_time}')
        if not 0.05 <= self.snapshot_period <= 60.0:
            raise ValueError(f'snapshot_period {self.snapshot_period} s outside 0.05..60')
        return self


@dataclass
class EpisodeStatus:
    """What the critic last said about the running episode (feedback and the done signal)."""

    progress: float = 0.0
    done_probability: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    task: str = ''
    """The instruction published for the episode."""
    published_ns: int = 0
    """When it was published: the critic's first pair after it means the critic took it."""
    critic_ready: threading.Event = field(default_factory=threading.Event)
    verdict: str = ''
    """The operator's: 'operator_success' or 'operator_failure' (empty: none yet)."""
    help_requests: int = 0
    takeovers: int = 0
    operator_active: bool = False


class EpisodeAborted(RuntimeError):
    """The episode could not start or run (reset failed, policy not available...)."""


class EpisodeRunner(LifecycleNode):
    """Runs RunEpisode goals: reset, task, policy on, record, end, policy off, result."""

    def __init__(self, **kwargs) -> None:
        super().__init__('episode_runner', **kwargs)
        # Validated here as well: a bad value still ends the process at start (status 2).
        self.config = declare_dataclass(self, RunnerConfig)
        self._lock = threading.Lock()
        self._bag: BagWriter | None = None
        self._episode: Episode | None = None
        self._status = EpisodeStatus()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._verdict = threading.Event()
        self._busy = False
        self._client_group = ReentrantCallbackGroup()
        self.server: ActionServer | None = None
        self._active = False
        autostart(self)

    # -- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters; create the publishers, recording subscriptions, clients."""
        try:
            self.config = cfg = read_dataclass(self, RunnerConfig)
            self.robot_id = cfg.robot_id or self.get_namespace().strip('/') or 'robot'
            self.root = pathlib.Path(cfg.episodes_dir).expanduser().resolve() / self.robot_id
            self.root.mkdir(parents=True, exist_ok=True)
        except (ValueError, OSError) as err:
            self.get_logger().error(f'configure failed, staying unconfigured: {err}')
            return TransitionCallbackReturn.FAILURE
        io = MutuallyExclusiveCallbackGroup()  # recording and signals, one at a time
        self.task_pub = self.create_publisher(String, 'task', LATCHED)
        self.episode_pub = self.create_publisher(String, 'episode', LATCHED)
        self.mode_pub = self.create_publisher(String, 'episode_mode', LATCHED)
        self.result_pub = self.create_publisher(EpisodeResult, 'episode_results', RESULTS)
        for topic in cfg.image_topics:
            self.create_subscription(Image, topic, lambda m, t=topic: self._record(t, m),
                                     SENSOR, callback_group=io)
        self.create_subscription(JointState, 'joint_states',
                                 lambda m: self._record('joint_states', m), SENSOR,
                                 callback_group=io)
        self.create_subscription(PoseStamped, 'ee_pose', lambda m: self._record('ee_pose', m),
                                 SENSOR, callback_group=io)
        self.create_subscription(Transition, 'transitions', self._on_transition, RELIABLE,
                                 callback_group=io)
        self.create_subscription(ProgressReward, 'progress', self._on_progress, RELIABLE,
                                 callback_group=io)
        self.create_subscription(Bool, 'operator/ready', self._on_ready, RELIABLE,
                                 callback_group=io)
        self.create_subscription(Bool, 'operator/stop', self._on_stop, RELIABLE,
                                 callback_group=io)
        for verdict in ('success', 'failure'):
            self.create_subscription(Bool, f'operator/{verdict}',
                                     lambda m, v=verdict: self._on_verdict(v, m), RELIABLE,
                                     callback_group=io)
        self.create_subscription(Bool, 'intervention/active', self._on_intervention, LATCHED,
                                 callback_group=io)
        self.create_subscription(HelpRequest, 'help_request', self._on_help, RELIABLE,
                                 callback_group=io)
        self.snapshot_client = self.create_client(GetSnapshot, cfg.snapshot_service,
                                                  callback_group=self._client_group) \
            if cfg.snapshot_service else None
        self.return_client = self.create_client(GetReturnPoint, cfg.return_point_service,
                                                 callback_group=self._client_group) \
            if cfg.return_point_service else None
        self.reset_client = self.create_client(ResetScene, cfg.reset_service,
                                               callback_group=self._client_group) \
            if cfg.reset_service else None
        policy = cfg.policy_node
        self.change_state = self.create_client(ChangeState, f'{policy}/change_state',
                                               callback_group=self._client_group)
        self.get_state = self.create_client(GetState, f'{policy}/get_state',
                                            callback_group=self._client_group)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Accept run_episode goals (the action server is made once, then kept)."""
        if self.server is None:  # rclpy cannot destroy an action server while spinning
            self.server = ActionServer(self, RunEpisode, 'run_episode', self._execute,
                                       goal_callback=self._on_goal,
                                       cancel_callback=self._on_cancel,
                                       callback_group=ReentrantCallbackGroup())
        self._active = True
        self.get_logger().info(f'ready: episodes recorded under {self.root}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Reject further goals; a running episode ends (as an operator stop would)."""
        self._end_episode()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the publishers, subscriptions and clients."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything."""
        self._end_episode()
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _end_episode(self) -> None:
        self._active = False
        deadline = time.monotonic() + self.config.service_timeout + self.config.rest_time
        while self._busy and time.monotonic() < deadline:
            self._stop.set()  # the episode ends, deactivates the policy and reports
            time.sleep(0.05)

    def _teardown(self) -> None:
        for subscription in list(self.subscriptions):  # all made by on_configure
            self.destroy_subscription(subscription)
        for client in list(self.clients):
            self.destroy_client(client)
        for name in ('task_pub', 'episode_pub', 'mode_pub', 'result_pub'):
            if getattr(self, name, None) is not None:
                self.destroy_publisher(getattr(self, name))
                setattr(self, name, None)

    # -- signals and recording ---------------------------------------------------------------
    def _record(self, topic: str, msg) -> None:
        with self._lock:
            if self._bag is not None:
                self._bag.write(self.resolve_topic_name(topic), stamp_ns(msg.header.stamp), msg)

    def _on_transition(self, msg: Transition) -> None:
        with self._lock:
            if self._episode is None or not self._episode.add_transition(msg):
                return
        self._record('transitions', msg)

    def _on_progress(self, msg: ProgressReward) -> None:
        with self._lock:
            status = self._status
            if msg.task == status.task and stamp_ns(msg.stamp_a) >= status.published_ns:
                status.critic_ready.set()
            if self._episode is None or not self._episode.add_score(msg):
                return
            self._status.progress = float(msg.value)
            self._status.done_probability = float(msg.done_probability)
            if msg.done:
                self._status.done.set()
        self._record('progress', msg)

    def _on_ready(self, msg: Bool) -> None:
        if msg.data:
            self._ready.set()

    def _on_stop(self, msg: Bool) -> None:
        if msg.data:
            self._stop.set()

    def _on_verdict(self, verdict: str, msg: Bool) -> None:
        if not msg.data:
            return
        with self._lock:
            if self._episode is None or self._status.verdict:
                return
            self._status.verdict = f'operator_{verdict}'
        self._verdict.set()

    def _on_intervention(self, msg: Bool) -> None:
        with self._lock:
            status = self._status
            if self._episode is not None and msg.data and not status.operator_active:
                status.takeovers += 1
            status.operator_active = bool(msg.data)
            if self._bag is not None:
                self._bag.write(self.resolve_topic_name('intervention/active'),
                                self.get_clock().now().nanoseconds, msg)

    def _on_help(self, msg: HelpRequest) -> None:
        with self._lock:
            if self._episode is None:
                return
            self._status.help_requests += 1
        self._record('help_request', msg)

    def _snapshot(self, bag: BagWriter) -> None:
        """Record the simulator's state now (best effort: a slow simulator skips one)."""
        if self.snapshot_client is None or not self.snapshot_client.service_is_ready():
            return
        future = self.snapshot_client.call_async(GetSnapshot.Request())
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(min(1.0, self.config.service_timeout)) or future.result() is None:
            return
        response = future.result()
        if response.success:
            with self._lock:
                if self._bag is bag:
                    bag.write(self.resolve_topic_name('sim/snapshot'),
                              self.get_clock().now().nanoseconds,
                              String(data=bytes(response.snapshot).decode()))

    def _return_point(self, goal: RunEpisode.Goal) -> bytes:
        """The start state of a return-and-explore episode (empty: the task's own reset)."""
        if len(goal.reset_state) or self.return_client is None:
            return bytes(goal.reset_state)
        if not self.return_client.wait_for_service(timeout_sec=1.0):
            self.get_logger().warning(f'no return point service {self.return_client.srv_name}:'
                                      " the task's own reset")
            return b''
        response = self._call(self.return_client, GetReturnPoint.Request(task=goal.task),
                              'return point')
        if not response.success:
            self.get_logger().warning(f'no return point for {goal.task!r} '
                                      f"({response.message}): the task's own reset")
            return b''
        self.get_logger().info(f'return point from episode {response.episode_id} '
                               f'({response.reason}, progress {response.progress:.2f})')
        return bytes(response.snapshot)

    # -- action server -----------------------------------------------------------------------
    def _on_goal(self, goal: RunEpisode.Goal) -> GoalResponse:
        with self._lock:
            if not self._active:
                self.get_logger().error('goal rejected: the runner is not active')
                return GoalResponse.REJECT
            if self._busy:
                self.get_logger().error('goal rejected: an episode is already running')
                return GoalResponse.REJECT
            self._busy = True
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _call(self, client, request, what: str):
        if not client.wait_for_service(timeout_sec=self.config.service_timeout):
            raise EpisodeAborted(f'{what}: service {client.srv_name} not available')
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(self.config.service_timeout) or future.result() is None:
            raise EpisodeAborted(f'{what}: no response from {client.srv_name}')
        return future.result()

    def _policy_transition(self, transition_id: int, label: str) -> None:
        result = self._call(self.change_state, ChangeState.Request(
            transition=LifecycleTransition(id=transition_id)), f'policy {label}')
        if not result.success:
            raise EpisodeAborted(f'policy node refused to {label}')

    def _activate_policy(self) -> None:
        state = self._call(self.get_state, GetState.Request(), 'policy state').current_state.id
        if state == State.PRIMARY_STATE_UNCONFIGURED:
            self._policy_transition(LifecycleTransition.TRANSITION_CONFIGURE, 'configure')
            state = State.PRIMARY_STATE_INACTIVE
        if state == State.PRIMARY_STATE_INACTIVE:
            self._policy_transition(LifecycleTransition.TRANSITION_ACTIVATE, 'activate')
        elif state != State.PRIMARY_STATE_ACTIVE:
            raise EpisodeAborted(f'policy node in lifecycle state {state}, cannot activate')

    def _deactivate_policy(self) -> None:
        try:
            state = self._call(self.get_state, GetState.Request(), 'policy state')
            if state.current_state.id == State.PRIMARY_STATE_ACTIVE:
                self._policy_transition(LifecycleTransition.TRANSITION_DEACTIVATE, 'deactivate')
        except EpisodeAborted as err:
            self.get_logger().error(f'could not deactivate the policy: {err}')

    def _wait_for_critic(self) -> None:
        """The critic scores every episode: do not start one before it publishes."""
        deadline = time.monotonic() + self.config.service_timeout
        while self.count_publishers(self.resolve_topic_name('progress')) == 0:
            if time.monotonic() > deadline:
                raise EpisodeAborted('no critic publishes on progress (is the reward node '
                                     'active?)')
            time.sleep(0.1)

    def _reset(self, goal: RunEpisode.Goal) -> str:
        """Reset the scene; return the instruction sentence."""
        if self.reset_client is None:
            self._ready.clear()
            self.get_logger().info('waiting for the operator: publish true on operator/ready')
            if not self._ready.wait(self.config.ready_timeout):
                raise EpisodeAborted('operator not ready within ready_timeout')
            return goal.task
        snapshot = self._return_point(goal) \
            if goal.mode == RunEpisode.Goal.MODE_RETURN_AND_EXPLORE else bytes(goal.reset_state)
        response = self._call(self.reset_client, ResetScene.Request(
            task=goal.task, seed=goal.seed, snapshot=snapshot), 'reset')
        if not response.success:
            raise EpisodeAborted(f'reset failed: {response.message}')
        return response.instruction or goal.task

    def _execute(self, goal_handle) -> RunEpisode.Result:
        goal = goal_handle.request
        cfg = self.config
        episode_id = f'{time.strftime("%Y%m%d-%H%M%S")}-{goal.seed}-{time.time_ns() % 10**6:06d}'
        limit = goal.max_duration if goal.max_duration > 0.0 else cfg.default_max_duration
        result = RunEpisode.Result(episode_id=episode_id)
        episode, status = Episode(episode_id), EpisodeStatus()
        reason = 'aborted'
        activated = False
        try:
            self._wait_for_critic()
            instruction = self._reset(goal)
            self._stop.clear()
            self._verdict.clear()
            bag = BagWriter(self.root / episode_id, {
                'robot_id': self.robot_id, 'episode_id': episode_id, 'task': goal.task,
                'instruction': instruction, 'mode': goal.mode, 'seed': goal.seed})
            with self._lock:
                status.operator_active = self._status.operator_active
                self._bag, self._episode, self._status = bag, episode, status
                status.task, status.published_ns = instruction, self.get_clock().now().nanoseconds
            self.mode_pub.publish(String(data=MODE_NAMES.get(goal.mode, 'autonomous')))
            self.episode_pub.publish(String(data=episode_id))
            self.task_pub.publish(String(data=instruction))
            # The critic scores the new episode (its first pair after the task): it and the
            # policy node (episode id sent before the task, same QoS) have both taken it.
            if not status.critic_ready.wait(cfg.service_timeout):
                raise EpisodeAborted('the critic did not start scoring the new task within '
                                     f'service_timeout {cfg.service_timeout} s')
            with self._lock:
                # The episode's bounds start here: scores of the reset are not its own.
                episode.start(self.get_clock().now().nanoseconds)
                bag.write(self.resolve_topic_name('task'), episode.start_ns,
                          String(data=instruction))
            self._activate_policy()  # it runs the operator's actions in a demonstration
            activated = True
            self.get_logger().info(f'episode {episode_id}: {instruction!r}, mode {goal.mode}, '
                                   f'limit {limit:.1f} s')
            started = last_snapshot = time.monotonic()
            self._snapshot(bag)
            reason = 'timeout'
            while time.monotonic() - started < limit:
                if status.done.wait(0.1):
                    reason = 'done'
                    break
                if self._stop.is_set():
                    reason = 'operator_stop'
                    break
                if self._verdict.is_set():
                    reason = status.verdict
                    break
                if time.monotonic() - last_snapshot >= cfg.snapshot_period:
                    last_snapshot = time.monotonic()
                    self._snapshot(bag)
                if goal_handle.is_cancel_requested:
                    reason = 'cancelled'
                    break
                with self._lock:
                    steps, progress = episode.steps, status.progress
                    done_p = status.done_probability
                goal_handle.publish_feedback(RunEpisode.Feedback(
                    step=steps, progress=progress, done_probability=done_p))
        except EpisodeAborted as err:
            self.get_logger().error(f'episode {episode_id} aborted: {err}')
            reason = f'aborted: {err}'
        finally:
            if activated:
                self._deactivate_policy()
            time.sleep(cfg.rest_time)
            result = self._finish(episode, status, reason, goal, result)
            with self._lock:
                self._busy = False
        if reason == 'cancelled':
            goal_handle.canceled()
        elif reason.startswith('aborted'):
            goal_handle.abort()
        else:
            goal_handle.succeed()
        return result

    def _finish(self, episode: Episode, status: EpisodeStatus, reason: str, goal,
                result) -> RunEpisode.Result:
        now = self.get_clock().now().nanoseconds
        with self._lock:
            if episode.start_ns is None:  # aborted before it started: empty bounds
                episode.start(now)
            episode.end(now)
            bag, self._bag, self._episode = self._bag, None, None
        message = episode_result(episode, self.robot_id, goal.task, goal.mode, reason, now,
                                 help_requests=status.help_requests,
                                 takeovers=status.takeovers)
        if bag is not None:
            bag.set_custom_data('success', str(message.success))
            bag.set_custom_data('termination_reason', reason)
            bag.write(self.resolve_topic_name('episode_results'), now, message)
            message.bag_path = str(bag.close())
        self.result_pub.publish(message)
        self.get_logger().info(
            f'episode {message.episode_id}: {reason}, {message.steps} steps, return '
            f'{message.episode_return:.3f}, {message.intervention_count} intervention steps, '
            f'{message.takeovers} takeovers, {message.help_requests} help requests'
            + (f', bag {message.bag_path}' if message.bag_path else ''))
        result.success, result.episode_return = message.success, message.episode_return
        result.steps, result.intervention_count = message.steps, message.intervention_count
        result.termination_reason, result.bag_path = reason, message.bag_path
        return result


def main(args: list[str] | None = None) -> None:
    """Console entry point: ``ros2 run rl_runner episode_runner``."""
    run_node(EpisodeRunner, args, lambda: ResponsiveExecutor(num_threads=4))


if __name__ == '__main__':
    main()
