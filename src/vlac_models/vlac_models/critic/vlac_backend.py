"""The 'vlac' critic backend: the published VLAC checkpoints (InternVL2-based) on transformers.

Each pairwise query becomes the public release's prompt (``vlac_model.prompts``) with its
frames preprocessed as the public code does (``vlac_model.preprocess``: 448x448 LANCZOS, one
tile, ImageNet normalisation), and the model answers with a signed percent (``+20``, ``-15``)
that is parsed into a delta in [-1, 1]. Done queries are answered ``1`` or ``0``.

- Loading: a directory converted once by ``vlac_convert_checkpoint`` (``vlac_model.loading``):
  native ``InternVLForConditionalGeneration``, safetensors only, no checkpoint code executed.
- Batching: up to ``batch_size`` queries per ``generate()`` call, grouped by image count,
  left padding, greedy decoding (the public examples use ``top_k=1``), stop at ``<|im_end|>``.
- In-context queries (``PairQuery.reference``): ``num_reference`` frames (default 9) sampled
  uniformly from the reference, first and last included; the trajectory's first frame is
  ``first_frame`` (``frame_a`` if not given). ``DoneQuery.reference``: its last frame is the
  goal image of the public ``context_task_done`` prompt.
- Malformed output: NaN, and a warning with the raw text on the ``vlac_models.critic.vlac``
  logger; model output never raises.
- Expectation mode (``expectation=True``), the public code's ``rich`` output: at the step that
  generated the number, the top ``top_alternatives`` (10) tokens that are integers and have a
  probability above 0.1 x the top token's are averaged, weighted by probability (softmax of the
  raw logits, temperature 1). The sign comes from the greedy sign token (``+``/``-``) unless an
  alternative carries its own sign. This assumes the number is one token: the loader checks
  whether 0..100 are single tokens; when the greedy number spans several tokens (``2`` ``0``,
  or ``20`` ``.`` ``5``) the greedy value is used for that query and a warning is logged once
  (the public code would average each digit token separately, which is meaningless). For done,
  the probability is ``P('1') / (P('1') + P('0'))`` at the answer step.
- Frame cache: resized 448x448 tiles are kept in a small LRU keyed by a hash of the frame's
  bytes, so reference frames and frames shared by consecutive pairs are resized once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import hashlib
import logging
import math
import os
import re
import threading
from typing import Sequence

import numpy as np
import torch

from vlac_models.critic.base import DoneQuery, PairQuery, QueryShape
from vlac_models.throttle import RejectLog
from vlac_models.vlac_model import loading, preprocess, prompts

LOG = logging.getLogger('vlac_models.critic.vlac')

_PROGRESS = re.compile(r'^\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*%?\s*$')
_DONE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*$')
_INTEGER = re.compile(r'^[+-]?\d+$')
_RELATIVE_FLOOR = 0.1  # alternatives below 0.1 x the top probability are ignored (public code)


def parse_progress(text: str) -> float:
    """Signed percent (``+20``, ``-15``, ``15%``, ``+20.5``) -> delta in [-1, 1]; NaN if malformed.

    Values beyond 100 percent are malformed (the training labels are in [-100, 100]).
    """
    match = _PROGRESS.match(text) if isinstance(text, str) else None
    if match is None:
        return math.nan
    value = float(match.group(2))
    if value > 100.0:
        return math.nan
    return -value / 100.0 if match.group(1) == '-' else value / 100.0


def parse_done(text: str) -> float:
    """Done answer (``1``, ``0``, or a probability such as ``0.9``) -> [0, 1]; NaN if malformed."""
    match = _DONE.match(text) if isinstance(text, str) else None
    if match is None:
        return math.nan
    value = float(match.group(1))
    return value if 0.0 <= value <= 1.0 else math.nan


@dataclass
class _Request:
    """One model call: the user query text and its frames in image order."""

    query: str
    frames: list[np.ndarray]
    task: str


@dataclass
class _Answer:
    """Greedy answer of one request: generated token ids, their texts, optional logits."""

    ids: list[int]
    pieces: list[str]
    text: str
    logits: torch.Tensor | None  # (steps, vocab) float32 on CPU, expectation mode only


class VlacCritic:
    """Progress critic backed by a converted VLAC checkpoint (implements ``Critic``)."""

    def __init__(self, loaded: loading.LoadedVlac, *, batch_size: int = 8,
                 expectation: bool = False, max_new_tokens: int = 16,
                 num_reference: int = prompts.DEFAULT_REFERENCE_FRAMES,
                 top_alternatives: int = 10, frame_cache_size: int = 64) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f'max_new_tokens must be a positive int, got {max_new_tokens!r}')
        if not isinstance(num_reference, int) or num_reference < 2:
            raise ValueError(f'num_reference must be an int >= 2, got {num_reference!r}')
        if not isinstance(top_alternatives, int) or top_alternatives < 1:
            raise ValueError(f'top_alternatives must be >= 1, got {top_alternatives!r}')
        self._loaded: loading.LoadedVlac | None = loaded
        self._malformed = RejectLog(LOG, period=5.0)  # one line per kind per 5 s, counted
        self.model_id = f'vlac:{loaded.name}'
        self.batch_size = batch_size
        self.expectation = bool(expectation)
        self.max_new_tokens = max_new_tokens
        self.num_reference = num_reference
        self.top_alternatives = top_alternatives
        self._frame_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._frame_cache_size = max(0, int(frame_cache_size))
        self._warned_multitoken = False
        self._lock = threading.Lock()  # one generate() at a time; guards the frame cache
        tokenizer = loaded.tokenizer
        self.numbers_single_token = all(
            len(tokenizer.encode(str(n), add_special_tokens=False)) == 1 for n in range(101))
        LOG.info('%s: integers 0..100 are %s tokens', self.model_id,
                 'single' if self.numbers_single_token else 'NOT all single')
        if self.expectation and not self.numbers_single_token:
            LOG.warning('%s: some integers 0..100 span several tokens; expectation mode uses '
                        'the greedy value for those answers', self.model_id)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = 'cpu', trust_remote_code: bool = False,
             batch_size: int = 8, expectation: bool = False, max_new_tokens: int = 16,
             num_reference: int = prompts.DEFAULT_REFERENCE_FRAMES,
             allow_download: bool = False) -> 'VlacCritic':
        """Load a converted VLAC checkpoint directory (see ``vlac_model.loading.load_vlac``).

        Raises FileNotFoundError for a missing directory, ValueError for a checkpoint in the
        original layout (with the conversion command), pickle weights, or
        ``trust_remote_code=True`` (this backend never runs checkpoint code).
        """
        loaded = loading.load_vlac(path, device, trust_remote_code=trust_remote_code,
                                   allow_download=allow_download)
        return cls(loaded, batch_size=batch_size, expectation=expectation,
                   max_new_tokens=max_new_tokens, num_reference=num_reference)

    # -- requests --------------------------------------------------------------------------

    def _reference(self, reference: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(reference) < 2:
            raise ValueError(f'a reference needs at least 2 frames, got {len(reference)}')
        count = min(self.num_reference, len(reference))
        return [reference[i] for i in prompts.sample_reference_indices(len(reference), count)]

    def pair_request(self, query: PairQuery) -> _Request:
        """Prompt text and frames of one pairwise query (ValueError on bad inputs)."""
        frames = [query.frame_a, query.frame_b]
        if query.reference:
            reference = self._reference(query.reference)
            first = query.first_frame if query.first_frame is not None else query.frame_a
            return _Request(prompts.in_context_pairwise_prompt(query.task, len(reference)),
                            reference + [first] + frames, query.task)
        return _Request(prompts.pairwise_prompt(query.task), frames, query.task)

    in_context = True

    def pair_shape(self, query: PairQuery) -> QueryShape:
        """Images, reference frames and reference block of the query ``pair_request`` builds."""
        request = self.pair_request(query)
        if not query.reference:
            return QueryShape(len(request.frames))
        block = request.query.split(prompts.TRAJECTORY_BEGINNING)[0]
        return QueryShape(len(request.frames), len(request.frames) - 3, block)

    def done_request(self, query: DoneQuery) -> _Request:
        """Prompt text and frames of one done query (ValueError on bad inputs)."""
        if query.reference:
            return _Request(prompts.goal_done_prompt(query.task),
                            [query.reference[-1], query.frame], query.task)
        return _Request(prompts.done_prompt(query.task), [query.frame], query.task)

    # -- model calls -----------------------------------------------------------------------

    def _require(self) -> loading.LoadedVlac:
        if self._loaded is None:
            raise RuntimeError(f'{self.model_id} is closed')
        return self._loaded

    def _tile(self, frame: np.ndarray, size: int) -> np.ndarray:
        preprocess.check_frame(frame)
        if self._frame_cache_size == 0:
            return preprocess.resize_lanczos(frame, size)
        digest = hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16).digest()
        key = (frame.shape, size, digest)
        tile = self._frame_cache.get(key)
        if tile is None:
            tile = preprocess.resize_lanczos(frame, size)
            self._frame_cache[key] = tile
            while len(self._frame_cache) > self._frame_cache_size:
                self._frame_cache.popitem(last=False)
        else:
            self._frame_cache.move_to_end(key)
        return tile

    def pixel_values(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Frames in order -> normalised tiles (N, 3, 448, 448) float32 (CPU)."""
        size = self._require().image_size
        tiles = [torch.from_numpy(preprocess.normalize(self._tile(f, size))) for f in frames]
        if not tiles:
            return torch.zeros((0, 3, size, size))
        return torch.stack(tiles)

    def _generate(self, requests: Sequence[_Request]) -> list[_Answer]:
        """Answer ``requests`` in batches of similar image count; results in input order."""
        answers: list[_Answer | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: len(requests[i].frames))
        with self._lock:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                batch = self._generate_batch([requests[i] for i in chunk])
                for index, answer in zip(chunk, batch, strict=True):
                    answers[index] = answer
        return answers  # type: ignore[return-value]

    def _generate_batch(self, requests: Sequence[_Request]) -> list[_Answer]:
        from transformers import GenerationConfig

        loaded = self._require()
        tokenizer = loaded.tokenizer
        texts = []
        for request in requests:
            if prompts.count_images(request.query) != len(request.frames):
                raise ValueError(f'{prompts.count_images(request.query)} image placeholders '
                                 f'for {len(request.frames)} frames')
            texts.append(prompts.render_chat(request.query, loaded.tokens_per_image))
        pixels = self.pixel_values([f for r in requests for f in r.frames])
        encoded = tokenizer(texts, return_tensors='pt', padding=True, add_special_tokens=True)
        generation = GenerationConfig(
            do_sample=False, max_new_tokens=self.max_new_tokens,
            eos_token_id=loaded.eos_token_ids, pad_token_id=loaded.pad_token_id,
            output_logits=self.expectation, return_dict_in_generate=True)
        with torch.inference_mode():
            out = loaded.model.generate(
                input_ids=encoded['input_ids'].to(loaded.device),
                attention_mask=encoded['attention_mask'].to(loaded.device),
                pixel_values=pixels.to(loaded.device, loaded.dtype),
                generation_config=generation)
        new_tokens = out.sequences[:, encoded['input_ids'].shape[1]:].cpu()
        stops = set(loaded.eos_token_ids)
        answers = []
        for row in range(new_tokens.shape[0]):
            ids = []
            for token in new_tokens[row].tolist():
                if token in stops:
                    break
                ids.append(token)
            logits = None
            if self.expectation and out.logits:
                logits = torch.stack([step[row] for step in out.logits[:len(ids) + 1]])
                logits = logits.float().cpu()
            pieces = [tokenizer.decode([t], skip_special_tokens=False).strip() for t in ids]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            answers.append(_Answer(ids=ids, pieces=pieces, text=text, logits=logits))
        return answers

    # -- expectation -----------------------------------------------------------------------

    def _alternatives(self, logits: torch.Tensor) -> list[tuple[str, float]]:
        """Top alternatives at one step as (stripped text, probability), best first."""
        tokenizer = self._require().tokenizer
        probs = torch.softmax(logits.float(), dim=-1)
        values, indices = probs.topk(min(self.top_alternatives, probs.shape[-1]))
        return [(tokenizer.decode([int(i)], skip_special_tokens=False).strip(), float(p))
                for p, i in zip(values.tolist(), indices.tolist(), strict=True)]

    def expected_progress(self, answer: _Answer) -> float:
        """Expectation-mode delta of one answer (see the module docstring); NaN if impossible."""
        greedy = parse_progress(answer.text)
        step = next((i for i, piece in enumerate(answer.pieces) if _INTEGER.match(piece)), None)
        if step is None or answer.logits is None or math.isnan(greedy):
            return greedy
        following = answer.pieces[step + 1] if step + 1 < len(answer.pieces) else ''
        if following[:1].isdigit() or following[:1] == '.':
            if not self._warned_multitoken:
                LOG.warning('%s: the answer %r spans several tokens; expectation mode uses the '
                            'greedy value for such answers', self.model_id, answer.text)
                self._warned_multitoken = True
            return greedy
        prefix = ''.join(answer.pieces[:step]).strip()
        sign = -1.0 if prefix.endswith('-') or answer.pieces[step].startswith('-') else 1.0
        alternatives = self._alternatives(answer.logits[step])
        floor = _RELATIVE_FLOOR * alternatives[0][1]
        total = weight = 0.0
        for text, prob in alternatives:
            if not _INTEGER.match(text) or prob <= floor:
                continue
            value = float(text.lstrip('+-'))
            if value > 100.0:
                continue
            signed = -value if text.startswith('-') else (value if text.startswith('+')
                                                           else sign * value)
            total += signed * prob
            weight += prob
        if weight == 0.0:
            return greedy
        return float(np.clip(total / weight / 100.0, -1.0, 1.0))

    def expected_done(self, answer: _Answer) -> float:
        """``P('1') / (P('1') + P('0'))`` at the answer step; NaN if the answer is not 0/1."""
        step = next((i for i, piece in enumerate(answer.pieces) if piece in ('0', '1')), None)
        if step is None or answer.logits is None:
            return math.nan
        probs = torch.softmax(answer.logits[step].float(), dim=-1)
        tokenizer = self._require().tokenizer
        mass = {'0': 0.0, '1': 0.0}
        values, indices = probs.topk(min(self.top_alternatives, probs.shape[-1]))
        for p, i in zip(values.tolist(), indices.tolist(), strict=True):
            text = tokenizer.decode([int(i)], skip_special_tokens=False).strip()
            if text in mass:
                mass[text] += float(p)
        total = mass['0'] + mass['1']
        return mass['1'] / total if total > 0.0 else math.nan

    # -- Critic interface ------------------------------------------------------------------

    def score_pairs(self, queries: Sequence[PairQuery]) -> np.ndarray:
        """Deltas in [-1, 1], float32 (N,); NaN where the model's answer was malformed."""
        queries = list(queries)
        if not queries:
            return np.zeros(0, np.float32)
        answers = self._generate([self.pair_request(q) for q in queries])
        out = np.empty(len(queries), np.float32)
        for i, (query, answer) in enumerate(zip(queries, answers, strict=True)):
            value = self.expected_progress(answer) if self.expectation \
                else parse_progress(answer.text)
            if math.isnan(value):
                self._malformed.report('progress', f'{self.model_id}: malformed progress '
                                       f'answer {answer.text!r} (task {query.task!r})',
                                       'warning')
            out[i] = value
        return out

    def done_probability(self, queries: Sequence[DoneQuery]) -> np.ndarray:
        """Probabilities in [0, 1] that each task is complete, float32 (N,); NaN if malformed."""
        queries = list(queries)
        if not queries:
            return np.zeros(0, np.float32)
        answers = self._generate([self.done_request(q) for q in queries])
        out = np.empty(len(queries), np.float32)
        for i, (query, answer) in enumerate(zip(queries, answers, strict=True)):
            value = self.expected_done(answer) if self.expectation else parse_done(answer.text)
            if math.isnan(value):
                self._malformed.report('done', f'{self.model_id}: malformed done answer '
                                       f'{answer.text!r} (task {query.task!r})', 'warning')
            out[i] = value
        return out

    def close(self) -> None:
        """Free the model and tokenizer (and cached CUDA memory); later calls raise."""
        loaded, self._loaded = self._loaded, None
        self._frame_cache.clear()
        if loaded is None:
            return
        on_cuda = loaded.device.type == 'cuda'
        del loaded
        loading.free_memory(on_cuda)
