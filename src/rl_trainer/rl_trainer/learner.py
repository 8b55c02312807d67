"""The learner of the asynchronous loop: episodes in, new policy versions out (no node).

It spins nothing and creates no node, so the trainer node and the offline command share it;
it does use ROS data formats: messages (rclpy or bag messages alike), rosbag2 files through
``vlac_ros.bags`` and image decoding through ``vlac_ros.images``.

``Learner`` owns the policy being trained, the PPO trainer, the episode store and the
checkpoints. The trainer node (or the offline command) hands it finished episodes; it
persists each one before anything else (``EpisodeStore``), trains when enough fresh
transitions are pending, checkpoints (weights + optimiser + trainer state, atomically) and
then writes the new weights as ``<weights_dir>/policy_v<version>.safetensors`` for the robots.

Rewards: every transition t spans observation t -> observation t+1 (the episode's end stamp
closes the last one); ``rewards.assign_rewards`` joins the critic's ProgressReward messages to
those spans by stamps (see rl_trainer.rewards). The episode is terminal (done) when the critic
declared done, otherwise truncated (timeout or operator stop).

Transitions produced by the operator (``is_intervention``) and whole demonstration episodes
feed the behaviour-cloning term (the paper's offline demonstration replay); the others feed
PPO. Episodes whose acting policy is more than ``max_staleness`` versions old are handled as
``PPOConfig.staleness`` says (rejected transitions or importance-corrected).
"""

from __future__ import annotations

import collections
import csv
from dataclasses import dataclass, field
import logging
import math
import os
import pathlib
import time
from typing import Any, Sequence

import numpy as np
from vlac_models.config import doc
from vlac_models.policy.base import PolicyObservation, load_policy
from vlac_models.stamps import stamp_ns
from vlac_models.state import state_from_pose
from vlac_ros.bags import bag_metadata, read_messages
from vlac_ros.images import ImageEncodingError, image_to_rgb

from rl_trainer.ppo import DemoBatch, PPOConfig, PPOTrainer, RolloutBatch
from rl_trainer.rewards import ProgressRecord, RewardJoinError, RewardOptions, assign_rewards
from rl_trainer.storage import (
    DEMONSTRATION_MODE,
    TRANSITIONS_TOPIC,
    CheckpointManager,
    EpisodeStore,
    StoredEpisode,
    TrainerState,
    episode_key,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnerConfig:
    """Where the learner keeps its files and when it trains."""

    backend: str = field(default='compact', metadata=doc("policy backend: 'compact' or 'vlac'"))
    model_path: str = field(default='', metadata=doc(
        'initial policy model directory (the architecture; weights of version 0)'))
    device: str = field(default='cpu', metadata=doc("'cpu' or 'cuda'"))
    work_dir: str = field(default='trainer', metadata=doc(
        'root of episodes/, checkpoints/, weights/ and logs/ (unless set below)'))
    weights_dir: str = field(default='', metadata=doc(
        'where new policy versions are written for the robots; empty: <work_dir>/weights'))
    min_transitions: int = field(default=64, metadata=doc(
        'pending PPO transitions needed before an update'))
    keep_checkpoints: int = field(default=3, metadata=doc('checkpoints kept (newest)'))
    keep_weights: int = field(default=5, metadata=doc('published weight files kept (newest)'))
    demo_buffer: int = field(default=4096, metadata=doc(
        'demonstration and intervention transitions kept for the behaviour-cloning term of '
        "every update (newest kept; the paper's offline demonstration replay); 0: only "
        'those of the episodes being trained'))

    def validate(self) -> 'LearnerConfig':
        """Raise ValueError naming the bad value; return self."""
        if self.backend not in ('compact', 'vlac'):
            raise ValueError(f"backend {self.backend!r} must be 'compact' or 'vlac'")
        if not self.model_path:
            raise ValueError('model_path is empty: set it to the initial policy directory')
        if not self.work_dir:
            raise ValueError('work_dir is empty')
        if self.min_transitions < 1:
            raise ValueError(f'min_transitions {self.min_transitions} must be >= 1')
        if self.demo_buffer < 0:
            raise ValueError(f'demo_buffer {self.demo_buffer} must be >= 0')
        if self.keep_checkpoints < 1 or self.keep_weights < 1:
            raise ValueError('keep_checkpoints and keep_weights must be >= 1')
        return self


def observation_from_msg(observation: Any, task: str) -> PolicyObservation:
    """The PolicyObservation of a vlac_interfaces/Observation (rclpy or rosbags message)."""
    images = []
    for image in observation.images:
        try:
            images.append(image_to_rgb(image))
        except ImageEncodingError as err:
            raise ValueError(f'stored observation image: {err}') from err
    if not images:
        raise ValueError('the observation carries no inline images (image_refs are resolved '
                         'from the episode recording, which the trainer does not have)')
    try:
        state = state_from_pose(observation.ee_pose.pose, observation.gripper)
    except ValueError as err:
        raise ValueError(f'stored observation: {err}') from err
    return PolicyObservation(images, state, task)





@dataclass
class EpisodeBatches:
    """One episode turned into training data."""

    rollout: RolloutBatch | None
    demo: DemoBatch | None
    info: dict


def episode_batches(episode: StoredEpisode, options: RewardOptions, task: str = ''
                    ) -> EpisodeBatches:
    """Rewards, terminal flags and observations of a stored episode.

    Raises RewardJoinError or ValueError when the episode cannot be used.
    """
    transitions = episode.transitions
    if not transitions:
        raise ValueError('episode without transitions')
    result = episode.result
    task = task or (result.task if result is not None else '') or ''
    progress_task = next((m.task for m in episode.progress if m.task), '')
    sentence = progress_task or task
    observations = [observation_from_msg(t.observation, sentence) for t in transitions]
    stamps = [stamp_ns(t.observation_stamp) for t in transitions]
    end = stamp_ns(result.end_time) if result is not None else None
    if end is None or end <= stamps[-1]:
        end = stamps[-1] + (stamps[-1] - stamps[0]) // max(1, len(stamps) - 1)
    success = bool(result.success) if result is not None else None
    assignment = assign_rewards(stamps, [ProgressRecord.from_msg(m) for m in episode.progress],
                                options, end_stamp_ns=end, success=success,
                                task=progress_task or None)
    demonstration = result is not None and int(result.mode) == DEMONSTRATION_MODE
    tokens = [np.asarray(t.action_tokens, dtype=np.int64) for t in transitions]
    interventions = np.array([bool(t.is_intervention) for t in transitions])
    demo_index = np.arange(len(transitions)) if demonstration else np.flatnonzero(interventions)
    demo = DemoBatch([observations[i] for i in demo_index], [tokens[i] for i in demo_index]) \
        if len(demo_index) else None
    rollout = None
    if not demonstration:
        terminal = bool(assignment.success)
        dones = np.zeros(len(transitions), bool)
        truncated = np.zeros(len(transitions), bool)
        dones[-1], truncated[-1] = terminal, not terminal
        rollout = RolloutBatch(
            observations=observations, tokens=tokens, rewards=assignment.rewards, dones=dones,
            truncated=truncated, log_probs=[float(t.log_prob) for t in transitions],
            values=[float(t.value) for t in transitions],
            policy_versions=[int(t.policy_version) for t in transitions],
            is_intervention=interventions)
    info = {'return': float(np.sum(assignment.rewards)), 'length': len(transitions),
            'success': bool(success), 'interventions': int(interventions.sum()),
            'policy_version': int(max(t.policy_version for t in transitions)),
            'demonstration': demonstration,
            'help_requests': int(getattr(result, 'help_requests', 0)) if result else 0,
            'takeovers': int(getattr(result, 'takeovers', 0)) if result else 0,
            'reward_mean': float(np.mean(assignment.rewards)),
            'reward_std': float(np.std(assignment.rewards))}
    return EpisodeBatches(rollout, demo, info)


def read_episode_bag(path: os.PathLike) -> StoredEpisode:
    """An episode from any bag folder holding Transition/ProgressReward/EpisodeResult messages.

    Works for the trainer's store and for the episode runner's recordings (by message type).
    """
    path = pathlib.Path(path)
    transitions, progress, result = [], [], None
    for _, _, msg in read_messages(path):
        kind = type(msg).__name__
        if kind.endswith('Transition') and hasattr(msg, 'action_tokens'):
            transitions.append(msg)
        elif kind.endswith('ProgressReward'):
            progress.append(msg)
        elif kind.endswith('EpisodeResult'):
            result = msg
    transitions.sort(key=lambda m: int(m.step))
    return StoredEpisode(path.name, path, 0, transitions, progress, result)


ROBOT_COLUMNS = ('episodes', 'transitions', 'return_mean', 'success_rate', 'intervention_rate',
                 'demonstrations', 'takeovers', 'help_requests')
"""Per-robot statistics of an update (``logs/robots.csv``, TensorBoard ``robots/<id>/``)."""


class Learner:
    """Persist episodes, train on fresh ones, checkpoint, publish weights (see module doc)."""

    def __init__(self, config: LearnerConfig, ppo: PPOConfig, rewards: RewardOptions,
                 writer: Any = None) -> None:
        self.config = config.validate()
        self.ppo_config = ppo.validate()
        self.reward_options = rewards.validate()
        root = pathlib.Path(config.work_dir).expanduser().resolve()
        self.store = EpisodeStore(root / 'episodes')
        self.checkpoints = CheckpointManager(root / 'checkpoints', config.keep_checkpoints)
        self.weights_dir = pathlib.Path(config.weights_dir or root / 'weights').resolve()
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = root / 'logs'
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.policy = load_policy(config.backend, config.model_path, config.device)
        self.trainer = PPOTrainer(self.policy, ppo)
        self.state = TrainerState(seed=ppo.seed)
        self.writer = writer
        self.samples_per_second = 0.0
        self.last_rejected: dict[str, str] = {}
        self._replay: collections.deque = collections.deque(maxlen=max(1, config.demo_buffer))
        self._replay_loaded = config.demo_buffer == 0
        latest = self.checkpoints.latest()
        if latest is not None:
            self.state = self.checkpoints.restore(latest, self.policy, self.trainer.optimizer)
            self.trainer.load_state_dict(self.state.trainer_dict())
            LOG.info('resumed from %s: version %d, %d episodes consumed', latest.path,
                     self.state.policy_version, len(self.state.consumed_episodes))

    @property
    def version(self) -> int:
        """Version of the current weights."""
        return self.trainer.policy_version

    # -- data ------------------------------------------------------------------------------
    def ingest(self, robot_id: str, episode_id: str, transitions: Sequence,
               progress: Sequence = (), result: Any = None) -> tuple[str, bool]:
        """Persist one received episode (before anything else); return (key, created)."""
        key, created = self.store.save(robot_id, episode_id, transitions, progress, result)
        if created and result is not None:
            self._scalar_episode(result)
        return key, created

    def is_stored(self, robot_id: str, episode_id: str) -> bool:
        """Whether the episode is already on disk (a re-sent episode is not stored again)."""
        return self.store.path_of(episode_key(robot_id, episode_id)).exists()

    def _scalar_episode(self, result: Any) -> None:
        if self.writer is None:
            return
        n = len(self.store.keys())
        self.writer.add_scalar('episode/return', float(result.episode_return), n)
        self.writer.add_scalar('episode/success', float(result.success), n)
        self.writer.add_scalar('episode/length', float(result.steps), n)
        self.writer.add_scalar('episode/intervention_rate',
                               float(result.intervention_count) / max(1, result.steps), n)
        self.writer.add_scalar('episode/help_requests', float(result.help_requests), n)
        self.writer.add_scalar('episode/takeovers', float(result.takeovers), n)
        self.writer.add_scalar('episode/demonstration',
                               float(int(result.mode) == DEMONSTRATION_MODE), n)

    def pending(self) -> list[str]:
        """Stored episodes not trained on yet (oldest first)."""
        return self.store.pending(self.state)

    def pending_transitions(self) -> int:
        """Number of transitions in the pending episodes (reads their metadata only)."""
        total = 0
        for key in self.pending():
            topics = bag_metadata(self.store.path_of(key))['topics']
            total += topics.get(TRANSITIONS_TOPIC, ('', 0))[1]
        return total

    # -- training --------------------------------------------------------------------------
    def train_if_ready(self, force: bool = False) -> dict | None:
        """One update when enough pending transitions exist (or ``force``); its stats."""
        keys = self.pending()
        if not keys or (not force and self.pending_transitions() < self.config.min_transitions):
            return None
        started = time.perf_counter()
        self.last_rejected = {}
        rollouts, demos, infos, used = [], [], [], []
        for key in keys:
            try:
                batches = episode_batches(self.store.load(key), self.reward_options)
            except (RewardJoinError, ValueError) as err:
                self.state.rejected_episodes[key] = self.last_rejected[key] = str(err)
                LOG.error('episode %s set aside: %s', key, err)
                continue
            used.append(key)
            infos.append(batches.info)
            if batches.rollout is not None:
                rollouts.append(batches.rollout)
            if batches.demo is not None:
                demos.append(batches.demo)
        if not used:
            return None
        rollout = RolloutBatch.concatenate(rollouts) if rollouts else None
        demo = self._demonstrations(demos)
        stats = self.trainer.update(rollout, demo)
        seconds = time.perf_counter() - started
        samples = (len(rollout) if rollout else 0) + (len(demo) if demo else 0)
        self.samples_per_second = samples / max(seconds, 1e-9)
        if stats.get('skipped'):
            LOG.error('update skipped, weights unchanged: %s', stats.get('error'))
            for key in used:  # the data broke the update: never retry it blindly
                self.state.rejected_episodes[key] = f'update skipped: {stats.get("error")}'
            self._save_checkpoint()
            return stats
        self.state.consumed_episodes.update(used)
        artifact = self._save_checkpoint()
        stats.update({
            'train/episodes': len(used), 'train/samples': samples,
            'train/bc_samples': len(demo) if demo else 0,
            'train/demonstrations': int(sum(i['demonstration'] for i in infos)),
            'train/samples_per_second': self.samples_per_second, 'train/seconds': seconds,
            'episode/return_mean': float(np.mean([i['return'] for i in infos])),
            'episode/success_rate': float(np.mean([i['success'] for i in infos])),
            'episode/length_mean': float(np.mean([i['length'] for i in infos])),
            'episode/intervention_rate': float(np.sum([i['interventions'] for i in infos])
                                               / max(1, sum(i['length'] for i in infos))),
            'episode/help_requests_mean': float(np.mean([i['help_requests'] for i in infos])),
            'episode/takeovers_mean': float(np.mean([i['takeovers'] for i in infos])),
            'rewards/mean': float(np.mean([i['reward_mean'] for i in infos])),
            'rewards/std': float(np.mean([i['reward_std'] for i in infos])),
            'data/staleness_mean': float(np.mean([self.version - 1 - i['policy_version']
                                                  for i in infos])),
            'policy_version': self.version, 'artifact': str(artifact[0]),
            'sha256': artifact[1]})
        robots = self._robot_stats(used, infos)
        stats['train/robots'] = len(robots)
        self._log(stats)
        self._log_robots(robots)
        return stats

    @staticmethod
    def _robot_stats(keys: list[str], infos: list[dict]) -> dict[str, dict]:
        """Per robot of an update: episodes, transitions, return, success, interventions."""
        robots: dict[str, list[dict]] = collections.defaultdict(list)
        for key, info in zip(keys, infos, strict=True):
            robots[key.split('/', 1)[0]].append(info)
        return {robot: {
            'episodes': len(items),
            'transitions': sum(i['length'] for i in items),
            'return_mean': float(np.mean([i['return'] for i in items])),
            'success_rate': float(np.mean([i['success'] for i in items])),
            'intervention_rate': float(sum(i['interventions'] for i in items)
                                       / max(1, sum(i['length'] for i in items))),
            'demonstrations': int(sum(i['demonstration'] for i in items)),
            'takeovers': int(sum(i['takeovers'] for i in items)),
            'help_requests': int(sum(i['help_requests'] for i in items))}
            for robot, items in sorted(robots.items())}

    def _log_robots(self, robots: dict[str, dict]) -> None:
        """TensorBoard ``robots/<id>/*`` and ``logs/robots.csv`` (one row per robot and update)."""
        if self.writer is not None:
            for robot, values in robots.items():
                for key, value in values.items():
                    self.writer.add_scalar(f'robots/{robot}/{key}', value, self.version)
            self.writer.flush()
        path = self.log_dir / 'robots.csv'
        new = not path.exists()
        with path.open('a', newline='') as handle:
            out = csv.writer(handle)
            if new:
                out.writerow(['time', 'policy_version', 'robot', *ROBOT_COLUMNS])
            for robot, values in robots.items():
                out.writerow([f'{time.time():.3f}', self.version, robot,
                              *(values[k] for k in ROBOT_COLUMNS)])

    def _demonstrations(self, fresh: list[DemoBatch]) -> DemoBatch | None:
        """The BC batch: the replay buffer (older demonstrations) plus the fresh ones.

        On the first update after a start the buffer is refilled from the stored episodes
        already trained on, so a restart replays what it replayed before.
        """
        if self.config.demo_buffer == 0:
            if not fresh:
                return None
            return DemoBatch([o for d in fresh for o in d.observations],
                             [t for d in fresh for t in d.tokens])
        if not self._replay_loaded:
            self._replay_loaded = True
            for key in self.store.keys():
                if key not in self.state.consumed_episodes or not self.store.demo_steps(key):
                    continue
                try:
                    old = episode_batches(self.store.load(key), self.reward_options).demo
                except (RewardJoinError, ValueError) as err:
                    LOG.warning('stored episode %s not replayed: %s', key, err)
                    continue
                if old is not None:
                    self._replay.extend(zip(old.observations, old.tokens, strict=True))
        for batch in fresh:
            self._replay.extend(zip(batch.observations, batch.tokens, strict=True))
        if not self._replay:
            return None
        return DemoBatch([o for o, _ in self._replay], [t for _, t in self._replay])

    def _save_checkpoint(self) -> tuple[pathlib.Path, str]:
        """Checkpoint first, then the published weights (versions stay monotonic)."""
        trainer_state = self.trainer.state_dict()
        self.state.update_count = trainer_state.get('update_count', self.state.update_count)
        self.state.policy_version = self.version
        self.state.value_warmed_up = bool(trainer_state.get('value_warmed_up', False))
        self.state.rng = trainer_state.get('rng', self.state.rng)
        self.checkpoints.save(self.policy, self.trainer.optimizer, self.state)
        return self.publish_weights()

    def publish_weights(self) -> tuple[pathlib.Path, str]:
        """Write the current weights for the robots; return (path, sha256)."""
        path = self.weights_dir / f'policy_v{self.version:06d}.safetensors'
        digest = self.policy.save_weights(path)
        old = sorted(self.weights_dir.glob('policy_v*.safetensors'))[:-self.config.keep_weights]
        for stale in old:
            stale.unlink(missing_ok=True)
        return path, digest

    def _log(self, stats: dict) -> None:
        numeric = {k: float(v) for k, v in stats.items()
                   if isinstance(v, (int, float, bool, np.floating)) and math.isfinite(float(v))}
        if self.writer is not None:
            for key, value in numeric.items():
                self.writer.add_scalar(key, value, self.version)
            self.writer.flush()
        path = self.log_dir / 'updates.csv'
        new = not path.exists()
        with path.open('a', newline='') as handle:
            out = csv.writer(handle)
            if new:
                out.writerow(['time', *sorted(numeric)])
                self._csv_keys = sorted(numeric)
            keys = getattr(self, '_csv_keys', None) or sorted(numeric)
            out.writerow([f'{time.time():.3f}', *(numeric.get(k, '') for k in keys)])

    def summary(self, stats: dict) -> str:
        """One concise line per update."""
        def get(key: str) -> float:
            return float(stats.get(key, float('nan')))

        return (f'update {self.state.update_count} -> v{self.version}: '
                f'{int(get("train/episodes"))} episodes, {int(get("train/samples"))} samples '
                f'({int(stats.get("train/bc_samples", 0))} behaviour-cloning), return '
                f'{get("episode/return_mean"):.3f}, success '
                f'{get("episode/success_rate"):.2f}, policy loss '
                f'{get("losses/policy_loss"):.4f}, value loss {get("losses/value_loss"):.4f}, '
                f'entropy {get("losses/entropy"):.3f}, kl {get("losses/approx_kl"):.4f}, '
                f'clip {get("losses/clipfrac"):.2f}, {get("train/samples_per_second"):.0f} '
                'samples/s')
