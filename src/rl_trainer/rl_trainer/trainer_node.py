"""trainer_node: the off-board learner of the asynchronous loop over ROS 2.

Per robot namespace listed in ``robots`` it subscribes to ``<robot>/transitions``,
``<robot>/progress`` and ``<robot>/episode_results`` and publishes ``<robot>/policy_version``
(vlac_interfaces/PolicyVersion, latched). When an episode result arrives, the node waits
``settle_time``, then until the episode is complete (``vlac_models.episodes``: as many
transitions as the result counts and a score reaching the end of the bounds the runner gave
it) or ``max_wait`` has passed: the three topics come from
two processes, and after a restart their history may be replayed in any order and at different
times. It then hands the episode to the
``Learner`` (which writes it to disk before anything else), and a worker trains when enough
fresh transitions are pending: PPO update, checkpoint, new weights file, PolicyVersion.

Restart-safe: on start the learner resumes from its newest checkpoint; episodes stored but not
yet trained are trained, those in the checkpoint never again; the current version is
published again (latched) so robots that missed it catch up.

Lifecycle (``autostart`` true by default: it brings itself up; false: the lifecycle manager
does): configure reads the parameters, loads the learner and creates the version
publishers; activate subscribes to the robots, starts the training worker and publishes the
current version; deactivate stops both; cleanup frees the learner.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
import threading
import time

from builtin_interfaces.msg import Time
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from vlac_models.config import doc
from vlac_models.episodes import Episode
from vlac_models.stamps import stamp_seconds
from vlac_ros.executor import ResponsiveExecutor
from vlac_ros.lifecycle import autostart
from vlac_ros.params import declare_dataclass, read_dataclass
from vlac_ros.qos import LATCHED, PROGRESS, RESULTS, TRANSITIONS
from vlac_ros.spin import run_node

from rl_trainer.learner import Learner, LearnerConfig
from rl_trainer.ppo import PPOConfig
from rl_trainer.rewards import RewardOptions
from vlac_interfaces.msg import EpisodeResult, PolicyVersion, ProgressReward, Transition

PROGRESS_KEPT_S = 600.0  # progress messages kept per robot, seconds of stamps


@dataclass(frozen=True)
class TrainerNodeConfig:
    """Parameters of ``trainer_node``."""

    robots: tuple[str, ...] = field(default=('robot_1',), metadata=doc(
        'robot namespaces to learn from (transitions, progress, episode_results)'))
    settle_time: float = field(default=0.5, metadata=doc(
        'wait after an episode result for its last transitions and scores, s'))
    max_wait: float = field(default=30.0, metadata=doc(
        'longest wait after settle_time for an incomplete episode (missing transitions or '
        'scores) before storing what arrived, s'))
    tensorboard: bool = field(default=True, metadata=doc(
        'write TensorBoard scalars to <work_dir>/logs'))
    autostart: bool = field(default=True, metadata=doc(
        'configure and activate at start-up (false: a lifecycle manager brings it up)'))
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    rewards: RewardOptions = field(default_factory=RewardOptions)

    def validate(self) -> 'TrainerNodeConfig':
        """Raise ValueError naming the bad value; return self."""
        if not self.robots or not all(self.robots):
            raise ValueError('robots must list at least one robot namespace')
        if not 0.0 <= self.settle_time <= 60.0:
            raise ValueError(f'settle_time {self.settle_time} s outside 0..60')
        if not 0.0 <= self.max_wait <= 600.0:
            raise ValueError(f'max_wait {self.max_wait} s outside 0..600')
        self.learner.validate()
        self.ppo.validate()
        self.rewards.validate()
        return self





class TrainerNode(LifecycleNode):
    """Collects episodes from robots, trains, ships new policy versions."""

    def __init__(self, **kwargs) -> None:
        super().__init__('trainer_node', **kwargs)
        # Validated here as well: a bad value still ends the process at start (status 2).
        self.config = declare_dataclass(self, TrainerNodeConfig)
        self.learner: Learner | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._inbox = MutuallyExclusiveCallbackGroup()
        self.version_pubs = {}
        autostart(self)

    # -- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters, load the learner (newest checkpoint), create the publishers."""
        try:
            self.config = cfg = read_dataclass(self, TrainerNodeConfig)
            writer = None
            if cfg.tensorboard:
                import pathlib

                from torch.utils.tensorboard import SummaryWriter
                writer = SummaryWriter(str(pathlib.Path(cfg.learner.work_dir).expanduser()
                                           / 'logs' / 'tensorboard'))
            self.learner = Learner(cfg.learner, cfg.ppo, cfg.rewards, writer)
        except (ValueError, OSError, RuntimeError) as err:
            self.get_logger().error(f'configure failed, staying unconfigured: {err}')
            return TransitionCallbackReturn.FAILURE
        self._transitions: dict[tuple[str, str], dict[int, Transition]] = \
            collections.defaultdict(dict)  # (robot, episode id) -> step -> transition
        self._progress: dict[str, collections.deque] = {
            r: collections.deque() for r in cfg.robots}
        self._results: list[tuple[float, str, EpisodeResult]] = []
        self.version_pubs = {robot: self.create_publisher(
            PolicyVersion, f'/{robot.strip("/")}/policy_version', LATCHED)
            for robot in cfg.robots}
        self.get_logger().info(
            f'learning from {list(cfg.robots)}: policy {cfg.learner.backend} version '
            f'{self.learner.version}, {len(self.learner.pending())} stored episodes pending, '
            f'weights in {self.learner.weights_dir}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the robots, start the worker, publish the current version again."""
        cfg, inbox = self.config, self._inbox
        for robot in cfg.robots:
            ns = '/' + robot.strip('/')
            self.create_subscription(Transition, f'{ns}/transitions',
                                     lambda m, r=robot: self._on_transition(r, m), TRANSITIONS,
                                     callback_group=inbox)
            self.create_subscription(ProgressReward, f'{ns}/progress',
                                     lambda m, r=robot: self._on_progress(r, m), PROGRESS,
                                     callback_group=inbox)
            self.create_subscription(EpisodeResult, f'{ns}/episode_results',
                                     lambda m, r=robot: self._on_result(r, m), RESULTS,
                                     callback_group=inbox)
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name='trainer', daemon=True)
        self._worker.start()
        if self.learner.version > 0:
            path, digest = self.learner.publish_weights()
            self._publish_version(path, digest)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop listening and stop the worker (after the update it may be running)."""
        self._stop_worker()
        for subscription in list(self.subscriptions):  # all made by on_activate
            self.destroy_subscription(subscription)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the publishers and free the learner (episodes stay on disk)."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything."""
        self._stop_worker()
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None

    def _teardown(self) -> None:
        for publisher in self.version_pubs.values():
            self.destroy_publisher(publisher)
        self.version_pubs = {}
        if self.learner is not None and self.learner.writer is not None:
            self.learner.writer.close()
        self.learner = None

    # -- inbox -----------------------------------------------------------------------------
    def _on_transition(self, robot: str, msg: Transition) -> None:
        with self._lock:
            self._transitions[(robot, msg.episode_id)][msg.step] = msg

    def _on_progress(self, robot: str, msg: ProgressReward) -> None:
        with self._lock:
            queue = self._progress[robot]
            queue.append(msg)
            newest = stamp_seconds(msg.stamp_b)
            while queue and newest - stamp_seconds(queue[0].stamp_b) > PROGRESS_KEPT_S:
                queue.popleft()

    def _on_result(self, robot: str, msg: EpisodeResult) -> None:
        with self._lock:
            self._results.append((time.monotonic() + self.config.settle_time, robot, msg))
        self._wake.set()

    # -- worker ----------------------------------------------------------------------------
    def _assemble(self, robot: str, result: EpisodeResult) -> Episode:
        """The episode as the runner bounded it (``vlac_models.episodes``), from the inbox."""
        episode = Episode.from_result(result)
        for msg in self._transitions.get((robot, result.episode_id), {}).values():
            episode.add_transition(msg)
        for msg in self._progress[robot]:
            episode.add_score(msg)
        return episode

    def _due_episodes(self) -> list:
        now = time.monotonic()
        with self._lock:
            due, waiting = [], []
            for item in self._results:
                ready_at, robot, result = item
                if now < ready_at:
                    waiting.append(item)
                elif self.learner.is_stored(robot, result.episode_id) or \
                        self._assemble(robot, result).complete(result.steps) or \
                        now >= ready_at + self.config.max_wait:
                    due.append(item)
                else:
                    waiting.append(item)
            self._results = waiting
            episodes = []
            for _, robot, result in due:
                episode = self._assemble(robot, result)
                self._transitions.pop((robot, result.episode_id), None)
                episodes.append((robot, result, episode.ordered_transitions(), episode.scores))
        return episodes

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                self._ingest_and_train()
            except Exception as err:  # noqa: BLE001 - the worker must survive and say why
                self.get_logger().error(f'trainer worker error: {type(err).__name__}: {err}')
                time.sleep(1.0)

    def _ingest_and_train(self) -> None:
        for robot, result, transitions, progress in self._due_episodes():
            if self.learner.is_stored(robot, result.episode_id):
                self.get_logger().info(
                    f'episode {robot}/{result.episode_id} already stored; ignored')
                continue
            if len(transitions) < result.steps:
                self.get_logger().warning(
                    f'episode {robot}/{result.episode_id}: {len(transitions)} of '
                    f'{result.steps} transitions arrived within max_wait')
            if not transitions:
                self.get_logger().warning(f'episode {robot}/{result.episode_id} has no '
                                          'transitions; stored nothing')
                continue
            key, created = self.learner.ingest(robot, result.episode_id, transitions,
                                               progress, result)
            self.get_logger().info(
                f'episode {key} stored ({len(transitions)} transitions, {len(progress)} '
                f'scores, {result.termination_reason})' if created else
                f'episode {key} already stored; ignored')
        stats = self.learner.train_if_ready()
        for key, reason in self.learner.last_rejected.items():
            self.get_logger().error(f'episode {key} set aside, not trained: {reason}')
        self.learner.last_rejected = {}
        if stats is None:
            return
        if stats.get('skipped'):
            self.get_logger().error(f'update skipped, weights unchanged: {stats.get("error")}')
            return
        self.get_logger().info(self.learner.summary(stats))
        self._publish_version(stats['artifact'], stats['sha256'])

    def _publish_version(self, path, digest: str) -> None:
        now = self.get_clock().now().to_msg()
        msg = PolicyVersion(version=self.learner.version, artifact_uri=f'file://{path}',
                            sha256=digest, created=Time(sec=now.sec, nanosec=now.nanosec),
                            backend=self.config.learner.backend)
        for publisher in self.version_pubs.values():
            publisher.publish(msg)
        self.get_logger().info(f'published policy version {msg.version}: {path}')

    def destroy_node(self) -> None:
        """Stop the worker before the node goes."""
        self._stop_worker()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Console entry point: ``ros2 run rl_trainer trainer_node``."""
    run_node(TrainerNode, args, lambda: ResponsiveExecutor(num_threads=3))


if __name__ == '__main__':
    main()
