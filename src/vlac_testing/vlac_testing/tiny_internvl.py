"""Tiny InternVL checkpoints built offline, in about a second, for tests of the VLAC code paths.

``make_tiny_internvl(dir)`` writes a randomly initialised native transformers
``InternVLForConditionalGeneration`` checkpoint (safetensors) with a tokenizer trained here
(a sentencepiece-style BPE trained with ``tokenizers`` on the VLAC prompts, integers 0..100 as
single tokens, signs, and the chat and image special tokens). It has the real model's image
geometry (448x448 input, 14-pixel patches, pixel shuffle 0.5: 256 ``<IMG_CONTEXT>`` tokens per
image) and tiny widths. Everything is seeded, so two calls with the same arguments write the
same weights and tokenizer.

``reply='+20'`` rewires the language model into a bigram lookup (attention and MLP outputs
zeroed, so each position only sees its own token) that answers every prompt with exactly that
text followed by ``<|im_end|>``; for each integer token ``n`` of the reply, ``n - 5`` is the
runner-up (``gap`` logits lower; ``0`` for ``1`` and back), which gives expectation mode
something to average. The images do not influence a scripted reply. The reply's
tokens must be distinct (a bigram chain cannot loop).

``make_tiny_original_internvl(dir)`` writes the same kind of tiny model in the layout of the
published VLAC checkpoints (``internvl_chat`` config, InternViT + InternLM2 weight names, fused
``qkv``/``wqkv`` projections) for tests of the conversion command. Its tokenizer is given as
``tokenizer.json`` (a sentencepiece ``tokenizer.model`` cannot be trained without the
``sentencepiece`` package).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import string
from typing import TYPE_CHECKING

import torch
from vlac_models.vlac_model import prompts

if TYPE_CHECKING:
    from transformers import (
        InternVLConfig,
        InternVLForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

SPECIAL_TOKENS = (
    '<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>',
    prompts.IMG_START_TOKEN, prompts.IMG_END_TOKEN, prompts.IMG_CONTEXT_TOKEN,
)
"""Special tokens of the tiny tokenizer, ids 0.. in this order (InternLM2 also has 0-2)."""

EXTRA_SPECIAL_TOKENS = SPECIAL_TOKENS[3:]
TINY_TASKS = (
    'pick up the red cube and place it in the bowl',
    'Scoop the rice into the rice cooker.',
    'Put up the bowl and place it back in the white storage box.',
    'unfold the mat',
    'sweep the trash into the dustpan',
)
"""Task sentences the tiny tokenizer knows as whole words (any ASCII text still tokenizes)."""


def _corpus() -> list[str]:
    texts = [prompts.SYSTEM_PROMPT, 'system user assistant']
    for task in TINY_TASKS:
        texts += [
            prompts.pairwise_prompt(task),
            prompts.in_context_pairwise_prompt(task, 9),
            prompts.in_context_pairwise_prompt(task, 5),
            prompts.done_prompt(task),
            prompts.goal_done_prompt(task),
            prompts.action_prompt(task, prompts.format_pose([-47, 19, 66, 14, 10, 15, 0]), 3),
        ]
    numbers = [f'{sign}{n}{suffix}' for n in range(101) for sign in ('+', '-', '')
               for suffix in ('', '%', '.5')]
    # Repeated so that every integer 0..100 wins its BPE merge and is one token.
    return texts * 2 + numbers * 4


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Train the tiny BPE tokenizer (deterministic); return a ``PreTrainedTokenizerFast``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    # Digits runs, newlines and punctuation are their own pieces; spaces become a leading '\u2581'
    # as in sentencepiece, so decoding restores the exact text ('+20' decodes to '+20').
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r'\d+|\n|[^\w\s]'), behavior='isolated'),
        pre_tokenizers.Metaspace(replacement='\u2581', prepend_scheme='never', split=True),
    ])
    tok.decoder = decoders.Metaspace(replacement='\u2581', prepend_scheme='never', split=True)
    alphabet = sorted(set(string.printable) - set(string.whitespace)) + ['\u2581', '\n']
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=1, show_progress=False,
                                  special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet)
    tok.train_from_iterator(_corpus(), trainer)
    bos = tok.token_to_id('<s>')
    tok.post_processor = processors.TemplateProcessing(
        single='<s> $A', pair='<s> $A <s> $B', special_tokens=[('<s>', bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token='<s>', eos_token='</s>', unk_token='<unk>',
        pad_token='</s>', additional_special_tokens=list(EXTRA_SPECIAL_TOKENS))
    for n in range(101):
        if len(fast.encode(str(n), add_special_tokens=False)) != 1:
            raise RuntimeError(f'tiny tokenizer: {n} is not a single token')
    return fast


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> InternVLConfig:
    """Native ``InternVLConfig`` of the tiny model for ``tokenizer`` (untied LM head)."""
    from transformers import InternVLConfig, LlamaConfig
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    vision = InternVLVisionConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        attention_bias=True, image_size=448, patch_size=14, use_mean_pooling=True)
    eos = [tokenizer.convert_tokens_to_ids('<|im_end|>'), tokenizer.eos_token_id]
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16384,
        rms_norm_eps=1e-5, rope_parameters={'rope_type': 'default', 'rope_theta': 1000000.0},
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id)
    return InternVLConfig(
        vision_config=vision, text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(prompts.IMG_CONTEXT_TOKEN),
        image_seq_length=256, downsample_ratio=0.5, projector_hidden_act='gelu',
        vision_feature_layer=-1, vision_feature_select_strategy='default',
        tie_word_embeddings=False)


def _script_reply(model: InternVLForConditionalGeneration, tokenizer: PreTrainedTokenizerFast,
                  reply: str, gap: float) -> None:
    r"""Turn the language model into a bigram chain: '\n' -> reply tokens -> '<|im_end|>'."""
    lm = model.model.language_model
    for layer in lm.layers:
        layer.self_attn.o_proj.weight.data.zero_()
        layer.mlp.down_proj.weight.data.zero_()
    reply_ids = tokenizer.encode(reply, add_special_tokens=False)
    newline = tokenizer.encode('\n', add_special_tokens=False)
    chain = newline + reply_ids + [tokenizer.convert_tokens_to_ids('<|im_end|>')]
    sources = chain[:-1]
    width = lm.config.hidden_size
    if len(set(sources)) != len(sources) or len(sources) > width:
        raise ValueError(f'reply {reply!r} needs distinct tokens (at most {width - 1})')
    lm.norm.weight.data.fill_(1.0)
    embed = lm.embed_tokens.weight.data
    head = model.lm_head.weight.data
    scale = 1.0 / math.sqrt(width)
    for dim, (source, target) in enumerate(zip(sources, chain[1:], strict=True)):
        # Embedding e_dim * sqrt(width) has unit RMS, so the final norm leaves it unchanged and
        # logits are head[:, dim] * sqrt(width): a chosen 10 for the next token, 0 elsewhere.
        embed[source].zero_()
        embed[source, dim] = math.sqrt(width)
        head[:, dim] = 0.0
        head[target, dim] = 10.0 * scale
        text = tokenizer.convert_ids_to_tokens(target)
        if text.isdigit():
            alternative = str(int(text) - 5 if int(text) >= 5 else int(text) + 5)
            if text in ('0', '1'):
                alternative = '1' if text == '0' else '0'
            alt_ids = tokenizer.encode(alternative, add_special_tokens=False)
            if len(alt_ids) == 1:
                head[alt_ids[0], dim] = (10.0 - gap) * scale


def _save(model, tokenizer, config, path: pathlib.Path) -> pathlib.Path:
    """Write a generating checkpoint (weights, generation config, left-padding tokenizer)."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        eos_token_id=config.text_config.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id)
    model.save_pretrained(path)
    tokenizer.padding_side = 'left'
    tokenizer.save_pretrained(path)
    return path


def _random_model(seed: int):
    """(tokenizer, config, model) of the tiny InternVL with weights drawn from ``seed``."""
    from transformers import InternVLForConditionalGeneration

    tokenizer = build_tiny_tokenizer()
    config = tiny_config(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InternVLForConditionalGeneration(config).eval()
    return tokenizer, config, model


def make_tiny_internvl(directory: str | os.PathLike, *, seed: int = 0, reply: str | None = None,
                       gap: float = 1.0) -> pathlib.Path:
    """Write a tiny native InternVL checkpoint + tokenizer into ``directory``; return its path.

    Args:
        directory: created if missing.
        seed: torch seed of the random weights.
        reply: if given, every prompt is answered with this text (see the module docstring).
        gap: logit gap between a scripted number token and its runner-up (expectation mode).

    """
    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer, config, model = _random_model(seed)
    if reply is not None:
        with torch.no_grad():
            _script_reply(model, tokenizer, reply, gap)
    return _save(model, tokenizer, config, path)


def _fuse_internlm2_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        num_kv_heads: int, head_dim: int) -> torch.Tensor:
    """Inverse of the InternLM2 split: rows grouped per kv head as [q x groups, k, v]."""
    groups = q.shape[0] // (num_kv_heads * head_dim)
    tail = q.shape[1:]
    qg = q.reshape(num_kv_heads, groups, head_dim, *tail)
    kg = k.reshape(num_kv_heads, 1, head_dim, *tail)
    vg = v.reshape(num_kv_heads, 1, head_dim, *tail)
    return torch.cat([qg, kg, vg], dim=1).reshape(-1, *tail)


def original_state_dict(model: InternVLForConditionalGeneration) -> dict[str, torch.Tensor]:
    """State dict of a native tiny model renamed to the published VLAC (remote code) layout."""
    text = model.config.text_config
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    head_dim = text.hidden_size // heads
    native = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    vt = 'model.vision_tower.'
    out['vision_model.embeddings.class_embedding'] = native[vt + 'embeddings.cls_token']
    out['vision_model.embeddings.position_embedding'] = native[
        vt + 'embeddings.position_embeddings']
    for kind in ('weight', 'bias'):
        out[f'vision_model.embeddings.patch_embedding.{kind}'] = native[
            f'{vt}embeddings.patch_embeddings.projection.{kind}']
    for i in range(model.config.vision_config.num_hidden_layers):
        src, dst = f'{vt}encoder.layer.{i}.', f'vision_model.encoder.layers.{i}.'
        for kind in ('weight', 'bias'):
            out[f'{dst}attn.qkv.{kind}'] = torch.cat(
                [native[f'{src}attention.{p}_proj.{kind}'] for p in 'qkv'])
            out[f'{dst}attn.proj.{kind}'] = native[f'{src}attention.projection_layer.{kind}']
            out[f'{dst}mlp.fc1.{kind}'] = native[f'{src}mlp.fc1.{kind}']
            out[f'{dst}mlp.fc2.{kind}'] = native[f'{src}mlp.fc2.{kind}']
            out[f'{dst}norm1.{kind}'] = native[f'{src}layernorm_before.{kind}']
            out[f'{dst}norm2.{kind}'] = native[f'{src}layernorm_after.{kind}']
        out[f'{dst}ls1'] = native[f'{src}lambda_1']
        out[f'{dst}ls2'] = native[f'{src}lambda_2']
    pj = 'model.multi_modal_projector.'
    for kind in ('weight', 'bias'):
        out[f'mlp1.0.{kind}'] = native[f'{pj}layer_norm.{kind}']
        out[f'mlp1.1.{kind}'] = native[f'{pj}linear_1.{kind}']
        out[f'mlp1.3.{kind}'] = native[f'{pj}linear_2.{kind}']
    lm = 'model.language_model.'
    out['language_model.model.tok_embeddings.weight'] = native[lm + 'embed_tokens.weight']
    out['language_model.model.norm.weight'] = native[lm + 'norm.weight']
    out['language_model.output.weight'] = native['lm_head.weight']
    for i in range(text.num_hidden_layers):
        src, dst = f'{lm}layers.{i}.', f'language_model.model.layers.{i}.'
        out[f'{dst}attention.wqkv.weight'] = _fuse_internlm2_qkv(
            *(native[f'{src}self_attn.{p}_proj.weight'] for p in 'qkv'), kv_heads, head_dim)
        out[f'{dst}attention.wo.weight'] = native[f'{src}self_attn.o_proj.weight']
        out[f'{dst}feed_forward.w1.weight'] = native[f'{src}mlp.gate_proj.weight']
        out[f'{dst}feed_forward.w3.weight'] = native[f'{src}mlp.up_proj.weight']
        out[f'{dst}feed_forward.w2.weight'] = native[f'{src}mlp.down_proj.weight']
        out[f'{dst}attention_norm.weight'] = native[f'{src}input_layernorm.weight']
        out[f'{dst}ffn_norm.weight'] = native[f'{src}post_attention_layernorm.weight']
    return {name: tensor.contiguous() for name, tensor in out.items()}


def original_config(config: InternVLConfig) -> dict:
    """``internvl_chat`` config.json dict (InternViT + InternLM2) for a native tiny config."""
    vision, text = config.vision_config, config.text_config
    return {
        'architectures': ['InternVLChatModel'],
        'model_type': 'internvl_chat',
        'auto_map': {'AutoConfig': 'configuration_internvl_chat.InternVLChatConfig',
                     'AutoModel': 'modeling_internvl_chat.InternVLChatModel'},
        'downsample_ratio': config.downsample_ratio,
        'dynamic_image_size': True,
        'force_image_size': vision.image_size[0],
        'max_dynamic_patch': 12,
        'min_dynamic_patch': 1,
        'ps_version': 'v2',
        'select_layer': -1,
        'template': 'internlm2-chat',
        'torch_dtype': 'float32',
        'use_thumbnail': True,
        'vision_config': {
            'architectures': ['InternVisionModel'], 'model_type': 'intern_vit_6b',
            'hidden_size': vision.hidden_size, 'intermediate_size': vision.intermediate_size,
            'num_attention_heads': vision.num_attention_heads,
            'num_hidden_layers': vision.num_hidden_layers, 'image_size': vision.image_size[0],
            'patch_size': vision.patch_size[0], 'qkv_bias': True, 'qk_normalization': False,
            'norm_type': 'layer_norm', 'layer_norm_eps': 1e-6, 'hidden_act': 'gelu',
            'initializer_factor': 0.1, 'use_flash_attn': False, 'num_channels': 3,
        },
        'llm_config': {
            'architectures': ['InternLM2ForCausalLM'], 'model_type': 'internlm2',
            'vocab_size': text.vocab_size, 'hidden_size': text.hidden_size,
            'intermediate_size': text.intermediate_size,
            'num_hidden_layers': text.num_hidden_layers,
            'num_attention_heads': text.num_attention_heads,
            'num_key_value_heads': text.num_key_value_heads,
            'max_position_embeddings': text.max_position_embeddings,
            'rms_norm_eps': text.rms_norm_eps, 'rope_theta': 1000000, 'rope_scaling': None,
            'bias': False, 'hidden_act': 'silu', 'tie_word_embeddings': False,
            'bos_token_id': text.bos_token_id, 'eos_token_id': 2, 'pad_token_id': 2,
        },
    }


def make_tiny_original_internvl(directory: str | os.PathLike, *, seed: int = 0) -> pathlib.Path:
    """Write a tiny checkpoint in the published VLAC (``internvl_chat``) layout; return its path.

    Same weights as ``make_tiny_internvl(seed=seed)``; ``model.safetensors`` uses the original
    parameter names and fused projections, ``config.json`` the remote-code schema. No Python
    files are written (the converter never runs checkpoint code).
    """
    from safetensors.torch import save_file

    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer, config, model = _random_model(seed)
    save_file(original_state_dict(model), str(path / 'model.safetensors'),
              metadata={'format': 'pt'})
    (path / 'config.json').write_text(json.dumps(original_config(config), indent=2))
    eos = config.text_config.eos_token_id
    (path / 'generation_config.json').write_text(json.dumps({'eos_token_id': eos}))
    tokenizer.save_pretrained(path)
    # What the published checkpoint declares: the remote tokenizer class, BOS added on encode.
    tok_config = json.loads((path / 'tokenizer_config.json').read_text())
    tok_config.update({'tokenizer_class': 'InternLM2Tokenizer', 'add_bos_token': True,
                       'auto_map': {'AutoTokenizer': ['tokenization_internlm2.InternLM2Tokenizer',
                                                      None]}})
    (path / 'tokenizer_config.json').write_text(json.dumps(tok_config, indent=2))
    return path


INTERNVL2_2B_VOCAB = 92553
"""InternLM2-1.8B vocabulary size of InternVL2-2B (and of the 2B VLAC checkpoint)."""


def internvl2_2b_original_config(tokenizer: PreTrainedTokenizerFast) -> dict:
    """``internvl_chat`` config dict with InternVL2-2B's sizes, for ``tokenizer``'s special ids.

    InternViT-300M-448px (24 layers, width 1024) + InternLM2-1.8B (24 layers, width 2048, GQA
    16/8 heads, vocabulary 92553, dynamic RoPE), pixel shuffle v2 to 256 tokens per image:
    the published InternVL2-2B / VLAC 2B geometry (~2.2B parameters).
    """
    return {
        'architectures': ['InternVLChatModel'], 'model_type': 'internvl_chat',
        'downsample_ratio': 0.5, 'force_image_size': 448, 'ps_version': 'v2',
        'select_layer': -1, 'template': 'internlm2-chat', 'use_thumbnail': True,
        'vision_config': {
            'architectures': ['InternVisionModel'], 'model_type': 'intern_vit_6b',
            'hidden_size': 1024, 'intermediate_size': 4096, 'num_attention_heads': 16,
            'num_hidden_layers': 24, 'image_size': 448, 'patch_size': 14, 'qkv_bias': True,
            'qk_normalization': False, 'norm_type': 'layer_norm', 'layer_norm_eps': 1e-6,
            'hidden_act': 'gelu', 'initializer_factor': 0.1, 'num_channels': 3,
        },
        'llm_config': {
            'architectures': ['InternLM2ForCausalLM'], 'model_type': 'internlm2',
            'vocab_size': max(INTERNVL2_2B_VOCAB, len(tokenizer)), 'hidden_size': 2048,
            'intermediate_size': 8192, 'num_hidden_layers': 24, 'num_attention_heads': 16,
            'num_key_value_heads': 8, 'max_position_embeddings': 32768, 'rms_norm_eps': 1e-5,
            'rope_theta': 1000000, 'rope_scaling': {'type': 'dynamic', 'factor': 2.0},
            'bias': False, 'hidden_act': 'silu', 'tie_word_embeddings': False,
            'bos_token_id': tokenizer.bos_token_id, 'eos_token_id': tokenizer.eos_token_id,
            'pad_token_id': tokenizer.pad_token_id,
        },
    }


def full_size_config(tokenizer: PreTrainedTokenizerFast) -> InternVLConfig:
    """Native config of an InternVL2-2B-sized model (through the converter's own mapping)."""
    from vlac_models.vlac_model.loading import native_config_from_original

    config = native_config_from_original(
        internvl2_2b_original_config(tokenizer),
        tokenizer.convert_tokens_to_ids(prompts.IMG_CONTEXT_TOKEN))
    config.text_config.eos_token_id = [tokenizer.convert_tokens_to_ids('<|im_end|>'),
                                       tokenizer.eos_token_id]
    return config


def make_full_size_internvl(directory: str | os.PathLike, *, seed: int = 0,
                            dtype: torch.dtype = torch.bfloat16) -> pathlib.Path:
    """Write a randomly initialised InternVL2-2B-sized native checkpoint; return its path.

    For GPU latency benchmarks of the real model size without the real weights: the model
    has the 2B checkpoint's shapes (``full_size_config``; ~2.2B parameters, ~4.4 GB in
    bfloat16) and the tiny tokenizer (its ids are a subset of the 92553-row vocabulary, so
    the LM head costs what the real one does; text prompts tokenise to a similar length,
    the 256 image tokens per view are identical). Needs ~5 GB of RAM and disk; takes about a
    minute on a 16-core CPU. Answers are random: for timing only.
    """
    from transformers import InternVLForConditionalGeneration

    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    config = full_size_config(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InternVLForConditionalGeneration._from_config(config, dtype=dtype).eval()
    return _save(model, tokenizer, config, path)
