"""The 'compact' policy backend: a small CNN actor-critic with discretised action tokens.

Model (``CompactPolicyNet``):

- Each camera image is resized to ``frame_size`` squares and embedded by the shared
  ``FrameEncoder`` (convolutions ending in spatial-softmax keypoints: where things are), one
  encoder shared by all cameras; the embeddings are concatenated in camera order. The keypoint
  softmax has a learned inverse temperature (initially ``keypoint_temperature``), so that
  keypoints can be sharp from the start (a 4 cm cube is 4 pixels at 80 px); in a 3-epoch
  comparison on the simulator data it localised slightly better than the plain softmax.
- State features: the end-effector position normalised by the training data's mean and
  standard deviation (``position_mean``, ``position_std``), sine and cosine of roll, pitch and
  yaw (a gripper pointing down sits at roll = +-pi, where the angle itself jumps) and the
  gripper opening (0..1).
- Task: the instruction's all-MiniLM-L6-v2 embedding (``vlac_models.text.SentenceEncoder``,
  offline, cached per sentence) modulates two hidden layers (FiLM).
- Heads: one categorical distribution per action dimension over ``translation_bins`` bins
  spanning +-``translation_limit`` metres (dx, dy, dz), ``rotation_bins`` bins spanning
  +-``rotation_limit`` radians (droll, dpitch, dyaw) per control period, and 2 gripper bins
  (0 close, 1 open); a scalar value head. A third head, used only as an auxiliary training
  target (``subgoal``), predicts where the end effector will be at the next keyframe (grasp,
  release, end; see ``vlac_training.policy_dataset``), relative to where it is, in decimetres.

The action tokens are the 7 bin indices (``int64``). ``log_prob`` and ``entropy`` are sums over
the 7 dimensions. ``act(deterministic=True)`` takes the most likely bin of every dimension;
sampling draws each dimension independently. An action is the bins' centres: translation and
rotation delta in the base frame over one ``control_period`` (see ``vlac_models.policy.base``);
values beyond a range are represented by its edge bin.

A model directory holds ``config.json`` (architecture, bins, control period, normalisation,
``weights_sha256``, training data and metrics), ``policy.safetensors`` (never pickle) and
``model_card.md``; ``export_onnx`` adds ``policy.onnx`` (one graph: frames, state and task
embedding in, logits and value out), checked against torch. ``load_compact_policy(...,
runtime='onnx')`` serves ``act`` through ONNX Runtime (``OnnxCompactPolicy``) from a graph
exported from the loaded weights, again after each ``load_weights`` (hot swap).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
import json
import os
import pathlib
import time
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from vlac_models.encoders import (
    EncoderSpec,
    FilmLinear,
    FrameEncoder,
    export_graph_onnx,
    onnx_providers,
    onnx_session,
)
from vlac_models.files import atomic_write_bytes, sha256_bytes
from vlac_models.frames import prepare_frames
from vlac_models.policy.base import (
    ACTION_DIM,
    EefAction,
    PolicyError,
    PolicyObservation,
    PolicyOutput,
)
from vlac_models.state import STATE_DIM
from vlac_models.text import TEXT_DIM, TEXT_ENCODER_RECORD, SentenceEncoder

WEIGHTS_FILE = 'policy.safetensors'
CONFIG_FILE = 'config.json'
CARD_FILE = 'model_card.md'
ONNX_FILE = 'policy.onnx'
ONNX_TOLERANCE = 1e-4
RUNTIMES = ('torch', 'onnx')
_TEMPLATES: dict[str, bytes] = {}
"""Graphs exported in this process, per architecture (``OnnxCompactPolicy``'s templates)."""
STATE_FEATURES = 10
"""Normalised x y z, sin and cos of roll pitch yaw, gripper opening."""
SUBGOAL_SCALE = 0.1
"""Metres per unit of the subgoal head's output."""


@dataclass
class PolicyConfig:
    """Architecture and action discretisation of the compact policy (stored in config.json).

    Attributes:
        frame_size: side of the square frames the encoder sees, pixels (multiple of 16).
        num_cameras: images per observation, in the configured camera order.
        encoder: 'keypoints' or 'flatten' (see ``vlac_models.encoders.FrameEncoder``).
        keypoint_temperature: initial inverse temperature of the keypoint softmax (learned).
        channels: output channels of the encoder's four convolutions.
        embed_dim: embedding size per camera.
        hidden_dim: width of the two FiLM-modulated hidden layers.
        text_dim: task-sentence embedding size (384 for all-MiniLM-L6-v2).
        control_period: seconds between actions; an action is the pose change over one.
        translation_limit: dx, dy, dz bins span [-limit, limit], metres per period.
        translation_bins: bins per translation dimension (odd, so 0 is a bin centre).
        rotation_limit: droll, dpitch, dyaw bins span [-limit, limit], radians per period.
        rotation_bins: bins per rotation dimension (odd).
        position_mean: end-effector position subtracted before the network, metres.
        position_std: end-effector position scale, metres.

    """

    frame_size: int = 80
    num_cameras: int = 1
    encoder: str = 'keypoints'
    keypoint_temperature: float = 10.0
    channels: tuple[int, int, int, int] = (16, 32, 32, 32)
    embed_dim: int = 128
    hidden_dim: int = 256
    text_dim: int = TEXT_DIM
    control_period: float = 0.1
    translation_limit: float = 0.03
    translation_bins: int = 41
    rotation_limit: float = 0.12
    rotation_bins: int = 25
    position_mean: tuple[float, float, float] = (0.5, 0.0, 0.2)
    position_std: tuple[float, float, float] = (0.1, 0.1, 0.1)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.position_mean = tuple(float(v) for v in self.position_mean)
        self.position_std = tuple(float(v) for v in self.position_std)

    def validate(self) -> 'PolicyConfig':
        """Return self; raise ValueError naming the first bad field."""
        self.encoder_config()
        checks = {
            'num_cameras': 1 <= self.num_cameras <= 8,
            'keypoint_temperature': 0.0 < self.keypoint_temperature <= 1000.0,
            'control_period': 0.0 < self.control_period <= 10.0,
            'translation_limit': 0.0 < self.translation_limit <= 1.0,
            'translation_bins': 3 <= self.translation_bins <= 1001
            and self.translation_bins % 2 == 1,
            'rotation_limit': 0.0 < self.rotation_limit <= np.pi,
            'rotation_bins': 3 <= self.rotation_bins <= 1001 and self.rotation_bins % 2 == 1,
            'position_mean': len(self.position_mean) == 3
            and all(np.isfinite(self.position_mean)),
            'position_std': len(self.position_std) == 3
            and all(np.isfinite(v) and v > 0 for v in self.position_std),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f'bad compact policy setting {name}={getattr(self, name)!r}')
        return self

    def encoder_config(self) -> EncoderSpec:
        """The frame encoder's settings (ValueError if bad)."""
        return EncoderSpec(self.frame_size, self.encoder, self.channels,
                           self.embed_dim).validate()

    @property
    def bins(self) -> tuple[int, ...]:
        """Bins per action dimension: 3 translation, 3 rotation, gripper (2)."""
        return (self.translation_bins,) * 3 + (self.rotation_bins,) * 3 + (2,)

    def bin_centres(self) -> list[np.ndarray]:
        """The value of every bin, per action dimension (SI units; gripper 0, 1)."""
        t = np.linspace(-self.translation_limit, self.translation_limit, self.translation_bins)
        r = np.linspace(-self.rotation_limit, self.rotation_limit, self.rotation_bins)
        return [t] * 3 + [r] * 3 + [np.array([0.0, 1.0])]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = asdict(self)
        for key in ('channels', 'position_mean', 'position_std'):
            data[key] = list(getattr(self, key))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'PolicyConfig':
        """Build from config.json fields (unknown keys ignored); ValueError if invalid."""
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names}).validate()
        except TypeError as err:
            raise ValueError(f'bad compact policy config {data}: {err}') from err


class KeypointEncoder(FrameEncoder):
    """The shared keypoint ``FrameEncoder`` with a learned softmax temperature.

    Same convolutions and outputs; the keypoint softmax runs on the maps times
    ``exp(log_temperature)`` (the presence features stay the maps' maxima).
    """

    def __init__(self, config: EncoderSpec, temperature: float) -> None:
        super().__init__(config)
        self.log_temperature = nn.Parameter(torch.tensor(float(np.log(temperature))))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Embed uint8 NHWC frames, (B, S, S, 3) -> (B, embed_dim)."""
        x = frames.permute(0, 3, 1, 2).to(torch.float32) * (1.0 / 127.5) - 1.0
        maps = self.conv(x).flatten(2)  # (B, K, side * side)
        weights = torch.softmax(maps * self.log_temperature.exp(), dim=2)
        return self.project(torch.cat([weights @ self.grid_x, weights @ self.grid_y,
                                       maps.amax(dim=2)], dim=1))


class CompactPolicyNet(nn.Module):
    """(frames, state, task embedding) -> (action logits, value).

    ``frames``: (B, num_cameras, S, S, 3) uint8 RGB at ``frame_size``; ``state``: (B, 7)
    float32 (see ``vlac_models.policy.base``); ``task``: (B, text_dim) float32.
    Returns logits (B, sum(bins)), the dimensions' bins one after another, and value (B,).
    """

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.encoder = KeypointEncoder(config.encoder_config(), config.keypoint_temperature) \
            if config.encoder == 'keypoints' else FrameEncoder(config.encoder_config())
        self.register_buffer('position_mean', torch.tensor(config.position_mean),
                             persistent=False)
        self.register_buffer('position_std', torch.tensor(config.position_std),
                             persistent=False)
        width = config.num_cameras * config.embed_dim + STATE_FEATURES
        self.layer1 = FilmLinear(width, config.hidden_dim, config.text_dim)
        self.layer2 = FilmLinear(config.hidden_dim, config.hidden_dim, config.text_dim)
        self.logits = nn.Linear(config.hidden_dim, sum(config.bins))
        self.value = nn.Linear(config.hidden_dim, 1)
        self.subgoal = nn.Linear(config.hidden_dim, 3)
        with torch.no_grad():  # start near uniform and near zero value
            self.logits.weight.mul_(0.1)
            self.value.weight.mul_(0.1)

    def state_features(self, state: torch.Tensor) -> torch.Tensor:
        """(B, 7) states -> (B, STATE_FEATURES) network inputs."""
        position = (state[:, :3] - self.position_mean) / self.position_std
        angles = state[:, 3:6]
        return torch.cat([position, torch.sin(angles), torch.cos(angles), state[:, 6:7]], 1)

    def heads(self, frames: torch.Tensor, state: torch.Tensor, task: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits (B, sum(bins)), value (B,) and subgoal (B, 3) (see the module docstring)."""
        batch, cameras = frames.shape[0], frames.shape[1]
        size = frames.shape[2]
        embedded = self.encoder(frames.reshape(batch * cameras, size, size, 3))
        x = torch.cat([embedded.reshape(batch, -1), self.state_features(state)], 1)
        hidden = self.layer2(self.layer1(x, task), task)
        return self.logits(hidden), self.value(hidden).squeeze(1), self.subgoal(hidden)

    def forward(self, frames: torch.Tensor, state: torch.Tensor,
                task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, sum(bins)) and value (B,)."""
        logits, value, _ = self.heads(frames, state, task)
        return logits, value


class _OnnxGraph(nn.Module):
    """The served graph: one output, logits and value side by side (B, sum(bins) + 1)."""

    def __init__(self, net: CompactPolicyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, frames: torch.Tensor, state: torch.Tensor,
                task: torch.Tensor) -> torch.Tensor:
        logits, value = self.net(frames, state, task)
        return torch.cat([logits, value.unsqueeze(1)], 1)


def split_logits(logits: torch.Tensor, bins: Sequence[int]) -> list[torch.Tensor]:
    """Per-dimension logits (B, bins[d]) of concatenated logits (B, sum(bins))."""
    return list(torch.split(logits, list(bins), dim=1))


def distribution_terms(logits: torch.Tensor, bins: Sequence[int], tokens: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_prob, entropy), each (B,), summed over the dimensions, of int64 tokens (B, D)."""
    log_prob = torch.zeros(logits.shape[0], dtype=logits.dtype, device=logits.device)
    entropy = torch.zeros_like(log_prob)
    for d, part in enumerate(split_logits(logits, bins)):
        log_p = torch.log_softmax(part, dim=1)
        log_prob = log_prob + log_p.gather(1, tokens[:, d:d + 1]).squeeze(1)
        entropy = entropy - (log_p.exp() * log_p).sum(1)
    return log_prob, entropy


def _read_safetensors(path: pathlib.Path, sha256: str | None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file whose bytes match ``sha256``; PolicyError otherwise."""
    from safetensors.torch import load as load_bytes

    try:
        data = path.read_bytes()
    except OSError as err:
        raise PolicyError(f'cannot read weights {path}: {err}') from err
    digest = sha256_bytes(data)
    if sha256 is not None and digest != str(sha256).lower():
        raise PolicyError(f'weights {path} have sha256 {digest}, expected {sha256}')
    try:
        return load_bytes(data)  # parses the safetensors header only: never unpickles
    except Exception as err:  # safetensors raises SafetensorError, ValueError, ...
        raise PolicyError(f'{path} is not a safetensors file: {err}') from err


class CompactPolicy:
    """The compact backend of the ``Policy`` protocol (torch, CPU or CUDA).

    Use ``load_compact_policy(model_dir)`` or ``load_policy('compact', model_dir)``.
    ``seed`` seeds the sampling of ``act``. Not thread-safe: one control loop owns it.
    """

    backend = 'compact'

    def __init__(self, net: CompactPolicyNet, device: str = 'cpu', seed: int | None = None,
                 text: SentenceEncoder | None = None, model_id: str = 'compact') -> None:
        self.config = net.config
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.model_id = model_id
        self._bins = self.config.bins
        self._centres = self.config.bin_centres()
        self._text = text or SentenceEncoder('cuda' if self.device.type == 'cuda' else 'cpu')
        self._tasks: dict[str, torch.Tensor] = {}
        self.rng = np.random.default_rng(seed)
        self.path: pathlib.Path | None = None
        """The model directory this policy was loaded from (None when built in memory)."""
        self.model_config: dict[str, Any] = {}
        """Its config.json (architecture, weights sha256, training data and metrics)."""

    # -- inputs -------------------------------------------------------------------------------
    def task_embedding(self, task: str) -> torch.Tensor:
        """(text_dim,) embedding of a task sentence on the policy's device (cached)."""
        vector = self._tasks.get(task)
        if vector is None:
            if not isinstance(task, str) or not task.strip():
                raise ValueError(f'the task must be a non-empty sentence, got {task!r}')
            vector = torch.from_numpy(self._text.encode([task])[0]).to(self.device)
            self._tasks[task] = vector
        return vector

    def _frames(self, observation: PolicyObservation) -> np.ndarray:
        images = list(observation.images)
        if len(images) != self.config.num_cameras:
            raise ValueError(f'the policy takes {self.config.num_cameras} camera image(s), '
                             f'got {len(images)}')
        return prepare_frames(images, self.config.frame_size)

    @staticmethod
    def _state(observation: PolicyObservation) -> np.ndarray:
        state = np.asarray(observation.state, dtype=np.float32).ravel()
        if state.shape != (STATE_DIM,) or not np.all(np.isfinite(state)):
            raise ValueError(f'a state is {STATE_DIM} finite values, got {observation.state!r}')
        return state

    def _inputs(self, observations: Sequence[PolicyObservation]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = np.stack([self._frames(o) for o in observations])
        states = np.stack([self._state(o) for o in observations])
        tasks = torch.stack([self.task_embedding(o.task) for o in observations])
        return (torch.from_numpy(frames).to(self.device),
                torch.from_numpy(states).to(self.device), tasks)

    # -- tokens <-> actions -------------------------------------------------------------------
    def action_from_tokens(self, tokens: Sequence[int]) -> EefAction:
        """The bin centres of 7 tokens (ValueError for a token outside its dimension)."""
        tokens = np.asarray(tokens, dtype=np.int64).ravel()
        if tokens.shape != (ACTION_DIM,) or np.any(tokens < 0) \
                or np.any(tokens >= np.array(self._bins)):
            raise ValueError(f'tokens must be {ACTION_DIM} bin indices below {self._bins}, '
                             f'got {tokens.tolist()}')
        return EefAction.from_vector([c[t] for c, t in zip(self._centres, tokens, strict=True)])

    def tokens_for(self, observation: PolicyObservation | None, action: EefAction) -> np.ndarray:
        """The nearest bin of every action dimension (edge bins beyond the ranges).

        The gripper is 1 (open) for a command >= 0.5. ValueError for a non-finite action.
        ``observation`` is not needed by this backend (any value, None included).
        """
        return self.tokens_for_actions(action.as_vector()[None])[0]

    def tokens_for_actions(self, actions: np.ndarray) -> np.ndarray:
        """(N, 7) int64 tokens of (N, 7) action vectors (see ``tokens_for``)."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] != ACTION_DIM:
            raise ValueError(f'actions must be (N, {ACTION_DIM}), got {actions.shape}')
        if not np.all(np.isfinite(actions)):
            raise ValueError('cannot tokenise non-finite actions')
        tokens = np.empty(actions.shape, np.int64)
        for d, centres in enumerate(self._centres[:6]):
            step = centres[1] - centres[0]
            tokens[:, d] = np.clip(np.rint((actions[:, d] - centres[0]) / step), 0,
                                   len(centres) - 1)
        tokens[:, 6] = actions[:, 6] >= 0.5
        return tokens

    def bin_width(self) -> np.ndarray:
        """Width of one bin per action dimension (SI units; 1 for the gripper)."""
        return np.array([c[1] - c[0] for c in self._centres])

    # -- Policy protocol ----------------------------------------------------------------------
    def act(self, observation: PolicyObservation, deterministic: bool = False) -> PolicyOutput:
        """One action for one observation, without gradients.

        ValueError for a malformed observation (image count or type, state, empty task);
        PolicyError when the network output is not finite.
        """
        started = time.perf_counter()
        logits, value = self._forward(observation)
        if not (np.all(np.isfinite(logits)) and np.isfinite(value)):
            raise PolicyError(f'{self.model_id}: non-finite network output')
        tokens = np.empty(ACTION_DIM, np.int64)
        log_prob = 0.0
        offset = 0
        for d, n in enumerate(self._bins):
            part = logits[offset:offset + n]
            offset += n
            shifted = part - part.max()
            log_p = shifted - np.log(np.exp(shifted).sum())
            if deterministic:
                tokens[d] = int(np.argmax(part))
            else:  # Gumbel-max: an exact sample of the categorical distribution
                tokens[d] = int(np.argmax(log_p - np.log(-np.log(
                    self.rng.uniform(1e-12, 1.0, n)))))
            log_prob += float(log_p[tokens[d]])
        return PolicyOutput(self.action_from_tokens(tokens), tokens, log_prob, value,
                            extras={'latency_ms': 1000.0 * (time.perf_counter() - started),
                                    'model_id': self.model_id})

    def _forward(self, observation: PolicyObservation) -> tuple[np.ndarray, float]:
        """Logits (sum(bins),) float64 and value of one observation, without gradients."""
        frames, states, task = self._inputs([observation])
        with torch.inference_mode():
            logits, value = self.net(frames, states, task)
        return logits[0].float().cpu().numpy().astype(np.float64), float(value[0])

    def evaluate(self, observations: Sequence[PolicyObservation],
                 tokens: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Differentiable (log_prob, entropy, value), each a float32 tensor of shape (B,)."""
        if len(observations) != len(tokens) or not len(observations):
            raise ValueError(f'need as many token rows as observations (>= 1), got '
                             f'{len(tokens)} for {len(observations)}')
        frames, states, tasks = self._inputs(observations)
        token_rows = np.stack([np.asarray(t, np.int64).ravel() for t in tokens])
        if token_rows.shape[1] != ACTION_DIM or np.any(token_rows < 0) \
                or np.any(token_rows >= np.array(self._bins)):
            raise ValueError(f'tokens must be rows of {ACTION_DIM} bin indices below '
                             f'{self._bins}')
        logits, value = self.net(frames, states, tasks)
        log_prob, entropy = distribution_terms(
            logits, self._bins, torch.from_numpy(token_rows).to(self.device))
        return log_prob, entropy, value

    def trainable_parameters(self) -> Iterable[torch.nn.Parameter]:
        """Encoder, hidden layers, action and value heads (not the BC-only subgoal head)."""
        return [p for name, p in self.net.named_parameters() if not name.startswith('subgoal.')]

    def value_parameters(self) -> list[torch.nn.Parameter]:
        """The value head alone: what PPO's value warm-up may move.

        The encoder and hidden layers are shared with the action head; regressing values
        through them would change the behaviour-cloned policy before any policy step.
        """
        return list(self.net.value.parameters())

    def save_weights(self, path: str | os.PathLike) -> str:
        """Write the weights as safetensors atomically (temp file + rename); return sha256."""
        from safetensors.torch import save

        path = pathlib.Path(path)
        data = save({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                    metadata={'format': 'pt', 'model': 'vlac_models.policy.compact'})
        atomic_write_bytes(path, data)
        return sha256_bytes(data)

    def load_weights(self, path: str | os.PathLike, sha256: str | None = None) -> None:
        """Load safetensors weights; PolicyError (old weights kept) on any mismatch.

        Checked before anything is copied: the file's sha256 (when given), that it is a
        safetensors file, and that it holds exactly this architecture's tensors and shapes.
        """
        tensors = _read_safetensors(pathlib.Path(path), sha256)
        expected = self.net.state_dict()
        if set(tensors) != set(expected):
            missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors)
                                                                          - set(expected))
            raise PolicyError(f'{path} does not fit this architecture: missing '
                              f'{missing[:5]}, unexpected {extra[:5]}')
        for name, tensor in tensors.items():
            if tensor.shape != expected[name].shape or not tensor.dtype.is_floating_point:
                raise PolicyError(f'{path} does not fit this architecture: tensor {name} is '
                                  f'{tuple(tensor.shape)} {tensor.dtype}, expected '
                                  f'{tuple(expected[name].shape)}')
            if not torch.all(torch.isfinite(tensor)):
                raise PolicyError(f'{path}: tensor {name} holds non-finite values')
        self.net.load_state_dict(tensors)
        self.net.eval()


class OnnxCompactPolicy(CompactPolicy):
    """The compact policy with ``act`` served by ONNX Runtime (CPU, or CUDA when available).

    The served graph always holds exactly the weights this object loaded: its parameters are
    written into a template graph (``graph``, e.g. the model directory's ``policy.onnx`` from
    ``export_policy_onnx``, or else one exported once per architecture and process, which
    takes seconds), and the session is checked against torch on random inputs before it
    serves. ``load_weights`` (a hot swap) runs the same checks as torch's (sha256,
    safetensors only, architecture, finite values) and then re-serves in well under a
    second; on any failure the previous weights and session stay. ``evaluate`` and training
    use torch. ``act`` draws its samples as the torch policy does (same seed, same tokens up
    to ``ONNX_TOLERANCE`` in the logits).
    """

    runtime = 'onnx'

    def __init__(self, net: CompactPolicyNet, device: str = 'cpu', seed: int | None = None,
                 text: SentenceEncoder | None = None, model_id: str = 'compact',
                 threads: int = 1, providers: Sequence[Any] | None = None,
                 graph: os.PathLike | None = None) -> None:
        super().__init__(net, 'cpu', seed, text, model_id)  # torch exports and trains only
        self.providers = onnx_providers('auto' if device.startswith('cuda') else 'cpu',
                                        providers, 'the policy')
        self.threads = threads
        self._template: bytes | None = None
        self._session = None
        self.graph_source = ''
        """Where the template graph came from (a file, or 'exported in this process')."""
        if graph is not None and pathlib.Path(graph).is_file():
            self._template = pathlib.Path(graph).read_bytes()
            self.graph_source = str(graph)

    def _export_template(self) -> None:
        import tempfile

        key = json.dumps(self.config.to_dict(), sort_keys=True)
        template = _TEMPLATES.get(key)
        if template is None:  # the graph depends on the architecture only, not the weights
            with tempfile.TemporaryDirectory(prefix='vlac_policy_onnx_') as folder:
                template = _TEMPLATES[key] = export_onnx(self, folder).read_bytes()
        self._template = template
        self.graph_source = 'exported in this process'

    def serve(self) -> None:
        """Serve the current torch weights (PolicyError, old session kept, if impossible)."""
        import onnx
        from onnx import numpy_helper

        if self._template is None:
            self._export_template()
        state = {f'net.{k}': v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        try:
            model = onnx.load_from_string(self._template)
            written = 0
            for init in model.graph.initializer:
                array = state.get(init.name)
                if array is None:
                    continue
                if tuple(init.dims) != array.shape:
                    raise ValueError(f'graph tensor {init.name} is {tuple(init.dims)}, the '
                                     f'weights {array.shape}')
                init.CopyFrom(numpy_helper.from_array(array.astype(np.float32), init.name))
                written += 1
            if not written:
                raise ValueError('the graph names none of the weights (exported optimised?)')
            session = onnx_session(model.SerializeToString(), self.providers, self.threads)
            error = _served_error(self, session)
        except Exception as err:  # onnx and onnxruntime raise their own types
            raise PolicyError(f'{self.model_id}: cannot serve through ONNX Runtime from '
                              f'{self.graph_source}: {err}') from err
        if not error <= ONNX_TOLERANCE:
            raise PolicyError(f'{self.model_id}: the graph from {self.graph_source} differs '
                              f'from torch by {error:g} (> {ONNX_TOLERANCE})')
        self._session = session

    def load_weights(self, path: str | os.PathLike, sha256: str | None = None) -> None:
        """``CompactPolicy.load_weights``, then ``serve`` the new weights."""
        previous = {k: v.clone() for k, v in self.net.state_dict().items()}
        super().load_weights(path, sha256)
        try:
            self.serve()
        except PolicyError:
            self.net.load_state_dict(previous)
            raise

    def _forward(self, observation: PolicyObservation) -> tuple[np.ndarray, float]:
        if self._session is None:
            raise PolicyError(f'{self.model_id}: no weights served yet (load_weights first)')
        frames = self._frames(observation)[None]
        state = self._state(observation)[None]
        task = self.task_embedding(observation.task).cpu().numpy()[None].astype(np.float32)
        out = self._session.run(None, {'frames': frames, 'state': state, 'task': task})[0][0]
        return out[:-1].astype(np.float64), float(out[-1])


# -- model directories -------------------------------------------------------------------------
def save_model_dir(policy: CompactPolicy, out_dir: str | os.PathLike, card: str = '',
                   extra: dict[str, Any] | None = None) -> pathlib.Path:
    """Write config.json, policy.safetensors and model_card.md into ``out_dir`` (created).

    ``extra`` goes into config.json (training data, metrics). Atomic replacement of the whole
    directory is the caller's business (each file is written atomically).
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = policy.save_weights(out / WEIGHTS_FILE)
    config = {'backend': 'compact', 'architecture': policy.config.to_dict(),
              'weights_sha256': digest, 'weights': WEIGHTS_FILE,
              'text_encoder': TEXT_ENCODER_RECORD}
    config.update(extra or {})
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + '\n')
    (out / CARD_FILE).write_text(card or '# Compact VLAC policy\n')
    return out


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of a compact policy directory; PolicyError naming the problem."""
    path = pathlib.Path(path)
    if not path.is_dir():
        raise PolicyError(f'no compact policy model directory at {path}')
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise PolicyError(f'compact policy {path} lacks {name}')
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise PolicyError(f'invalid {path / CONFIG_FILE}: {err}') from err
    if not isinstance(config, dict) or config.get('backend') != 'compact' \
            or not isinstance(config.get('architecture'), dict):
        raise PolicyError(f'{path / CONFIG_FILE} is not a compact policy config')
    return config


def load_compact_policy(path: str | os.PathLike, device: str = 'cpu', seed: int | None = None,
                        runtime: str = 'torch', threads: int = 1,
                        **options: Any) -> CompactPolicy:
    """Load a model directory (nothing is downloaded); PolicyError if anything is wrong.

    The weights must match config.json's ``weights_sha256``. ``device`` is 'cpu', 'cuda' or
    'cuda:N'; ``seed`` seeds the sampling. ``runtime`` 'torch' acts with torch; 'onnx' serves
    ``act`` through ONNX Runtime (``OnnxCompactPolicy``, ``threads`` intra-op threads; training
    calls still use torch). Unknown ``options`` raise PolicyError.
    """
    if options:
        raise PolicyError(f'the compact policy takes no options {sorted(options)}')
    if runtime not in RUNTIMES:
        raise PolicyError(f'runtime must be one of {RUNTIMES}, got {runtime!r}')
    if device != 'cpu' and not device.startswith('cuda'):
        raise PolicyError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise PolicyError(f'device {device!r} requested but CUDA is not available')
    path = pathlib.Path(path)
    config = read_config(path)
    try:
        architecture = PolicyConfig.from_dict(config['architecture'])
    except ValueError as err:
        raise PolicyError(f'{path / CONFIG_FILE}: {err}') from err
    net = CompactPolicyNet(architecture)
    digest = config.get('weights_sha256')
    model_id = f'compact:{str(digest)[:12]}'
    if runtime == 'onnx':
        policy = OnnxCompactPolicy(net, device, seed, model_id=model_id, threads=threads,
                                   graph=path / ONNX_FILE)
    else:
        policy = CompactPolicy(net, device, seed, model_id=model_id)
    policy.load_weights(path / WEIGHTS_FILE, digest)
    policy.path = path
    policy.model_config = config
    return policy


_ONNX_NAMES = ['frames', 'state', 'task']


def _random_inputs(cfg: PolicyConfig, batch: int, generator: torch.Generator
                   ) -> tuple[torch.Tensor, ...]:
    """Frames, states near the normalisation and unit task embeddings, for graph checks."""
    frames = torch.randint(0, 256, (batch, cfg.num_cameras, cfg.frame_size, cfg.frame_size, 3),
                           dtype=torch.uint8, generator=generator)
    state = torch.tensor([*cfg.position_mean, np.pi, 0.0, 0.0, 0.5]) \
        + 0.2 * torch.randn(batch, STATE_DIM, generator=generator)
    task = torch.nn.functional.normalize(torch.randn(batch, cfg.text_dim, generator=generator),
                                         dim=1)
    return frames, state.float(), task


def _served_error(policy: CompactPolicy, session) -> float:
    """Largest difference between ``session`` and the torch network on 5 random inputs."""
    check = _random_inputs(policy.config, 5, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = _OnnxGraph(policy.net)(*(x.to(policy.device) for x in check)).cpu().numpy()
    got = session.run(None, {n: x.numpy() for n, x in zip(_ONNX_NAMES, check, strict=True)})[0]
    return float(np.abs(got - expected).max())


def export_onnx(policy: CompactPolicy, out_dir: str | os.PathLike) -> pathlib.Path:
    """Write ``out_dir/policy.onnx`` and check it against torch; return its path.

    Inputs: ``frames`` (B, num_cameras, S, S, 3) uint8, ``state`` (B, 7) float32, ``task``
    (B, text_dim) float32 (the sentence embedding); output ``outputs`` (B, sum(bins) + 1):
    the logits of every dimension's bins, then the value. The graph is not optimised at
    export (onnxruntime optimises it when it loads it), so its initializers carry the
    parameters' names and ``OnnxCompactPolicy`` can write new weights into it. Checked with
    onnxruntime on random inputs of another batch size than the export's; RuntimeError when
    any output differs from torch by more than ``ONNX_TOLERANCE``.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    graph = _OnnxGraph(policy.net).cpu().eval()
    example = _random_inputs(policy.config, 2, torch.Generator().manual_seed(0))
    try:
        export_graph_onnx(graph, example, _ONNX_NAMES, 'outputs', out / ONNX_FILE,
                          optimize=False)
    finally:
        policy.net.to(policy.device)
    error = _served_error(policy, onnx_session(out / ONNX_FILE, ['CPUExecutionProvider']))
    if not error <= ONNX_TOLERANCE:
        raise RuntimeError(f'{out / ONNX_FILE} differs from torch by {error:g} '
                           f'(> {ONNX_TOLERANCE})')
    return out / ONNX_FILE
