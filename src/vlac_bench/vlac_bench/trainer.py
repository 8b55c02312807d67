"""Benchmark of the trainer; prints its figures.

  benchmark_trainer --policy POLICY_DIR --critic CRITIC_DIR [--episodes 4] [--camera 96]

1. Learner samples/s: PPO updates of the compact policy on episodes the loop recorded (the
   trainer's own episode store from part 2), timed by the learner (``train/samples_per_second``
   over one forced update on all of them, with the configured epochs).
2. Loop latency over real DDS (sim + critic + policy + runner + trainer, separate processes,
   loopback): for each update, the time from the end of the episode that completed the batch
   (its EpisodeResult end_time) to the first control step acting with the new weights (the
   first transition carrying the new version), p50 and max. Includes the trainer's settle time
   (1 s), the update, the checkpoint, the weights file, the policy node's verified load and the
   next episode's start.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import threading

import numpy as np
from vlac_models.stamps import stamp_seconds


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--policy', required=True, help='initial compact policy directory')
    parser.add_argument('--critic', required=True, help='compact critic directory')
    parser.add_argument('--task', default='press_button')
    parser.add_argument('--episodes', type=int, default=6)
    parser.add_argument('--duration', type=float, default=4.0, help='episode length, s')
    parser.add_argument('--camera', type=int, default=96, help='square camera size, px')
    parser.add_argument('--min-transitions', type=int, default=60)
    args = parser.parse_args(argv)
    args.policy = str(pathlib.Path(args.policy).resolve())
    args.critic = str(pathlib.Path(args.critic).resolve())

    from rl_trainer.learner import Learner, LearnerConfig
    from rl_trainer.ppo import PPOConfig
    from rl_trainer.rewards import RewardOptions
    from vlac_ros.dds import apply_loopback_env
    from vlac_ros.qos import TRANSITIONS
    from vlac_testing.ros_graph import RosGraph

    from vlac_bench.sim_loop import run_episode, start_loop
    from vlac_interfaces.msg import Transition

    apply_loopback_env()
    first_step: dict[int, float] = {}
    lock = threading.Lock()

    def on_transition(msg: Transition) -> None:
        stamp = stamp_seconds(msg.action_stamp)
        with lock:
            first_step.setdefault(int(msg.policy_version), stamp)

    trainer_params = {'learner.min_transitions': args.min_transitions,
                      'rewards.max_uncovered_fraction': 0.6, 'tensorboard': False}
    with tempfile.TemporaryDirectory() as tmp, RosGraph(tmp) as graph:
        work = pathlib.Path(tmp) / 'trainer'
        _, client = start_loop(graph, pathlib.Path(args.critic), pathlib.Path(args.policy),
                               work, args.task, camera=args.camera, trainer=trainer_params)
        graph.node.create_subscription(Transition, '/robot_1/transitions', on_transition,
                                       TRANSITIONS)
        ends = []
        for seed in range(args.episodes):
            result = run_episode(client, args.task, seed, args.duration)
            ends.append(result)
        graph.wait_for(lambda: True, 1.0)
        logs = graph.logs()
        updates = [line for line in logs.splitlines() if '[trainer_node]: update ' in line]
        latencies = []
        for version in sorted(v for v in first_step if v > 0):
            # The episode that completed the batch: the last one ending before that version
            # acted; its end is read from the runner's bag metadata via the episode store.
            acted = first_step[version]
            finished = [float(line.split('[')[2].split(']')[0])
                        for line in logs.splitlines()
                        if '[robot_1.episode_runner]: episode' in line and ': timeout,' in line
                        or '[robot_1.episode_runner]: episode' in line and ': done,' in line]
            before = [t for t in finished if t < acted]
            if before:
                latencies.append(acted - max(before))
        print(f'loop: {len(ends)} episodes of {args.duration:.0f} s, {len(updates)} updates; '
              f'episode end -> new weights acting: '
              + (f'p50 {np.median(latencies):.2f} s, max {max(latencies):.2f} s'
                 if latencies else 'no update reached the robot'), flush=True)
        for line in updates:
            print('  ' + line.split(']: ', 1)[1])
        learner = Learner(LearnerConfig(model_path=args.policy, work_dir=str(pathlib.Path(tmp)
                                                                             / 'bench'),
                                        min_transitions=1),
                          PPOConfig(), RewardOptions(max_uncovered_fraction=0.6))
        from rl_trainer.storage import EpisodeStore

        store = EpisodeStore(work / 'episodes')
        for key in store.keys():
            episode = store.load(key)
            robot, episode_id = key.split('/', 1)
            learner.ingest(robot, episode_id, episode.transitions, episode.progress,
                           episode.result)
        stats = learner.train_if_ready(force=True)
        if stats:
            print(f'learner: {int(stats["train/samples"])} samples, PPO update with '
                  f'{PPOConfig().epochs} epochs in {stats["train/seconds"]:.2f} s: '
                  f'{stats["train/samples_per_second"]:.1f} samples/s '
                  f'(compact policy, {args.camera}x{args.camera} camera, CPU)', flush=True)


if __name__ == '__main__':
    main()
