"""Benchmark of several robots on one learner: episodes per hour and learner samples/s.

  benchmark_fleet [--robots 1 2 4] [--seconds 120] [--episode 5.0] [--task press_button]

For each robot count N: the whole loop on a private loopback DDS domain (``start_fleet``:
N simulated arms in robot_1..N, each with its simulator, critic, policy node and runner in
their own processes, and one trainer_node learning from all of them, config/loop.yaml), the
shipped press_button models (``models/press_button``; ``--models`` for others), and an
episode driver keeping every robot busy (``drive_fleet``) for ``--seconds`` after one warm-up
episode per robot (the policy nodes load their models then). Printed per N:

- episodes finished per hour, in total and per robot, and the mean episode wall time;
- transitions produced per second (what the robots feed the learner);
- the learner's samples per second during updates (``train/samples_per_second`` of
  ``logs/updates.csv``) and the number of updates;
- how many robots each update learned from (``logs/robots.csv``).

All N robots share this machine's cores with the trainer, so the figures say what one host
sustains, not what N robot PCs would.
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[3]


def _rows(path: pathlib.Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def run_fleet(robots: int, seconds: float, episode: float, task: str,
              models: pathlib.Path) -> dict:
    """One measurement with ``robots`` robots; its figures."""
    from vlac_testing.ros_graph import RosGraph

    from vlac_bench.sim_loop import drive_fleet, start_fleet

    with tempfile.TemporaryDirectory(prefix=f'fleet{robots}_') as tmp, \
            RosGraph(pathlib.Path(tmp) / 'graph') as graph:
        work = pathlib.Path(tmp) / 'work'
        _, clients = start_fleet(graph, robots, models / 'critic', models / 'policy', work,
                                 task)
        # Warm-up (not counted): each policy node configures and loads its model on its
        # first episode, tens of seconds on a loaded machine.
        drive_fleet(clients, task, episode, episodes=1, first_seed=90000)
        warm = len(_rows(work / 'logs' / 'updates.csv'))
        started = time.monotonic()
        results = drive_fleet(clients, task, episode, seconds=seconds)
        wall = time.monotonic() - started
        time.sleep(5.0)  # the last update's logs
        updates = _rows(work / 'logs' / 'updates.csv')[warm:]
        per_update = [r for r in _rows(work / 'logs' / 'robots.csv')
                      if int(r['policy_version']) > warm]
    finished = [r for per_robot in results for r in per_robot
                if not r.termination_reason.startswith('aborted')]
    robots_per_update = {}
    for row in per_update:
        robots_per_update.setdefault(row['policy_version'], set()).add(row['robot'])
    reasons: dict[str, int] = {}
    for per_robot in results:
        for r in per_robot:
            key = r.termination_reason[:90]
            reasons[key] = reasons.get(key, 0) + 1
    return {
        'robots': robots, 'wall': wall, 'episodes': len(finished), 'reasons': reasons,
        'per_robot': [len(r) for r in results],
        'transitions': sum(r.steps for r in finished),
        'updates': len(updates),
        'samples_per_second': float(np.mean([float(u['train/samples_per_second'])
                                             for u in updates])) if updates else float('nan'),
        'robots_per_update': float(np.mean([len(v) for v in robots_per_update.values()]))
        if robots_per_update else float('nan')}


def report(figures: dict) -> list[str]:
    """The printed lines of one measurement."""
    n, wall = figures['robots'], figures['wall']
    per_hour = figures['episodes'] * 3600.0 / wall
    return [
        f'{n} robot(s), {wall:.0f} s: {per_hour:.0f} episodes/h ({per_hour / n:.0f} per robot; '
        f'per robot {figures["per_robot"]}), {figures["transitions"] / wall:.1f} transitions/s '
        f'to the learner',
        f'{n} robot(s): learner {figures["samples_per_second"]:.0f} samples/s during '
        f'{figures["updates"]} updates, {figures["robots_per_update"]:.1f} robots per update; '
        f'episode ends {figures["reasons"]}']


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark; 0 when every robot count ran."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--robots', type=int, nargs='+', default=[1, 2, 4],
                        help='robot counts to measure')
    parser.add_argument('--seconds', type=float, default=120.0,
                        help='driving time per robot count, s')
    parser.add_argument('--episode', type=float, default=5.0, help='episode time limit, s')
    parser.add_argument('--task', default='press_button', help='simulated task')
    parser.add_argument('--models', default=str(REPO / 'models' / 'press_button'),
                        help='folder with critic/ and policy/ (default: the shipped ones)')
    args = parser.parse_args(argv)
    if any(not 1 <= n <= 16 for n in args.robots):
        parser.error(f'--robots {args.robots}: each must be in 1..16')
    models = pathlib.Path(args.models)
    if not (models / 'critic').is_dir() or not (models / 'policy').is_dir():
        parser.error(f'--models {models} must hold critic/ and policy/')
    print(f'benchmark_fleet: {args.task}, {args.episode} s episodes, {args.seconds:.0f} s per '
          f'robot count, {os.cpu_count()} cores, models {models}', flush=True)
    for n in args.robots:
        for line in report(run_fleet(n, args.seconds, args.episode, args.task, models)):
            print(line, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
