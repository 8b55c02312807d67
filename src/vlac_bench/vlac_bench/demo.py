"""vlac_demo: the whole VLAC loop on the simulated arm, one command, no ROS installation.

  vlac_demo [--task press_button] [--episodes 40] [--work artifacts/demo] [--fresh]

1. Models: the compact critic and the behaviour-cloned starting policy shipped in
   ``models/<task>/`` (press_button; see models/README.md for the command that made them), or,
   with ``--fresh`` or for another task, recorded and trained here the way the experiment
   runner does it (``vlac_training.experiment.prepare``: 50 expert demonstrations).
2. Before: the starting policy on held-out reset seeds in the simulator (sampled actions, as
   during RL; the lock-step evaluator of the experiment runner).
3. The live loop as separate processes on a private, loopback-only DDS domain: sim_node,
   vlac_reward_node, vlac_policy_node, episode_runner and trainer_node (config/loop.yaml).
   Each episode's outcome is printed as it ends, each policy update as the trainer logs it.
4. After: the newest policy version on the same held-out seeds.
5. A report (``report.md`` with PNGs): success before and after, the episodes' critic returns,
   frames of an episode with the critic's progress drawn on them, and where the episode bags,
   checkpoints, TensorBoard logs and node logs are.
"""

from __future__ import annotations

from dataclasses import dataclass
import pathlib
import shlex
import sys
import threading
import time
from typing import Callable, Literal

from vlac_sim.tasks import TASKS
from vlac_training.cli import parse

EVAL_FIRST_SEED = 100_000  # the experiments' evaluation seeds: no training episode uses them


def shipped_models(task: str) -> pathlib.Path:
    """``models/<task>`` of the source checkout (may not exist)."""
    return pathlib.Path(__file__).resolve().parents[3] / 'models' / task


def prepare_models(work: pathlib.Path, task: str, demos: int, say: Callable[[str], None]
                   ) -> tuple[pathlib.Path, pathlib.Path]:
    """Record ``demos`` demonstrations, train the critic and the BC policy; their folders.

    Demonstrations go to ``<work>/data``, the models to ``<work>/demo/models``.
    """
    from vlac_training.experiment import ExperimentFile, prepare

    exp = ExperimentFile(name='demo', tasks=(task,), demos=demos, seeds=(0,),
                         work=str(work), critic_demos=demos,
                         critic_failures=max(1, demos // 2)).validate()
    models = prepare(exp, log=say)
    return models / 'critic', models / f'policy_{task}_{demos}demos_s0'


def evaluate(policy, task: str, episodes: int, limit: float) -> list:
    """Sampled-action episodes on the held-out seeds (the experiment runner's evaluator)."""
    from vlac_sim.tasks import get_task
    from vlac_training.experiment import LockstepRobot, evaluate_on, loop_values

    robot = LockstepRobot(96, loop_values('vlac_reward_node'), {})
    try:
        return evaluate_on(robot, policy, 0, get_task(task),
                           range(EVAL_FIRST_SEED, EVAL_FIRST_SEED + episodes), limit)
    finally:
        robot.close()


def frames_with_progress(bag: pathlib.Path, out: pathlib.Path, count: int = 5) -> bool:
    """A strip of ``count`` frames of an episode bag with the critic's progress drawn on them.

    Each tile is what the reward node's ``~/debug_image`` showed for that moment
    (``vlac_reward_node.overlay.draw_progress``): the frame, the value curve so far, value,
    delta and done probability.
    """
    import cv2
    import numpy as np
    from vlac_models.stamps import stamp_ns
    from vlac_reward_node.overlay import draw_progress
    from vlac_ros.bags import read_messages
    from vlac_ros.images import image_to_rgb

    frames, scores = [], []
    for topic, _, msg in read_messages(bag):
        if topic.endswith('camera/image_raw'):
            frames.append((stamp_ns(msg.header.stamp), image_to_rgb(msg)))
        elif topic.endswith('/progress'):
            scores.append((stamp_ns(msg.stamp_b), float(msg.value), float(msg.delta),
                           float(msg.done_probability), bool(msg.done)))
    scores.sort()
    if scores:  # the episode's own frames: from the first scored one (not the reset's)
        first = min(s[0] for s in scores) - 300_000_000
        frames = [f for f in frames if f[0] >= first]
    if len(frames) < count or not scores:
        return False
    tiles = []
    for index in np.linspace(0, len(frames) - 1, count).astype(int):
        stamp, rgb = frames[index]
        before = [s for s in scores if s[0] <= stamp]
        value, delta, probability, done = before[-1][1:] if before else (0.0, 0.0, 0.0,
                                                                           False)
        tile = draw_progress(rgb, [s[1] for s in before], value, delta, probability, done,
                             size=192)
        tiles.append(cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
    return bool(cv2.imwrite(str(out), np.hstack(tiles)))


def curve_png(results: list, before: float, after: float, path: pathlib.Path) -> None:
    """The episodes' critic returns and done rate, with success before and after RL."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    returns = [r.episode_return for r in results]
    done = np.array([r.success for r in results], float)
    window = min(10, len(done))
    rolling = np.convolve(done, np.ones(window) / window, mode='valid')
    figure, axes = plt.subplots(figsize=(7, 3.8), dpi=110)
    axes.plot(range(1, len(returns) + 1), returns, '.', alpha=0.5,
              label="episode return (critic's progress)")
    axes.plot(range(window, len(done) + 1), rolling,
              label=f"critic's done, mean of {window} episodes")
    axes.hlines([before, after], [0, len(results)], [len(results) * 0.15, len(results) + 1],
                colors=['grey', 'green'], linewidth=3)
    axes.annotate(f'before: {before:.0%}', (0, before), xytext=(2, 5),
                  textcoords='offset points', color='grey')
    axes.annotate(f'after: {after:.0%}', (len(results), after), xytext=(-60, 5),
                  textcoords='offset points', color='green')
    axes.set_xlabel('RL episode (live loop)')
    axes.set_ylim(min(-0.1, min(returns, default=0.0) - 0.1),
                  max(1.1, max(returns, default=1.0) + 0.1))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc='upper left')
    axes.set_title('held-out success (simulator) before and after; training episodes between')
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


class UpdateTail:
    """Prints the trainer's update and version lines as they appear in its log."""

    def __init__(self, log_path: pathlib.Path, say: Callable[[str], None]) -> None:
        self.log_path, self.say = log_path, say
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.poll()

    def poll(self) -> None:
        """Print new lines (also called once more at the end)."""
        if not self.log_path.is_file():
            return
        lines = [line.split(']: ', 1)[1] for line in
                 self.log_path.read_text(errors='replace').splitlines()
                 if '[trainer_node]: update ' in line or 'published policy version' in line]
        for line in lines[self._seen:]:
            self.say('  trainer: ' + line)
        self._seen = len(lines)

    def close(self) -> None:
        """Stop tailing after a last look."""
        self._stop.set()
        self._thread.join(2.0)
        self.poll()


@dataclass
class DemoArgs:
    """The VLAC loop on the simulated arm: success before, RL episodes, success after, report."""

    task: Literal[tuple(TASKS)] = 'press_button'  # type: ignore[valid-type]
    """simulator task to learn"""
    episodes: int = 40
    """RL episodes through the live loop"""
    duration: float = 5.0
    """episode time limit, s"""
    eval_episodes: int = 16
    """held-out evaluation episodes before and after"""
    demos: int = 50
    """expert demonstrations for the critic and the starting policy (when trained here)"""
    work: str = 'artifacts/demo'
    """folder for everything (trained models are reused by a second run)"""
    fresh: bool = False
    """train the models here even where shipped ones exist"""
    critic: str = ''
    """use this critic model directory"""
    policy: str = ''
    """use this starting policy directory"""


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one linear script
    """Models, before, the live loop, after, report."""
    try:
        args = parse(DemoArgs, argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    work = pathlib.Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f'[vlac_demo {time.monotonic() - started:6.1f} s] {text}', flush=True)

    shipped = shipped_models(args.task)
    if args.critic and args.policy:
        critic, policy = pathlib.Path(args.critic).resolve(), pathlib.Path(args.policy).resolve()
    elif not args.fresh and (shipped / 'critic' / 'config.json').is_file():
        critic, policy = shipped / 'critic', shipped / 'policy'
        say(f'using the shipped critic and starting policy in {shipped} (--fresh trains them)')
    else:
        critic, policy = prepare_models(work, args.task, args.demos, say)

    import torch
    from vlac_models.files import sha256_file
    from vlac_models.policy.base import load_policy

    torch.set_num_threads(1)
    start_policy = load_policy('compact', str(policy), 'cpu', seed=0)
    say(f'before RL: {args.eval_episodes} held-out episodes (seeds {EVAL_FIRST_SEED}..), '
        'sampled actions')
    before = evaluate(start_policy, args.task, args.eval_episodes, args.duration)
    wins_before = sum(o.sim_success for o in before)
    say(f'before RL: success {wins_before}/{len(before)}')

    from vlac_ros.dds import apply_loopback_env
    from vlac_testing.ros_graph import RosGraph

    from vlac_bench.sim_loop import run_episode, start_loop

    apply_loopback_env()
    run_dir = work / time.strftime('run_%Y%m%d_%H%M%S')
    trainer_dir = run_dir / 'trainer'
    say(f'starting sim, critic, policy, runner and trainer; node logs in {run_dir}')
    results = []
    with RosGraph(run_dir) as graph:
        _, client = start_loop(graph, critic, policy, trainer_dir, args.task)
        trainer_log = next(p for p in graph.processes if p.name == 'trainer_node').log_path
        tail = UpdateTail(trainer_log, say)
        try:
            for k in range(args.episodes):
                result = run_episode(client, args.task, k, args.duration)
                results.append(result)
                say(f'episode {k + 1}/{args.episodes}: {result.termination_reason:8s} '
                    f'{"done" if result.success else "    "} return '
                    f'{result.episode_return:+.3f}, {result.steps} steps')
            time.sleep(3.0)  # the last update's lines
        finally:
            tail.close()
        logs = sorted(str(p.log_path) for p in graph.processes)
    weights = sorted((trainer_dir / 'weights').glob('policy_v*.safetensors'))
    after_policy = load_policy('compact', str(policy), 'cpu', seed=0)
    if weights:
        after_policy.load_weights(weights[-1], sha256_file(weights[-1]))
    say(f'after RL ({weights[-1].name if weights else "no update: the starting weights"}): '
        f'{args.eval_episodes} held-out episodes')
    after = evaluate(after_policy, args.task, args.eval_episodes, args.duration)
    wins_after = sum(o.sim_success for o in after)

    report = run_dir / 'report.md'
    curve_png(results, wins_before / len(before), wins_after / len(after),
              run_dir / 'learning.png')
    bags = sorted((trainer_dir / 'robot_episodes').glob('*/*'))
    done = [pathlib.Path(r.bag_path) for r in results if r.success and r.bag_path]
    shown = done[-1] if done else (bags[-1] if bags else None)
    has_frames = shown is not None and frames_with_progress(shown, run_dir / 'frames.png')
    tensorboard = pathlib.Path(sys.executable).parent / 'tensorboard'
    tb_command = (f'{shlex.quote(str(tensorboard))} --logdir '
                  f'{shlex.quote(str(trainer_dir / "logs"))}')
    report.write_text('\n'.join([
        f'# vlac_demo: {args.task}', '',
        f'- Success on {len(before)} held-out seeds (simulator, sampled actions): '
        f'**{wins_before}/{len(before)} before RL, {wins_after}/{len(after)} after** '
        f'{len(results)} RL episodes (weights: '
        f'{weights[-1].name if weights else "the starting ones, no update"}).',
        f'- Critic: `{critic}`; starting policy: `{policy}`.', '',
        '![learning](learning.png)', '',
        *([f"Frames of episode `{shown.name}` with the critic's progress:", '',
           '![frames](frames.png)', ''] if has_frames else []),
        '## Where things are', '',
        f'- episode bags (robot side): `{trainer_dir / "robot_episodes"}`',
        f'- trainer episode store: `{trainer_dir / "episodes"}`',
        f'- checkpoints: `{trainer_dir / "checkpoints"}`; weights: `{trainer_dir / "weights"}`',
        f'- TensorBoard: `{tb_command}`',
        '- node logs: ' + ', '.join(f'`{p}`' for p in logs), '']))
    say(f'report: {report}')
    say(f'episode bags in {trainer_dir / "robot_episodes"}, checkpoints in '
        f'{trainer_dir / "checkpoints"}')
    say(f'TensorBoard: {tb_command}')
    say(f'success on {len(before)} held-out seeds: before {wins_before}/{len(before)} -> '
        f'after {wins_after}/{len(after)} ({len(results)} RL episodes, '
        f'{time.monotonic() - started:.0f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
