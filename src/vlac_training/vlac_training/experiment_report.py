"""Collect experiment runs into docs/results: the learning-curve CSV, one PNG per task, a table.

  vlac_experiment_report config/experiments/press_button.yaml [...] [--out docs/results]

Reads every run's ``eval.csv`` (written by ``vlac_experiment``) and writes:

- ``<out>/learning_curves.csv``: ``task,variant,reward,seed,episodes,success_rate``, one row
  per evaluation point (sampled actions on the evaluation seeds);
- ``<out>/<task>.png``: success rate against training episodes, the mean over seeds as a line
  and the range over seeds shaded, one line per variant/reward;
- ``<out>/table.md``: per task and run, the seeds, the success before and at the end (mean and
  spread), the first evaluation point whose mean reaches 80 %, the wall time per run, and
  what the training episodes themselves showed: how often the critic declared done, how often
  the simulator's success held, and the mean return of successful and failed episodes;
- ``<out>/live_vs_lockstep.csv`` and ``<out>/<task>_live_vs_lockstep.png``: where
  ``vlac_live_curve`` ran an experiment's first episodes through the live loop, its
  evaluation points next to the lock-step run of the same run and seed (column ``path``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
import pathlib
import sys
from typing import Annotated

import numpy as np

from vlac_training.cli import Positional, run
from vlac_training.experiment import (
    CURVE_COLUMNS,
    NOT_YET_RUN,
    ExperimentFile,
    curve_rows,
    read_eval,
    run_root,
)

TARGET = 0.8


def curves(rows: list[dict]) -> dict[tuple[str, str, str], dict[int, dict[int, float]]]:
    """(task, variant, reward) -> seed -> episodes -> success rate."""
    out: dict = {}
    for row in rows:
        key = (row['task'], row['variant'], row['reward'])
        out.setdefault(key, {}).setdefault(int(row['seed']), {})[int(row['episodes'])] = \
            float(row['success_rate'])
    return out


def mean_curve(by_seed: dict[int, dict[int, float]]) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray, np.ndarray]:
    """Episodes reached by every seed, and the mean, min and max success there."""
    common = sorted(set.intersection(*(set(c) for c in by_seed.values())))
    values = np.array([[by_seed[s][e] for e in common] for s in sorted(by_seed)])
    return np.array(common), values.mean(0), values.min(0), values.max(0)


def plot(task: str, lines: dict[str, dict[int, dict[int, float]]], path: pathlib.Path
         ) -> None:
    """One PNG: a line (mean) and a band (range over seeds) per run."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, by_seed in sorted(lines.items()):
        episodes, mean, low, high = mean_curve(by_seed)
        if not len(episodes):
            continue
        (line,) = axes.plot(episodes, mean, marker='o', markersize=3,
                            label=f'{label} ({len(by_seed)} seeds)')
        if len(by_seed) > 1:
            axes.fill_between(episodes, low, high, color=line.get_color(), alpha=0.15)
    axes.axhline(TARGET, color='grey', linewidth=0.8, linestyle=':')
    axes.set_xlabel('training episodes')
    axes.set_ylabel('success rate (evaluation seeds, sampled actions)')
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f'{task}: mean over seeds, band = range')
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc='best')
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def training_columns(exp: ExperimentFile, task: str, spec, seeds) -> str:
    """Critic done rate / simulator success rate and mean returns over the training episodes."""
    import json

    episodes = []
    for seed in seeds:
        path = run_root(exp, task, spec, seed) / 'episodes.jsonl'
        if path.is_file():
            episodes += [json.loads(line) for line in path.read_text().splitlines()]
    if not episodes:
        return ' | |'
    done = np.mean([e['critic_success'] for e in episodes])
    sim = np.array([e['sim_success'] for e in episodes], bool)
    returns = np.array([e['return'] for e in episodes])
    won = f'{returns[sim].mean():.2f}' if sim.any() else '-'
    lost = f'{returns[~sim].mean():.2f}' if (~sim).any() else '-'
    return f'{done:.0%} / {sim.mean():.0%} ({len(episodes)}) | {won} / {lost} |'


def table(experiments: list[ExperimentFile], rows: list[dict]) -> str:
    """Markdown table of every run (see the module docstring)."""
    lines = ['| task | variant | reward | seeds | success before | success at the end '
             '| first point >= 80 % | wall time per run | training episodes: critic done / '
             'simulator success | return: successes / failures |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    grouped = curves(rows)
    for exp in experiments:
        for task in exp.tasks:
            for spec in exp.runs:
                key = (task, spec.curve_variant, spec.reward)
                if spec.variant in NOT_YET_RUN or key not in grouped:
                    lines.append(f'| {task} | {spec.curve_variant} | {spec.reward} | - | '
                                 'not yet run | | | | | |')
                    continue
                reached = {s: c for s, c in grouped[key].items() if max(c) >= exp.episodes}
                partial = {s: max(c) for s, c in grouped[key].items() if s not in reached}
                note = ''.join(f' (+ seed {s} at {e})' for s, e in partial.items())
                if not reached:
                    lines.append(f'| {task} | {spec.curve_variant} | {spec.reward} | 0{note} '
                                 '| in progress | | | | | |')
                    continue
                by_seed = reached
                episodes, mean, low, high = mean_curve(by_seed)
                first = [int(e) for e, m in zip(episodes, mean, strict=True) if m >= TARGET]
                walls = [float(r[-1]['wall_s']) for s in by_seed
                         if (r := read_eval(run_root(exp, task, spec, s) / 'eval.csv'))]
                lines.append(
                    f'| {task} | {spec.curve_variant} | {spec.reward} | {len(by_seed)}{note} | '
                    f'{mean[0]:.2f} | {mean[-1]:.2f} ({low[-1]:.2f}-{high[-1]:.2f}) after '
                    f'{int(episodes[-1])} | {first[0] if first else "not reached"} | '
                    f'{np.mean(walls) / 60:.0f} min | '
                    + training_columns(exp, task, spec, by_seed))
    return '\n'.join(lines) + '\n'


def live_rows(experiments: list[ExperimentFile]) -> list[dict]:
    """Live-loop evaluation points and the lock-step points of the same run and seed."""
    rows = []
    for exp in experiments:
        live_root = pathlib.Path(exp.work) / exp.name / 'live'
        for spec in exp.runs:
            for path in sorted((live_root / spec.name).glob('seed*/eval.csv')):
                seed = int(path.parent.name[4:])
                live = read_eval(path)
                horizon = max((int(r['episodes']) for r in live), default=0)
                for path_name, points in (
                        ('live loop', live),
                        ('lock-step', read_eval(run_root(exp, exp.tasks[0], spec, seed)
                                                / 'eval.csv'))):
                    rows += [{'path': path_name, 'task': exp.tasks[0],
                              'variant': spec.curve_variant, 'reward': spec.reward,
                              'seed': seed, 'episodes': int(r['episodes']),
                              'success_rate': float(r['success_rate'])}
                             for r in points if int(r['episodes']) <= max(horizon, 50)]
    return rows


@dataclass
class ReportArgs:
    """Write docs/results from the runs of experiment files."""

    experiments: Annotated[tuple[str, ...], Positional]
    """experiment YAML files"""
    out: str = 'docs/results'
    """output folder"""
    work: str = ''
    """work folder override (default: each file's)"""


def report(args: ReportArgs) -> int:
    """Collect, plot, tabulate."""
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    experiments = [ExperimentFile.load(path) for path in args.experiments]
    if args.work:
        experiments = [replace(exp, work=args.work) for exp in experiments]
    rows = [row for exp in experiments for row in curve_rows(exp)]
    with (out / 'learning_curves.csv').open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    budget = {t: exp.episodes for exp in experiments for t in exp.tasks}
    grouped = {key: {s: c for s, c in by_seed.items() if max(c) >= budget[key[0]]}
               for key, by_seed in curves(rows).items()}
    for task in dict.fromkeys(t for exp in experiments for t in exp.tasks):
        lines = {f'{v}/{r}': c for (t, v, r), c in grouped.items() if t == task and c}
        if lines:
            plot(task, lines, out / f'{task}.png')
    live = live_rows(experiments)
    if live:
        with (out / 'live_vs_lockstep.csv').open('w', newline='') as handle:
            writer = csv.DictWriter(handle, fieldnames=('path', *CURVE_COLUMNS))
            writer.writeheader()
            writer.writerows(live)
        for task in dict.fromkeys(r['task'] for r in live):
            mine = [r for r in live if r['task'] == task]
            plot(task, {f'{r["path"]} {r["variant"]}/{r["reward"]} seed {r["seed"]}':
                        {0: {int(x['episodes']): float(x['success_rate']) for x in mine
                             if (x['path'], x['variant'], x['reward'], x['seed']) ==
                             (r['path'], r['variant'], r['reward'], r['seed'])}}
                        for r in mine}, out / f'{task}_live_vs_lockstep.png')
    text = table(experiments, rows)
    (out / 'table.md').write_text(text)
    print(text, end='')
    print(f'wrote {out / "learning_curves.csv"} ({len(rows)} rows), PNGs and table.md')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    return run('vlac_experiment_report', ReportArgs, report, argv)


if __name__ == '__main__':
    sys.exit(main())
