"""The 'vlac' policy backend on tiny InternVL checkpoints built offline (no model hub)."""

import hashlib
import math
import shutil

import numpy as np
import pytest
from safetensors.torch import save_file
import torch
from vlac_models.policy import codec
from vlac_models.policy.base import (
    EefAction,
    Policy,
    PolicyError,
    PolicyObservation,
    load_policy,
)
from vlac_models.policy.vlac_backend import (
    VALUE_HEAD_FILE,
    FieldSpec,
    VlacPolicy,
    benchmark_vlac_policy,
    build_layout,
)
from vlac_models.vlac_model import prompts
from vlac_testing.tiny_internvl import full_size_config, make_tiny_internvl

TASK = 'pick up the red cube and place it in the bowl'
STATE = np.array([-0.047, 0.019, 0.066, math.radians(14), math.radians(10), math.radians(15),
                  0.0])


pytestmark = pytest.mark.usefixtures('torch_one_thread')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return make_tiny_internvl(tmp_path_factory.mktemp('vlac_policy') / 'random', seed=3)


@pytest.fixture(scope='module')
def policy(checkpoint):
    return load_policy('vlac', str(checkpoint), seed=0)


def _observation(views=1, seed=0, state=STATE, task=TASK, shape=(60, 80, 3)):
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(views)]
    return PolicyObservation(frames, np.asarray(state, dtype=np.float64), task)


def _observations():
    states = [STATE, np.array([0.3, -0.2, 0.5, 3.0, -1.0, -3.1, 1.0]), np.zeros(7)]
    return [_observation(views, seed=views, state=state)
            for views, state in zip((1, 2, 3), states, strict=True)]


def _parameters(policy):
    return {n: p.detach().clone() for n, p in policy.named_trainable_parameters()}


def _same(before, policy):
    return all(torch.equal(before[n], p) for n, p in policy.named_trainable_parameters())


# -- prompt and template ------------------------------------------------------------------------


def test_loads_through_load_policy(policy, checkpoint) -> None:
    assert isinstance(policy, VlacPolicy)
    assert isinstance(policy, Policy)
    assert policy.backend == 'vlac'
    assert policy.model_id == 'vlac:random'
    assert policy.checkpoint == checkpoint


def test_prompt_is_pinned(policy) -> None:
    image = '<img>' + '<IMG_CONTEXT>' * 256 + '</img>\n'
    expected = (
        '<|im_start|>system\nYou are a visual-language assistant designed to interpret spatial '
        'and task-related information from images and text. Provide precise, context-aware '
        'responses and actionable guidance to assist in achieving task objectives.<|im_end|>\n'
        '<|im_start|>user\n' + image + '\n'
        "The current position state of the robotic arm's end gripper in the image is as "
        'follows: <state> {x: -47mm, y: 19mm, z: 66mm, roll: 14 degrees, pitch: 10 degrees, '
        'yaw: 15 degrees, open: 0} </state>. What action should the robot take to get better '
        'completion of instruction: <task> pick up the red cube and place it in the bowl '
        '</task> <action><|im_end|>\n<|im_start|>assistant\n')
    assert policy.prompt_text(_observation()) == expected
    two = policy.prompt_text(_observation(views=2))
    assert two.startswith('<|im_start|>system\n')
    assert '<|im_start|>user\nImage-1: ' + image + '\nImage-2: ' + image + '\nThe current' in two


def test_template_literals_of_the_tiny_tokenizer(policy) -> None:
    layout = policy.layout
    tokenizer = policy._require().tokenizer
    assert layout.mode == 'canonical'
    texts = [tokenizer.decode(list(lit), skip_special_tokens=False) for lit in layout.literals]
    assert texts == ['x: ', 'mm, y: ', 'mm, z: ', 'mm, roll: ', ' degrees, pitch: ',
                     ' degrees, yaw: ', ' degrees, open: ', '<|im_end|>']
    assert [f.prefix for f in layout.fields] == [''] * 7
    assert [(f.low, f.high) for f in layout.fields] == [(-1000, 1000)] * 3 + [(-180, 179)] * 3 \
        + [(0, 1)]


@pytest.mark.parametrize('text, prefix, complete', [
    ('', True, False), ('-', True, False), ('0', True, True), ('-0', False, False),
    ('07', False, False), ('179', True, True), ('180', False, False), ('-180', True, True),
    ('-181', False, False), ('18', True, True), ('1-', False, False), (' 1', False, False),
])
def test_angle_field_grammar(text, prefix, complete) -> None:
    spec = FieldSpec('roll', -180, 179)
    assert spec.is_prefix(text) is prefix
    assert spec.is_complete(text) is complete


def test_field_grammar_with_prefix_and_unsigned() -> None:
    spaced = FieldSpec('x', -1000, 1000, ' ')
    assert spaced.is_prefix('') and spaced.is_prefix(' ') and spaced.is_prefix(' -')
    assert not spaced.is_complete(' ') and spaced.is_complete(' -1000')
    assert not spaced.is_prefix('5') and not spaced.is_prefix(' 1001')
    grip = FieldSpec('open', 0, 1)
    assert grip.is_complete('1') and not grip.is_prefix('-') and not grip.is_prefix('2')
    with pytest.raises(ValueError, match='outside'):
        grip.text(2)


def _space_glued_tokenizer():
    """BPE whose pre-tokenizer glues the space before a number to it (like '\u2581-')."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r' ?-?\d+| ?\w+|[^\w\s]| '), behavior='isolated'),
        pre_tokenizers.Metaspace(replacement='\u2581', prepend_scheme='never', split=False),
    ])
    tok.decoder = decoders.Metaspace(replacement='\u2581', prepend_scheme='never', split=False)
    rng = np.random.default_rng(0)
    corpus = [prompts.format_pose([int(v) for v in rng.integers(-200, 200, 7)])
              for _ in range(300)]
    alphabet = sorted(set(''.join(corpus)) - {' '}) + ['\u2581']
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=['<unk>', '<|im_end|>'],
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token='<unk>',
                                   additional_special_tokens=['<|im_end|>'])


def test_layout_when_the_tokenizer_glues_spaces_to_numbers() -> None:
    tokenizer = _space_glued_tokenizer()
    end = tokenizer.convert_tokens_to_ids('<|im_end|>')
    layout = build_layout(tokenizer, end)
    assert layout.mode == 'canonical'
    assert [f.prefix for f in layout.fields] == [' '] * 7
    start = layout.choices(0, '')
    assert start and all(layout.numeric[t].startswith(' ') for t in start)
    for values in ([-47, 19, 66, 14, 10, 15, 0], [999, -1000, 0, -180, 179, -7, 1]):
        text = layout.text(values)
        own = tokenizer.encode(text, add_special_tokens=False) + [end]
        assert layout.parse(own)[0] == values
        assert layout.parse(layout.greedy_tokens(values))[0] == values
        assert tokenizer.decode(own[:-1]) == text


# -- acting ------------------------------------------------------------------------------------


def _check_output(policy, out) -> None:
    tokenizer = policy._require().tokenizer
    action = codec.decode_action(out.text)
    assert action == out.action and out.action.is_finite()
    assert codec.encode_action(out.action) == out.text
    assert tokenizer.decode(out.tokens.tolist(), skip_special_tokens=False) == \
        out.text + '<|im_end|>'
    assert out.tokens.dtype == np.int64
    assert math.isfinite(out.log_prob) and out.log_prob < 0.0
    assert math.isfinite(out.value)


def test_random_model_always_writes_codec_actions(policy) -> None:
    observations = _observations()
    outputs = policy.act_batch(observations + observations)
    outputs += [policy.act(observations[0], deterministic=True)]
    for out in outputs:
        _check_output(policy, out)
    assert len({out.text for out in outputs}) > 1


@pytest.mark.parametrize('template_tokens', ['canonical', 'greedy'])
def test_act_log_prob_equals_evaluate(checkpoint, template_tokens) -> None:
    policy = load_policy('vlac', str(checkpoint), seed=1, template_tokens=template_tokens)
    assert policy.layout.mode == template_tokens
    observations = _observations()
    outputs = policy.act_batch(observations)
    outputs.append(policy.act(observations[1], deterministic=True))
    observations.append(observations[1])
    log_prob, entropy, value = policy.evaluate(observations, [o.tokens for o in outputs])
    assert log_prob.shape == entropy.shape == value.shape == (4,)
    expected = torch.tensor([o.log_prob for o in outputs])
    assert torch.allclose(log_prob.detach().double(), expected.double(), atol=1e-4, rtol=0.0)
    assert torch.allclose(value.detach(), torch.tensor([o.value for o in outputs]), atol=1e-5)
    assert bool((entropy > 0.0).all())


def test_batched_act_matches_single_act(policy) -> None:
    observations = _observations()
    batched = policy.act_batch(observations, deterministic=True)
    for obs, out in zip(observations, batched, strict=True):
        single = policy.act(obs, deterministic=True)
        assert single.tokens.tolist() == out.tokens.tolist()
        assert single.log_prob == pytest.approx(out.log_prob, abs=1e-4)


def test_deterministic_and_seeded_acting_are_reproducible(checkpoint, policy) -> None:
    obs = _observation(views=2)
    first = policy.act(obs, deterministic=True)
    second = policy.act(obs, deterministic=True)
    assert first.tokens.tolist() == second.tokens.tolist()
    assert first.log_prob == second.log_prob and first.value == second.value
    a = load_policy('vlac', str(checkpoint), seed=7)
    b = load_policy('vlac', str(checkpoint), seed=7)
    samples_a = [a.act(obs).text for _ in range(3)]
    assert samples_a == [b.act(obs).text for _ in range(3)]


# -- demonstrations and gradients --------------------------------------------------------------


DEMOS = [
    EefAction((0.047, -0.019, 0.5), (0.1, -0.2, math.pi), 1.0),
    EefAction((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0),
    EefAction((-1.0, 0.999, -0.0004), (-math.pi / 2, 3.1, -0.01), 1.0),
]


def test_tokens_for_gives_finite_log_probs_and_gradients(checkpoint) -> None:
    policy = load_policy('vlac', str(checkpoint))
    tokenizer = policy._require().tokenizer
    observations = _observations()
    tokens = [policy.tokens_for(obs, demo) for obs, demo in zip(observations, DEMOS,
                                                                strict=True)]
    for row, demo in zip(tokens, DEMOS, strict=True):
        assert tokenizer.decode(row.tolist()) == codec.encode_action(demo) + '<|im_end|>'
    log_prob, entropy, value = policy.evaluate(observations, tokens)
    assert bool(torch.isfinite(log_prob).all() and torch.isfinite(entropy).all())
    (-log_prob.sum() + (value - 1.0).pow(2).sum()).backward()
    named = dict(policy.named_trainable_parameters())
    assert named['value_head.weight'].grad.abs().sum() > 0
    assert named['lm_head.weight'].grad.abs().sum() > 0
    layer = 'model.language_model.layers.0.self_attn.q_proj.weight'
    assert named[layer].grad.abs().sum() > 0
    model = policy._require().model
    assert all(not p.requires_grad and p.grad is None
               for p in model.model.vision_tower.parameters())
    assert not any(n.startswith('model.vision_tower') for n in named)


def test_trainable_modes(checkpoint) -> None:
    head = load_policy('vlac', str(checkpoint), trainable='value_head')
    assert [n for n, _ in head.named_trainable_parameters()] == ['value_head.weight',
                                                                   'value_head.bias']
    full = load_policy('vlac', str(checkpoint), trainable='all')
    names = [n for n, _ in full.named_trainable_parameters()]
    assert any(n.startswith('model.vision_tower.') for n in names)
    with pytest.raises(PolicyError, match='trainable'):
        load_policy('vlac', str(checkpoint), trainable='vision')


def test_tokens_for_rejects_unwritable_actions(policy) -> None:
    with pytest.raises(PolicyError, match='outside'):
        policy.tokens_for(_observation(), EefAction((2.0, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0))
    with pytest.raises(PolicyError, match='cannot be written'):
        policy.tokens_for(_observation(), EefAction((math.nan, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0))


def test_evaluate_rejects_tokens_outside_the_template(policy) -> None:
    good = policy.tokens_for(_observation(), DEMOS[0])
    with pytest.raises(PolicyError, match='not a vlac action'):
        policy.evaluate([_observation()], [good[:-1]])
    bad = good.copy()
    bad[4] = bad[0]
    with pytest.raises(PolicyError, match='not a vlac action'):
        policy.evaluate([_observation()], [bad])
    with pytest.raises(PolicyError, match='token rows'):
        policy.evaluate([_observation()], [good, good])


@pytest.mark.parametrize('observation, message', [
    (PolicyObservation([], STATE, TASK), '1 to 3 camera views'),
    (_observation(views=4), '1 to 3 camera views'),
    (PolicyObservation([np.zeros((8, 8, 3), np.float32)], STATE, TASK), 'uint8'),
    (PolicyObservation([np.zeros((8, 8), np.uint8)], STATE, TASK), r'\(H, W, 3\)'),
    (PolicyObservation(np.zeros((8, 8, 3), np.uint8), STATE, TASK), 'sequence'),
    (_observation(state=np.r_[STATE[:6], np.nan]), '7 finite numbers'),
    (_observation(state=STATE[:6]), '7 finite numbers'),
    (_observation(state=np.r_[1000.0, STATE[1:]]), 'out of range'),
    (_observation(task=''), 'task'),
    (_observation(task='look at <image>'), 'task'),
])
def test_malformed_observations_raise_policy_error(policy, observation, message) -> None:
    with pytest.raises(PolicyError, match=message):
        policy.act(observation)
    with pytest.raises(PolicyError, match=message):
        policy.tokens_for(observation, DEMOS[0])


# -- weights -----------------------------------------------------------------------------------


def test_save_and_load_weights_round_trip(checkpoint, tmp_path) -> None:
    policy = load_policy('vlac', str(checkpoint))
    obs = _observation()
    before = policy.act(obs, deterministic=True)
    saved = _parameters(policy)
    digest = policy.save_weights(tmp_path / 'w.safetensors')
    assert digest == hashlib.sha256((tmp_path / 'w.safetensors').read_bytes()).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ['w.safetensors']
    with torch.no_grad():
        for param in policy.trainable_parameters():
            param.add_(0.5)
    assert policy.act(obs, deterministic=True).value != before.value
    policy.load_weights(tmp_path / 'w.safetensors', digest)
    assert _same(saved, policy)
    after = policy.act(obs, deterministic=True)
    assert after.tokens.tolist() == before.tokens.tolist()
    assert after.log_prob == before.log_prob and after.value == before.value


def test_bad_weight_files_are_refused_and_old_weights_kept(checkpoint, tmp_path) -> None:
    policy = load_policy('vlac', str(checkpoint), trainable='value_head')
    good = tmp_path / 'good.safetensors'
    digest = policy.save_weights(good)
    with torch.no_grad():
        policy.value_head.bias.fill_(0.75)
    kept = _parameters(policy)
    with pytest.raises(PolicyError, match='does not match'):
        policy.load_weights(good, '0' * 64)
    pickled = tmp_path / 'weights.pt'
    torch.save({n: p.detach() for n, p in policy.named_trainable_parameters()}, pickled)
    with pytest.raises(PolicyError, match='not a readable safetensors'):
        policy.load_weights(pickled)
    with pytest.raises(PolicyError, match='not found'):
        policy.load_weights(tmp_path / 'missing.safetensors')
    wrong = tmp_path / 'wrong.safetensors'
    save_file({'value_head.weight': torch.zeros(1, 32)}, str(wrong))
    with pytest.raises(PolicyError, match='1 missing'):
        policy.load_weights(wrong)
    nan = tmp_path / 'nan.safetensors'
    save_file({'value_head.weight': torch.full((1, 32), math.nan),
               'value_head.bias': torch.zeros(1)}, str(nan))
    with pytest.raises(PolicyError, match='non-finite'):
        policy.load_weights(nan)
    assert _same(kept, policy)
    policy.load_weights(good, digest)
    assert float(policy.value_head.bias.detach()) == 0.0


def test_value_head_file_beside_the_checkpoint(checkpoint, tmp_path) -> None:
    directory = tmp_path / 'with_head'
    shutil.copytree(checkpoint, directory)
    policy = load_policy('vlac', str(directory))
    assert policy.act(_observation(), deterministic=True).value == 0.0
    with torch.no_grad():
        policy.value_head.bias.fill_(0.25)
    assert policy.save_value_head() == directory / VALUE_HEAD_FILE
    reloaded = load_policy('vlac', str(directory))
    assert float(reloaded.value_head.bias.detach()) == 0.25
    assert reloaded.act(_observation(), deterministic=True).value == pytest.approx(0.25)
    save_file({'weight': torch.zeros(1, 8), 'bias': torch.zeros(1)},
              str(directory / VALUE_HEAD_FILE))
    with pytest.raises(PolicyError, match='value head tensors'):
        load_policy('vlac', str(directory))


def test_loading_errors_are_policy_errors(checkpoint, tmp_path) -> None:
    with pytest.raises(PolicyError, match='not found'):
        load_policy('vlac', str(tmp_path / 'nope'))
    with pytest.raises(PolicyError, match='trust_remote_code'):
        load_policy('vlac', str(checkpoint), trust_remote_code=True)
    with pytest.raises(PolicyError, match='temperature'):
        load_policy('vlac', str(checkpoint), temperature=0.0)
    with pytest.raises(PolicyError, match='max_translation_mm'):
        load_policy('vlac', str(checkpoint), max_translation_mm=0)
    with pytest.raises(PolicyError, match='unknown vlac policy options'):
        load_policy('vlac', str(checkpoint), batch_size=4)


# -- benchmark helpers -------------------------------------------------------------------------


def test_full_size_config_is_internvl2_2b_sized() -> None:
    from transformers import InternVLForConditionalGeneration
    from vlac_testing.tiny_internvl import build_tiny_tokenizer

    config = full_size_config(build_tiny_tokenizer())
    with torch.device('meta'):
        model = InternVLForConditionalGeneration(config)
    count = sum(p.numel() for p in model.parameters())
    assert 2.15e9 < count < 2.25e9
    assert config.image_seq_length == 256 and config.text_config.vocab_size == 92553


def test_benchmark_on_the_tiny_model(checkpoint) -> None:
    figures = benchmark_vlac_policy(checkpoint, 'cpu', repeats=3, warmup=1)
    assert 0.0 < figures['p50_ms'] <= figures['p99_ms']
    assert figures['repeats'] == 3 and figures['device'] == 'cpu'
    assert figures['generated_tokens'] >= 14
