r"""The 'vlac' policy backend: the VLAC checkpoint as actor, with structured template decoding.

``load_vlac_policy(path, device)`` loads a converted VLAC checkpoint the way the critic does
(``vlac_model.loading.load_vlac``: native ``InternVLForConditionalGeneration``, safetensors
only, bfloat16 on CUDA, float32 on CPU, ``trust_remote_code`` refused) and returns a
``VlacPolicy`` implementing ``policy.base.Policy``.

Prompt: the public action prompt (``prompts.action_prompt``) with the state text of
``codec.encode_state`` and the task, one image line per camera view (1 to 3), rendered with
the critic's chat template (``prompts.render_chat``: system prompt, ``<img>`` + 256
``<IMG_CONTEXT>`` + ``</img>`` per view); frames are preprocessed as the critic's
(``vlac_model.preprocess``: 448x448 LANCZOS, ImageNet normalisation). ``prompt_text`` returns
the exact string (pinned in the tests).

Structured template decoding. The reply ``x: -47mm, y: 19mm, ..., open: 0<|im_end|>`` (the
codec's action text, no braces, then the chat end token) is split into 8 template literals
(``'x: '``, ``'mm, y: '``, ..., ``' degrees, open: '`` built from ``codec.FIELDS/UNITS``, and
the final ``<|im_end|>``) and 7 numeric fields. Literal tokens are forced; a field is
generated token by token from its *numeric tokens* (vocabulary entries whose text is made of
``-``, digits and, where the tokenizer glues the literal's trailing space to the number, that
space), constrained so that the field text is always a prefix of ``[sign] digits`` with no
leading zero, no ``-0``, and within bounds: translation ``|mm| <= max_translation_mm``
(default 1000), angles ``-180..179`` degrees (the codec writes 180 as -180, so every action has
exactly one text), ``open`` 0 or 1. Once the field text is a complete number, the first token
of the next literal (the field terminator; ``<|im_end|>`` after ``open``) becomes allowed too;
choosing it ends the field and the rest of that literal is forced. A decode therefore always
yields text that ``codec.decode_action`` parses, and a bounded number of steps.

Literal tokens (``template_tokens``): ``'canonical'`` (default) takes them from the
tokenizer's own encoding of the reply (encoded on its own, after the prompt, as ms-swift
tokenises a response): probe actions are encoded and the literal tokens common to all probes
are kept; trailing whitespace that the tokenizer glues to a number (``'\u2581-'``) becomes the
mandatory start of that field. If the tokenizer merges template text and digits in a way this
cannot describe (a number's last digit fused with ``mm``), a warning is logged and
``'greedy'`` is used: literals and demonstrated numbers are tokenised by longest match over
the vocabulary (valid, not necessarily the tokenizer's own split).

Distribution and log-probability. At each generated step the model's logits are restricted to
the allowed tokens, divided by ``temperature`` (default 1) and renormalised (softmax over the
allowed set only): this *constrained* distribution is the one sampled from (``argmax`` when
``deterministic``), and ``log_prob`` is the sum over the generated steps (every numeric token
and each field terminator, 7 per action) of its log-probabilities; forced literal tokens have
probability 1 and contribute nothing. It is a proper distribution over action texts (sums to 1
over all token sequences the template allows). ``entropy`` in ``evaluate`` is the sum over the
generated steps of the constrained distribution's entropy given the recorded prefix (by the
chain rule its expectation over the policy's own samples is the sequence entropy).
``deterministic=True`` still reports the log-prob under the stochastic policy, so PPO ratios
stay consistent.

Tokens: ``PolicyOutput.tokens`` is the complete reply, forced literal tokens included, from
the first template token to ``<|im_end|>`` (int64). ``evaluate`` replays the same template
automaton over the tokens to find the generated positions and their allowed sets (and raises
``PolicyError`` for tokens the template cannot produce), then runs one teacher-forced forward
pass over ``prompt + tokens`` for the whole batch and recomputes exactly the same quantity;
in float32 it equals ``act``'s to ~1e-5 (bfloat16 on GPU differs by rounding: recompute
with ``evaluate``, as the paper advises). ``tokens_for`` encodes a demonstrated ``EefAction``
(through ``codec.encode_action``) to the same layout: the tokenizer's own tokens when they fit
the template, else the longest-match split.

Efficiency: ``act_batch`` runs one left-padded prefill over all observations (prompt plus the
first literal) with the KV cache, then one forward per generated step for the batch, feeding
each row's chosen token together with the literal it forces (rows that feed fewer tokens are
padded inside the step and masked; position ids are explicit). The LM head runs only at the
positions whose logits are used. ``act`` is ``act_batch`` of one.

Value head: ``nn.Linear(hidden_size, 1)`` (float32) on the language model's last hidden state
(after the final norm, before the LM head) at the last prompt token (the ``\n`` after
``<|im_start|>assistant``). It is read from ``value_head.safetensors`` beside the checkpoint
(``weight`` (1, hidden), ``bias`` (1,)); when absent it starts at zero (V = 0) and a log line
says so. ``save_value_head`` writes it there.

Training: ``trainable`` = ``'language_model'`` (default: value head, the language model and
the LM head; vision tower and projector frozen), ``'value_head'`` (backbone frozen) or
``'all'`` (everything). Frozen parameters get ``requires_grad=False``. ``save_weights`` writes
the trainable tensors (model parameter names, value head as ``value_head.weight/bias``) as one
safetensors file, atomically (temporary file, fsync, rename) and returns its sha256.
``load_weights`` checks the sha256, the safetensors format (pickle files are refused), the
names (exactly this policy's trainable set), shapes and finiteness before touching any
parameter, so on any failure it raises ``PolicyError`` and the old weights stay.

Errors: malformed observations (no or more than 3 views, non-uint8 or non-RGB frames, a state
that is not 7 finite numbers or out of the codec's range, an empty task) raise ``PolicyError``
with the bad value. Non-finite logits or value raise ``PolicyError``; an action is always
decoded from integers and is never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
import logging
import math
import os
import pathlib
import re
import threading
import time
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from vlac_models.files import atomic_write, sha256_file
from vlac_models.policy import codec
from vlac_models.policy.base import (
    EefAction,
    PolicyError,
    PolicyObservation,
    PolicyOutput,
)
from vlac_models.state import STATE_DIM
from vlac_models.vlac_model import loading, preprocess, prompts

LOG = logging.getLogger('vlac_models.policy.vlac')

END_TOKEN = '<|im_end|>'
"""Ends the assistant reply (ms-swift ``internvl2`` template suffix): the last terminator."""

VALUE_HEAD_FILE = 'value_head.safetensors'
TRAINABLE_CHOICES = ('value_head', 'language_model', 'all')
TEMPLATE_TOKEN_CHOICES = ('canonical', 'greedy')
DEFAULT_MAX_TRANSLATION_MM = 1000
ANGLE_RANGE = (-180, 179)
"""Degrees; the codec writes +180 as -180, so 180 is never a valid text."""

LOAD_OPTIONS = ('trainable', 'temperature', 'seed', 'max_translation_mm', 'template_tokens',
                'allow_download', 'trust_remote_code')
"""Keyword options of ``load_vlac_policy``."""

_NUMERIC_CHARS = frozenset(' -0123456789')
_NUMBER = re.compile(r'(-?)(0|[1-9][0-9]*)')
_BYTE_PIECE = re.compile(r'^<0x[0-9A-Fa-f]{2}>$')
_PROBES = (
    (0, 0, 0, 0, 0, 0, 0), (-47, 19, 66, 14, 10, 15, 0), (5, -3, -120, -180, 179, -7, 1),
    (999, -999, 100, 90, -90, 33, 1), (1, -1, 10, -10, 100, -100, 0),
    (123, -45, 6, -78, 9, 170, 1), (-800, 250, -5, 45, -135, 0, 1),
)
"""Actions whose tokenisation defines the canonical template tokens (clipped to the bounds)."""


# ---------------------------------------------------------------------------------------------
# Template grammar (tokenizer-level, no model).


@dataclass(frozen=True)
class FieldSpec:
    """Grammar of one numeric field: ``prefix`` then an integer in ``[low, high]``.

    ``prefix`` is template whitespace the tokenizer glues to the number (``' '`` for
    sentencepiece's ``'\u2581-'``); it is mandatory and generated with the number.
    """

    name: str
    low: int
    high: int
    prefix: str = ''

    def is_prefix(self, text: str) -> bool:
        """Whether ``text`` can still be completed to a valid field text."""
        if len(text) <= len(self.prefix):
            return self.prefix.startswith(text)
        if not text.startswith(self.prefix):
            return False
        rest = text[len(self.prefix):]
        if rest == '-':
            return self.low < 0
        match = _NUMBER.fullmatch(rest)
        if match is None:
            return False
        if match.group(1):
            return match.group(2) != '0' and int(match.group(2)) <= -self.low
        return int(match.group(2)) <= self.high

    def is_complete(self, text: str) -> bool:
        """Whether ``text`` is a whole valid field (a number may end here)."""
        rest = text[len(self.prefix):]
        return (len(text) > len(self.prefix) and rest != '-' and self.is_prefix(text)
                and self.low <= int(rest) <= self.high)

    def text(self, value: int) -> str:
        """Field text of ``value`` (ValueError when out of bounds)."""
        if not self.low <= value <= self.high:
            raise ValueError(f'{self.name} = {value} outside [{self.low}, {self.high}]')
        return f'{self.prefix}{value}'


def _literal_texts() -> list[str]:
    """The 8 template literals around the codec's 7 fields (the last is followed by END)."""
    names, units = codec.FIELDS, codec.UNITS
    texts = [f'{names[0]}: ']
    texts += [f'{units[i - 1]}, {names[i]}: ' for i in range(1, len(names))]
    texts.append(units[-1])
    return texts


def _decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False,
                            clean_up_tokenization_spaces=False)


def _mid_text_surfaces(tokenizer, ids: Sequence[int]) -> list[str]:
    """Text each token adds in the middle of a text (after an anchor, so no prefix stripping)."""
    anchor = tokenizer.encode('x', add_special_tokens=False)
    base = _decode(tokenizer, anchor)
    texts = tokenizer.batch_decode([anchor + [int(i)] for i in ids], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    return [t[len(base):] if t.startswith(base) else '\ufffd' for t in texts]


class ActionLayout:
    """Token layout of the action reply: forced literal tokens and constrained numeric fields.

    Built from a tokenizer by ``build_layout``; holds no model. ``literals[i]`` are the forced
    token ids before field ``i`` (``literals[7]`` ends with the end token), ``fields[i]`` the
    grammar of field ``i``, ``numeric`` the id -> text map of the tokens a field may use.
    """

    def __init__(self, literals: Sequence[Sequence[int]], literal_texts: Sequence[str],
                 fields: Sequence[FieldSpec], numeric: dict[int, str], mode: str,
                 end_id: int) -> None:
        self.literals = tuple(tuple(int(t) for t in lit) for lit in literals)
        self.literal_texts = tuple(literal_texts)
        self.fields = tuple(fields)
        self.numeric = dict(sorted(numeric.items()))
        self.mode = mode
        self.end_id = int(end_id)
        self._by_text: dict[str, int] = {}
        for token, text in self.numeric.items():
            self._by_text.setdefault(text, token)
        for i in range(len(self.fields)):
            if not self.literals[i + 1]:
                raise ValueError(f'template literal {i + 1} has no forced token')
        self.allowed = functools.lru_cache(maxsize=4096)(self._allowed)

    def _allowed(self, field: int, text: str) -> tuple[tuple[int, ...], int | None]:
        """(numeric continuation ids, terminator id or None) in state (field, text)."""
        spec = self.fields[field]
        ids = tuple(t for t, s in self.numeric.items() if spec.is_prefix(text + s))
        terminator = self.literals[field + 1][0] if spec.is_complete(text) else None
        if terminator is not None and terminator in ids:
            raise PolicyError(f'token {terminator} both ends and continues field {spec.name}')
        return ids, terminator

    def choices(self, field: int, text: str) -> tuple[int, ...]:
        """All tokens allowed in state (field, text), ascending id, terminator last."""
        ids, terminator = self.allowed(field, text)
        return ids + ((terminator,) if terminator is not None else ())

    def parse(self, tokens: Sequence[int]) -> tuple[list[int], list[tuple[int, tuple]]]:
        """Field values and generated steps ``(index, allowed ids)`` of a complete reply.

        Raises ValueError naming the first token the template cannot produce.
        """
        tokens = [int(t) for t in tokens]
        values, steps, pos = [], [], 0

        def expect(literal: tuple[int, ...]) -> None:
            nonlocal pos
            if tokens[pos:pos + len(literal)] != list(literal):
                raise ValueError(f'tokens {tokens[pos:pos + len(literal)]} at {pos} are not the '
                                 f'template literal {list(literal)}')
            pos += len(literal)

        expect(self.literals[0])
        for field, spec in enumerate(self.fields):
            text = ''
            while True:
                if pos >= len(tokens):
                    raise ValueError(f'tokens end inside field {spec.name!r}')
                allowed = self.choices(field, text)
                token = tokens[pos]
                if token not in allowed:
                    raise ValueError(f'token {token} at {pos} is not allowed in field '
                                     f'{spec.name!r} after {text!r}')
                steps.append((pos, allowed))
                if token == self.allowed(field, text)[1]:
                    values.append(int(text[len(spec.prefix):]))
                    pos += 1
                    expect(self.literals[field + 1][1:])
                    break
                text += self.numeric[token]
                pos += 1
        if pos != len(tokens):
            raise ValueError(f'{len(tokens) - pos} tokens after the end of the action')
        return values, steps

    def text(self, values: Sequence[int]) -> str:
        """Action text (codec format) of 7 field values."""
        if len(values) != len(self.fields):
            raise ValueError(f'an action has {len(self.fields)} values, got {values!r}')
        parts = [literal + str(int(value))
                 for literal, value in zip(self.literal_texts, values, strict=False)]
        return ''.join(parts) + self.literal_texts[-1]

    def greedy_field(self, field: int, text: str) -> list[int]:
        """Longest-match numeric tokens of a whole field text (prefix included)."""
        spec, out, pos = self.fields[field], [], 0
        while pos < len(text):
            for end in range(len(text), pos, -1):
                token = self._by_text.get(text[pos:end])
                if token is not None and spec.is_prefix(text[:end]):
                    out.append(token)
                    pos = end
                    break
            else:
                raise ValueError(f'no numeric token for {text[pos:]!r} in field {spec.name!r}')
        return out

    def greedy_tokens(self, values: Sequence[int]) -> list[int]:
        """The longest-match layout of ``values`` (always valid for this template)."""
        tokens = list(self.literals[0])
        for field, (spec, value) in enumerate(zip(self.fields, values, strict=True)):
            tokens += self.greedy_field(field, spec.text(int(value)))
            tokens += self.literals[field + 1]
        return tokens


def _field_specs(max_translation_mm: int, prefixes: Sequence[str]) -> list[FieldSpec]:
    ranges = [(-max_translation_mm, max_translation_mm)] * 3 + [ANGLE_RANGE] * 3 + [(0, 1)]
    return [FieldSpec(name, low, high, prefix) for name, (low, high), prefix
            in zip(codec.FIELDS, ranges, prefixes, strict=True)]


def _numeric_vocabulary(tokenizer) -> dict[int, str]:
    """Ids of the non-special tokens whose mid-text surface is made of ' ', '-' and digits."""
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    candidates = [i for i, piece in enumerate(pieces)
                  if piece and i not in special and not _BYTE_PIECE.match(piece)
                  and set(piece.replace('\u2581', ' ').replace('\u0120', ' ')) <= _NUMERIC_CHARS]
    surfaces = _mid_text_surfaces(tokenizer, candidates)
    return {i: s for i, s in zip(candidates, surfaces, strict=True)
            if s and set(s) <= _NUMERIC_CHARS}


def _greedy_literals(tokenizer, texts: Sequence[str], end_id: int) -> list[list[int]]:
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    ids = [i for i, p in enumerate(pieces) if p and i not in special and not _BYTE_PIECE.match(p)]
    table: dict[str, int] = {}
    for i, s in zip(ids, _mid_text_surfaces(tokenizer, ids), strict=True):
        if s and '\ufffd' not in s:
            table.setdefault(s, i)
    longest = max(len(s) for s in table)
    literals = []
    for text in texts:
        out, pos = [], 0
        while pos < len(text):
            for end in range(min(len(text), pos + longest), pos, -1):
                if text[pos:end] in table:
                    out.append(table[text[pos:end]])
                    pos = end
                    break
            else:
                raise PolicyError(f'tokenizer has no token for {text[pos:]!r} of the template')
        literals.append(out)
    literals[-1].append(end_id)
    return literals


def _reply_ids(tokenizer, text: str, end_id: int) -> list[int]:
    """The tokenizer's own ids of a reply (encoded on its own, as ms-swift does) + END."""
    return tokenizer.encode(text, add_special_tokens=False) + [end_id]


def _canonical_literals(tokenizer, texts: Sequence[str], specs: Sequence[FieldSpec],
                        end_id: int) -> tuple[list[list[int]], list[str]]:
    """Forced literal tokens and field prefixes from the tokenizer's encoding of probe actions.

    Each probe reply is encoded on its own; the tokens lying inside a literal's characters are
    that literal's tokens in this probe, and a token may only cross from a literal into the
    following number when the crossed literal text is whitespace. Across probes the common
    leading tokens of each literal are forced; the literal text they leave uncovered (trailing
    whitespace) becomes the mandatory prefix of the next field. Raises ValueError when the
    tokenizer's split cannot be described this way.
    """
    per_literal: list[list[list[int]]] = [[] for _ in texts]
    covered: list[list[int]] = [[] for _ in texts]  # characters covered, per literal and probe
    for probe in _PROBES:
        values = [max(s.low, min(s.high, v)) for s, v in zip(specs, probe, strict=True)]
        spans, text = [], ''
        for index, literal in enumerate(texts):
            spans.append((len(text), len(text) + len(literal)))
            text += literal
            if index < len(values):
                text += str(values[index])
        ids = _reply_ids(tokenizer, text, end_id)[:-1]
        decoded = [_decode(tokenizer, ids[:k]) for k in range(len(ids) + 1)]
        if decoded[-1] != text or any(not decoded[k + 1].startswith(decoded[k])
                                      for k in range(len(ids))):
            raise ValueError(f'tokenizer does not decode {text!r} token by token')
        bounds = [(len(decoded[k]), len(decoded[k + 1])) for k in range(len(ids))]
        for index, (start, end) in enumerate(spans):
            tokens, reach = [], start
            for k, (a, b) in enumerate(bounds):
                if a < start < b:
                    raise ValueError(f'token {tokenizer.convert_ids_to_tokens(ids[k])!r} joins a '
                                     f'number and the literal {texts[index]!r} in {text!r}')
                if start <= a < end:
                    if b <= end:
                        tokens.append(ids[k])
                        reach = b
                    elif not (text[a:end].isspace() and index < len(specs)):
                        raise ValueError(f'token {tokenizer.convert_ids_to_tokens(ids[k])!r} '
                                         f'joins the literal {texts[index]!r} and a number')
            if index == len(texts) - 1:
                tokens.append(end_id)
            per_literal[index].append(tokens)
            covered[index].append(reach - start)
    literals, prefixes = [], []
    for index, variants in enumerate(per_literal):
        common = 0
        while all(len(v) > common and v[common] == variants[0][common] for v in variants):
            common += 1
        tokens = variants[0][:common]
        # Characters covered by the common tokens: they are the same tokens in every probe.
        if common == len(variants[0]):
            width = covered[index][0]
        else:
            width = _covered_width(tokenizer, texts[index], variants[0][:common], index == 0)
        rest = texts[index][width:]
        if not tokens or (rest and not rest.isspace()):
            raise ValueError(f'no common token split of the template literal {texts[index]!r}')
        literals.append(tokens)
        if index < len(specs):
            prefixes.append(rest)
    return literals, prefixes


def _covered_width(tokenizer, literal: str, tokens: Sequence[int], at_start: bool) -> int:
    """Characters of ``literal`` spelled by ``tokens`` (at the reply start or mid-text)."""
    text = _decode(tokenizer, tokens) if at_start else ''.join(_mid_text_surfaces(tokenizer,
                                                                                  tokens))
    if not literal.startswith(text):
        raise ValueError(f'tokens {list(tokens)} do not spell the start of {literal!r}')
    return len(text)


def build_layout(tokenizer, end_id: int, *, max_translation_mm: int = DEFAULT_MAX_TRANSLATION_MM,
                 mode: str = 'canonical') -> ActionLayout:
    """Template layout for ``tokenizer`` (see the module docstring); PolicyError if impossible."""
    if mode not in TEMPLATE_TOKEN_CHOICES:
        raise PolicyError(f'template_tokens must be one of {TEMPLATE_TOKEN_CHOICES}, got {mode!r}')
    if isinstance(max_translation_mm, bool) or not isinstance(max_translation_mm, int) or \
            not 1 <= max_translation_mm <= codec.MAX_MM:
        raise PolicyError(f'max_translation_mm must be an int in [1, {codec.MAX_MM}], '
                          f'got {max_translation_mm!r}')
    texts = _literal_texts()
    check = prompts.format_pose(list(_PROBES[1]))[1:-1]
    if ''.join(t + str(v) for t, v in zip(texts, _PROBES[1], strict=False)) + texts[-1] != check:
        raise PolicyError(f'template literals {texts} do not rebuild the codec text {check!r}')
    numeric = _numeric_vocabulary(tokenizer)
    missing = [c for c in '-0123456789' if c not in numeric.values()]
    if missing:
        raise PolicyError(f'tokenizer has no single-character tokens for {missing}')
    layout = None
    if mode == 'canonical':
        try:
            specs = _field_specs(max_translation_mm, [''] * len(codec.FIELDS))
            literals, prefixes = _canonical_literals(tokenizer, texts, specs, end_id)
            layout = ActionLayout(literals, texts, _field_specs(max_translation_mm, prefixes),
                                  numeric, 'canonical', end_id)
            for probe in _PROBES:
                values = [max(s.low, min(s.high, v)) for s, v in zip(specs, probe, strict=True)]
                layout.parse(_reply_ids(tokenizer, layout.text(values), end_id))
        except ValueError as exc:
            LOG.warning('template tokens: the tokenizer split does not fit the template (%s); '
                        'using longest-match template tokens', exc)
            layout = None
    if layout is None:
        literals = _greedy_literals(tokenizer, texts, end_id)
        layout = ActionLayout(literals, texts, _field_specs(max_translation_mm, [''] * 7),
                              numeric, 'greedy', end_id)
    for spec in layout.fields:
        if not set(spec.prefix) <= set(numeric.values()) | {''}:
            raise PolicyError(f'no token for the field prefix {spec.prefix!r}')
    return layout


# ---------------------------------------------------------------------------------------------
# The policy.


@dataclass
class _Row:
    """Decoding state of one observation in ``act_batch``."""

    field: int = 0
    text: str = ''
    done: bool = False
    log_prob: float = 0.0
    steps: int = 0


def _forward_left_padded(loaded: loading.LoadedVlac, seqs: list[list[int]], pixels: torch.Tensor,
                         use_cache: bool) -> tuple[int, torch.Tensor, object]:
    """One forward pass of the language model over left-padded token rows with their images.

    Returns (width, attention mask, model output); rows are right-aligned so that every
    row's next token sits at the same column.
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), loaded.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = torch.tensor(seq)
        mask[row, width - len(seq):] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    device = loaded.device
    out = loaded.model.model(
        input_ids=ids.to(device), attention_mask=mask.to(device),
        position_ids=positions.to(device), pixel_values=pixels.to(device, loaded.dtype),
        use_cache=use_cache)
    return width, mask, out


def _write_safetensors_atomically(tensors: dict[str, torch.Tensor], path: pathlib.Path,
                                  metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _read_safetensors(path: pathlib.Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file on CPU; PolicyError for anything else (pickles)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework='pt', device='cpu') as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise PolicyError(f'{path} is not a readable safetensors file ({exc}); pickle and '
                          'other formats are refused') from exc


class VlacPolicy:
    """Actor backed by a converted VLAC checkpoint (implements ``policy.base.Policy``)."""

    backend = 'vlac'

    def __init__(self, loaded: loading.LoadedVlac, checkpoint: pathlib.Path | None = None, *,
                 trainable: str = 'language_model', temperature: float = 1.0,
                 seed: int | None = None,
                 max_translation_mm: int = DEFAULT_MAX_TRANSLATION_MM,
                 template_tokens: str = 'canonical') -> None:
        if trainable not in TRAINABLE_CHOICES:
            raise PolicyError(f'trainable must be one of {TRAINABLE_CHOICES}, got {trainable!r}')
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or \
                temperature <= 0.0:
            raise PolicyError(f'temperature must be a finite number > 0, got {temperature!r}')
        self._loaded: loading.LoadedVlac | None = loaded
        self.model_id = f'vlac:{loaded.name}'
        self.checkpoint = checkpoint
        self.trainable = trainable
        self.temperature = float(temperature)
        self.device = loaded.device
        tokenizer = loaded.tokenizer
        end_id = tokenizer.convert_tokens_to_ids(END_TOKEN)
        if end_id is None or end_id == tokenizer.unk_token_id:
            end_id = loaded.eos_token_ids[0]
        self.layout = build_layout(tokenizer, int(end_id), max_translation_mm=max_translation_mm,
                                   mode=template_tokens)
        LOG.info('%s: %s template tokens, %d numeric tokens, field prefixes %s', self.model_id,
                 self.layout.mode, len(self.layout.numeric),
                 [s.prefix for s in self.layout.fields])
        hidden = loaded.model.config.text_config.hidden_size
        self.value_head = nn.Linear(hidden, 1).to(self.device, torch.float32)
        self._load_value_head()
        self._set_trainable()
        self._generator = torch.Generator(device='cpu')
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(int(seed))
        self._lock = threading.RLock()

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = 'cpu', *,
             trust_remote_code: bool = False, allow_download: bool = False,
             **options) -> 'VlacPolicy':
        """Load a converted checkpoint directory (``vlac_model.loading.load_vlac``).

        Every loading failure (missing directory, original layout, pickle weights,
        ``trust_remote_code``, bad device, bad value head) raises ``PolicyError``.
        """
        try:
            loaded = loading.load_vlac(path, device, trust_remote_code=trust_remote_code,
                                       allow_download=allow_download)
        except (OSError, ValueError) as exc:
            raise PolicyError(f'cannot load the vlac policy from {path}: {exc}') from exc
        checkpoint = pathlib.Path(path) if os.path.isdir(os.fspath(path)) else None
        return cls(loaded, checkpoint, **options)

    # -- parameters ------------------------------------------------------------------------

    def _require(self) -> loading.LoadedVlac:
        if self._loaded is None:
            raise PolicyError(f'{self.model_id} is closed')
        return self._loaded

    def _load_value_head(self) -> None:
        source = self.checkpoint / VALUE_HEAD_FILE if self.checkpoint is not None else None
        with torch.no_grad():
            if source is None or not source.is_file():
                self.value_head.weight.zero_()
                self.value_head.bias.zero_()
                LOG.info('%s: no %s beside the checkpoint; value head initialised to zero',
                         self.model_id, VALUE_HEAD_FILE)
                return
            tensors = _read_safetensors(source)
            expected = {'weight': tuple(self.value_head.weight.shape),
                        'bias': tuple(self.value_head.bias.shape)}
            shapes = {k: tuple(v.shape) for k, v in tensors.items()}
            if shapes != expected:
                raise PolicyError(f'{source}: value head tensors {shapes}, expected {expected}')
            if not all(torch.isfinite(v).all() for v in tensors.values()):
                raise PolicyError(f'{source}: non-finite value head weights')
            self.value_head.weight.copy_(tensors['weight'])
            self.value_head.bias.copy_(tensors['bias'])
        LOG.info('%s: value head loaded from %s', self.model_id, source)

    def save_value_head(self, path: str | os.PathLike | None = None) -> pathlib.Path:
        """Write the value head (default: ``value_head.safetensors`` beside the checkpoint)."""
        if path is None:
            if self.checkpoint is None:
                raise PolicyError('no checkpoint directory: give the value head path')
            path = self.checkpoint / VALUE_HEAD_FILE
        target = pathlib.Path(path)
        tensors = {'weight': self.value_head.weight.detach().cpu().contiguous(),
                   'bias': self.value_head.bias.detach().cpu().contiguous()}
        _write_safetensors_atomically(tensors, target, {'format': 'pt'})
        return target

    def _model_trainable(self, name: str) -> bool:
        if self.trainable == 'all':
            return True
        if self.trainable == 'language_model':
            return name.startswith(('model.language_model.', 'lm_head.'))
        return False

    def _set_trainable(self) -> None:
        for name, param in self._require().model.named_parameters():
            param.requires_grad_(self._model_trainable(name))
        for param in self.value_head.parameters():
            param.requires_grad_(True)

    def named_trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) of every trainable tensor: model names, then ``value_head.*``."""
        named = [(n, p) for n, p in self._require().model.named_parameters()
                 if self._model_trainable(n)]
        return named + [(f'value_head.{n}', p) for n, p in self.value_head.named_parameters()]

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        """The parameters the trainer optimises (see ``trainable`` in the module docstring)."""
        return [p for _, p in self.named_trainable_parameters()]

    def save_weights(self, path: str | os.PathLike) -> str:
        """Write the trainable weights as one safetensors file, atomically; return its sha256."""
        target = pathlib.Path(path)
        with self._lock:
            tensors = {n: p.detach().cpu().contiguous()
                       for n, p in self.named_trainable_parameters()}
            _write_safetensors_atomically(tensors, target, {
                'format': 'pt', 'backend': self.backend, 'trainable': self.trainable,
                'model_id': self.model_id})
        return sha256_file(target)

    def load_weights(self, path: str | os.PathLike, sha256: str | None = None) -> None:
        """Load ``save_weights`` output; PolicyError and the old weights kept on any failure."""
        source = pathlib.Path(path)
        if not source.is_file():
            raise PolicyError(f'weights file not found: {source}')
        if sha256 is not None:
            actual = sha256_file(source)
            if actual.lower() != str(sha256).strip().lower():
                raise PolicyError(f'{source}: sha256 {actual} does not match the expected '
                                  f'{sha256}')
        tensors = _read_safetensors(source)
        with self._lock:
            named = dict(self.named_trainable_parameters())
            missing = sorted(set(named) - set(tensors))
            unexpected = sorted(set(tensors) - set(named))
            if missing or unexpected:
                raise PolicyError(
                    f'{source}: not the trainable set of this policy (trainable='
                    f'{self.trainable!r}): {len(missing)} missing (e.g. {missing[:3]}), '
                    f'{len(unexpected)} unexpected (e.g. {unexpected[:3]})')
            for name, param in named.items():
                tensor = tensors[name]
                if tuple(tensor.shape) != tuple(param.shape):
                    raise PolicyError(f'{source}: {name} has shape {tuple(tensor.shape)}, '
                                      f'expected {tuple(param.shape)}')
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise PolicyError(f'{source}: {name} has non-finite values')
            with torch.no_grad():
                for name, param in named.items():
                    param.copy_(tensors[name].to(param.device, param.dtype))
        LOG.info('%s: loaded %d trainable tensors from %s', self.model_id, len(named), source)

    # -- observations and prompts ----------------------------------------------------------

    def _query(self, observation: PolicyObservation) -> tuple[str, list[np.ndarray]]:
        """(user query, frames) of one observation; PolicyError for malformed input."""
        if not isinstance(observation, PolicyObservation):
            raise PolicyError(f'expected a PolicyObservation, got {type(observation).__name__}')
        images = observation.images
        if isinstance(images, np.ndarray) or not isinstance(images, Sequence):
            raise PolicyError('observation.images must be a sequence of (H, W, 3) uint8 arrays, '
                              f'got {type(images).__name__}')
        if not 1 <= len(images) <= len(prompts.VIEW_PREFIXES):
            raise PolicyError(f'the vlac policy takes 1 to {len(prompts.VIEW_PREFIXES)} camera '
                              f'views, got {len(images)}')
        try:
            frames = [preprocess.check_frame(frame) for frame in images]
            state = np.asarray(observation.state, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise PolicyError(f'malformed observation: {exc}') from exc
        if state.shape != (STATE_DIM,) or not np.all(np.isfinite(state)):
            raise PolicyError(f'observation.state must be {STATE_DIM} finite numbers '
                              '[x y z (m), roll pitch yaw (rad), gripper 0..1], got '
                              f'{np.asarray(observation.state).tolist()!r}')
        try:
            query = prompts.action_prompt(observation.task, codec.encode_state(state),
                                          len(frames))
        except ValueError as exc:
            raise PolicyError(f'malformed observation: {exc}') from exc
        return query, frames

    def prompt_text(self, observation: PolicyObservation) -> str:
        """The exact model input text of ``observation`` (images expanded; BOS added later)."""
        query, _ = self._query(observation)
        return prompts.render_chat(query, self._require().tokens_per_image)

    def _prepare(self, observations: Sequence[PolicyObservation]
                 ) -> tuple[list[list[int]], torch.Tensor]:
        """Prompt token ids per observation and the pixel values of all their frames."""
        loaded = self._require()
        queries = [self._query(obs) for obs in observations]
        texts = [prompts.render_chat(q, loaded.tokens_per_image) for q, _ in queries]
        ids = loaded.tokenizer(texts, add_special_tokens=True)['input_ids']
        frames = [f for _, fs in queries for f in fs]
        pixels = torch.stack([preprocess.preprocess_frame(f, loaded.image_size) for f in frames])
        return [list(map(int, row)) for row in ids], pixels

    # -- scoring helpers -------------------------------------------------------------------

    def _scores(self, logits: torch.Tensor, allowed: Sequence[int]) -> torch.Tensor:
        """Constrained, temperature-scaled log-probabilities (float32) over ``allowed``."""
        index = torch.as_tensor(allowed, dtype=torch.long, device=logits.device)
        scores = logits.index_select(-1, index).float() / self.temperature
        return torch.log_softmax(scores, dim=-1)

    def _value(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.value_head(hidden.float()).squeeze(-1)

    # -- acting ----------------------------------------------------------------------------

    def act(self, observation: PolicyObservation, deterministic: bool = False) -> PolicyOutput:
        """Sample (or take the most likely) action for one observation, without gradients."""
        return self.act_batch([observation], deterministic)[0]

    def act_batch(self, observations: Sequence[PolicyObservation],
                  deterministic: bool = False) -> list[PolicyOutput]:
        """Actions for several observations: one batched prefill, then batched decode steps."""
        observations = list(observations)
        if not observations:
            return []
        start_time = time.perf_counter()
        with self._lock, torch.inference_mode():
            loaded = self._require()
            prompt_ids, pixels = self._prepare(observations)
            layout = self.layout
            first = list(layout.literals[0])
            batch = len(prompt_ids)
            width, mask, out = _forward_left_padded(
                loaded, [prompt + first for prompt in prompt_ids], pixels, use_cache=True)
            next_pos = mask.sum(1)
            device = loaded.device
            cache = out.past_key_values
            hidden = out.last_hidden_state
            values = self._value(hidden[:, width - len(first) - 1]).cpu()
            last = hidden[:, -1]
            rows = [_Row() for _ in range(batch)]
            tokens: list[list[int]] = [list(first) for _ in range(batch)]
            passes = 1
            while True:
                logits = loaded.model.lm_head(last)
                feeds: list[list[int]] = []
                for r, state in enumerate(rows):
                    if state.done:
                        feeds.append([])
                        continue
                    feed = self._step(state, logits[r], deterministic)
                    tokens[r] += feed
                    feeds.append([] if state.done else feed)
                if all(not f for f in feeds):
                    break
                chunk = max(len(f) for f in feeds)
                step_ids = torch.full((batch, chunk), loaded.pad_token_id, dtype=torch.long)
                step_mask = torch.zeros((batch, chunk), dtype=torch.long)
                step_pos = next_pos[:, None].repeat(1, chunk)
                for r, feed in enumerate(feeds):
                    if feed:
                        step_ids[r, chunk - len(feed):] = torch.tensor(feed)
                        step_mask[r, chunk - len(feed):] = 1
                        step_pos[r, chunk - len(feed):] = next_pos[r] + torch.arange(len(feed))
                        next_pos[r] += len(feed)
                mask = torch.cat([mask, step_mask], dim=1)
                out = loaded.model.model(
                    input_ids=step_ids.to(device), attention_mask=mask.to(device),
                    position_ids=step_pos.to(device), past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                last = out.last_hidden_state[:, -1]
                passes += 1
        if not torch.isfinite(values).all():
            raise PolicyError(f'{self.model_id}: non-finite value {values.tolist()}')
        elapsed_ms = (time.perf_counter() - start_time) * 1e3
        outputs = []
        for r, state in enumerate(rows):
            values_r, _ = layout.parse(tokens[r])
            text = layout.text(values_r)
            outputs.append(PolicyOutput(
                action=codec.decode_action(text), tokens=np.asarray(tokens[r], dtype=np.int64),
                log_prob=float(state.log_prob), value=float(values[r]), text=text,
                extras={'generated_tokens': state.steps, 'forward_passes': passes,
                        'batch_latency_ms': elapsed_ms}))
        return outputs

    def _step(self, state: _Row, logits: torch.Tensor, deterministic: bool) -> list[int]:
        """Choose one token for ``state``; return it plus the literal tokens it forces."""
        layout = self.layout
        allowed = layout.choices(state.field, state.text)
        log_probs = self._scores(logits, allowed)
        if not bool(torch.isfinite(log_probs).all()):
            raise PolicyError(f'{self.model_id}: non-finite logits while decoding field '
                              f'{layout.fields[state.field].name!r}')
        if deterministic:
            choice = int(torch.argmax(log_probs))
        else:
            probs = log_probs.exp().cpu()
            choice = int(torch.multinomial(probs, 1, generator=self._generator))
        token = allowed[choice]
        state.log_prob += float(log_probs[choice])
        state.steps += 1
        if token == layout.allowed(state.field, state.text)[1]:
            forced = list(layout.literals[state.field + 1][1:])
            state.field += 1
            state.text = ''
            if state.field == len(layout.fields):
                state.done = True
            return [token] + forced
        state.text += layout.numeric[token]
        return [token]

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, observations: Sequence[PolicyObservation],
                 tokens: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Differentiable ``(log_prob, entropy, value)``, float32 tensors (B,) on the device.

        One teacher-forced forward pass over ``prompt + tokens`` for the whole batch; the
        generated positions and their allowed sets come from replaying the template.
        """
        observations = list(observations)
        if len(observations) != len(tokens):
            raise PolicyError(f'{len(observations)} observations but {len(tokens)} token rows')
        if not observations:
            empty = torch.zeros(0, device=self.device)
            return empty, empty, empty
        parsed = []
        for i, row in enumerate(tokens):
            array = np.asarray(row)
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
                raise PolicyError(f'tokens[{i}] must be a 1-D integer array, got shape '
                                  f'{array.shape} dtype {array.dtype}')
            try:
                parsed.append((array.tolist(), self.layout.parse(array.tolist())[1]))
            except ValueError as exc:
                raise PolicyError(f'tokens[{i}] are not a vlac action: {exc}') from exc
        with self._lock:
            loaded = self._require()
            prompt_ids, pixels = self._prepare(observations)
            seqs = [p + t for p, (t, _) in zip(prompt_ids, parsed, strict=True)]
            batch = len(seqs)
            width, mask, out = _forward_left_padded(loaded, seqs, pixels, use_cache=False)
            device = loaded.device
            hidden = out.last_hidden_state
            value_rows, value_cols, rows, cols, allowed, targets = [], [], [], [], [], []
            for r, (prompt, (row_tokens, steps)) in enumerate(zip(prompt_ids, parsed,
                                                                  strict=True)):
                offset = width - len(seqs[r])
                value_rows.append(r)
                value_cols.append(offset + len(prompt) - 1)
                for index, choices in steps:
                    rows.append(r)
                    cols.append(offset + len(prompt) + index - 1)
                    allowed.append(choices)
                    targets.append(choices.index(row_tokens[index]))
            value = self._value(hidden[value_rows, value_cols])
            logits = loaded.model.lm_head(hidden[rows, cols])
            widest = max(len(a) for a in allowed)
            index = torch.zeros((len(allowed), widest), dtype=torch.long)
            valid = torch.zeros((len(allowed), widest), dtype=torch.bool)
            for k, choices in enumerate(allowed):
                index[k, :len(choices)] = torch.tensor(choices)
                valid[k, :len(choices)] = True
            index, valid = index.to(device), valid.to(device)
            scores = logits.gather(1, index).float() / self.temperature
            scores = scores.masked_fill(~valid, float('-inf'))
            log_probs = torch.log_softmax(scores, dim=-1)
            chosen = log_probs.gather(1, torch.tensor(targets, device=device)[:, None])[:, 0]
            step_entropy = -(log_probs.exp() * log_probs.masked_fill(~valid, 0.0)).sum(-1)
            owner = torch.tensor(rows, device=device)
            log_prob = torch.zeros(batch, device=device).index_add(0, owner, chosen)
            entropy = torch.zeros(batch, device=device).index_add(0, owner, step_entropy)
        return log_prob, entropy, value

    def tokens_for(self, observation: PolicyObservation, action: EefAction) -> np.ndarray:
        """Reply tokens of a demonstrated ``action`` (codec text), in ``act``'s layout."""
        self._query(observation)
        if not isinstance(action, EefAction):
            raise PolicyError(f'expected an EefAction, got {type(action).__name__}')
        try:
            text = codec.encode_action(action)
            values = codec.parse_pose(text)
            for spec, value in zip(self.layout.fields, values, strict=True):
                spec.text(value)
        except ValueError as exc:
            raise PolicyError(f'action {action} cannot be written by the vlac policy: {exc}'
                              ) from exc
        layout = self.layout
        if layout.mode == 'canonical':
            own = _reply_ids(self._require().tokenizer, text, layout.end_id)
            try:
                layout.parse(own)
                return np.asarray(own, dtype=np.int64)
            except ValueError:
                LOG.debug('tokenizer split of %r does not fit the template; longest match', text)
        return np.asarray(layout.greedy_tokens(values), dtype=np.int64)

    def close(self) -> None:
        """Free the model (and cached CUDA memory); later calls raise PolicyError."""
        with self._lock:
            loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        on_cuda = loaded.device.type == 'cuda'
        del loaded
        loading.free_memory(on_cuda)


def load_vlac_policy(path: str | os.PathLike, device: str = 'cpu', **options) -> VlacPolicy:
    """Entry point of ``load_policy('vlac', path, device, **options)``.

    Options: ``trainable`` ('language_model'), ``temperature`` (1.0), ``seed`` (None: random
    sampling seed), ``max_translation_mm`` (1000), ``template_tokens`` ('canonical'),
    ``allow_download`` (False), ``trust_remote_code`` (refused). Unknown options raise
    ``PolicyError``.
    """
    unknown = sorted(set(options) - set(LOAD_OPTIONS))
    if unknown:
        raise PolicyError(f'unknown vlac policy options {unknown}; known: {sorted(LOAD_OPTIONS)}')
    return VlacPolicy.load(path, device, **options)


# ---------------------------------------------------------------------------------------------
# Benchmark.


def benchmark_vlac_policy(model_dir: str | os.PathLike, device: str = 'cpu', repeats: int = 20,
                          *, num_views: int = 1, frame_shape: tuple[int, int] = (480, 640),
                          deterministic: bool = False, warmup: int = 2,
                          seed: int = 0) -> dict:
    """Milliseconds per action of ``act`` (new frames every call, preprocessing included).

    Returns ``{'p50_ms', 'p99_ms', 'mean_ms', 'repeats', 'device', 'num_views',
    'generated_tokens', 'forward_passes', 'template_tokens', 'model_id'}`` (token figures are
    means per action). CUDA timings synchronise the device before each clock read.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f'repeats must be a positive int, got {repeats!r}')
    policy = load_vlac_policy(model_dir, device, seed=seed)
    rng = np.random.default_rng(seed)
    on_cuda = policy.device.type == 'cuda'

    def observation() -> PolicyObservation:
        frames = [rng.integers(0, 256, (*frame_shape, 3), dtype=np.uint8)
                  for _ in range(num_views)]
        state = np.array([*rng.uniform(-0.3, 0.3, 3), *rng.uniform(-3.0, 3.0, 3), 1.0])
        return PolicyObservation(frames, state, 'pick up the red cube and place it in the bowl')

    times, generated, passes = [], [], []
    try:
        for i in range(warmup + repeats):
            obs = observation()
            if on_cuda:
                torch.cuda.synchronize(policy.device)
            start = time.perf_counter()
            out = policy.act(obs, deterministic=deterministic)
            if on_cuda:
                torch.cuda.synchronize(policy.device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
                generated.append(out.extras['generated_tokens'])
                passes.append(out.extras['forward_passes'])
        return {
            'p50_ms': float(np.percentile(times, 50)), 'p99_ms': float(np.percentile(times, 99)),
            'mean_ms': float(np.mean(times)), 'repeats': repeats, 'device': str(policy.device),
            'num_views': num_views, 'generated_tokens': float(np.mean(generated)),
            'forward_passes': float(np.mean(passes)), 'template_tokens': policy.layout.mode,
            'model_id': policy.model_id,
        }
    finally:
        policy.close()
