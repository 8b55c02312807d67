"""Durable episodes and checkpoints of the trainer (ROS-free; messages in, files out).

``EpisodeStore`` writes every received episode to ``<root>/<robot_id>/<episode_id>/``, a
rosbag2 folder (MCAP) written atomically by ``vlac_ros.bags.BagWriter`` and fsynced, *before*
the trainer uses it: the trainer trains on what it reads back from the store. Topics:
``/transitions`` (vlac_interfaces/Transition), ``/progress`` (ProgressReward),
``/episode_result`` (EpisodeResult); custom data: robot and episode id, received time.

``CheckpointManager`` writes ``<root>/checkpoint_<seq>/``: ``policy.safetensors`` (the
policy's own ``save_weights``), ``optimizer.safetensors`` (every optimizer tensor) with
``optimizer.json`` (the structure and scalars: no pickle anywhere), ``trainer_state.json``
(``TrainerState``) and, last, ``manifest.json`` with the sha256 of each file. Everything is
written into a hidden temporary folder, fsynced, and renamed into place: a checkpoint folder
either is complete or does not exist. The last ``keep_last`` are kept; ``latest()`` returns
the newest one whose files match their manifest.

Resume bookkeeping ("no episode lost, none trained twice"). ``TrainerState`` holds the ids of
the episodes whose gradients are in the checkpointed weights (``consumed_episodes``), saved
atomically together with those weights. After a restart the trainer loads ``latest()`` and
trains on ``store.pending(state)``: every stored episode not consumed (nor set aside as
rejected), oldest first. So an episode stored but not yet trained, or trained after the last
checkpoint (whose weights were lost in the crash), is trained again from the checkpoint's
weights; one consumed before the checkpoint never is. Publish a policy version only after the
checkpoint holding it is saved, so versions stay monotonic across restarts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
import logging
import os
import pathlib
import re
import shutil
import tempfile
import time
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from vlac_models.files import fsync_path, fsync_tree, sha256_file
from vlac_models.stamps import stamp_ns
from vlac_ros.bags import BagWriter, bag_metadata, read_messages

LOG = logging.getLogger(__name__)

TRANSITIONS_TOPIC = '/transitions'
PROGRESS_TOPIC = '/progress'
RESULT_TOPIC = '/episode_result'
DEMONSTRATION_MODE = 3  # vlac_interfaces/action/RunEpisode MODE_DEMONSTRATION
_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*$')





def episode_key(robot_id: str, episode_id: str) -> str:
    """``'<robot>/<episode>'``; a leading '/' of a namespace is dropped. ValueError if unsafe."""
    robot = robot_id.lstrip('/')
    for what, name in (('robot_id', robot), ('episode_id', episode_id)):
        if not _NAME.match(name):
            raise ValueError(f'{what} {name!r} is not a safe folder name '
                             '(letters, digits, _ . -; not starting with . or -)')
    return f'{robot}/{episode_id}'


# ===================================================================== episodes
@dataclass
class StoredEpisode:
    """One episode read back from the store (messages are ``rosbags`` objects)."""

    key: str
    path: pathlib.Path
    received_ns: int
    transitions: list
    """Transition messages sorted by step."""
    progress: list
    """ProgressReward messages in time order."""
    result: Any | None
    """The EpisodeResult message, if one was stored."""


class EpisodeStore:
    """Episodes on disk, one rosbag2 folder per robot/episode, written atomically."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._received: dict[pathlib.Path, int] = {}

    def path_of(self, key: str) -> pathlib.Path:
        """Folder of an episode key."""
        robot, episode = key.split('/', 1)
        return self.root / robot / episode

    def save(self, robot_id: str, episode_id: str, transitions: Iterable,
             progress: Iterable = (), result: Any | None = None) -> tuple[str, bool]:
        """Persist one episode; return ``(key, created)``.

        Messages are rclpy messages (or anything ``BagWriter.write`` takes). An episode that
        is already stored is not written again (``created`` False): a re-sent episode cannot
        be trained twice. If writing fails, nothing appears under the episode's folder (the
        partial recording stays in ``<robot>/.recording`` for inspection) and the error
        propagates.
        """
        key = episode_key(robot_id, episode_id)
        path = self.path_of(key)
        if path.exists():
            return key, False
        received_ns = time.time_ns()
        path.parent.mkdir(parents=True, exist_ok=True)
        transitions = list(transitions)
        demonstration = result is not None and int(result.mode) == DEMONSTRATION_MODE
        demo_steps = len(transitions) if demonstration else \
            sum(bool(t.is_intervention) for t in transitions)
        with BagWriter(path, {'robot_id': robot_id, 'episode_id': episode_id,
                              'received_ns': received_ns,
                              'demo_steps': demo_steps}) as writer:
            for msg in transitions:
                writer.write(TRANSITIONS_TOPIC, stamp_ns(msg.action_stamp), msg)
            for msg in progress:
                writer.write(PROGRESS_TOPIC, stamp_ns(msg.stamp_b), msg)
            if result is not None:
                writer.write(RESULT_TOPIC, stamp_ns(result.end_time), result)
        return key, True  # BagWriter flushed it to disk before naming it

    def keys(self) -> list[str]:
        """Keys of every complete stored episode, oldest received first."""
        found = []
        for robot in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if robot.name.startswith('.'):
                continue
            for episode in sorted(p for p in robot.iterdir() if p.is_dir()):
                if episode.name.startswith('.') or not (episode / 'metadata.yaml').is_file():
                    continue  # STAGING_DIR: recordings in progress or crashed
                found.append((self._received_ns(episode), f'{robot.name}/{episode.name}'))
        return [key for _, key in sorted(found)]

    def _received_ns(self, path: pathlib.Path) -> int:
        if path not in self._received:  # a stored bag never changes: read its metadata once
            custom = bag_metadata(path)['custom_data']
            self._received[path] = int(custom.get('received_ns', 0))
        return self._received[path]

    def demo_steps(self, key: str) -> int:
        """Demonstration or intervention transitions of a stored episode (its metadata).

        Episodes stored before this was recorded report -1 (unknown: read the episode).
        """
        custom = bag_metadata(self.path_of(key))['custom_data']
        return int(custom.get('demo_steps', -1))

    def pending(self, state: 'TrainerState') -> list[str]:
        """Stored episodes not yet consumed nor rejected by ``state``, oldest first."""
        done = set(state.consumed_episodes) | set(state.rejected_episodes)
        return [key for key in self.keys() if key not in done]

    def load(self, key: str) -> StoredEpisode:
        """Read an episode back (FileNotFoundError if it is not stored)."""
        path = self.path_of(key)
        if not (path / 'metadata.yaml').is_file():
            raise FileNotFoundError(f'episode {key} is not in the store ({path})')
        transitions, progress, result = [], [], None
        for topic, _, msg in read_messages(path):
            if topic == TRANSITIONS_TOPIC:
                transitions.append(msg)
            elif topic == PROGRESS_TOPIC:
                progress.append(msg)
            elif topic == RESULT_TOPIC:
                result = msg
        transitions.sort(key=lambda m: int(m.step))
        return StoredEpisode(key, path, self._received_ns(path), transitions, progress, result)


# ===================================================================== checkpoints
class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the policy/optimizer."""


@dataclass
class TrainerState:
    """What a checkpoint records besides weights and optimizer (JSON)."""

    update_count: int = 0
    policy_version: int = 0
    value_warmed_up: bool = False
    seed: int = 0
    rng: dict = field(default_factory=dict)
    """Generator states, e.g. ``{'numpy': bit_generator.state}``."""
    consumed_episodes: set[str] = field(default_factory=set)
    """Episode keys whose gradients are in these weights."""
    rejected_episodes: dict[str, str] = field(default_factory=dict)
    """Episode keys set aside for good, with the reason (e.g. a non-finite reward)."""
    extra: dict = field(default_factory=dict)
    """Anything else JSON-able (config snapshot, metrics)."""

    def trainer_dict(self) -> dict:
        """The part ``PPOTrainer.load_state_dict`` takes."""
        return {'update_count': self.update_count, 'policy_version': self.policy_version,
                'value_warmed_up': self.value_warmed_up, 'seed': self.seed, 'rng': self.rng}

    def to_json(self) -> str:
        """JSON text (episode keys sorted)."""
        data = asdict(self)
        data['consumed_episodes'] = sorted(self.consumed_episodes)
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> 'TrainerState':
        """Parse ``to_json`` output."""
        data = json.loads(text)
        data['consumed_episodes'] = set(data.get('consumed_episodes', ()))
        return cls(**data)


def _encode(value: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON structure of an optimizer state dict; tensors go to ``tensors`` by key."""
    if torch.is_tensor(value):
        tensors[prefix] = value.detach().to('cpu').contiguous().clone()
        return {'__tensor__': prefix}
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise TypeError(f'optimizer state key types at {prefix!r} are not str/int')
        return {'__dict__': [[k, _encode(v, f'{prefix}.{k}', tensors)]
                             for k, v in value.items()]}
    if isinstance(value, tuple):
        return {'__tuple__': [_encode(v, f'{prefix}.{i}', tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f'{prefix}.{i}', tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f'cannot store optimizer state value of type {type(value).__name__} '
                    f'at {prefix!r} without pickle')


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if '__tensor__' in value:
            return tensors[value['__tensor__']]
        if '__tuple__' in value:
            return tuple(_decode(v, tensors) for v in value['__tuple__'])
        return {k: _decode(v, tensors) for k, v in value['__dict__']}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def save_optimizer_state(optimizer: torch.optim.Optimizer, directory: pathlib.Path) -> None:
    """Write ``optimizer.safetensors`` + ``optimizer.json`` (no pickle)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(optimizer.state_dict(), 'opt', tensors)
    save_file(tensors, str(directory / 'optimizer.safetensors'), metadata={'format': 'pt'})
    (directory / 'optimizer.json').write_text(json.dumps(structure))


def load_optimizer_state(directory: pathlib.Path) -> dict:
    """Read what ``save_optimizer_state`` wrote back into a ``state_dict`` (CPU tensors)."""
    from safetensors.torch import load_file

    tensors = load_file(str(directory / 'optimizer.safetensors'))
    return _decode(json.loads((directory / 'optimizer.json').read_text()), tensors)


@dataclass
class Checkpoint:
    """A complete checkpoint folder and what its manifest and state say."""

    path: pathlib.Path
    manifest: dict
    state: TrainerState


class CheckpointManager:
    """Atomic checkpoints under ``root``, newest ``keep_last`` kept."""

    PREFIX = 'checkpoint_'
    TEMP_PREFIX = '.tmp-checkpoint-'
    FILES = ('policy.safetensors', 'optimizer.safetensors', 'optimizer.json',
             'trainer_state.json')

    def __init__(self, root: str | os.PathLike, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f'keep_last {keep_last} must be >= 1')
        self.root = pathlib.Path(root)
        self.keep_last = keep_last
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob('.tmp-*'):  # a crash mid-write or mid-delete
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in self.root.glob('.trash-*'):
            shutil.rmtree(leftover, ignore_errors=True)

    def _sequence(self, path: pathlib.Path) -> int:
        return int(path.name[len(self.PREFIX):])

    def paths(self) -> list[pathlib.Path]:
        """Checkpoint folders (complete by construction), oldest first."""
        found = [p for p in self.root.iterdir()
                 if p.is_dir() and p.name.startswith(self.PREFIX)
                 and p.name[len(self.PREFIX):].isdigit()]
        return sorted(found, key=self._sequence)

    def save(self, policy: Any, optimizer: torch.optim.Optimizer,
             state: TrainerState) -> pathlib.Path:
        """Write a new checkpoint atomically; return its folder.

        On any error the temporary folder is removed and the error propagates; the previous
        checkpoints are untouched.
        """
        existing = self.paths()
        sequence = self._sequence(existing[-1]) + 1 if existing else 0
        final = self.root / f'{self.PREFIX}{sequence:06d}'
        temp = pathlib.Path(tempfile.mkdtemp(prefix=self.TEMP_PREFIX, dir=self.root))
        try:
            policy_sha = policy.save_weights(temp / 'policy.safetensors')
            save_optimizer_state(optimizer, temp)
            (temp / 'trainer_state.json').write_text(state.to_json())
            files = {name: sha256_file(temp / name) for name in self.FILES}
            if policy_sha and policy_sha != files['policy.safetensors']:
                raise CheckpointError(f'policy.save_weights reported sha256 {policy_sha}, '
                                      f'file has {files["policy.safetensors"]}')
            manifest = {'format': 1, 'sequence': sequence, 'created_ns': time.time_ns(),
                        'update_count': state.update_count,
                        'policy_version': state.policy_version,
                        'backend': getattr(policy, 'backend', ''), 'files': files}
            (temp / 'manifest.json').write_text(json.dumps(manifest, indent=1))
            fsync_tree(temp)
            temp.rename(final)
            fsync_path(self.root)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._prune()
        return final

    def _prune(self) -> None:
        for old in self.paths()[:-self.keep_last]:
            trash = self.root / f'.trash-{old.name}'
            old.rename(trash)  # never a half-deleted checkpoint under a checkpoint name
            shutil.rmtree(trash, ignore_errors=True)

    def read(self, path: pathlib.Path, verify: bool = True) -> Checkpoint:
        """Manifest and state of a checkpoint folder; CheckpointError if it does not verify."""
        try:
            manifest = json.loads((path / 'manifest.json').read_text())
            if verify:
                for name, digest in manifest['files'].items():
                    if sha256_file(path / name) != digest:
                        raise CheckpointError(f'{path / name} does not match its sha256')
            state = TrainerState.from_json((path / 'trainer_state.json').read_text())
        except CheckpointError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f'unreadable checkpoint {path}: {error}') from error
        return Checkpoint(path, manifest, state)

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies (older ones are tried if it does not)."""
        for path in reversed(self.paths()):
            try:
                return self.read(path)
            except CheckpointError as error:
                LOG.error('skipping checkpoint %s: %s', path, error)
        return None

    def restore(self, checkpoint: Checkpoint, policy: Any,
                optimizer: torch.optim.Optimizer | None = None) -> TrainerState:
        """Load weights (sha256-checked) and optimizer state; return the trainer state.

        If anything fails, the policy and the optimizer keep what they had (the policy's
        ``load_weights`` contract) and CheckpointError is raised.
        """
        path = checkpoint.path
        previous = None
        if optimizer is not None:
            previous = _clone_state(optimizer.state_dict())
            try:
                optimizer.load_state_dict(load_optimizer_state(path))
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
                optimizer.load_state_dict(previous)
                raise CheckpointError(f'optimizer state of {path} does not fit: '
                                      f'{error}') from error
        try:
            policy.load_weights(path / 'policy.safetensors',
                                sha256=checkpoint.manifest['files']['policy.safetensors'])
        except Exception as error:
            if previous is not None:
                optimizer.load_state_dict(previous)
            raise CheckpointError(f'policy weights of {path}: {error}') from error
        return checkpoint.state


def _clone_state(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone_state(v) for v in value)
    return value


def episode_arrays(episode: StoredEpisode) -> dict[str, Sequence]:
    """Per-step fields of a stored episode's transitions, for building a rollout batch.

    Returns lists keyed ``observation_stamps_ns``, ``log_probs``, ``values``, ``dones``,
    ``truncated``, ``is_intervention``, ``policy_versions``, ``tokens`` (int64 arrays),
    ``rewards`` (NaN where a transition carries none) and ``steps``. Observations (images,
    state) are left to the caller, which knows the cameras.
    """
    ts = episode.transitions
    return {
        'steps': [int(t.step) for t in ts],
        'observation_stamps_ns': [stamp_ns(t.observation_stamp) for t in ts],
        'log_probs': [float(t.log_prob) for t in ts],
        'values': [float(t.value) for t in ts],
        'rewards': [float(t.reward) if t.has_reward else float('nan') for t in ts],
        'dones': [bool(t.done) for t in ts],
        'truncated': [bool(t.truncated) for t in ts],
        'is_intervention': [bool(t.is_intervention) for t in ts],
        'policy_versions': [int(t.policy_version) for t in ts],
        'tokens': [np.asarray(t.action_tokens, dtype=np.int64) for t in ts],
    }
