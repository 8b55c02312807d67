"""Evaluate a progress critic on recorded trajectories: VOC, VROC, VOC-F1, NR, mismatched tasks.

  evaluate_critic --model MODEL_DIR --backend compact TRAJ [TRAJ ...] [--stride 0.2]
                  [--plots OUT_DIR] [--split-file MODEL_DIR/held_out.json]

TRAJ are rosbag2 folders, folders searched recursively for them, or image folders (sorted
PNG/JPG frames at ``--fps``, task from ``--task`` or a ``task.txt`` beside the frames). With
``--split-file`` (written by ``train_critic``) the trajectories the model was trained on are
skipped, so a whole dataset folder can be given: held-out and never-trained ones remain.

For each trajectory, frames every ``--stride`` seconds are scored pair by pair forward
(``c(f_{k-1}, f_k)``, accumulated into values: VOC) and backward (the video reversed: VROC);
see ``vlac_models.critic.metrics`` for the exact definitions. NR is the share of negative
forward deltas. Done probability is computed for every frame. The mismatched-task check
scores the same forward pairs of each successful trajectory with every other task sentence
present and compares the mean |delta| with that of the matched sentence.

Prints per-trajectory rows and means grouped by task and outcome (custom_data 'success'),
by outcome, by behaviour and overall; ``--plots`` writes one PNG per trajectory (OpenCV:
frame strip, value curve, deltas, done probability).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import os
import pathlib
import re
import sys
from typing import Annotated, Any, Sequence

import cv2
import numpy as np
import tyro
from vlac_models.critic.base import Critic, DoneQuery, PairQuery, load_critic
from vlac_models.critic.metrics import forward_values, trajectory_metrics

from vlac_training.cli import run
from vlac_training.critic_dataset import (
    DEFAULT_IMAGE_TOPIC,
    DEFAULT_TASK_TOPIC,
    IMAGE_SUFFIXES,
    Trajectory,
    find_bags,
    load_bag_trajectory,
    load_image_folder,
)

METRICS = ('voc', 'vroc', 'voc_f1', 'nr')


def outcome_name(success: bool | None) -> str:
    """'success', 'failure' or 'unknown'."""
    return {True: 'success', False: 'failure'}.get(success, 'unknown')


def find_trajectories(paths: Sequence[os.PathLike]) -> list[tuple[str, pathlib.Path]]:
    """('bag' | 'images', folder) for each bag or image folder at or under ``paths``, sorted.

    Raises FileNotFoundError for a path that does not exist or holds no trajectory.
    """
    found: dict[pathlib.Path, str] = {}
    for root in map(pathlib.Path, paths):
        if not root.exists():
            raise FileNotFoundError(f'no such trajectory or folder: {root}')
        bags = find_bags([root])
        found.update((bag, 'bag') for bag in bags)
        if not bags:
            folders = [root] + sorted(p for p in root.rglob('*') if p.is_dir())
            images = [f for f in folders if any(p.suffix.lower() in IMAGE_SUFFIXES
                                                for p in f.iterdir() if p.is_file())]
            if not images:
                raise FileNotFoundError(f'no rosbag2 folder or image folder at or under {root}')
            found.update((f, 'images') for f in images)
    return [(kind, path) for path, kind in sorted(found.items())]


def _split_train_paths(split_file: os.PathLike) -> set[pathlib.Path]:
    path = pathlib.Path(split_file)
    try:
        split = json.loads(path.read_text())
        return {pathlib.Path(p).resolve() for p in split['train']}
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f'{path} is not a train_critic split file: {err}') from err


def score_trajectory(critic: Critic, traj: Trajectory,
                     other_tasks: Sequence[str] = ()) -> dict[str, Any]:
    """Forward and reversed deltas, values, done probabilities and mismatched deltas."""
    frames = list(traj.frames)
    n = len(frames)
    forward = [PairQuery(traj.task, frames[k - 1], frames[k]) for k in range(1, n)]
    backward = [PairQuery(traj.task, frames[n - k], frames[n - 1 - k]) for k in range(1, n)]
    mismatched = [PairQuery(task, q.frame_a, q.frame_b) for task in other_tasks
                  for q in forward]
    deltas = critic.score_pairs(forward + backward + mismatched) if n > 1 \
        else np.zeros(0, np.float32)
    done = critic.done_probability([DoneQuery(traj.task, f) for f in frames])
    forward_deltas = deltas[:n - 1]
    reverse_deltas = deltas[n - 1:2 * (n - 1)]
    other = deltas[2 * (n - 1):].reshape(len(other_tasks), max(n - 1, 0))
    return {'forward': forward_deltas, 'reverse': reverse_deltas, 'done': done,
            'values': forward_values(forward_deltas), 'mismatched': other}


def _mean_rows(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {'n': len(rows)}
    for key in METRICS:
        out[key] = float(np.mean([r[key] for r in rows])) if rows else float('nan')
    return out


def _plot(path: pathlib.Path, traj: Trajectory, scores: dict[str, Any],
          row: dict[str, Any]) -> None:
    """One PNG: frame strip, value curve, deltas and done probability (OpenCV only)."""
    width, thumbs, panel = 1200, 8, 150
    frames = traj.frames
    picks = np.linspace(0, len(frames) - 1, min(thumbs, len(frames))).round().astype(int)
    side = width // thumbs
    strip = np.full((side, width, 3), 255, np.uint8)
    for slot, k in enumerate(picks):
        strip[:, slot * side:(slot + 1) * side] = cv2.resize(frames[k], (side, side),
                                                             interpolation=cv2.INTER_AREA)
        cv2.putText(strip, f'{traj.stamps[k]:.1f}s', (slot * side + 4, 16),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    strip = cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)

    def curve_panel(values: np.ndarray, low: float, high: float, title: str, colour,
                    bars: bool = False, threshold: float | None = None) -> np.ndarray:
        image = np.full((panel, width, 3), 255, np.uint8)
        left, right, top, bottom = 50, width - 10, 22, panel - 12
        cv2.rectangle(image, (left, top), (right, bottom), (200, 200, 200), 1)
        cv2.putText(image, title, (left, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for value in (low, high):
            y = int(bottom - (value - low) / (high - low) * (bottom - top))
            cv2.putText(image, f'{value:.2g}', (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)

        def y_of(v: float) -> int:
            v = float(np.clip(np.nan_to_num(v), low, high))
            return int(round(bottom - (v - low) / (high - low) * (bottom - top)))

        count = max(len(values), 2)
        xs = [int(round(left + k / (count - 1) * (right - left))) for k in range(len(values))]
        if threshold is not None:
            cv2.line(image, (left, y_of(threshold)), (right, y_of(threshold)), (180, 180, 180), 1)
        if bars:
            zero = y_of(0.0)
            cv2.line(image, (left, zero), (right, zero), (150, 150, 150), 1)
            for x, v in zip(xs, values, strict=True):
                cv2.line(image, (x, zero), (x, y_of(v)), colour if v >= 0 else (0, 0, 200), 3)
        else:
            points = np.array([[x, y_of(v)] for x, v in zip(xs, values, strict=True)], np.int32)
            if len(points) > 1:
                cv2.polylines(image, [points], False, colour, 2, cv2.LINE_AA)
        return image

    deltas = scores['forward']
    limit = max(0.05, float(np.nanmax(np.abs(deltas)))) if len(deltas) else 1.0
    title = (f'{traj.task_name} [{traj.behaviour or "-"}, {outcome_name(traj.success)}] '
             f'VOC {row["voc"]:.2f} VROC {row["vroc"]:.2f} F1 {row["voc_f1"]:.2f} '
             f'NR {row["nr"]:.2f}')
    header = np.full((28, width, 3), 255, np.uint8)
    cv2.putText(header, title, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                cv2.LINE_AA)
    canvas = np.concatenate([
        header, strip,
        curve_panel(scores['values'], 0.0, 1.0, 'accumulated value', (200, 120, 0)),
        curve_panel(deltas, -limit, limit, 'pairwise delta c(f[k-1], f[k])', (0, 150, 0),
                    bars=True),
        curve_panel(scores['done'], 0.0, 1.0, 'done probability', (150, 0, 150),
                    threshold=0.9)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f'cannot write plot {path}')


def _plot_name(traj: Trajectory, used: set[str]) -> str:
    parts = pathlib.Path(traj.path).parts[-2:]
    name = re.sub(r'[^A-Za-z0-9_.-]+', '_', '__'.join(parts)) or 'trajectory'
    candidate, k = name, 1
    while candidate in used:
        k += 1
        candidate = f'{name}_{k}'
    used.add(candidate)
    return f'{candidate}.png'


def evaluate(critic: Critic, trajectories: Sequence[Trajectory],
             plots: os.PathLike | None = None, extra_tasks: Sequence[str] = (),
             log=print) -> dict[str, Any]:
    """Score ``trajectories`` with ``critic``; print the tables; return the summary dict.

    ``extra_tasks`` adds task sentences for the mismatched check (besides those of the
    trajectories). Summary keys: 'trajectories' (one row each), 'by_task_outcome',
    'by_outcome', 'by_behaviour', 'overall' (means of VOC, VROC, VOC-F1, NR with counts) and
    'mismatch' (matched and mismatched mean |delta|, their pooled ratio, the ratio per task
    and per task pair).
    """
    sentences = sorted({t.task for t in trajectories} | set(extra_tasks))
    names = {t.task: t.task_name for t in trajectories}
    rows: list[dict[str, Any]] = []
    matched_by_task: dict[str, list[float]] = {}
    mismatch_sum: dict[tuple[str, str], list[float]] = {}
    used: set[str] = set()
    for traj in trajectories:
        others = [s for s in sentences if s != traj.task] if traj.success is not False else []
        scores = score_trajectory(critic, traj, others)
        row = {'path': traj.path, 'task': traj.task, 'task_name': traj.task_name,
               'behaviour': traj.behaviour, 'outcome': outcome_name(traj.success),
               'frames': len(traj.frames),
               **trajectory_metrics(scores['forward'], scores['reverse']),
               'final_value': float(scores['values'][-1]),
               'final_done': float(scores['done'][-1]) if len(scores['done']) else float('nan')}
        finite = np.isfinite(scores['forward'])
        row['nan_pairs'] = int((~finite).sum()) + int((~np.isfinite(scores['reverse'])).sum())
        if others and finite.any():
            row['matched_abs_delta'] = float(np.abs(scores['forward'][finite]).mean())
            acc = matched_by_task.setdefault(traj.task_name, [0.0, 0.0])
            acc[0] += float(np.abs(scores['forward'][finite]).sum())
            acc[1] += int(finite.sum())
            for sentence, deltas in zip(others, scores['mismatched'], strict=True):
                ok = np.isfinite(deltas)
                key = (traj.task_name, names.get(sentence, sentence))
                acc = mismatch_sum.setdefault(key, [0.0, 0.0])
                acc[0] += float(np.abs(deltas[ok]).sum())
                acc[1] += int(ok.sum())
            row['mismatched_abs_delta'] = float(np.nanmean(np.abs(scores['mismatched'])))
        rows.append(row)
        if plots is not None:
            _plot(pathlib.Path(plots) / _plot_name(traj, used), traj, scores, row)

    def grouped(key) -> dict[str, dict[str, float]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(key(row), []).append(row)
        return {name: _mean_rows(members) for name, members in sorted(groups.items())}

    total = [sum(v[0] for v in mismatch_sum.values()), sum(v[1] for v in mismatch_sum.values())]
    matched_n = sum(v[1] for v in matched_by_task.values())
    matched = sum(v[0] for v in matched_by_task.values()) / matched_n if matched_n \
        else float('nan')

    def pair_ratio(task: str, sums: list[float]) -> float:
        own = matched_by_task.get(task, [0.0, 0.0])
        if not sums[1] or not own[1] or own[0] <= 0:
            return float('nan')
        return (sums[0] / sums[1]) / (own[0] / own[1])

    mismatched = total[0] / total[1] if total[1] else float('nan')
    by_task: dict[str, list[float]] = {}  # task -> mismatched |delta| sum and count
    for (task, _), sums in mismatch_sum.items():
        acc = by_task.setdefault(task, [0.0, 0.0])
        acc[0] += sums[0]
        acc[1] += sums[1]
    summary = {
        'model_id': getattr(critic, 'model_id', '?'),
        'trajectories': rows,
        'by_task_outcome': grouped(lambda r: f'{r["task_name"]}/{r["outcome"]}'),
        'by_outcome': grouped(lambda r: r['outcome']),
        'by_behaviour': grouped(lambda r: r['behaviour'] or '-'),
        'overall': _mean_rows(rows),
        'mismatch': {
            'matched_abs_delta': matched, 'mismatched_abs_delta': mismatched,
            'ratio': mismatched / matched if matched_n and total[1] and matched > 0
            else float('nan'),
            'matched_pairs': int(matched_n), 'mismatched_pairs': int(total[1]),
            'by_task': {task: pair_ratio(task, v) for task, v in sorted(by_task.items())},
            'by_task_pair': {f'{a} scored as "{b}"': pair_ratio(a, v)
                             for (a, b), v in sorted(mismatch_sum.items())},
        },
    }
    log(format_report(summary))
    return summary


def format_report(summary: dict[str, Any]) -> str:
    """The summary as plain-text tables."""
    lines = [f'critic {summary["model_id"]}', '',
             f'{"trajectory":44s} {"outcome":8s} {"n":>4s} {"VOC":>7s} {"VROC":>7s} '
             f'{"VOC-F1":>7s} {"NR":>6s} {"value":>6s} {"done":>5s}']
    for r in summary['trajectories']:
        name = '/'.join(pathlib.Path(r['path']).parts[-2:])
        lines.append(f'{name[-44:]:44s} {r["outcome"]:8s} {r["frames"]:4d} {r["voc"]:7.3f} '
                     f'{r["vroc"]:7.3f} {r["voc_f1"]:7.3f} {r["nr"]:6.3f} '
                     f'{r["final_value"]:6.3f} {r["final_done"]:5.2f}')

    def table(title: str, groups: dict[str, dict[str, float]]) -> None:
        lines.extend(['', f'{title:44s} {"n":>4s} {"VOC":>7s} {"VROC":>7s} {"VOC-F1":>7s} '
                      f'{"NR":>6s}'])
        for name, g in groups.items():
            lines.append(f'{name[-44:]:44s} {g["n"]:4d} {g["voc"]:7.3f} {g["vroc"]:7.3f} '
                         f'{g["voc_f1"]:7.3f} {g["nr"]:6.3f}')

    table('task/outcome (means)', summary['by_task_outcome'])
    table('outcome', summary['by_outcome'])
    table('behaviour', summary['by_behaviour'])
    table('overall', {'all': summary['overall']})
    m = summary['mismatch']
    lines += ['', 'mismatched-task check (forward pairs of successful trajectories):',
              f'  mean |delta| matched {m["matched_abs_delta"]:.4f} over {m["matched_pairs"]} '
              f'pairs, mismatched {m["mismatched_abs_delta"]:.4f} over '
              f'{m["mismatched_pairs"]} pairs, ratio {m["ratio"]:.3f}']
    lines.append("  per task (its pairs scored with every other task's sentence, mean |delta| "
                 "over its matched one):")
    for name, ratio in m.get('by_task', {}).items():
        lines.append(f'  {name:60s} ratio {ratio:.3f}')
    lines.append("  per task pair (mismatched mean |delta| over that task's matched one):")
    for name, ratio in m['by_task_pair'].items():
        lines.append(f'  {name:60s} ratio {ratio:.3f}')
    return '\n'.join(lines)


@dataclass
class EvaluateCriticArgs:
    """Score trajectories with a critic: VOC, VROC, VOC-F1, NR, mismatch check, value curves."""

    trajectories: Annotated[tuple[str, ...], tyro.conf.Positional]
    """bag folders, folders searched for bags, or image folders"""
    model: str
    """model directory or checkpoint"""
    backend: str = 'compact'
    """critic backend"""
    device: str = 'cpu'
    """cpu, cuda, cuda:N or auto"""
    stride: float = 0.2
    """seconds between scored frames"""
    plots: str | None = None
    """folder for one PNG per trajectory"""
    split_file: str | None = None
    """train_critic's held_out.json: skip the training trajectories"""
    task: str | None = None
    """task sentence (overrides the recorded one)"""
    fps: float = 10.0
    """frame rate of image folders"""
    image_topic: str = DEFAULT_IMAGE_TOPIC
    """image topic"""
    task_topic: str = DEFAULT_TASK_TOPIC
    """task topic"""
    json: str | None = None
    """write the summary as JSON here"""
    report: str | None = None
    """write the printed report here too"""


def evaluate_critic(args: EvaluateCriticArgs) -> int:
    """Load, score and report as ``args`` say; the exit status (ValueError for bad input)."""
    found = find_trajectories(args.trajectories)
    skipped = 0
    if args.split_file:
        train = _split_train_paths(args.split_file)
        kept = [(k, p) for k, p in found if p.resolve() not in train]
        skipped = len(found) - len(kept)
        found = kept
    if not found:
        raise ValueError('no trajectory left to evaluate')
    critic = load_critic(args.backend, args.model, device=args.device)
    trajectories = [
        load_bag_trajectory(p, args.stride, args.image_topic, args.task_topic, args.task)
        if kind == 'bag' else load_image_folder(p, args.stride, args.fps, args.task)
        for kind, p in found]
    header = (f'evaluate_critic: {len(trajectories)} trajectories'
              + (f' ({skipped} training ones skipped by {args.split_file})' if skipped else '')
              + f', stride {args.stride} s, model {args.model}')
    print(header)
    try:
        summary = evaluate(critic, trajectories, args.plots,
                           extra_tasks=getattr(critic, 'config', {}).get('tasks', []))
    finally:
        critic.close()
    if args.report:
        pathlib.Path(args.report).write_text(header + '\n' + format_report(summary) + '\n')
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1, default=float) + '\n')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (options from ``EvaluateCriticArgs``)."""
    return run('evaluate_critic', EvaluateCriticArgs, evaluate_critic, argv)


if __name__ == '__main__':
    sys.exit(main())
