"""Closed-loop evaluation of a policy model directory in the simulator, without ROS.

  evaluate_policy --model DIR [--backend compact] [--tasks press_button,pick_place_red]
                  [--episodes 20] [--seed 1000] [--sample] [--json FILE]

For every task, ``--episodes`` seeded episodes (seeds ``--seed``, ``--seed + 1``, ...; keep
them apart from the training recordings', which start at 0) run on one ``PandaScene`` driven by
an ``ArmController``, exactly as the live stack would drive the arm through a servo adapter:

- every control period (the policy's ``control_period``, 0.1 s by default) the camera renders
  (224x224 at the recorder's camera pose unless told otherwise), the state is read as the
  policy node reads it (end-effector pose in the base frame as x y z roll pitch yaw, finger
  opening / 0.08 m) and the policy acts (greedy unless ``--sample``);
- the action's pose delta becomes a servo twist held for the period: linear = translation /
  period, angular = log(R_d) / period with ``R_d`` the roll/pitch/yaw delta rotation (what the
  policy node's ``servo`` adapter publishes on ``servo_node/delta_twist_cmds``), and the
  gripper command becomes a finger opening of 0.08 m (open, >= 0.5) or 0 m (close), as the
  ``position`` gripper adapter publishes on ``gripper_controller/commands``;
- the controller and the physics advance in ``--sim-dt`` steps (0.05 s, the recorder's) until
  the next period.

An episode succeeds when the task's success condition holds for 0.5 s in a row (the episode
then ends, as the scripted experts' do) or holds at the task's time limit. Prints the success
rate per task and overall; ``--json`` also writes every episode's outcome.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import json
import pathlib
import sys
import time

import numpy as np
from scipy.spatial.transform import Rotation
from vlac_models.policy.base import EefAction, Policy, PolicyError, PolicyObservation, load_policy
from vlac_models.state import policy_state
from vlac_sim.control import ArmController
from vlac_sim.scene import MAX_GRIPPER_WIDTH, CameraSpec, PandaScene
from vlac_sim.tasks import TASKS, Task, get_task, reset_scene

from vlac_training.cli import run

SETTLE = 0.5  # s the success condition must hold to end an episode early
FIRST_SEED = 1000


@dataclass
class RolloutOutcome:
    """One closed-loop episode.

    Attributes:
        task: task name.
        seed: reset seed.
        success: success held for ``SETTLE`` s, or held at the time limit.
        steps: control periods run.
        duration: simulated seconds.
        final_progress: ground-truth progress at the end, 0..1.
        max_progress: highest ground-truth progress reached, 0..1.
        act_ms: mean policy latency per act, ms.

    """

    task: str
    seed: int
    success: bool
    steps: int
    duration: float
    final_progress: float
    max_progress: float
    act_ms: float


def servo_twist(action: EefAction, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear (m/s) and angular (rad/s) base-frame velocity that performs ``action`` in ``period``.

    angular = log(R_d) / period, ``R_d`` the fixed-axis roll/pitch/yaw delta rotation.
    """
    linear = np.asarray(action.translation, dtype=np.float64) / period
    angular = Rotation.from_euler('xyz', np.asarray(action.rotation, np.float64)).as_rotvec()
    return linear, angular / period


def gripper_opening(action: EefAction) -> float:
    """Finger opening command, m: fully open for a gripper value >= 0.5, else closed."""
    return MAX_GRIPPER_WIDTH if action.gripper >= 0.5 else 0.0


def observe(scene: PandaScene, cameras: list[CameraSpec], task: Task) -> PolicyObservation:
    """The policy's observation of the scene: rendered images, state, task sentence."""
    position, quaternion = scene.ee_pose()
    opening = float(np.clip(scene.gripper_width() / MAX_GRIPPER_WIDTH, 0.0, 1.0))
    return PolicyObservation([scene.render(c) for c in cameras],
                             policy_state(position, Rotation.from_quat(quaternion), opening),
                             task.instruction)


def run_episode(scene: PandaScene, controller: ArmController, policy: Policy, task: Task,
                seed: int, cameras: list[CameraSpec], period: float, sim_dt: float = 0.05,
                deterministic: bool = True, max_duration: float | None = None
                ) -> RolloutOutcome:
    """One closed-loop episode of ``policy`` on ``task`` from the initial state of ``seed``."""
    limit = task.max_duration if max_duration is None else float(max_duration)
    start = reset_scene(scene, task, seed)
    controller.reset()
    if hasattr(policy, 'reset'):
        policy.reset()
    substeps = max(1, int(round(period / sim_dt)))
    dt = period / substeps
    now, steps, success_since, latency = 0.0, 0, None, []
    progress = max_progress = task.progress(scene, start)
    success = False
    while now < limit - 1e-9:
        observation = observe(scene, cameras, task)
        started = time.perf_counter()
        output = policy.act(observation, deterministic=deterministic)
        latency.append(time.perf_counter() - started)
        linear, angular = servo_twist(output.action, period)
        controller.servo(linear, angular, '', now=now)
        controller.gripper(gripper_opening(output.action), now)
        for _ in range(substeps):
            controller.update(now, dt)
            scene.step(dt)
            now += dt
        steps += 1
        progress = task.progress(scene, start)
        max_progress = max(max_progress, progress)
        success = task.success(scene, start)
        if not success:
            success_since = None
        elif success_since is None:
            success_since = now
        elif now - success_since >= SETTLE - 1e-9:
            break
    return RolloutOutcome(task.name, seed, bool(success), steps, round(now, 3),
                          round(float(progress), 4), round(float(max_progress), 4),
                          round(1000.0 * float(np.mean(latency)), 3) if latency else 0.0)


def evaluate(policy: Policy, tasks: list[str], episodes: int, first_seed: int = FIRST_SEED,
             period: float = 0.1, cameras: list[CameraSpec] | None = None,
             sim_dt: float = 0.05, deterministic: bool = True,
             max_duration: float | None = None, log=print) -> list[RolloutOutcome]:
    """Run ``episodes`` seeded episodes of every task; return their outcomes."""
    cameras = cameras or [CameraSpec(rate_hz=10.0)]
    scene = PandaScene()
    controller = ArmController(scene)
    outcomes = []
    try:
        for name in tasks:
            task = get_task(name)
            for k in range(episodes):
                started = time.perf_counter()
                outcome = run_episode(scene, controller, policy, task, first_seed + k, cameras,
                                      period, sim_dt, deterministic, max_duration)
                outcomes.append(outcome)
                log(f'{name:18s} seed {outcome.seed:5d}: '
                    f'{"success" if outcome.success else "failure"} (progress '
                    f'{outcome.final_progress:.2f}, max {outcome.max_progress:.2f}, '
                    f'{outcome.steps} steps, act {outcome.act_ms:.1f} ms, '
                    f'{time.perf_counter() - started:.1f} s)')
    finally:
        scene.close()
    return outcomes


def summary(outcomes: list[RolloutOutcome]) -> dict[str, dict[str, float]]:
    """Success count, episodes and rate per task and overall ('all')."""
    table: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(o.task for o in outcomes):
        mine = [o for o in outcomes if o.task == name]
        wins = sum(o.success for o in mine)
        table[name] = {'success': wins, 'episodes': len(mine), 'rate': wins / len(mine),
                       'mean_max_progress': float(np.mean([o.max_progress for o in mine]))}
    if outcomes:
        wins = sum(o.success for o in outcomes)
        table['all'] = {'success': wins, 'episodes': len(outcomes),
                        'rate': wins / len(outcomes),
                        'mean_max_progress': float(np.mean([o.max_progress for o in outcomes]))}
    return table


@dataclass
class EvaluatePolicyArgs:
    """Evaluate a policy in the simulator on held-out reset seeds; print success per task."""

    model: str
    """policy model directory"""
    backend: str = 'compact'
    """policy backend"""
    device: str = 'cpu'
    """'cpu' or 'cuda[:N]'"""
    tasks: tuple[str, ...] = tuple(TASKS)
    """task names (each may also be a comma-separated list)"""
    episodes: int = 20
    """episodes per task"""
    seed: int = FIRST_SEED
    """first reset seed (apart from the training data's)"""
    sample: bool = False
    """sample actions instead of taking the most likely ones"""
    policy_seed: int = 0
    """seed of the sampled actions"""
    width: int = 224
    """camera width, px"""
    height: int = 224
    """camera height, px"""
    sim_dt: float = 0.05
    """controller and physics step, s"""
    max_duration: float | None = None
    """episode time limit, s (None: the task's)"""
    threads: int = 1
    """torch CPU threads"""
    json: str | None = None
    """write every outcome to this file"""


def evaluate_policy(args: EvaluatePolicyArgs) -> int:
    """Run the evaluation ``args`` describe, print and optionally write it; exit status."""
    tasks = [get_task(name.strip()).name for entry in args.tasks
             for name in entry.split(',') if name.strip()]
    if args.episodes < 1:
        raise ValueError(f'--episodes must be >= 1, got {args.episodes}')
    if not 0.001 <= args.sim_dt <= 0.1:
        raise ValueError(f'--sim-dt {args.sim_dt} outside 0.001..0.1 s')
    camera = CameraSpec(width=args.width, height=args.height, rate_hz=10.0).validate()
    import torch

    torch.set_num_threads(args.threads)
    options = {'seed': args.policy_seed} if args.backend == 'compact' else {}
    try:
        policy = load_policy(args.backend, args.model, args.device, **options)
    except PolicyError as err:
        raise ValueError(str(err)) from err
    config = getattr(policy, 'config', None)
    period = float(getattr(config, 'control_period', 0.1))
    cameras = [camera] * int(getattr(config, 'num_cameras', 1))
    outcomes = evaluate(policy, tasks, args.episodes, args.seed, period, cameras, args.sim_dt,
                        not args.sample, args.max_duration)
    table = summary(outcomes)
    print(f'policy {args.model} ({args.backend}), {"sampled" if args.sample else "greedy"} '
          f'actions every {period:g} s, seeds {args.seed}..{args.seed + args.episodes - 1}')
    for name, row in table.items():
        print(f'{name:18s}: success {row["success"]}/{row["episodes"]} '
              f'({100.0 * row["rate"]:.0f} %), mean max progress {row["mean_max_progress"]:.2f}')
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {'model': args.model, 'summary': table,
             'episodes': [asdict(o) for o in outcomes]}, indent=2) + '\n')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (options from ``EvaluatePolicyArgs``)."""
    return run('evaluate_policy', EvaluatePolicyArgs, evaluate_policy, argv)


if __name__ == '__main__':
    sys.exit(main())
