"""The first episodes of an experiment run through the live loop (real nodes over DDS).

  vlac_live_curve config/experiments/press_button.yaml [--episodes 40] [--every 20] [--seed 0]

It confirms the lock-step experiment path (``vlac_training.experiment``) with the real
processes: the experiment's critic and starting policy (seed ``--seed``), its trainer
overrides for the run ``--run`` (default ``none-progress``), the same training reset seeds and
the same evaluation protocol. sim_node, vlac_reward_node, vlac_policy_node, episode_runner and
trainer_node run as separate processes on a private loopback DDS domain
(``vlac_bench.sim_loop``, config/loop.yaml); the episodes go through the runner's RunEpisode
action in real time. Every ``--every`` episodes (and before the first) the newest policy
version the trainer shipped is evaluated on the experiment's evaluation seeds by the
experiment runner's evaluator, while the loop waits between episodes. Rows go to
``<work>/<name>/live/<run>/seed<k>/eval.csv`` (the experiment's columns).
"""

from __future__ import annotations

from dataclasses import dataclass
import pathlib
import sys
import time
from typing import Annotated

from vlac_training.cli import Positional, run


@dataclass
class LiveCurveArgs:
    """Run an experiment's first episodes through the live loop; evaluate as the experiment."""

    experiment: Annotated[str, Positional]
    """experiment YAML file"""
    run: str = 'none-progress'
    """which run of the file (its trainer overrides and reward)"""
    episodes: int = 40
    """training episodes through the live loop"""
    every: int = 20
    """evaluate after this many episodes"""
    seed: int = 0
    """run seed (starting policy and training reset seeds)"""
    task: str = ''
    """task of the file (default: its first)"""


def live_curve(args: LiveCurveArgs) -> int:
    """Models of the experiment, the live loop, evaluations; the rows written."""
    import torch
    from vlac_models.files import sha256_file
    from vlac_models.policy.base import load_policy
    from vlac_ros.dds import apply_loopback_env
    from vlac_sim.tasks import get_task
    from vlac_testing.ros_graph import RosGraph
    from vlac_training.experiment import ExperimentFile as Experiment
    from vlac_training.experiment import (
        LockstepRobot,
        append_eval,
        evaluate_on,
        loop_values,
        prepare,
        read_eval,
        training_seed,
    )

    from vlac_bench.sim_loop import run_episode, start_loop

    exp = Experiment.load(args.experiment)
    specs = {s.name: s for s in exp.runs}
    if args.run not in specs:
        raise ValueError(f'--run {args.run!r} is not a run of {args.experiment}: '
                         f'{sorted(specs)}')
    spec, task = specs[args.run], args.task or exp.tasks[0]
    if spec.variant != 'none' or spec.reward == 'ground_truth':
        raise ValueError('the live loop runs variant none with a critic reward')
    models = prepare(exp, log=print).resolve()
    policy_dir = models / f'policy_{task}_{exp.demos}demos_s{args.seed}'
    root = (pathlib.Path(exp.work) / exp.name / 'live' / spec.name / f'seed{args.seed}').resolve()
    if root.exists():
        raise FileExistsError(f'{root} exists: a live run cannot resume; move it away first')
    root.mkdir(parents=True)
    torch.set_num_threads(1)
    limit = exp.limit(task)
    seeds = range(exp.evaluation.first_seed,
                  exp.evaluation.first_seed + exp.evaluation.episodes)
    robot = LockstepRobot(exp.camera, loop_values('vlac_reward_node'), exp.reward_node)
    started = time.monotonic()
    trainer_dir = root / 'trainer'
    trainer = {**exp.trainer, **spec.trainer, 'rewards.option': spec.reward}

    def evaluate(episodes: int) -> None:
        policy = load_policy('compact', str(policy_dir), 'cpu', seed=args.seed)
        weights = sorted((trainer_dir / 'weights').glob('policy_v*.safetensors'))
        version = 0
        if weights:
            policy.load_weights(weights[-1], sha256_file(weights[-1]))
            version = int(weights[-1].stem.split('_v')[1])
        outcomes = evaluate_on(robot, policy, version, get_task(task), seeds, limit)
        rate = sum(o.sim_success for o in outcomes) / len(outcomes)
        append_eval(root / 'eval.csv', {
            'episodes': episodes, 'success_rate': rate, 'greedy_success_rate': '',
            'mean_max_progress': round(sum(o.max_progress for o in outcomes) / len(outcomes),
                                       4),
            'policy_version': version, 'train_success_rate': '',
            'wall_s': round(time.monotonic() - started, 1)})
        print(f'live: eval after {episodes} episodes (v{version}): success {rate:.2f}',
              flush=True)

    apply_loopback_env()
    try:
        evaluate(0)
        with RosGraph(root / 'nodes') as graph:
            _, client = start_loop(graph, models / 'critic', policy_dir, trainer_dir, task,
                                   camera=exp.camera, trainer=trainer)
            for k in range(args.episodes):
                result = run_episode(client, task, training_seed(args.seed, k), limit)
                print(f'live: episode {k + 1}/{args.episodes}: {result.termination_reason}, '
                      f'return {result.episode_return:+.3f}', flush=True)
                if (k + 1) % args.every == 0:
                    time.sleep(3.0)  # the update of the last episodes, if one is due
                    evaluate(k + 1)
    finally:
        robot.close()
    print(f'live: {len(read_eval(root / "eval.csv"))} evaluation points in {root} '
          f'({time.monotonic() - started:.0f} s)')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    return run('vlac_live_curve', LiveCurveArgs, live_curve, argv)


if __name__ == '__main__':
    sys.exit(main())
