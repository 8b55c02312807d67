"""PPO learning sanity test on a small simulated task; prints before/after figures (ROS-free).

  python -m vlac_training.sanity [--iterations 12] [--episodes 8] [--eval-episodes 16]
                              [--horizon 3.0] [--camera 64] [--lr 1e-3] [--policy DIR]

It answers one question: does ``rl_trainer.ppo`` improve a real policy on the real simulator?
Everything else is held fixed or replaced by ground truth:

- Task: ``press_button`` (by default) shortened to ``--horizon`` seconds at the policy's
  control period (10 Hz), a small camera (``--camera`` px square), the same closed loop as
  ``vlac_training.rollout`` (pose delta -> servo twist held for one period, gripper command
  -> finger opening, the controller and physics stepped at 0.05 s).
- Policy: a randomly initialised small ``CompactPolicy`` (coarse action bins, see
  ``SMALL_POLICY``), or a compact model directory given with ``--policy``.
- Reward: the per-step change of the simulator's ground-truth task progress (0..1), plus
  ``--success-bonus`` on the step the task's success condition first holds (the episode then
  ends, terminal). This stands in for the VLAC critic so that only PPO is under test; an
  episode's return is therefore its final progress (+ the bonus when it succeeded).
- Protocol: evaluate the starting policy greedily on fixed evaluation seeds; run
  ``--iterations`` times (collect ``--episodes`` sampled episodes on fresh training seeds, one
  ``PPOTrainer.update``); evaluate greedily again on the same evaluation seeds. The
  evaluation and training seeds never overlap, and every random source is seeded, so a run
  is reproducible on one machine.

``--lr 0`` is the control: the same loop with a PPO that cannot move the weights (Adam with a
zero learning rate), whose greedy before/after figures are identical. ``--min-improvement``
turns the printed figures into an exit status (1 when the mean return did not rise by at
least that much).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import math
import pathlib
import sys
import time
from typing import Annotated, Callable

import numpy as np
from rl_trainer.ppo import PPOConfig, PPOTrainer, RolloutBatch
from vlac_models.config import doc

from vlac_training import cli

SMALL_POLICY = {
    'frame_size': 64, 'channels': (8, 16, 16, 8), 'embed_dim': 32, 'hidden_dim': 64,
    'translation_limit': 0.03, 'translation_bins': 5,
    'rotation_limit': 0.01, 'rotation_bins': 3,
}
"""Architecture of the randomly initialised policy: a small CNN, 5 translation bins of
1.5 cm per 0.1 s period (up to 0.3 m/s per axis), almost no rotation (3 bins of +-0.01 rad)."""

SIM_DT = 0.05  # s, controller and physics step (the recorder's and policy_rollout's)


@dataclass(frozen=True)
class SanityConfig:
    """Settings of one sanity run (defaults: the command line's)."""

    task: str = field(default='press_button', metadata=doc('vlac_sim task name'))
    horizon: float = field(default=3.0, metadata=doc('episode time limit, s'))
    camera: int = field(default=64, metadata=doc('square camera image side, px'))
    iterations: int = field(default=12, metadata=doc('PPO iterations (collect + one update)'))
    episodes: int = field(default=8, metadata=doc('sampled training episodes per iteration'))
    eval_episodes: int = field(default=16, metadata=doc('greedy evaluation episodes'))
    eval_seed: int = field(default=100_000, metadata=doc(
        'first evaluation reset seed (seeds eval_seed .. eval_seed + eval_episodes - 1)'))
    train_seed: int = field(default=0, metadata=doc(
        'first training reset seed; every training episode gets the next one'))
    success_bonus: float = field(default=1.0, metadata=doc(
        'reward added on the step the success condition first holds'))
    seed: int = field(default=0, metadata=doc(
        'seed of the policy initialisation, action sampling and PPO minibatches'))
    lr: float = field(default=3e-3, metadata=doc(
        'Adam learning rate; 0 is the control run (weights cannot move)'))
    epochs: int = field(default=8, metadata=doc("PPO passes over each iteration's rollout"))
    minibatch_size: int = field(default=64, metadata=doc('transitions per gradient step'))
    gamma: float = field(default=0.99, metadata=doc('discount per control step'))
    gae_lambda: float = field(default=0.95, metadata=doc('GAE lambda'))
    entropy_coef: float = field(default=0.0, metadata=doc('PPO entropy bonus weight'))
    target_kl: float = field(default=0.0, metadata=doc(
        'early-stop KL per update, nats; 0 disables'))
    policy: str | None = field(default=None, metadata=doc(
        'compact policy directory to start from; None: random small policy'))

    def validate(self) -> 'SanityConfig':
        """Raise ValueError naming the bad value; return self."""
        from vlac_sim.tasks import get_task

        get_task(self.task)
        if not 0.1 <= self.horizon <= 60.0:
            raise ValueError(f'horizon {self.horizon} s outside 0.1..60')
        if not 16 <= self.camera <= 512:
            raise ValueError(f'camera {self.camera} px outside 16..512')
        for name in ('iterations', 'episodes', 'eval_episodes', 'epochs', 'minibatch_size'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} {getattr(self, name)} must be >= 1')
        if not (math.isfinite(self.lr) and self.lr >= 0.0):
            raise ValueError(f'lr {self.lr} must be a finite number >= 0')
        if not (math.isfinite(self.success_bonus) and self.success_bonus >= 0.0):
            raise ValueError(f'success_bonus {self.success_bonus} must be >= 0')
        eval_seeds = range(self.eval_seed, self.eval_seed + self.eval_episodes)
        train_seeds = range(self.train_seed,
                            self.train_seed + self.iterations * self.episodes)
        if max(eval_seeds.start, train_seeds.start) < min(eval_seeds.stop, train_seeds.stop):
            raise ValueError(f'evaluation seeds {eval_seeds} overlap training seeds '
                             f'{train_seeds}')
        self.ppo_config()  # its own checks
        return self

    def ppo_config(self) -> PPOConfig:
        """The PPO hyper-parameters (lr 0 is carried by the optimizer, see ``make_trainer``)."""
        return PPOConfig(lr=self.lr if self.lr > 0.0 else 3e-4, epochs=self.epochs,
                         minibatch_size=self.minibatch_size, gamma=self.gamma,
                         gae_lambda=self.gae_lambda, entropy_coef=self.entropy_coef,
                         target_kl=self.target_kl, seed=self.seed).validate()


@dataclass
class Episode:
    """One episode's transitions (one entry per control step) and outcome."""

    seed: int
    observations: list = field(default_factory=list)
    tokens: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    log_probs: list = field(default_factory=list)
    values: list = field(default_factory=list)
    success: bool = False
    final_progress: float = 0.0
    next_observation: object = None
    """Observation after the last step of a truncated episode (for the value bootstrap)."""

    @property
    def ret(self) -> float:
        """Undiscounted return."""
        return float(np.sum(self.rewards))


@dataclass
class Evaluation:
    """Greedy evaluation figures over the fixed evaluation seeds."""

    mean_return: float
    success_rate: float
    mean_final_progress: float
    returns: list[float]

    def line(self) -> str:
        """One printable line."""
        wins = round(self.success_rate * len(self.returns))
        return (f'mean return {self.mean_return:.3f}, success {wins}/{len(self.returns)} '
                f'({100.0 * self.success_rate:.0f} %), mean final progress '
                f'{self.mean_final_progress:.3f}')


@dataclass
class SanityResult:
    """Before/after evaluations, per-iteration statistics and the wall time, s."""

    before: Evaluation
    after: Evaluation
    history: list[dict]
    wall_time: float

    @property
    def improvement(self) -> float:
        """After minus before mean return."""
        return self.after.mean_return - self.before.mean_return


class SanityEnv:
    """The short task on one ``PandaScene``, driven like ``vlac_training.rollout``."""

    def __init__(self, config: SanityConfig, period: float, num_cameras: int = 1) -> None:
        from vlac_sim.control import ArmController
        from vlac_sim.scene import CameraSpec, PandaScene
        from vlac_sim.tasks import get_task

        self.config = config
        self.task = get_task(config.task)
        self.period = period
        self.substeps = max(1, int(round(period / SIM_DT)))
        self.cameras = [CameraSpec(width=config.camera, height=config.camera,
                                   rate_hz=10.0).validate()] * num_cameras
        self.scene = PandaScene()
        self.controller = ArmController(self.scene)
        self.steps = max(1, int(round(config.horizon / period)))

    def close(self) -> None:
        """Release the physics client."""
        self.scene.close()

    def run(self, policy, seed: int, deterministic: bool) -> Episode:
        """One episode of ``policy`` from the initial state of ``seed``."""
        from vlac_sim.tasks import reset_scene

        from vlac_training.rollout import gripper_opening, observe, servo_twist

        scene, controller, task = self.scene, self.controller, self.task
        start = reset_scene(scene, task, seed)
        controller.reset()
        if hasattr(policy, 'reset'):
            policy.reset()
        episode = Episode(seed)
        progress = task.progress(scene, start)
        now, dt = 0.0, self.period / self.substeps
        for _ in range(self.steps):
            observation = observe(scene, self.cameras, task)
            output = policy.act(observation, deterministic=deterministic)
            linear, angular = servo_twist(output.action, self.period)
            controller.servo(linear, angular, '', now=now)
            controller.gripper(gripper_opening(output.action), now)
            for _ in range(self.substeps):
                controller.update(now, dt)
                scene.step(dt)
                now += dt
            new_progress = task.progress(scene, start)
            episode.success = task.success(scene, start)
            reward = new_progress - progress
            if episode.success:
                reward += self.config.success_bonus
            progress = new_progress
            episode.observations.append(observation)
            episode.tokens.append(np.asarray(output.tokens, np.int64))
            episode.rewards.append(float(reward))
            episode.log_probs.append(float(output.log_prob))
            episode.values.append(float(output.value))
            if episode.success:
                break
        episode.final_progress = float(progress)
        if not episode.success and not deterministic:
            episode.next_observation = observe(scene, self.cameras, task)
        return episode


def rollout_batch(episodes: list[Episode], policy_version: int) -> RolloutBatch:
    """Episodes back to back: terminal on success, truncated (bootstrapped) at the limit."""
    batches = []
    for ep in episodes:
        n = len(ep.rewards)
        end = np.zeros(n, bool)
        end[-1] = True
        batches.append(RolloutBatch(
            observations=ep.observations, tokens=ep.tokens, rewards=np.array(ep.rewards),
            dones=end if ep.success else np.zeros(n, bool),
            truncated=np.zeros(n, bool) if ep.success else end,
            log_probs=np.array(ep.log_probs), values=np.array(ep.values),
            policy_versions=np.full(n, policy_version), is_intervention=np.zeros(n, bool),
            bootstrap_observations={} if ep.next_observation is None
            else {n - 1: ep.next_observation}))
    return RolloutBatch.concatenate(batches)


def evaluate(env: SanityEnv, policy, seeds: range) -> Evaluation:
    """Greedy episodes on ``seeds``."""
    episodes = [env.run(policy, seed, deterministic=True) for seed in seeds]
    returns = [ep.ret for ep in episodes]
    return Evaluation(float(np.mean(returns)), float(np.mean([ep.success for ep in episodes])),
                      float(np.mean([ep.final_progress for ep in episodes])), returns)


def make_policy(config: SanityConfig):
    """The starting policy: ``config.policy`` loaded, or a random ``SMALL_POLICY``."""
    import torch
    from vlac_models.policy.compact import (
        CompactPolicy,
        CompactPolicyNet,
        PolicyConfig,
        load_compact_policy,
    )

    if config.policy:
        return load_compact_policy(config.policy, seed=config.seed)
    torch.manual_seed(config.seed)
    return CompactPolicy(CompactPolicyNet(PolicyConfig(**SMALL_POLICY)), seed=config.seed)


def make_trainer(policy, config: SanityConfig) -> PPOTrainer:
    """PPO on the policy; ``lr == 0`` gives the control trainer (Adam that never moves)."""
    import torch

    optimizer = None
    if config.lr == 0.0:
        params = [p for p in policy.trainable_parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=0.0)
    return PPOTrainer(policy, config.ppo_config(), optimizer=optimizer)


def run(config: SanityConfig, log: Callable[[str], None] = print) -> SanityResult:
    """Evaluate, train, evaluate (see the module docstring); return the figures."""
    import torch

    config.validate()
    started = time.perf_counter()
    policy = make_policy(config)
    policy.net.train(False)  # no dropout/batch-norm in the net; keep acting and learning alike
    period = float(policy.config.control_period)
    env = SanityEnv(config, period, int(policy.config.num_cameras))
    trainer = make_trainer(policy, config)
    eval_seeds = range(config.eval_seed, config.eval_seed + config.eval_episodes)
    history: list[dict] = []
    try:
        policy.task_embedding(env.task.instruction)  # load the sentence encoder once, up front
        log(f'sanity: task {config.task}, {env.steps} steps of {period:g} s, camera '
            f'{config.camera} px, {config.iterations} iterations x {config.episodes} episodes, '
            f'lr {config.lr:g}, torch threads {torch.get_num_threads()}')
        before = evaluate(env, policy, eval_seeds)
        log(f'before: {before.line()}')
        seed = config.train_seed
        for iteration in range(config.iterations):
            tick = time.perf_counter()
            episodes = []
            for _ in range(config.episodes):
                episodes.append(env.run(policy, seed, deterministic=False))
                seed += 1
            stats = trainer.update(rollout_batch(episodes, trainer.policy_version))
            if stats.get('skipped'):
                raise RuntimeError(f'PPO update {iteration} skipped: {stats["error"]}')
            row = {'iteration': iteration + 1,
                   'charts/episodic_return': float(np.mean([ep.ret for ep in episodes])),
                   'charts/success_rate': float(np.mean([ep.success for ep in episodes])),
                   **{k: v for k, v in stats.items() if k.startswith('losses/')},
                   'time_s': time.perf_counter() - tick}
            history.append(row)
            log(f'iter {iteration + 1:3d}: sampled return {row["charts/episodic_return"]:.3f}, '
                f'success {row["charts/success_rate"]:.2f}, approx_kl '
                f'{row["losses/approx_kl"]:.4f}, clipfrac {row["losses/clipfrac"]:.3f}, '
                f'entropy {row["losses/entropy"]:.2f}, explained_var '
                f'{row["losses/explained_variance"]:.2f} ({row["time_s"]:.1f} s)')
        after = evaluate(env, policy, eval_seeds)
        log(f'after:  {after.line()}')
    finally:
        env.close()
    result = SanityResult(before, after, history, time.perf_counter() - started)
    log(f'mean return {before.mean_return:.3f} -> {after.mean_return:.3f} '
        f'({result.improvement:+.3f}), success {100.0 * before.success_rate:.0f} % -> '
        f'{100.0 * after.success_rate:.0f} %, greedy on seeds {eval_seeds.start}..'
        f'{eval_seeds.stop - 1}; wall time {result.wall_time:.1f} s')
    return result


@dataclass
class SanityArgs:
    """PPO learning sanity test on a small simulated task; prints before/after figures."""

    config: Annotated[SanityConfig, cli.Flat] = field(default_factory=SanityConfig)
    threads: int = 1
    """torch CPU threads"""
    min_improvement: float | None = None
    """exit 1 unless the mean return rises by at least this much"""
    json: str | None = None
    """write the figures to this file"""


def sanity(args: SanityArgs) -> int:
    """Run the sanity test; 0, or 1 when ``min_improvement`` was not reached."""
    config = args.config.validate()
    import torch

    torch.set_num_threads(args.threads)
    result = run(config)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({
            'config': {k: getattr(config, k) for k in config.__dataclass_fields__},
            'before': vars(result.before), 'after': vars(result.after),
            'improvement': result.improvement, 'history': result.history,
            'wall_time_s': result.wall_time}, indent=2) + '\n')
    if args.min_improvement is not None and not result.improvement >= args.min_improvement:
        print(f'sanity: mean return rose by {result.improvement:.3f} < '
              f'{args.min_improvement}', file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (options from ``SanityConfig`` and ``SanityArgs``)."""
    return cli.run('ppo_sanity', SanityArgs, sanity, argv)


if __name__ == '__main__':
    sys.exit(main())
