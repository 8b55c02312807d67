"""vlac_demo: the whole VLAC loop on the simulated arm, one command, no ROS installation.

  vlac_demo [--task press_button] [--episodes 12] [--work artifacts/demo]
            [--critic DIR] [--policy DIR]

1. Records expert demonstrations of the task with the simulator (``record_dataset``), unless
   both models are given.
2. Trains the compact progress critic on them (``train_critic``) and behaviour-clones the
   compact policy (``train_policy_bc``): the paper's starting point before RL.
3. Starts the loop as separate processes on a private, loopback-only DDS domain: sim_node,
   vlac_reward_node, vlac_policy_node, episode_runner and trainer_node.
4. Runs the episodes through the runner's RunEpisode action and prints, per episode, the
   outcome, the critic's return, the steps and the policy version that acted; the trainer
   updates the policy and ships new versions as episodes come in.
Everything lands under ``--work``: demonstrations, models, the trainer's episode store,
checkpoints, TensorBoard logs (``trainer/logs``) and the robot-side episode bags. A second run
reuses the recorded data and trained models found there.
"""

from __future__ import annotations

from dataclasses import dataclass
import pathlib
import sys
import time
from typing import Callable, Literal

from vlac_sim.tasks import TASKS
from vlac_training.cli import parse


def prepare_models(work: pathlib.Path, task: str, demos: int, critic: pathlib.Path,
                   policy: pathlib.Path, say: Callable[[str], None]) -> bool:
    """Record demonstrations and train whichever model is missing; False if training failed.

    The starting point of the paper's loop: a compact critic and a behaviour-cloned compact
    policy from ``demos`` expert demonstrations of ``task`` (96 px camera), under ``work``.
    """
    if not (critic / 'config.json').is_file() or not (policy / 'config.json').is_file():
        from vlac_sim.record import record_dataset
        from vlac_sim.scene import CameraSpec

        say(f'recording {demos} expert demonstrations of {task} (simulator)')
        record_dataset(work / 'demos', [task], episodes=demos, failures=0,
                       camera=CameraSpec(width=96, height=96, rate_hz=10.0),
                       log=lambda *_: None)
    if not (critic / 'config.json').is_file():
        from vlac_training.train_critic import main as train_critic

        say('training the compact progress critic (train_critic)')
        if train_critic(['--data', str(work / 'demos'), '--out', str(critic), '--epochs', '20',
                         '--holdout', '0.0']) != 0:
            return False
    if not (policy / 'config.json').is_file():
        from vlac_training.train_bc import main as train_bc

        say('behaviour-cloning the compact policy (train_policy_bc)')
        if train_bc(['--data', str(work / 'demos'), '--out', str(policy), '--epochs', '20',
                     '--frame-size', '64']) != 0:
            return False
    return True


@dataclass
class DemoArgs:
    """The whole VLAC loop on the simulated arm: demonstrations, critic, BC policy, RL episodes."""

    task: Literal[tuple(TASKS)] = 'press_button'  # type: ignore[valid-type]
    """simulator task to learn"""
    episodes: int = 12
    """RL episodes to run through the episode runner"""
    duration: float = 12.0
    """episode time limit, s"""
    demos: int = 12
    """expert demonstrations recorded for the critic and the behaviour-cloned policy"""
    work: str = 'artifacts/demo'
    """folder for everything (reused by a second run)"""
    critic: str = ''
    """use this critic model directory instead of training one"""
    policy: str = ''
    """use this initial policy directory instead of behaviour-cloning one"""


def main(argv: list[str] | None = None) -> int:
    """Prepare models if needed, start the loop, run the episodes."""
    try:
        args = parse(DemoArgs, argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    work = pathlib.Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    critic = pathlib.Path(args.critic).resolve() if args.critic else work / 'critic'
    policy = pathlib.Path(args.policy).resolve() if args.policy else work / 'policy'
    started = time.monotonic()

    def say(text: str) -> None:
        print(f'[vlac_demo {time.monotonic() - started:6.1f} s] {text}', flush=True)

    if not prepare_models(work, args.task, args.demos, critic, policy, say):
        return 1

    from vlac_ros.dds import apply_loopback_env
    from vlac_testing.ros_graph import RosGraph

    from vlac_bench.sim_loop import run_episode, start_loop

    apply_loopback_env()
    run_dir = work / time.strftime('run_%Y%m%d_%H%M%S')
    say(f'starting sim, critic, policy, runner and trainer (node logs: {run_dir}/*.log)')
    printed = 0

    def new_updates(graph) -> list[str]:
        nonlocal printed
        lines = [line.split(']: ', 1)[1] for line in graph.logs().splitlines()
                 if '[trainer_node]: update ' in line]
        fresh, printed = lines[printed:], len(lines)
        return fresh

    with RosGraph(run_dir) as graph:
        _, client = start_loop(graph, critic, policy, run_dir / 'trainer', args.task,
                               trainer={'learner.min_transitions': 200})
        for seed in range(args.episodes):
            result = run_episode(client, args.task, 100 + seed, args.duration)
            say(f'episode {seed + 1}/{args.episodes}: {result.termination_reason:8s} '
                f'{"success" if result.success else "       "} return '
                f'{result.episode_return:+.3f}, {result.steps} steps')
            for line in new_updates(graph):
                say(line)
        for line in new_updates(graph):
            say(line)
    tensorboard = pathlib.Path(sys.executable).parent / 'tensorboard'
    say(f'done: episode bags in {run_dir / "trainer" / "robot_episodes"}, checkpoints in '
        f'{run_dir / "trainer" / "checkpoints"}; TensorBoard: {tensorboard} --logdir '
        f'{run_dir / "trainer" / "logs"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
