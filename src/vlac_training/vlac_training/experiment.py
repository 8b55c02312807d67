"""Learning-curve experiments: the VLAC loop on simulated arms in lock-step, hundreds of episodes.

  vlac_experiment config/experiments/press_button.yaml [--jobs 2] [--only none/progress]

An experiment file (``ExperimentFile``) names the task(s), how many expert demonstrations the
starting policy is behaviour-cloned from, the runs (human-in-the-loop variant x reward), the
seeds, the training-episode budget and the evaluation protocol. The command records the
demonstrations, trains the compact critic and the starting policies (once; reused), then runs
every (task, variant, reward, seed) and appends one row per evaluation point to the run's
``eval.csv``. Interrupted, it resumes: a run continues from the trainer's newest checkpoint
and its stored episodes (an episode cut short by the interruption is run again), and
evaluation points already written are not run again.

Shared with the live loop (``sim_loop`` / ``ros2 launch``), called here exactly as the nodes
call them; only the transport differs (function calls in one process instead of DDS topics):

- ``vlac_policy_node`` tick -> ``vlac_policy_node.step``: ``pose_arm_state``, ``decide``
  (policy ``act``, checks, ``limit_action``, the servo and gripper adapters), ``delta_msg``,
  ``transition_msg``;
- ``sim_node`` -> ``vlac_sim``: ``PandaScene``, ``ArmController``, ``reset_scene``,
  ``ros_msgs`` (image, joint state and pose messages), ``commands.apply_twist`` and
  ``apply_gripper``;
- ``vlac_reward_node`` -> ``ProgressTracker`` (stride, value, done debounce),
  ``score_frame`` (critic ``score_pairs``/``done_probability``), ``progress_msg``;
- ``episode_runner`` -> ``vlac_models.episodes.Episode`` (bounds, what belongs to the
  episode), ``rl_runner.results.episode_result`` (success = the critic's done, acted return);
- ``trainer_node`` -> ``rl_trainer.learner.Learner``: ``ingest`` (the episode store),
  ``train_if_ready`` (the reward join of ``rl_trainer.rewards``, ``PPOTrainer.update``,
  checkpoint, weights file + sha256);
- the policy node's hot swap -> ``weights_path`` + ``Policy.load_weights(path, sha256)``;
- the human in the loop -> ``vlac_sim.operator.SimulatedOperator`` (the scripted expert at the
  shipped Xbox pad's sticks, as ``sim_operator`` publishes them), ``hitl_teleop.core
  .TakeoverMachine`` (``teleop_node``), ``hitl_teleop.help.HelpDetector`` on the critic's
  values (``teleop_node``), ``vlac_policy_node.step.decide_operator`` (the policy node during
  an intervention), the runner's snapshots + ``hitl_teleop.return_points.pick_points`` and
  ``ReturnPointStore`` (``return_point_server``) and ``ros_msgs.restore_snapshot``
  (``sim_node``'s reset to a snapshot).

The node parameters come from the files the live loop uses: ``config/arms/sim_panda_servo.yaml``
(policy node) and ``config/loop.yaml`` (reward node, trainer), with the experiment's
overrides on top.

What differs from the live loop, on purpose:

- Time is simulated and stepped in lock-step: each control period the camera renders, the
  critic scores the frame when its stride is due, then the policy acts on the same frame, then
  physics advances one period. Live, the three run concurrently and the critic's frames are
  not the policy's; its done may end an episode up to one period later.
- Training is synchronous: the trainer updates between episodes and the next episode acts
  with the newest version. Live, an episode may start on the previous version while the update
  runs (PPO's staleness handling covers it).
- The ``ground_truth`` reward (an upper bound, not available on a real arm) replaces the
  critic's score by the simulator's task progress: delta = progress(b) - progress(a), done =
  the success condition, through the same tracker, messages, join and trainer.
- Evaluation episodes (fixed seeds no training episode uses) are not stored or trained on;
  they end when the task's success condition has held 0.5 s, or at the time limit, and count
  the simulator's success, never the critic's.

Human-in-the-loop variants (the paper's protocol), each through the path above:

- ``none``: autonomous episodes only;
- ``demo_replay``: before training, ``demos`` demonstration-mode episodes driven by the
  simulated operator (stored as demonstrations, replayed by the trainer's behaviour-cloning
  term in every update), then autonomous episodes;
- ``return_and_explore``: every second training episode starts from the next return point
  (a snapshot recorded every ``SNAPSHOT_PERIOD`` of an earlier training episode where the
  critic's progress stalled or regressed; config/teleop/help.yaml), the others from the
  task's own reset;
- ``human_guided``: the policy acts and the simulated operator takes over when the robot asks
  for help (the help detector on the critic's progress), for at most ``guide_time``; the
  taken-over steps are interventions (behaviour cloning, not the policy gradient).

Differences: the live teleop node sends one zero action when the operator gives back and the
policy node may execute it for one period; here the policy acts on that step.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
import json
import os
import pathlib
import re
import sys
import time
from typing import Annotated, Any, Callable

import numpy as np

from vlac_training.cli import Positional

REWARDS = ('progress', 'success', 'progress+success', 'ground_truth')
VARIANTS = ('none', 'demo_replay', 'return_and_explore', 'human_guided')
NOT_YET_RUN: tuple[str, ...] = ()
"""Variants listed in experiment files but not run (none since the simulated operator)."""
SNAPSHOT_PERIOD = 0.5  # s between snapshots (the runner's snapshot_period default)
OPERATOR_DEVICE = 'xbox'  # the simulated operator's pad (sim_loop's default)
MODES = {'autonomous': 0, 'return_and_explore': 1, 'human_guided': 2, 'demonstration': 3}
"""RunEpisode modes by episode_mode name (vlac_interfaces/action/RunEpisode)."""
ROBOT_ID = 'sim_1'
SETTLE = 0.5  # s the success condition holds to end an evaluation episode
SIM_DT = 0.05  # s, physics and controller step (the recorder's and sim_node's)
EVAL_COLUMNS = ('episodes', 'success_rate', 'greedy_success_rate', 'mean_max_progress',
                'policy_version', 'train_success_rate', 'wall_s')
CURVE_COLUMNS = ('task', 'variant', 'reward', 'seed', 'episodes', 'success_rate')


# ============================================================================ configuration
@dataclass(frozen=True)
class Evaluation:
    """When and how the policy is evaluated (seeds apart from every training episode)."""

    every: int = 25
    """training episodes between evaluation points (and one before any training)"""
    episodes: int = 16
    """evaluation episodes per point, seeds ``first_seed`` .. ``first_seed + episodes - 1``"""
    first_seed: int = 100_000
    """first evaluation reset seed"""
    greedy: bool = True
    """also evaluate the most likely actions before training and at the end of the budget
    (the curve itself uses sampled actions, as during RL)"""


@dataclass(frozen=True)
class RunSpec:
    """One learning curve: a human-in-the-loop variant and a reward (and optional overrides)."""

    variant: str = 'none'
    reward: str = 'progress'
    label: str = ''
    """names a run with its own trainer overrides (e.g. 'lr3e-5')"""
    trainer: dict = field(default_factory=dict)
    """trainer_node parameter overrides of this run, on top of the file's"""

    @property
    def name(self) -> str:
        """Folder and label: ``<variant>-<reward>[-<label>]``."""
        return f'{self.variant}-{self.reward}' + (f'-{self.label}' if self.label else '')

    @property
    def curve_variant(self) -> str:
        """The variant column of the learning-curve CSV (the label appended)."""
        return self.variant + (f' ({self.label})' if self.label else '')


@dataclass(frozen=True)
class ExperimentFile:
    """An experiment as data (``config/experiments/*.yaml``)."""

    name: str
    tasks: tuple[str, ...]
    demos: int
    """expert demonstrations the starting policy is behaviour-cloned from (per task)"""
    runs: tuple[RunSpec, ...] = (RunSpec(),)
    seeds: tuple[int, ...] = (0, 1, 2)
    episodes: int = 200
    """training-episode budget per run"""
    max_duration: dict = field(default_factory=dict)
    """episode time limit per task, s (missing: the task's own)"""
    evaluation: Evaluation = Evaluation()
    camera: int = 96
    """square camera image side, px (the critic's training data)"""
    work: str = 'artifacts/experiments'
    """root of data, models and runs (relative to the working directory)"""
    critic_demos: int = 50
    """expert episodes per task the compact critic is trained on"""
    critic_failures: int = 25
    """failing episodes per task the critic is trained on (random, stalled, reversed)"""
    critic_epochs: int = 20
    bc_epochs: int = 20
    bc_frame_size: int = 64
    trainer: dict = field(default_factory=dict)
    """trainer_node parameter overrides on config/loop.yaml (dotted names, e.g. ppo.lr)"""
    reward_node: dict = field(default_factory=dict)
    """vlac_reward_node parameter overrides on config/loop.yaml"""
    demo_replay_bc_coef: float = 0.1
    """ppo.bc_coef of the demo_replay variant (other variants keep the trainer's)"""
    help: dict = field(default_factory=dict)
    """help-request and stall thresholds over config/teleop/help.yaml (human_guided help
    requests, return_and_explore return points); short episodes need a short window"""
    guide_time: float = 3.0
    """human_guided: longest takeover of the simulated operator, s"""

    def help_config(self):
        """config/teleop/help.yaml with this file's ``help`` overrides (HelpConfig)."""
        from hitl_teleop.help import HelpConfig
        from hitl_teleop.teleop_node import help_config

        base = help_config('help')
        return HelpConfig.from_dict({**{k: getattr(base, k) for k in
                                        base.__dataclass_fields__}, **self.help})

    def validate(self) -> 'ExperimentFile':
        """Raise ValueError naming the bad value; return self."""
        from vlac_sim.tasks import get_task

        for task in self.tasks:
            get_task(task)
        if not self.tasks:
            raise ValueError('tasks is empty')
        if len({run.name for run in self.runs}) != len(self.runs):
            raise ValueError('two runs share a name: give one a label')
        for run in self.runs:
            if run.trainer and not run.label:
                raise ValueError(f'run {run.name} overrides trainer parameters: give it a label')
            if run.variant not in VARIANTS:
                raise ValueError(f'variant {run.variant!r} not in {VARIANTS}')
            if run.reward not in REWARDS:
                raise ValueError(f'reward {run.reward!r} not in {REWARDS}')
        if self.demos < 1 or self.episodes < 1 or not self.seeds:
            raise ValueError('demos and episodes must be >= 1 and seeds non-empty')
        if self.evaluation.every < 1 or self.evaluation.episodes < 1:
            raise ValueError('evaluation.every and evaluation.episodes must be >= 1')
        top = max(self.seeds) + 1
        if self.evaluation.first_seed < training_seed(top, 0):
            raise ValueError(f'evaluation seeds from {self.evaluation.first_seed} overlap the '
                             f'training seeds (from {training_seed(0, 0)})')
        if max(self.critic_demos, self.demos) >= training_seed(0, 0):
            raise ValueError('demonstration seeds would overlap the training seeds')
        if not 0.1 <= self.guide_time <= 600.0:
            raise ValueError(f'guide_time {self.guide_time} s outside 0.1..600')
        self.help_config()
        return self

    @classmethod
    def load(cls, path: str | os.PathLike) -> 'ExperimentFile':
        """Read and validate an experiment YAML file."""
        import yaml

        data = yaml.safe_load(pathlib.Path(path).read_text()) or {}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'{path}: unknown keys {unknown}; known: {sorted(known)}')
        data['tasks'] = tuple(data.get('tasks', ()))
        data['seeds'] = tuple(data.get('seeds', (0, 1, 2)))
        data['runs'] = tuple(RunSpec(**r) for r in data.get('runs', ({},)))
        data['evaluation'] = Evaluation(**data.get('evaluation', {}))
        return cls(**data).validate()

    def limit(self, task: str) -> float:
        """Episode time limit of ``task``, s."""
        from vlac_sim.tasks import get_task

        return float(self.max_duration.get(task, get_task(task).max_duration))


def training_seed(run_seed: int, index: int) -> int:
    """Reset seed of training episode ``index`` of a run seed (apart from demos and eval)."""
    return 10_000 + 10_000 * run_seed + index


# ============================================================================ the robot
@dataclass
class EpisodeOutcome:
    """What one episode did (training or evaluation)."""

    seed: int
    steps: int
    reason: str
    critic_success: bool
    """the episode ended on the critic's (debounced) done"""
    sim_success: bool
    """the simulator's success condition at the end (ground truth, evaluation only)"""
    max_progress: float
    acted_return: float
    messages: tuple = ()
    """(transitions, progress, result) of a training episode"""


class OperatorAtDevice:
    """The simulated operator, its pad and the teleop node's core, without DDS.

    Each control period: the operator reads the scene and moves the sticks
    (``SimulatedOperator.joy``), the teleop core takes the Joy values and says who drives and
    the operator's action (``TakeoverMachine``); the help detector hears the critic's values.
    """

    def __init__(self, task_name: str, period: float, help_config, guide_time: float = 3.0
                 ) -> None:
        from hitl_teleop.core import TakeoverMachine, load_device
        from hitl_teleop.help import HelpDetector
        from vlac_sim.operator import OperatorSettings, SimulatedOperator

        device = load_device(OPERATOR_DEVICE)
        self.operator = SimulatedOperator(task_name, device,
                                          OperatorSettings(guide_time=guide_time))
        self.machine = TakeoverMachine(device, period)
        self.detector = HelpDetector(help_config)
        self.help_requests = self.takeovers = 0

    def start(self, mode: str, now: float) -> None:
        """A new episode in ``mode`` (an episode_mode name) at ``now`` (s)."""
        self.operator.start(mode, now)
        self.detector.reset(None)
        self.help_requests = self.takeovers = 0

    def hear(self, stamp: float, value: float) -> None:
        """One critic value: a help request when progress stalls and the policy drives."""
        from hitl_teleop.core import Mode

        request = self.detector.update(stamp, value)
        if request is not None and self.machine.mode is Mode.POLICY:
            self.help_requests += 1
            self.operator.on_help()

    def step(self, scene, now: float):
        """The teleop core's output for this period (``hitl_teleop.core.Output``)."""
        from hitl_teleop.core import Event, JoyInput
        from vlac_sim.experts import observe as expert_observe

        axes, buttons = self.operator.joy(expert_observe(scene, now), now)
        self.machine.on_joy(JoyInput(now, tuple(axes), tuple(buttons)))
        out = self.machine.tick(now)
        self.takeovers += out.events.count(Event.TAKEOVER)
        return out


class LockstepRobot:
    """One simulated arm driven by the policy node's step and scored by the reward node's."""

    def __init__(self, camera: int, loop_values: dict[str, Any],
                 reward_overrides: dict[str, Any]) -> None:
        from vlac_policy_node.actions import ArmAdapter
        from vlac_policy_node.config import PolicyNodeConfig, arm_config_dir
        from vlac_reward_node.progress import RewardConfig
        from vlac_ros.params import dataclass_from_values, params_file_values
        from vlac_sim.control import ArmController
        from vlac_sim.scene import CameraSpec, PandaScene

        values = params_file_values(arm_config_dir() / 'sim_panda_servo.yaml',
                                    'vlac_policy_node')
        self.node = dataclass_from_values(PolicyNodeConfig, {**values, 'model_path': '-'})
        self.reward = dataclass_from_values(RewardConfig, {**loop_values, 'model_path': '-',
                                                           **reward_overrides})
        self.period = 1.0 / self.node.rate_hz
        self.substeps = max(1, int(round(self.period / SIM_DT)))
        self.adapter = ArmAdapter(self.node.arm, self.period)
        self.camera = CameraSpec(width=camera, height=camera, rate_hz=self.node.rate_hz,
                                 frame_id='camera_color_optical_frame').validate()
        self.scene = PandaScene()
        self.controller = ArmController(self.scene)
        self.clock_ns = 1_000_000_000  # simulated clock, never goes back across episodes
        self.episodes = 0

    def close(self) -> None:
        """Release the physics client."""
        self.scene.close()

    def _advance(self) -> None:
        dt = self.period / self.substeps
        for _ in range(self.substeps):
            now = self.clock_ns * 1e-9
            self.controller.update(now, dt)
            self.scene.step(dt)
            self.clock_ns += int(round(dt * 1e9))

    def _capture(self):
        from vlac_models.stamps import time_from_ns

        from vlac_sim import ros_msgs

        stamp = time_from_ns(self.clock_ns)
        image, _ = ros_msgs.image_msgs(self.scene, self.camera, stamp)
        return image, ros_msgs.joint_state_msg(self.scene, stamp), \
            ros_msgs.ee_pose_msg(self.scene, stamp)

    def run(self, policy, version: int, task, seed: int, limit: float, *,
            scorer: Callable | None, deterministic: bool = False, evaluation: bool = False,
            operator: OperatorAtDevice | None = None, mode: str = 'autonomous',
            snapshot: bytes = b'', snapshots: list | None = None) -> EpisodeOutcome:
        """One episode from the initial state of ``seed`` (or from ``snapshot``).

        ``scorer(sentence, anchor, frame, truth) -> (delta, done_probability)`` is the critic
        (None in evaluation); ``truth`` maps frame stamps to the simulator's (progress,
        success) for the ``ground_truth`` reward. ``operator`` is the human in the loop for
        ``mode`` (an episode_mode name): in a demonstration it drives the whole episode, in a
        human-guided one it takes over on help requests; its steps are interventions whose
        transitions carry the policy's tokens for the executed action. ``snapshots`` (a list)
        receives (stamp ns, snapshot bytes) every ``SNAPSHOT_PERIOD``, as the runner records.
        """
        from hitl_teleop.core import Event, Mode
        from rl_runner.results import episode_result
        from std_msgs.msg import Header
        from vlac_models.episodes import Episode
        from vlac_models.policy.base import EefAction, PolicyObservation
        from vlac_policy_node.step import (
            Hold,
            decide,
            decide_operator,
            delta_msg,
            pose_arm_state,
            transition_msg,
        )
        from vlac_reward_node.progress import Frame, ProgressTracker, progress_msg
        from vlac_ros.images import image_to_rgb
        from vlac_sim.commands import apply_gripper, apply_twist
        from vlac_sim.tasks import reset_scene

        from vlac_sim import ros_msgs

        if snapshot:
            task, _, start = ros_msgs.restore_snapshot(self.scene, snapshot)
        else:
            start = reset_scene(self.scene, task, seed)
        self.controller.reset()
        self.controller.hold('reset')
        self.clock_ns += 1_000_000_000  # a reset takes time: no stamp is shared by episodes
        self.episodes += 1
        episode_id = f'ep{self.episodes:05d}-seed{seed}'
        tracker = ProgressTracker(self.reward.stride, self.reward.done_threshold,
                                  self.reward.done_debounce)
        tracker.reset(task.instruction)
        episode = Episode(episode_id)
        episode.start(self.clock_ns)
        steps = max(1, int(round(limit / self.period)))
        reason, success_since, max_progress, holds = 'timeout', None, 0.0, 0
        truth: dict[float, tuple[float, bool]] = {}
        if operator is not None:
            operator.start(mode, self.clock_ns * 1e-9)
        last_snapshot = None
        for step in range(steps + 1):
            image, joint, pose = self._capture()
            rgb = image_to_rgb(image)  # one decode for the critic and the policy
            now = self.clock_ns * 1e-9
            progress = task.progress(self.scene, start)
            max_progress = max(max_progress, progress)
            if evaluation:
                if task.success(self.scene, start):
                    success_since = now if success_since is None else success_since
                    if now - success_since >= SETTLE - 1e-9:
                        reason = 'success'
                        break
                else:
                    success_since = None
            else:
                frame = Frame(rgb, now, image.header.stamp)
                truth[now] = (progress, bool(task.success(self.scene, start)))
                if tracker.wants(frame):
                    started = time.perf_counter()
                    delta, done_p = scorer(task.instruction, tracker.anchor, frame, truth)
                    score = tracker.record(frame, delta, done_p)
                    episode.add_score(progress_msg(task.instruction, score,
                                                   time.perf_counter() - started, 'lockstep',
                                                   image.header.stamp))
                    if operator is not None:
                        operator.hear(now, score.value)
                    if score.done:
                        reason = 'done'
                        break
                if snapshots is not None and (last_snapshot is None
                                              or now - last_snapshot >= SNAPSHOT_PERIOD - 1e-9):
                    last_snapshot = now
                    snapshots.append((self.clock_ns, ros_msgs.encode_snapshot(
                        task, seed, start, self.scene)))
            if step == steps:
                break
            out = operator.step(self.scene, now) if operator is not None else None
            if out is not None and Event.SUCCESS in out.events and mode == 'demonstration':
                reason = 'operator_success'
                break
            operated = out is not None and out.mode is not Mode.POLICY \
                and out.action is not None
            header = Header(stamp=image.header.stamp, frame_id=self.node.arm.base_frame)
            try:
                arm = pose_arm_state(joint, pose, self.node.arm)
                observation = PolicyObservation([rgb], arm.state_vector(),
                                                task.instruction)
                started = time.perf_counter()
                if operated:
                    action = EefAction(out.action.translation, out.action.rotation,
                                       out.action.gripper)
                    decision = decide_operator(policy, observation, arm, action,
                                               self.node.safety, self.adapter, header)
                elif mode == 'demonstration':
                    raise Hold('operator', 'demonstration: waiting for the operator', 'info')
                else:
                    decision = decide(policy, observation, arm, self.node.safety,
                                      self.adapter, header, deterministic)
                latency = time.perf_counter() - started
            except Hold:
                holds += 1
                apply_twist(self.controller, self.adapter.hold(header), now)
                self._advance()
                continue
            apply_twist(self.controller, decision.command, now)
            apply_gripper(self.controller, decision.gripper, now)
            if not evaluation:
                episode.add_transition(transition_msg(
                    ROBOT_ID, episode_id, step, version, observation, decision.output,
                    delta_msg(decision.action, header), [image], joint, pose, latency, header,
                    is_intervention=operated))
            self._advance()
        episode.end(self.clock_ns)
        sim_success = bool(task.success(self.scene, start))
        if evaluation:
            return EpisodeOutcome(seed, step, reason, False, sim_success, max_progress, 0.0)
        result = episode_result(episode, ROBOT_ID, task.name, MODES[mode], reason,
                                self.clock_ns,
                                help_requests=operator.help_requests if operator else 0,
                                takeovers=operator.takeovers if operator else 0)
        return EpisodeOutcome(seed, episode.steps, reason, bool(result.success), sim_success,
                              max_progress, float(result.episode_return),
                              (episode.ordered_transitions(), episode.scores, result))


def evaluate_on(robot: LockstepRobot, policy, version: int, task, seeds, limit: float,
                deterministic: bool = False) -> list[EpisodeOutcome]:
    """Evaluation episodes of ``policy`` on ``seeds`` (the simulator's success, no critic)."""
    return [robot.run(policy, version, task, seed, limit, scorer=None,
                      deterministic=deterministic, evaluation=True) for seed in seeds]


# ============================================================================ scorers
def critic_scorer(critic) -> Callable:
    """The reward node's scoring (``score_frame``) with a loaded critic."""
    from vlac_reward_node.progress import score_frame

    def score(sentence, anchor, frame, truth):
        return score_frame(critic, sentence, anchor, frame, None)
    return score


def ground_truth_scorer(sentence, anchor, frame, truth) -> tuple[float, float]:
    """The simulator's progress change between the frames; done = the success condition."""
    progress_a, _ = truth[anchor.stamp]
    progress_b, success = truth[frame.stamp]
    return float(progress_b - progress_a), 1.0 if success else 0.0


# ============================================================================ one run
def loop_values(node_name: str) -> dict[str, Any]:
    """The node's parameters in config/loop.yaml (the live loop's file)."""
    from vlac_ros.params import params_file_values

    return params_file_values(config_dir() / 'loop.yaml', node_name)


def config_dir() -> pathlib.Path:
    """The repository's config/ folder (source checkout) or vlac_bringup's installed one."""
    from vlac_policy_node.config import arm_config_dir

    return pathlib.Path(arm_config_dir()).parent


@dataclass
class RunPaths:
    """Where one run keeps its files."""

    root: pathlib.Path

    @property
    def trainer(self) -> pathlib.Path:
        """The Learner's work_dir: episodes/, checkpoints/, weights/, logs/."""
        return self.root / 'trainer'

    @property
    def eval_csv(self) -> pathlib.Path:
        """One row per evaluation point."""
        return self.root / 'eval.csv'

    @property
    def log(self) -> pathlib.Path:
        """One line per episode and update."""
        return self.root / 'run.log'


def read_eval(path: pathlib.Path) -> list[dict]:
    """Rows of a run's eval.csv (empty if none)."""
    if not path.is_file():
        return []
    with path.open(newline='') as handle:
        return list(csv.DictReader(handle))


def append_eval(path: pathlib.Path, row: dict) -> None:
    """Append one evaluation row durably."""
    new = not path.is_file()
    with path.open('a', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=EVAL_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in EVAL_COLUMNS})
        handle.flush()
        os.fsync(handle.fileno())


def trainer_configs(exp: ExperimentFile, spec: RunSpec, policy_dir: pathlib.Path,
                    work: pathlib.Path, seed: int):
    """LearnerConfig, PPOConfig and RewardOptions: config/loop.yaml, then the experiment's."""
    from rl_trainer.trainer_node import TrainerNodeConfig
    from vlac_ros.params import dataclass_from_values

    values = {**loop_values('trainer_node'), **exp.trainer, **spec.trainer,
              'learner.model_path': str(policy_dir), 'learner.work_dir': str(work),
              'learner.weights_dir': '', 'ppo.seed': seed, 'tensorboard': True}
    values['rewards.option'] = 'progress' if spec.reward == 'ground_truth' else spec.reward
    if spec.variant == 'demo_replay':
        values['ppo.bc_coef'] = exp.demo_replay_bc_coef
    config = dataclass_from_values(TrainerNodeConfig, values)
    return config.learner, config.ppo, config.rewards


def run_one(exp: ExperimentFile, task_name: str, spec: RunSpec, seed: int,
            models: pathlib.Path, root: pathlib.Path, progress: Callable[[int], None]
            = lambda n: None, log: Callable[[str], None] = print) -> list[dict]:
    """Train and evaluate one (task, variant, reward, seed); resume where it stopped."""
    from hitl_teleop.return_points import ReturnPointStore, pick_points
    from rl_trainer.learner import Learner
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from vlac_models.critic import load_critic
    from vlac_models.policy.base import load_policy
    from vlac_models.stamps import stamp_ns
    from vlac_policy_node.policy_node import weights_path
    from vlac_sim.tasks import get_task

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    paths = RunPaths(root)
    paths.root.mkdir(parents=True, exist_ok=True)
    task = get_task(task_name)
    policy_dir = models / f'policy_{task_name}_{exp.demos}demos_s{seed}'
    learner_cfg, ppo_cfg, reward_opts = trainer_configs(exp, spec, policy_dir, paths.trainer,
                                                        seed)
    writer = SummaryWriter(str(paths.trainer / 'logs' / 'tensorboard'))
    learner = Learner(learner_cfg, ppo_cfg, reward_opts, writer)
    robot_policy = load_policy('compact', str(policy_dir), 'cpu', seed=seed)
    robot = LockstepRobot(exp.camera, loop_values('vlac_reward_node'), exp.reward_node)
    scorer = ground_truth_scorer if spec.reward == 'ground_truth' else \
        critic_scorer(load_critic('compact', str(models / 'critic'), 'cpu'))
    limit = exp.limit(task_name)
    rows = read_eval(paths.eval_csv)
    done_points = {int(r['episodes']) for r in rows}
    version = 0
    started = time.monotonic() - (float(rows[-1]['wall_s']) if rows else 0.0)

    def say(text: str) -> None:
        with paths.log.open('a') as handle:
            handle.write(f'{time.strftime("%H:%M:%S")} {text}\n')
        log(text)

    def ship(stats: dict | None) -> None:
        """The robot loads the learner's newest weights file (hot swap), as shipped."""
        nonlocal version
        if learner.version <= version:
            return
        if stats and stats.get('artifact'):  # the update wrote it
            path, digest = stats['artifact'], stats['sha256']
        else:  # a resumed learner: its weights, written once
            path, digest = learner.publish_weights()
        robot_policy.load_weights(weights_path(f'file://{path}', str(learner.weights_dir)),
                                  digest)
        version = learner.version

    def evaluate(episodes: int) -> None:
        seeds = range(exp.evaluation.first_seed, exp.evaluation.first_seed
                      + exp.evaluation.episodes)
        sampled = evaluate_on(robot, robot_policy, version, task, seeds, limit)
        greedy = evaluate_on(robot, robot_policy, version, task, seeds, limit, True) \
            if exp.evaluation.greedy and episodes in (0, exp.episodes) else []
        history = paths.root / 'episodes.jsonl'
        recent = [json.loads(line) for line in history.read_text().splitlines()
                  [-exp.evaluation.every:]] if history.is_file() else []
        row = {'episodes': episodes,
               'success_rate': float(np.mean([o.sim_success for o in sampled])),
               'greedy_success_rate': float(np.mean([o.sim_success for o in greedy]))
               if greedy else '',
               'mean_max_progress': round(float(np.mean([o.max_progress for o in sampled])), 4),
               'policy_version': version,
               'train_success_rate': float(np.mean([r['sim_success'] for r in recent]))
               if recent else '',
               'wall_s': round(time.monotonic() - started, 1)}
        append_eval(paths.eval_csv, row)
        rows.append(row)
        writer.add_scalar('eval/success_rate', row['success_rate'], episodes)
        if greedy:
            writer.add_scalar('eval/greedy_success_rate', row['greedy_success_rate'], episodes)
        writer.flush()
        say(f'eval after {episodes} episodes (v{version}): sampled {row["success_rate"]:.2f}'
            + (f', greedy {row["greedy_success_rate"]:.2f}' if greedy else '')
            + f', mean max progress {row["mean_max_progress"]:.2f}')

    try:
        ship(learner.train_if_ready())  # episodes stored before an interruption
        stalls = exp.help_config()
        operator = OperatorAtDevice(task_name, robot.period, stalls, exp.guide_time) \
            if spec.variant in ('demo_replay', 'human_guided') else None
        returns = ReturnPointStore(paths.root / 'return_points') \
            if spec.variant == 'return_and_explore' else None
        if spec.variant == 'demo_replay' and not any(
                k.split('/', 1)[1].startswith('demo') for k in learner.store.keys()):
            for k in range(exp.demos):
                outcome = robot.run(robot_policy, version, task, k, limit, scorer=scorer,
                                    operator=operator, mode='demonstration')
                transitions, scores, result = outcome.messages
                learner.ingest(ROBOT_ID, f'demo{k:04d}', transitions, scores, result)
            say(f'{exp.demos} demonstrations by the simulated operator stored for replay')
        trained = sum(1 for k in learner.store.keys() if not k.split('/', 1)[1]
                      .startswith('demo'))
        progress(trained)
        if 0 not in done_points:
            evaluate(0)
        if trained % exp.evaluation.every == 0 and trained not in done_points and trained:
            evaluate(trained)  # interrupted between the episode and its evaluation point
        while trained < exp.episodes:
            seed_k = training_seed(seed, trained)
            mode, start, snapshots = 'autonomous', b'', None
            if spec.variant == 'human_guided':
                mode = 'human_guided'
            elif returns is not None:
                snapshots = []
                point = returns.next(task_name) if trained % 2 else None
                if point is not None:
                    mode, start = 'return_and_explore', point.snapshot
            outcome = robot.run(robot_policy, version, task, seed_k, limit, scorer=scorer,
                                operator=operator if mode == 'human_guided' else None,
                                mode=mode, snapshot=start, snapshots=snapshots)
            transitions, scores, result = outcome.messages
            episode_id = f'train{trained:05d}'
            learner.ingest(ROBOT_ID, episode_id, transitions, scores, result)
            if snapshots:
                for point in pick_points(
                        {'task': task_name, 'episode_id': episode_id, 'robot_id': ROBOT_ID},
                        [(stamp_ns(m.stamp_b), float(m.value)) for m in scores], snapshots,
                        stalls):
                    returns.add(point)
            with (paths.root / 'episodes.jsonl').open('a') as handle:
                handle.write(json.dumps({
                    'index': trained, 'seed': seed_k, 'mode': mode, 'steps': outcome.steps,
                    'reason': outcome.reason, 'critic_success': outcome.critic_success,
                    'sim_success': outcome.sim_success, 'return': outcome.acted_return,
                    'max_progress': round(outcome.max_progress, 4), 'version': version,
                    'interventions': int(result.intervention_count),
                    'takeovers': int(result.takeovers),
                    'help_requests': int(result.help_requests)}) + '\n')
            trained += 1
            stats = learner.train_if_ready()
            if stats is not None and not stats.get('skipped'):
                say(learner.summary(stats))
            ship(stats)
            progress(trained)
            if trained % exp.evaluation.every == 0 and trained not in done_points:
                evaluate(trained)
        if exp.episodes not in {int(r['episodes']) for r in rows}:
            evaluate(exp.episodes)
    finally:
        robot.close()
        writer.close()
    return rows


# ============================================================================ preparation
def prepare(exp: ExperimentFile, log: Callable[[str], None] = print) -> pathlib.Path:
    """Record demonstrations, train the critic and the starting policies; the models folder.

    Everything is reused when present: ``<work>/data`` (shared by experiment files) and
    ``<work>/<name>/models``.
    """
    from vlac_sim.record import record_dataset
    from vlac_sim.scene import CameraSpec

    from vlac_training.train_bc import main as train_bc
    from vlac_training.train_critic import main as train_critic

    work = pathlib.Path(exp.work)
    data, models = work / 'data', work / exp.name / 'models'
    models.mkdir(parents=True, exist_ok=True)
    log(f'recording demonstrations in {data} (skipped where recorded)')
    record_dataset(data, list(exp.tasks), episodes=max(exp.critic_demos, exp.demos),
                   failures=exp.critic_failures,
                   camera=CameraSpec(width=exp.camera, height=exp.camera, rate_hz=10.0),
                   log=lambda *_: None)
    critic = models / 'critic'
    if not (critic / 'config.json').is_file():
        bags = [str(data / t / f'expert_{k:04d}') for t in exp.tasks
                for k in range(exp.critic_demos)]
        bags += [str(p) for t in exp.tasks for p in sorted((data / t).iterdir())
                 if re.fullmatch(r'[a-z]+_\d{4}', p.name) and not p.name.startswith('expert_')
                 and int(p.name[-4:]) < exp.critic_failures]
        log(f'training the compact critic on {len(bags)} episodes')
        if train_critic(['--data', *bags, '--out', str(critic), '--epochs',
                         str(exp.critic_epochs), '--holdout', '0.1', '--threads', '1',
                         '--no-progress']) != 0:
            raise RuntimeError('train_critic failed')
    for task in exp.tasks:
        for seed in exp.seeds:
            policy = models / f'policy_{task}_{exp.demos}demos_s{seed}'
            if (policy / 'config.json').is_file():
                continue
            log(f'behaviour-cloning the starting policy of {task} (seed {seed}) from '
                f'{exp.demos} demonstrations')
            bags = [str(data / task / f'expert_{k:04d}') for k in range(exp.demos)]
            if train_bc(['--data', *bags, '--out', str(policy), '--epochs', str(exp.bc_epochs),
                         '--frame-size', str(exp.bc_frame_size), '--holdout', '0.0',
                         '--seed', str(seed), '--threads', '1', '--no-progress']) != 0:
                raise RuntimeError('train_policy_bc failed')
    return models


def run_root(exp: ExperimentFile, task: str, spec: RunSpec, seed: int) -> pathlib.Path:
    """Folder of one run."""
    return pathlib.Path(exp.work) / exp.name / 'runs' / task / spec.name / f'seed{seed}'


def curve_rows(exp: ExperimentFile) -> list[dict]:
    """Every evaluation point of every run so far, in ``CURVE_COLUMNS``."""
    rows = []
    for task in exp.tasks:
        for spec in exp.runs:
            for seed in exp.seeds:
                for row in read_eval(run_root(exp, task, spec, seed) / 'eval.csv'):
                    rows.append({'task': task, 'variant': spec.curve_variant,
                                 'reward': spec.reward,
                                 'seed': seed, 'episodes': int(row['episodes']),
                                 'success_rate': float(row['success_rate'])})
    return rows


def write_curves(exp: ExperimentFile) -> pathlib.Path:
    """``<work>/<name>/learning_curves.csv`` from the runs' eval.csv files."""
    path = pathlib.Path(exp.work) / exp.name / 'learning_curves.csv'
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(curve_rows(exp))
    return path


def _run_job(job: tuple) -> str:
    exp, task, spec, seed, models = job
    root = run_root(exp, task, spec, seed)
    started = time.monotonic()
    run_one(exp, task, spec, seed, models, root, log=lambda text: None)
    return f'{task} {spec.name} seed {seed}: {time.monotonic() - started:.0f} s'


def episodes_done(root: pathlib.Path) -> int:
    """Training episodes a run has finished (its episodes.jsonl)."""
    path = root / 'episodes.jsonl'
    return len(path.read_text().splitlines()) if path.is_file() else 0


@dataclass
class ExperimentArgs:
    """Run an experiment file: demonstrations, critic, starting policies, then every run."""

    experiment: Annotated[str, Positional]
    """experiment YAML file (config/experiments/*.yaml)"""
    jobs: int = 1
    """runs side by side, one process each (one torch thread each)"""
    only: tuple[str, ...] = ()
    """run only these <variant>-<reward> runs (default: all of the file)"""
    seeds: tuple[int, ...] = ()
    """run only these seeds (default: the file's)"""
    episodes: int = 0
    """training-episode budget override (0: the file's)"""
    work: str = ''
    """work folder override (default: the file's)"""


def experiment(args: ExperimentArgs) -> int:
    """Prepare, run (resuming), write the learning-curve CSV; exit status."""
    import multiprocessing

    from tqdm import tqdm

    exp = ExperimentFile.load(args.experiment)
    overrides: dict[str, Any] = {}
    if args.only:
        unknown = set(args.only) - {s.name for s in exp.runs}
        if unknown:
            raise ValueError(f'--only {sorted(unknown)}: not runs of {args.experiment} '
                             f'({[s.name for s in exp.runs]})')
        overrides['runs'] = tuple(s for s in exp.runs if s.name in args.only)
    if args.seeds:
        overrides['seeds'] = tuple(args.seeds)
    if args.episodes:
        overrides['episodes'] = args.episodes
    if args.work:
        overrides['work'] = args.work
    exp = replace(exp, **overrides).validate()
    skipped = [s for s in exp.runs if s.variant in NOT_YET_RUN]
    for spec in skipped:
        print(f'{spec.name}: not yet run (needs the simulated operator of the teleop issue)')
    exp = replace(exp, runs=tuple(s for s in exp.runs if s.variant not in NOT_YET_RUN))
    started = time.monotonic()
    models = prepare(exp, log=lambda text: print(f'[{time.monotonic() - started:6.0f} s] '
                                                 f'{text}', flush=True))
    jobs = [(exp, task, spec, seed, models) for task in exp.tasks for spec in exp.runs
            for seed in exp.seeds]
    roots = [run_root(exp, task, spec, seed) for _, task, spec, seed, _ in jobs]
    total = len(jobs) * exp.episodes
    print(f'{len(jobs)} runs x {exp.episodes} episodes ({args.jobs} at a time); logs in '
          f'{pathlib.Path(exp.work) / exp.name / "runs"}/<task>/<run>/seed<k>/run.log',
          flush=True)
    with tqdm(total=total, unit='episode', dynamic_ncols=True) as bar:
        def refresh() -> None:
            bar.n = sum(min(episodes_done(r), exp.episodes) for r in roots)
            bar.refresh()

        if args.jobs <= 1:
            for job in jobs:
                _, task, spec, seed, _ = job
                run_one(exp, task, spec, seed, models, run_root(exp, task, spec, seed),
                        progress=lambda _: refresh(), log=lambda text: bar.write(text))
        else:
            context = multiprocessing.get_context('spawn')
            with context.Pool(args.jobs, maxtasksperchild=1) as pool:
                pending = pool.imap_unordered(_run_job, jobs)
                finished = 0
                while finished < len(jobs):
                    try:
                        bar.write(pending.next(timeout=2.0))
                        finished += 1
                    except multiprocessing.TimeoutError:
                        pass
                    refresh()
        refresh()
    path = write_curves(exp)
    print(f'learning curves: {path} ({time.monotonic() - started:.0f} s)')
    for task in exp.tasks:
        for spec in exp.runs:
            finals = [read_eval(run_root(exp, task, spec, s) / 'eval.csv') for s in exp.seeds]
            first = [float(r[0]['success_rate']) for r in finals if r]
            last = [float(r[-1]['success_rate']) for r in finals if r]
            if first:
                print(f'{task:16s} {spec.name:24s} success {np.mean(first):.2f} -> '
                      f'{np.mean(last):.2f} (mean of {len(last)} seeds)')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (options from ``ExperimentArgs``)."""
    from vlac_training.cli import run

    return run('vlac_experiment', ExperimentArgs, experiment, argv)


if __name__ == '__main__':
    sys.exit(main())
