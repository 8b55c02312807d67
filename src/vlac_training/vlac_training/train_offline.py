"""train_offline: train the policy from a folder of recorded episode bags, no robot running.

  train_offline --episodes DIR [DIR ...] --model INITIAL_POLICY_DIR --work-dir OUT
                [--reward progress|success|progress+success] [--epochs 4] [--lr 3e-4]
                [--bc-coef 0.0]

Every bag folder under the given folders that holds vlac_interfaces Transition messages (the
episode runner's recordings or a trainer's episode store) is read, stored in OUT's episode
store (so a second run on the same folder trains nothing twice), and one PPO update runs on
everything not trained yet, with checkpoints and weights written as the trainer node does.
Prints the update line and where the new weights are.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from rl_trainer.learner import Learner, LearnerConfig, read_episode_bag
from rl_trainer.ppo import PPOConfig
from rl_trainer.rewards import RewardOptions


def find_bags(roots: list[str]) -> list[pathlib.Path]:
    """Bag folders (with metadata.yaml) under ``roots``, skipping staged recordings."""
    found = []
    for root in roots:
        for meta in sorted(pathlib.Path(root).rglob('metadata.yaml')):
            if not any(part.startswith('.') for part in meta.parent.parts[-3:]):
                found.append(meta.parent)
    return found


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, ingest the bags, train once; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', nargs='+', required=True, help='folders of episode bags')
    parser.add_argument('--model', required=True, help='initial policy model directory')
    parser.add_argument('--work-dir', required=True, help='trainer folder (store, checkpoints)')
    parser.add_argument('--backend', default='compact', choices=('compact', 'vlac'))
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--reward', default='progress',
                        choices=('progress', 'success', 'progress+success'))
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--lr', type=float, default=3e-4)
    parser.add_argument('--bc-coef', type=float, default=0.0)
    args = parser.parse_args(argv)
    try:
        learner = Learner(
            LearnerConfig(backend=args.backend, model_path=args.model, device=args.device,
                          work_dir=args.work_dir, min_transitions=1),
            PPOConfig(epochs=args.epochs, lr=args.lr, bc_coef=args.bc_coef),
            RewardOptions(option=args.reward))
    except (ValueError, RuntimeError, OSError) as err:
        print(f'train_offline: {err}', file=sys.stderr)
        return 2
    bags = find_bags(args.episodes)
    stored = 0
    for path in bags:
        episode = read_episode_bag(path)
        if not episode.transitions:
            continue
        robot = episode.transitions[0].robot_id or 'robot'
        _, created = learner.ingest(robot, episode.transitions[0].episode_id or path.name,
                                    episode.transitions, episode.progress, episode.result)
        stored += int(created)
    print(f'train_offline: {len(bags)} bag folders, {stored} new episodes stored, '
          f'{len(learner.pending())} pending', flush=True)
    stats = learner.train_if_ready(force=True)
    if stats is None:
        print('train_offline: nothing to train on')
        return 0
    if stats.get('skipped'):
        print(f'train_offline: update skipped: {stats.get("error")}', file=sys.stderr)
        return 1
    print(learner.summary(stats))
    print(f'train_offline: version {learner.version} weights {stats["artifact"]} '
          f'(sha256 {stats["sha256"]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
