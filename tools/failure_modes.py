"""Where a policy's press_button episodes end: success, and the fingertip's offset from the button.

  .venv/bin/python tools/failure_modes.py POLICY_DIR [--greedy] [--first-seed 50000] [--n 16]

Runs the policy on the lock-step robot of the experiment runner (``vlac_training.experiment``)
from reset seeds no training or evaluation episode uses, and prints per episode: success, steps,
the horizontal distance between the fingertip and the button's centre and the fingertip's
height above the button's top at the end (m). docs/results/README.md quotes its output.
"""

import argparse

import numpy as np
import torch
from vlac_models.policy.base import load_policy
from vlac_sim.tasks import _button_top, get_task
from vlac_training.experiment import LockstepRobot, evaluate_on, loop_values


def main() -> None:
    """Parse the arguments, run the episodes, print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('policy')
    parser.add_argument('--greedy', action='store_true')
    parser.add_argument('--first-seed', type=int, default=50000)
    parser.add_argument('--n', type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = get_task('press_button')
    policy = load_policy('compact', args.policy, 'cpu', seed=0)
    robot = LockstepRobot(96, loop_values('vlac_reward_node'), {})
    for seed in range(args.first_seed, args.first_seed + args.n):
        outcome = evaluate_on(robot, policy, 0, task, [seed], 5.0, args.greedy)[0]
        offset = robot.scene.ee_pose()[0] - _button_top(robot.scene)
        print(f'seed {seed}: success {outcome.sim_success}, {outcome.steps} steps, '
              f'xy {np.linalg.norm(offset[:2]):.3f} m, z {offset[2]:+.3f} m', flush=True)
    robot.close()


if __name__ == '__main__':
    main()
