"""Loading route of the VLAC checkpoints: convert once, then load transformers' native InternVL.

Route chosen: (b), a conversion command into ``InternVLForConditionalGeneration``.

The published checkpoints (InternRobotics/VLAC, VLAC-8b) are InternVL2 "remote code"
checkpoints (``model_type: internvl_chat``: InternViT vision tower, InternLM2 language model,
``trust_remote_code`` Python files shipped beside the weights). That code targets transformers
4.3x/4.4x; transformers 5 no longer gives remote models ``generate()`` nor its old cache API,
and running code that ships with downloaded weights is a risk on a robot machine. The weights
themselves map one to one onto native classes that transformers maintains:

- InternViT-300M -> ``InternVLVisionModel`` (fused ``qkv`` split in thirds, ``ls1/ls2`` layer
  scales -> ``lambda_1/lambda_2``, pixel shuffle ``ps_version='v2'`` as the native one);
- the ``mlp1`` projector -> ``InternVLMultiModalProjector``;
- InternLM2 -> ``LlamaForCausalLM`` layers: ``wqkv`` is de-interleaved (rows are grouped per
  key/value head as ``[q x groups, k, v]``), ``w1/w3/w2`` -> ``gate/up/down``, the
  rotate-half RoPE convention is already the HF one, so no permutation is needed;
- the InternLM2 sentencepiece tokenizer -> a ``tokenizers`` BPE (byte fallback, dummy prefix,
  the checkpoint's added tokens at their ids, BOS added on encode), checked token for token
  against ``sentencepiece`` when that package is installed.

``vlac_convert_checkpoint SRC DST`` (``convert_main``) writes the converted directory once
(safetensors only, no Python files); ``load_vlac`` then loads it with
``from_pretrained(dir, local_files_only=True, use_safetensors=True)`` and never executes
checkpoint code: ``trust_remote_code`` is refused. A directory still in the original layout is
refused with the conversion command in the message. Weights in pickle formats (``.bin``,
``.pt``) are refused. A hub id is only accepted with ``allow_download=True`` (an explicit user
choice; the published repos are in the original layout, so this is for a converted copy).

Dtype: bfloat16 on CUDA, float32 on CPU.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import sys
from typing import TYPE_CHECKING, Any, Sequence

import torch

from vlac_models.vlac_model import prompts

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import InternVLConfig

LOGGER = logging.getLogger('vlac_models.critic.vlac')

CONVERSION_RECORD = 'vlac_conversion.json'
"""Written by the converter beside the weights: source, tokenizer check, format version."""

CONVERSION_FORMAT = 1
CONVERT_COMMAND = 'vlac_convert_checkpoint'
_PICKLE_SUFFIXES = ('.bin', '.pt', '.pth', '.ckpt', '.pkl')
_HUB_ID = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$')


@dataclass
class LoadedVlac:
    """A loaded VLAC model and what the critic needs to drive it.

    Attributes:
        model: native ``InternVLForConditionalGeneration`` in eval mode on ``device``.
        tokenizer: fast tokenizer, left padding.
        name: checkpoint directory name or hub id (for ``model_id``).
        device: torch device of the model.
        dtype: parameter dtype (bfloat16 on CUDA, float32 on CPU).
        image_size: side of the square image input, pixels (448).
        tokens_per_image: ``<IMG_CONTEXT>`` tokens per image tile (256).
        eos_token_ids: generation stops at any of these.
        pad_token_id: id used for left padding.

    """

    model: Any
    tokenizer: Any
    name: str
    device: torch.device
    dtype: torch.dtype
    image_size: int
    tokens_per_image: int
    eos_token_ids: list[int]
    pad_token_id: int


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``device`` ('cpu', 'cuda', 'cuda:1'); ValueError if unknown or CUDA is absent."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f'unknown device {device!r}') from exc
    if resolved.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {device!r} requested but CUDA is not available')
    if resolved.type not in ('cpu', 'cuda'):
        raise ValueError(f'device {device!r}: only cpu and cuda are supported')
    return resolved


def default_dtype(device: torch.device) -> torch.dtype:
    """Bfloat16 on CUDA (the checkpoints' dtype), float32 on CPU."""
    return torch.bfloat16 if device.type == 'cuda' else torch.float32


def _read_json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f'cannot read {path}: {exc}') from exc


def _check_weights(directory: pathlib.Path) -> list[pathlib.Path]:
    """Safetensors files of ``directory``; ValueError if there are none or only pickles."""
    safetensors = sorted(directory.glob('*.safetensors'))
    if safetensors:
        return safetensors
    pickles = [p.name for p in sorted(directory.iterdir()) if p.suffix in _PICKLE_SUFFIXES]
    if pickles:
        raise ValueError(
            f'{directory}: refusing non-safetensors weights {pickles} (pickle files can run '
            'code when loaded); provide model*.safetensors')
    raise ValueError(f'{directory}: no model*.safetensors weights found')


def _original_layout_message(directory: pathlib.Path | str) -> str:
    return (f'{directory} is a VLAC checkpoint in its original remote-code layout '
            f'(model_type internvl_chat); convert it once with '
            f'`{CONVERT_COMMAND} {directory} <converted_dir>` and load <converted_dir>')


def check_converted_directory(directory: str | os.PathLike) -> pathlib.Path:
    """Validate a converted checkpoint directory without loading it; return its path.

    Raises FileNotFoundError when the directory does not exist, ValueError (naming the
    directory and the problem) when it is not a converted VLAC checkpoint.
    """
    path = pathlib.Path(directory)
    if not path.exists():
        raise FileNotFoundError(f'VLAC checkpoint directory not found: {path}')
    if not path.is_dir():
        raise ValueError(f'VLAC checkpoint must be a directory, got the file {path}')
    config_file = path / 'config.json'
    if not config_file.is_file():
        raise ValueError(f'{path}: no config.json, not a model checkpoint')
    model_type = _read_json(config_file).get('model_type')
    if model_type == 'internvl_chat':
        raise ValueError(_original_layout_message(path))
    if model_type != 'internvl':
        raise ValueError(f'{path}: model_type {model_type!r}, expected a converted VLAC '
                         "checkpoint (model_type 'internvl')")
    _check_weights(path)
    if not (path / 'tokenizer.json').is_file():
        raise ValueError(f'{path}: no tokenizer.json (convert with {CONVERT_COMMAND})')
    return path


def load_vlac(path: str | os.PathLike, device: str | torch.device = 'cpu', *,
              trust_remote_code: bool = False, allow_download: bool = False) -> LoadedVlac:
    """Load a converted VLAC checkpoint directory (or, with ``allow_download``, a hub id).

    Args:
        path: directory written by ``vlac_convert_checkpoint``; a hub id ``owner/name`` only
            with ``allow_download=True``.
        device: 'cpu', 'cuda' or 'cuda:N'.
        trust_remote_code: must stay False: this route never runs checkpoint code.
        allow_download: allow ``path`` to be a hub id of a converted checkpoint (explicit user
            choice; never used by tests or by default).

    Raises:
        FileNotFoundError: ``path`` does not exist (and is not an allowed hub id).
        ValueError: not a converted VLAC checkpoint, pickle weights, bad device, or
            ``trust_remote_code=True``.

    """
    if trust_remote_code:
        raise ValueError(
            'trust_remote_code=True refused: the vlac backend loads checkpoints through '
            "transformers' native InternVL classes and never executes code shipped with "
            f'weights; convert the original checkpoint with `{CONVERT_COMMAND} SRC DST`')
    resolved = resolve_device(device)
    dtype = default_dtype(resolved)
    text = os.fspath(path)
    if os.path.exists(text):
        directory = check_converted_directory(text)
        source, local_only, name = str(directory), True, directory.resolve().name
    elif allow_download and _HUB_ID.match(text):
        from huggingface_hub import hf_hub_download

        model_type = _read_json(pathlib.Path(hf_hub_download(text, 'config.json'))).get(
            'model_type')
        if model_type == 'internvl_chat':
            raise ValueError(
                f'{text} is in the original remote-code layout (internvl_chat): download it '
                f'(huggingface-cli download {text} --local-dir DIR), convert it with '
                f'`{CONVERT_COMMAND} DIR OUT` and load OUT')
        source, local_only, name = text, False, text
    else:
        hint = ' (a hub id needs allow_download=True)' if _HUB_ID.match(text) else ''
        raise FileNotFoundError(f'VLAC checkpoint directory not found: {text}{hint}')

    from transformers import (
        GenerationConfig,
        InternVLForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

    common = {'local_files_only': local_only, 'trust_remote_code': False}
    try:
        model = InternVLForConditionalGeneration.from_pretrained(
            source, dtype=dtype, use_safetensors=True, **common)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(source, **common)
    except OSError as exc:
        raise ValueError(f'{source}: cannot load the converted checkpoint: {exc}') from exc
    model.to(resolved).eval()
    tokenizer.padding_side = 'left'

    config = model.config
    image_token = tokenizer.convert_tokens_to_ids(prompts.IMG_CONTEXT_TOKEN)
    if image_token != config.image_token_id:
        raise ValueError(f'{source}: tokenizer maps {prompts.IMG_CONTEXT_TOKEN} to '
                         f'{image_token}, config.image_token_id is {config.image_token_id}')
    vision = config.vision_config
    image_size = int(vision.image_size[0])
    tokens_per_image = int((image_size // vision.patch_size[0]) ** 2
                           * config.downsample_ratio ** 2)
    if tokens_per_image != config.image_seq_length:
        LOGGER.warning('%s: image_seq_length %d but the geometry gives %d tokens per image; '
                       'using %d', source, config.image_seq_length, tokens_per_image,
                       tokens_per_image)
    try:
        generation = GenerationConfig.from_pretrained(source, **common)
        eos = generation.eos_token_id
    except OSError:
        eos = config.text_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    # swift also stops at the template suffix <|im_end|>; </s> ends any answer.
    for token in ('<|im_end|>', tokenizer.eos_token):
        index = tokenizer.convert_tokens_to_ids(token) if token else None
        if index is not None and index != tokenizer.unk_token_id and index not in eos_ids:
            eos_ids.append(index)
    if not eos_ids:
        raise ValueError(f'{source}: no eos token id in generation_config.json or config')
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    return LoadedVlac(model=model, tokenizer=tokenizer, name=name, device=resolved, dtype=dtype,
                      image_size=image_size, tokens_per_image=tokens_per_image,
                      eos_token_ids=eos_ids, pad_token_id=int(pad))


# --------------------------------------------------------------------------------------------
# Conversion of the original (remote-code) checkpoints.


def split_internlm2_wqkv(weight: torch.Tensor, num_heads: int, num_kv_heads: int,
                         head_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split InternLM2's fused ``wqkv`` (weight or bias) into q, k, v projections.

    InternLM2 reads the output of ``wqkv`` as ``(kv_head, groups + 2, head_dim)`` where
    ``groups = num_heads / num_kv_heads``: for each key/value head, its ``groups`` query heads,
    then its key head, then its value head. The query heads come out in the order
    ``kv_head * groups + g``, which is the order Llama's ``q_proj`` uses.
    """
    if num_heads % num_kv_heads:
        raise ValueError(f'num_heads {num_heads} is not a multiple of kv heads {num_kv_heads}')
    groups = num_heads // num_kv_heads
    expected = (num_heads + 2 * num_kv_heads) * head_dim
    if weight.shape[0] != expected:
        raise ValueError(f'wqkv has {weight.shape[0]} rows, expected {expected}')
    tail = tuple(weight.shape[1:])
    grouped = weight.reshape(num_kv_heads, groups + 2, head_dim, *tail)
    q = grouped[:, :groups].reshape(num_heads * head_dim, *tail)
    k = grouped[:, groups].reshape(num_kv_heads * head_dim, *tail)
    v = grouped[:, groups + 1].reshape(num_kv_heads * head_dim, *tail)
    return q.contiguous(), k.contiguous(), v.contiguous()


def native_config_from_original(original: dict, image_token_id: int) -> InternVLConfig:
    """Native ``InternVLConfig`` for an ``internvl_chat`` config dict (InternLM2 LLM only)."""
    from transformers import InternVLConfig, LlamaConfig
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    vision, llm = original.get('vision_config') or {}, original.get('llm_config') or {}
    arch = (llm.get('architectures') or ['?'])[0]
    if arch != 'InternLM2ForCausalLM':
        raise ValueError(f'unsupported language model {arch!r}: the VLAC checkpoints use '
                         'InternLM2ForCausalLM')
    if original.get('ps_version', 'v1') != 'v2':
        raise ValueError(f"ps_version {original.get('ps_version')!r}: only 'v2' matches the "
                         'native pixel shuffle')
    image_size = int(original.get('force_image_size') or vision['image_size'])
    if image_size != int(vision['image_size']):
        raise ValueError(f'force_image_size {image_size} differs from the vision tower size '
                         f"{vision['image_size']}: position embeddings would need resizing")
    vision_config = InternVLVisionConfig(
        hidden_size=vision['hidden_size'], num_hidden_layers=vision['num_hidden_layers'],
        num_attention_heads=vision['num_attention_heads'],
        intermediate_size=vision['intermediate_size'],
        attention_bias=bool(vision.get('qkv_bias', True)),
        use_qk_norm=bool(vision.get('qk_normalization', False)),
        hidden_act=vision.get('hidden_act', 'gelu'), norm_type=vision.get('norm_type',
                                                                          'layer_norm'),
        layer_norm_eps=vision.get('layer_norm_eps', 1e-6), image_size=image_size,
        patch_size=vision['patch_size'], num_channels=vision.get('num_channels', 3),
        use_mean_pooling=True, layer_scale_init_value=vision.get('initializer_factor', 0.1))
    theta = float(llm.get('rope_theta', 10000.0))
    scaling = llm.get('rope_scaling')
    if scaling is None:
        rope = {'rope_type': 'default', 'rope_theta': theta}
    elif scaling.get('type') in ('dynamic', 'linear'):
        rope = {'rope_type': scaling['type'], 'factor': float(scaling['factor']),
                'rope_theta': theta}
    else:
        raise ValueError(f'unsupported rope_scaling {scaling!r}')
    tied = bool(llm.get('tie_word_embeddings', False))
    text_config = LlamaConfig(
        vocab_size=llm['vocab_size'], hidden_size=llm['hidden_size'],
        intermediate_size=llm['intermediate_size'], num_hidden_layers=llm['num_hidden_layers'],
        num_attention_heads=llm['num_attention_heads'],
        num_key_value_heads=llm.get('num_key_value_heads') or llm['num_attention_heads'],
        hidden_act=llm.get('hidden_act', 'silu'),
        max_position_embeddings=llm.get('max_position_embeddings', 32768),
        rms_norm_eps=llm.get('rms_norm_eps', 1e-6), rope_parameters=rope,
        attention_bias=bool(llm.get('bias', True)), mlp_bias=False, tie_word_embeddings=tied,
        bos_token_id=llm.get('bos_token_id', 1), eos_token_id=llm.get('eos_token_id', 2),
        pad_token_id=llm.get('pad_token_id', 2))
    return InternVLConfig(
        vision_config=vision_config, text_config=text_config, image_token_id=image_token_id,
        image_seq_length=int((image_size // vision['patch_size']) ** 2
                             * original.get('downsample_ratio', 0.5) ** 2),
        downsample_ratio=original.get('downsample_ratio', 0.5), projector_hidden_act='gelu',
        vision_feature_layer=original.get('select_layer', -1),
        vision_feature_select_strategy='default', tie_word_embeddings=tied)


def convert_state_dict(original: dict[str, torch.Tensor],
                       config: InternVLConfig) -> dict[str, torch.Tensor]:
    """Rename and split an original VLAC state dict into native InternVL names.

    Every source tensor must be used exactly once; unknown names raise ValueError.
    """
    text = config.text_config
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    head_dim = text.hidden_size // heads
    src = dict(original)
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        if name not in src:
            raise ValueError(f'original checkpoint lacks {name}')
        return src.pop(name)

    vt, ve = 'model.vision_tower.', 'vision_model.embeddings.'
    out[vt + 'embeddings.cls_token'] = take(ve + 'class_embedding')
    out[vt + 'embeddings.position_embeddings'] = take(ve + 'position_embedding')
    for kind in ('weight', 'bias'):
        out[f'{vt}embeddings.patch_embeddings.projection.{kind}'] = take(
            f'{ve}patch_embedding.{kind}')
    width = config.vision_config.hidden_size
    for i in range(config.vision_config.num_hidden_layers):
        s, d = f'vision_model.encoder.layers.{i}.', f'{vt}encoder.layer.{i}.'
        kinds = ('weight', 'bias') if config.vision_config.attention_bias else ('weight',)
        for kind in kinds:
            qkv = take(f'{s}attn.qkv.{kind}')
            for j, part in enumerate('qkv'):
                out[f'{d}attention.{part}_proj.{kind}'] = qkv[j * width:(j + 1) * width].clone()
        for kind in ('weight', 'bias'):
            out[f'{d}attention.projection_layer.{kind}'] = take(f'{s}attn.proj.{kind}')
            out[f'{d}mlp.fc1.{kind}'] = take(f'{s}mlp.fc1.{kind}')
            out[f'{d}mlp.fc2.{kind}'] = take(f'{s}mlp.fc2.{kind}')
            if config.vision_config.norm_type == 'layer_norm' or kind == 'weight':
                out[f'{d}layernorm_before.{kind}'] = take(f'{s}norm1.{kind}')
                out[f'{d}layernorm_after.{kind}'] = take(f'{s}norm2.{kind}')
        if config.vision_config.use_qk_norm:
            out[f'{d}attention.q_norm.weight'] = take(f'{s}attn.q_norm.weight')
            out[f'{d}attention.k_norm.weight'] = take(f'{s}attn.k_norm.weight')
        out[f'{d}lambda_1'] = take(f'{s}ls1')
        out[f'{d}lambda_2'] = take(f'{s}ls2')
    pj = 'model.multi_modal_projector.'
    for kind in ('weight', 'bias'):
        out[f'{pj}layer_norm.{kind}'] = take(f'mlp1.0.{kind}')
        out[f'{pj}linear_1.{kind}'] = take(f'mlp1.1.{kind}')
        out[f'{pj}linear_2.{kind}'] = take(f'mlp1.3.{kind}')
    lm, sl = 'model.language_model.', 'language_model.model.'
    out[lm + 'embed_tokens.weight'] = take(sl + 'tok_embeddings.weight')
    out[lm + 'norm.weight'] = take(sl + 'norm.weight')
    if config.tie_word_embeddings:
        src.pop('language_model.output.weight', None)
    else:
        out['lm_head.weight'] = take('language_model.output.weight')
    for i in range(text.num_hidden_layers):
        s, d = f'{sl}layers.{i}.', f'{lm}layers.{i}.'
        kinds = ('weight', 'bias') if text.attention_bias else ('weight',)
        for kind in kinds:
            q, k, v = split_internlm2_wqkv(take(f'{s}attention.wqkv.{kind}'), heads, kv_heads,
                                           head_dim)
            out[f'{d}self_attn.q_proj.{kind}'] = q
            out[f'{d}self_attn.k_proj.{kind}'] = k
            out[f'{d}self_attn.v_proj.{kind}'] = v
            out[f'{d}self_attn.o_proj.{kind}'] = take(f'{s}attention.wo.{kind}')
        out[f'{d}mlp.gate_proj.weight'] = take(f'{s}feed_forward.w1.weight')
        out[f'{d}mlp.up_proj.weight'] = take(f'{s}feed_forward.w3.weight')
        out[f'{d}mlp.down_proj.weight'] = take(f'{s}feed_forward.w2.weight')
        out[f'{d}input_layernorm.weight'] = take(f'{s}attention_norm.weight')
        out[f'{d}post_attention_layernorm.weight'] = take(f'{s}ffn_norm.weight')
    # Rotary caches are recomputed, not weights.
    leftover = sorted(n for n in src if not n.endswith(('rotary_emb.inv_freq',)))
    if leftover:
        raise ValueError(f'original checkpoint has {len(leftover)} unmapped tensors, e.g. '
                         f'{leftover[:5]}')
    return out


def _load_original_tensors(directory: pathlib.Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for file in _check_weights(directory):
        tensors.update(load_file(str(file)))
    return tensors


def _added_tokens(directory: pathlib.Path) -> dict[int, tuple[str, bool]]:
    """Added tokens of the original tokenizer: id -> (content, special)."""
    added: dict[int, tuple[str, bool]] = {}
    config_file = directory / 'tokenizer_config.json'
    config = _read_json(config_file) if config_file.is_file() else {}
    for key, spec in (config.get('added_tokens_decoder') or {}).items():
        added[int(key)] = (spec['content'], bool(spec.get('special', True)))
    added_file = directory / 'added_tokens.json'
    if added_file.is_file():
        for content, index in _read_json(added_file).items():
            added.setdefault(int(index), (content, True))
    return added


def _special_token_names(directory: pathlib.Path) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for file in ('special_tokens_map.json', 'tokenizer_config.json'):
        path = directory / file
        if not path.is_file():
            continue
        data = _read_json(path)
        for key in ('bos_token', 'eos_token', 'unk_token', 'pad_token'):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get('content')
            if value and key not in names:
                names[key] = value
        if 'add_bos_token' in data and 'add_bos_token' not in names:
            names['add_bos_token'] = bool(data['add_bos_token'])
    return names


def tokenizer_from_sentencepiece(model_file: str | os.PathLike,
                                 added: dict[int, tuple[str, bool]]) -> Tokenizer:
    """Build a ``tokenizers.Tokenizer`` equivalent to a sentencepiece BPE model + added tokens.

    Reads the model proto with protobuf (no ``sentencepiece`` needed): BPE pieces and scores,
    merges ranked by score, byte fallback, the normaliser options (precompiled charsmap, extra
    whitespace removal, dummy ``\u2581`` prefix, spaces as ``\u2581``). Added tokens keep their
    ids; text between them is normalised and encoded piece by piece, as the slow tokenizer does.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from transformers.convert_slow_tokenizer import generate_merges, import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(pathlib.Path(model_file).read_bytes())
    if proto.trainer_spec.model_type != 2:
        raise ValueError(f'{model_file}: sentencepiece model type '
                         f'{proto.trainer_spec.model_type}, expected BPE (2)')
    pieces = [(p.piece, p.score) for p in proto.pieces]
    for index, (content, _special) in added.items():
        if index < len(pieces):
            pieces[index] = (content, pieces[index][1])
    vocab = {piece: i for i, (piece, _score) in enumerate(pieces)}
    merges = generate_merges(vocab, pieces)
    tok = Tokenizer(models.BPE(vocab, merges, unk_token=proto.trainer_spec.unk_piece,
                               fuse_unk=True, byte_fallback=proto.trainer_spec.byte_fallback))
    spec = proto.normalizer_spec
    steps = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        # sentencepiece trims and collapses spaces only (a Strip would also eat newlines).
        steps += [normalizers.Replace(Regex(r'\A +| +\z'), ''),
                  normalizers.Replace(Regex(' {2,}'), ' ')]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend('\u2581'))
    steps.append(normalizers.Replace(' ', '\u2581'))
    tok.normalizer = normalizers.Sequence(steps)
    steps = [decoders.Replace('\u2581', ' '), decoders.ByteFallback(), decoders.Fuse()]
    if spec.add_dummy_prefix:
        steps.append(decoders.Strip(content=' ', left=1))
    tok.decoder = decoders.Sequence(steps)
    for index in sorted(added):
        content, special = added[index]
        tok.add_special_tokens([AddedToken(content, special=special, normalized=False)])
        if tok.token_to_id(content) != index:
            raise ValueError(f'added token {content!r} got id {tok.token_to_id(content)}, '
                             f'the checkpoint says {index}')
    return tok


def _verification_texts() -> list[str]:
    task = 'Scoop the rice into the rice cooker.'
    queries = [prompts.pairwise_prompt(task), prompts.in_context_pairwise_prompt(task, 3),
               prompts.done_prompt(task), prompts.goal_done_prompt(task),
               prompts.action_prompt(task, prompts.format_pose([-47, 19, 66, 14, 10, 15, 0]))]
    texts = [prompts.render_chat(q, 2) for q in queries]
    return texts + ['+20', '-15', '15%', '+20.5', '0', '1', ' 100', 'x  y\n\n z']


def verify_tokenizer(fast: Tokenizer, model_file: str | os.PathLike,
                     added: dict[int, tuple[str, bool]],
                     texts: Sequence[str] | None = None) -> None:
    """Compare ``fast`` with sentencepiece + added-token splitting (the slow InternLM2 path).

    Raises ImportError without the ``sentencepiece`` package, ValueError on the first text
    whose ids differ.
    """
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    by_content = {content: index for index, (content, _special) in added.items()}
    pattern = re.compile('|'.join(re.escape(c) for c in sorted(by_content, key=len,
                                                                reverse=True)))
    for text in texts if texts is not None else _verification_texts():
        expected: list[int] = []
        position = 0
        for match in pattern.finditer(text):
            if match.start() > position:
                expected += sp.encode(text[position:match.start()])
            expected.append(by_content[match.group()])
            position = match.end()
        if position < len(text):
            expected += sp.encode(text[position:])
        got = fast.encode(text, add_special_tokens=False).ids
        if got != expected:
            raise ValueError(f'converted tokenizer differs from sentencepiece on {text[:80]!r}: '
                             f'{got[:20]} vs {expected[:20]}')


def _convert_tokenizer(src: pathlib.Path, dst: pathlib.Path, check: bool) -> tuple[str, bool]:
    """Write tokenizer.json (+ config) into ``dst``; return (source kind, verified)."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    added = _added_tokens(src)
    names = _special_token_names(src)
    verified = False
    if (src / 'tokenizer.json').is_file():
        tok = Tokenizer.from_file(str(src / 'tokenizer.json'))
        kind = 'tokenizer.json'
    elif (src / 'tokenizer.model').is_file():
        tok = tokenizer_from_sentencepiece(src / 'tokenizer.model', added)
        kind = 'tokenizer.model'
        if check:
            try:
                verify_tokenizer(tok, src / 'tokenizer.model', added)
                verified = True
            except ImportError as exc:
                raise ValueError(
                    'checking the converted tokenizer needs the sentencepiece package '
                    '(pip install sentencepiece); pass --skip-tokenizer-check to convert '
                    'without the check') from exc
    else:
        raise ValueError(f'{src}: no tokenizer.json or tokenizer.model')
    bos = names.get('bos_token', '<s>')
    bos_id = tok.token_to_id(bos)
    probe = tok.encode('a').ids
    if names.get('add_bos_token', True) and bos_id is not None and probe[:1] != [bos_id]:
        tok.post_processor = processors.TemplateProcessing(
            single=f'{bos} $A', pair=f'{bos} $A {bos} $B', special_tokens=[(bos, bos_id)])
    specials = [content for _index, (content, special) in sorted(added.items()) if special]
    specials = [s for s in specials if s not in names.values()]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=names.get('eos_token', '</s>'),
        unk_token=names.get('unk_token', '<unk>'), pad_token=names.get('pad_token', '</s>'),
        additional_special_tokens=specials)
    fast.padding_side = 'left'
    fast.save_pretrained(dst)
    return kind, verified


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike, *,
                       dtype: str = 'keep', check_tokenizer: bool = True,
                       overwrite: bool = False) -> pathlib.Path:
    """Convert an original VLAC checkpoint directory into a native InternVL directory.

    Args:
        source: directory of the published checkpoint (``model_type: internvl_chat``),
            downloaded by hand; its Python files are never imported.
        destination: output directory (must not exist unless ``overwrite``).
        dtype: 'keep' (the checkpoint's, bfloat16 for VLAC), 'bfloat16', 'float16', 'float32'.
        check_tokenizer: compare the converted tokenizer with sentencepiece (needs the
            ``sentencepiece`` package) when converting from ``tokenizer.model``.
        overwrite: replace an existing destination.

    Returns the destination path. Raises FileNotFoundError / ValueError naming the problem.

    """
    from transformers import GenerationConfig, InternVLForConditionalGeneration

    src, dst = pathlib.Path(source), pathlib.Path(destination)
    if not src.is_dir():
        raise FileNotFoundError(f'original VLAC checkpoint directory not found: {src}')
    if src.resolve() == dst.resolve() or dst.resolve() in src.resolve().parents:
        raise ValueError(f'destination {dst} must not be the source or contain it')
    if dtype not in ('keep', 'bfloat16', 'float16', 'float32'):
        raise ValueError(f'dtype {dtype!r}: use keep, bfloat16, float16 or float32')
    original = _read_json(src / 'config.json') if (src / 'config.json').is_file() else {}
    if original.get('model_type') != 'internvl_chat':
        raise ValueError(f"{src}: model_type {original.get('model_type')!r}, expected the "
                         "original VLAC layout 'internvl_chat'")
    if dst.exists():
        if not overwrite:
            raise ValueError(f'{dst} exists; pass overwrite=True (--overwrite) to replace it')
        if not (dst / CONVERSION_RECORD).is_file() and any(dst.iterdir()):
            raise ValueError(f'refusing to replace {dst}: it is not empty and holds no '
                             f'{CONVERSION_RECORD} (not an earlier conversion)')
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    try:
        kind, verified = _convert_tokenizer(src, dst, check_tokenizer)
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(dst, local_files_only=True)
        image_token = tokenizer.convert_tokens_to_ids(prompts.IMG_CONTEXT_TOKEN)
        if image_token is None or image_token == tokenizer.unk_token_id:
            raise ValueError(f'{src}: the tokenizer has no {prompts.IMG_CONTEXT_TOKEN} token')
        config = native_config_from_original(original, image_token)
        tensors = convert_state_dict(_load_original_tensors(src), config)
        if dtype != 'keep':
            target = getattr(torch, dtype)
            tensors = {k: v.to(target) for k, v in tensors.items()}
        with torch.device('meta'):
            model = InternVLForConditionalGeneration(config)
        # strict=True: every native parameter must come from the checkpoint.
        model.load_state_dict(tensors, strict=True, assign=True)
        generation_file = src / 'generation_config.json'
        eos = _read_json(generation_file).get('eos_token_id') if generation_file.is_file() \
            else None
        model.generation_config = GenerationConfig(
            eos_token_id=eos if eos is not None else config.text_config.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
        model.save_pretrained(dst, max_shard_size='4GB')
        for extra in ('README.md', 'LICENSE', 'LICENSE.txt'):
            if (src / extra).is_file():
                shutil.copy2(src / extra, dst / extra)
        record = {
            'format': CONVERSION_FORMAT, 'converter': f'{__name__}.convert_checkpoint',
            'source': str(src.resolve()),
            'source_config_sha256': hashlib.sha256((src / 'config.json').read_bytes())
            .hexdigest(),
            'tokenizer_source': kind, 'tokenizer_verified_against_sentencepiece': verified,
            'dtype': str(next(iter(tensors.values())).dtype),
        }
        (dst / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + '\n')
    except BaseException:
        shutil.rmtree(dst, ignore_errors=True)
        raise
    return dst


def convert_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``vlac_convert_checkpoint SRC DST``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog=CONVERT_COMMAND,
        description='Convert a published VLAC checkpoint (InternVL2 remote-code layout) into '
                    "transformers' native InternVL format for the vlac critic backend.")
    parser.add_argument('source', help='directory of the downloaded original checkpoint')
    parser.add_argument('destination', help='output directory (created)')
    parser.add_argument('--dtype', default='keep',
                        choices=['keep', 'bfloat16', 'float16', 'float32'],
                        help='weight dtype of the output (default: keep the checkpoint dtype)')
    parser.add_argument('--skip-tokenizer-check', action='store_true',
                        help='do not compare the converted tokenizer with sentencepiece')
    parser.add_argument('--overwrite', action='store_true', help='replace the destination')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        out = convert_checkpoint(args.source, args.destination, dtype=args.dtype,
                                 check_tokenizer=not args.skip_tokenizer_check,
                                 overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as exc:
        print(f'{CONVERT_COMMAND}: error: {exc}', file=sys.stderr)
        return 1
    print(f'converted checkpoint written to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(convert_main())


def free_memory(on_cuda: bool) -> None:
    """Collect a just-dropped model now and give its cached CUDA memory back to the device."""
    import gc

    gc.collect()
    if on_cuda:
        import torch

        torch.cuda.empty_cache()
