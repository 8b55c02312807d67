"""train_offline: train the policy from a folder of recorded episode bags, no robot running.

  train_offline --episodes DIR [DIR ...] --model-path INITIAL_POLICY_DIR --work-dir OUT
                [--option progress|success|progress+success] [--epochs 4] [--lr 3e-4] ...

(``train_offline --help`` lists every option: the trainer node's learner, PPO and reward
settings, the same dataclasses.)

Every bag folder under the given folders that holds vlac_interfaces Transition messages (the
episode runner's recordings or a trainer's episode store) is read, stored in OUT's episode
store (so a second run on the same folder trains nothing twice), and one PPO update runs on
everything not trained yet, with checkpoints and weights written as the trainer node does.
Prints the update line and where the new weights are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import pathlib
import sys
from typing import Annotated

from rl_trainer.learner import Learner, LearnerConfig, read_episode_bag
from rl_trainer.ppo import PPOConfig
from rl_trainer.rewards import RewardOptions

from vlac_training.cli import Flat, run


def find_bags(roots: list[str]) -> list[pathlib.Path]:
    """Bag folders (with metadata.yaml) under ``roots``, skipping staged recordings."""
    found = []
    for root in roots:
        for meta in sorted(pathlib.Path(root).rglob('metadata.yaml')):
            if not any(part.startswith('.') for part in meta.parent.parts[-3:]):
                found.append(meta.parent)
    return found


@dataclass
class TrainOfflineArgs:
    """Train the policy from recorded episode bags (PPO, as the trainer node does), no robot."""

    episodes: tuple[str, ...]
    """folders searched for episode bags"""
    learner: Annotated[LearnerConfig, Flat] = field(
        default_factory=lambda: LearnerConfig(min_transitions=1))
    ppo: Annotated[PPOConfig, Flat] = field(default_factory=PPOConfig)
    rewards: Annotated[RewardOptions, Flat] = field(default_factory=RewardOptions)


def train_offline(args: TrainOfflineArgs) -> int:
    """Ingest the bags, train once; return the exit status (ValueError for bad settings)."""
    try:
        learner = Learner(args.learner.validate(), args.ppo.validate(),
                          args.rewards.validate())
    except (RuntimeError, OSError) as err:
        raise ValueError(str(err)) from err
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


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (options from LearnerConfig, PPOConfig, RewardOptions)."""
    return run('train_offline', TrainOfflineArgs, train_offline, argv)


if __name__ == '__main__':
    sys.exit(main())
