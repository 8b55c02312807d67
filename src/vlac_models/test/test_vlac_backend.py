"""The 'vlac' critic backend on tiny InternVL checkpoints built offline (no model hub)."""

import json
import logging
import math

import numpy as np
import pytest
from safetensors.torch import save_file
import torch
from vlac_models.critic.base import Critic, DoneQuery, PairQuery, load_critic
from vlac_models.critic.vlac_backend import VlacCritic, parse_done, parse_progress
from vlac_models.vlac_model import loading, preprocess
from vlac_testing.tiny_internvl import make_tiny_internvl, make_tiny_original_internvl

TASK = 'pick up the red cube and place it in the bowl'
LOGGER = 'vlac_models.critic.vlac'


pytestmark = pytest.mark.usefixtures('torch_one_thread')


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp('vlac')
    return {
        'plus20': make_tiny_internvl(root / 'plus20', reply='+20'),
        'minus15': make_tiny_internvl(root / 'minus15', reply='-15'),
        'decimal': make_tiny_internvl(root / 'decimal', reply='+20.5'),
        'yes': make_tiny_internvl(root / 'yes', reply='1'),
        'random': make_tiny_internvl(root / 'random', seed=3),
    }


def _frames(count, seed=0, shape=(60, 80, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def _pairs(count, reference=()):
    frames = _frames(count + 1)
    return [PairQuery(TASK, frames[i], frames[i + 1], reference=tuple(reference),
                      first_frame=frames[0] if reference else None) for i in range(count)]


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize('text, value', [
    ('+20', 0.2), ('-15', -0.15), ('15%', 0.15), ('+20.5', 0.205), (' +20 ', 0.2),
    ('0', 0.0), ('100', 1.0), ('-100%', -1.0), ('+ 7', 0.07), ('-0.5', -0.005),
])
def test_parse_progress(text, value) -> None:
    assert parse_progress(text) == pytest.approx(value)


@pytest.mark.parametrize('text', ['', 'abc', '+', '20 percent', '150', '+20+5', '--5', '2 0',
                                  '<score>', None])
def test_parse_progress_malformed_is_nan(text) -> None:
    assert math.isnan(parse_progress(text))


@pytest.mark.parametrize('text, value', [('1', 1.0), ('0', 0.0), (' 1\n', 1.0), ('0.9', 0.9)])
def test_parse_done(text, value) -> None:
    assert parse_done(text) == pytest.approx(value)


@pytest.mark.parametrize('text', ['', 'yes', '2', '-1', '1.5', '+20', None])
def test_parse_done_malformed_is_nan(text) -> None:
    assert math.isnan(parse_done(text))


# -- loading -----------------------------------------------------------------------------------


def test_load_through_load_critic(checkpoints) -> None:
    critic = load_critic('vlac', str(checkpoints['plus20']))
    assert isinstance(critic, VlacCritic)
    assert isinstance(critic, Critic)
    assert critic.model_id == 'vlac:plus20'
    assert critic.numbers_single_token
    critic.close()
    with pytest.raises(RuntimeError, match='closed'):
        critic.score_pairs(_pairs(1))


def test_missing_directory_raises_file_not_found(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match='not found'):
        load_critic('vlac', str(tmp_path / 'nope'))
    with pytest.raises(FileNotFoundError, match='allow_download'):
        load_critic('vlac', 'InternRobotics/VLAC')


def test_non_safetensors_weights_refused(tmp_path, checkpoints) -> None:
    bad = tmp_path / 'pickled'
    bad.mkdir()
    (bad / 'config.json').write_text((checkpoints['plus20'] / 'config.json').read_text())
    torch.save({'w': torch.zeros(1)}, bad / 'pytorch_model.bin')
    with pytest.raises(ValueError, match='non-safetensors'):
        load_critic('vlac', str(bad))


def test_trust_remote_code_refused(checkpoints) -> None:
    with pytest.raises(ValueError, match='trust_remote_code'):
        load_critic('vlac', str(checkpoints['plus20']), trust_remote_code=True)


def test_original_layout_refused_with_conversion_hint(tmp_path) -> None:
    original = make_tiny_original_internvl(tmp_path / 'original')
    with pytest.raises(ValueError, match='vlac_convert_checkpoint'):
        load_critic('vlac', str(original))


def test_not_a_checkpoint(tmp_path) -> None:
    (tmp_path / 'file.txt').write_text('x')
    with pytest.raises(ValueError, match='directory'):
        load_critic('vlac', str(tmp_path / 'file.txt'))
    with pytest.raises(ValueError, match='config.json'):
        load_critic('vlac', str(tmp_path))
    (tmp_path / 'config.json').write_text(json.dumps({'model_type': 'llama'}))
    with pytest.raises(ValueError, match="model_type 'llama'"):
        load_critic('vlac', str(tmp_path))


def test_bad_options(checkpoints) -> None:
    with pytest.raises(ValueError, match='batch_size'):
        load_critic('vlac', str(checkpoints['plus20']), batch_size=0)
    with pytest.raises(ValueError, match='device'):
        load_critic('vlac', str(checkpoints['plus20']), device='tpu')


# -- scoring -----------------------------------------------------------------------------------


def test_batched_scoring_shape_and_values(checkpoints) -> None:
    critic = load_critic('vlac', str(checkpoints['plus20']), batch_size=2, max_new_tokens=4)
    reference = _frames(12, seed=1)
    queries = _pairs(3) + _pairs(2, reference=reference)
    deltas = critic.score_pairs(queries)
    assert deltas.shape == (5,) and deltas.dtype == np.float32
    np.testing.assert_allclose(deltas, 0.2)
    assert critic.score_pairs([]).shape == (0,)
    negative = load_critic('vlac', str(checkpoints['minus15']), max_new_tokens=4)
    np.testing.assert_allclose(negative.score_pairs(_pairs(2)), -0.15)


def test_in_context_request_layout(checkpoints) -> None:
    critic = load_critic('vlac', str(checkpoints['plus20']), num_reference=5)
    frames = _frames(3)
    reference = tuple(_frames(11, seed=2))
    request = critic.pair_request(PairQuery(TASK, frames[1], frames[2], reference=reference,
                                            first_frame=frames[0]))
    assert request.query.count('<image>') == 5 + 3
    picked = [reference[i] for i in (0, 2, 5, 7, 10)]
    assert all(a is b for a, b in zip(request.frames, picked + frames, strict=True))
    no_first = critic.pair_request(PairQuery(TASK, frames[1], frames[2], reference=reference))
    assert no_first.frames[5] is frames[1]
    shape = critic.pair_shape(PairQuery(TASK, frames[1], frames[2], reference, frames[0]))
    assert critic.in_context and (shape.images, shape.reference_frames) == (8, 5)
    assert shape.reference_block.startswith(f'<trajectory> <task> {TASK} </task>:')
    assert shape.reference_block.count('<image>') == 5 and request.query.startswith(
        shape.reference_block)
    assert critic.pair_shape(PairQuery(TASK, frames[1], frames[2])).images == 2
    with pytest.raises(ValueError, match='at least 2'):
        critic.pair_request(PairQuery(TASK, frames[1], frames[2], reference=(frames[0],)))
    with pytest.raises(ValueError, match='uint8'):
        critic.score_pairs([PairQuery(TASK, frames[0].astype(np.float32), frames[1])])


def test_done_probability(checkpoints) -> None:
    critic = load_critic('vlac', str(checkpoints['yes']), max_new_tokens=4)
    frames = _frames(3)
    queries = [DoneQuery(TASK, frames[0]), DoneQuery(TASK, frames[1], reference=tuple(frames))]
    done = critic.done_probability(queries)
    assert done.shape == (2,) and done.dtype == np.float32
    np.testing.assert_allclose(done, 1.0)


def test_malformed_output_is_nan_with_warning(checkpoints, caplog) -> None:
    critic = load_critic('vlac', str(checkpoints['plus20']), max_new_tokens=4)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        done = critic.done_probability([DoneQuery(TASK, _frames(1)[0])])
    assert np.isnan(done).all()
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any("malformed done answer '+20'" in m for m in messages)


def test_random_model_never_raises(checkpoints, caplog) -> None:
    critic = load_critic('vlac', str(checkpoints['random']), batch_size=4, max_new_tokens=3)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        deltas = critic.score_pairs(_pairs(3) + _pairs(1, reference=_frames(4, seed=5)))
        done = critic.done_probability([DoneQuery(TASK, f) for f in _frames(2)])
    assert deltas.dtype == np.float32 and done.dtype == np.float32
    assert all(np.isnan(v) or -1.0 <= v <= 1.0 for v in deltas)
    assert all(np.isnan(v) or 0.0 <= v <= 1.0 for v in done)


def test_left_padded_batch_matches_single_queries(checkpoints) -> None:
    # A random model attends over every position: padding or position errors change its logits.
    critic = load_critic('vlac', str(checkpoints['random']), batch_size=8, max_new_tokens=2,
                         expectation=True)
    short = critic.pair_request(_pairs(1)[0])
    long = critic.pair_request(_pairs(1, reference=_frames(3, seed=7))[0])
    batched = critic._generate_batch([short, long])
    for request, together in zip([short, long], batched, strict=True):
        alone = critic._generate_batch([request])[0]
        assert alone.ids == together.ids
        torch.testing.assert_close(alone.logits, together.logits, atol=1e-4, rtol=1e-4)


# -- expectation mode ------------------------------------------------------------------------


def test_expectation_mode_weights_numeric_alternatives(checkpoints) -> None:
    # The scripted model puts logit 10 on '20' and 9 on '15' (all other tokens 0).
    critic = load_critic('vlac', str(checkpoints['plus20']), expectation=True, max_new_tokens=4)
    deltas = critic.score_pairs(_pairs(2))
    expected = (20 * math.exp(10) + 15 * math.exp(9)) / (math.exp(10) + math.exp(9)) / 100
    np.testing.assert_allclose(deltas, expected, atol=1e-5)
    assert np.all((deltas >= -1) & (deltas <= 1))
    negative = load_critic('vlac', str(checkpoints['minus15']), expectation=True,
                           max_new_tokens=4)
    expected = -(15 * math.exp(10) + 10 * math.exp(9)) / (math.exp(10) + math.exp(9)) / 100
    np.testing.assert_allclose(negative.score_pairs(_pairs(1)), expected, atol=1e-5)


def test_expectation_mode_multitoken_number_falls_back_to_greedy(checkpoints, caplog) -> None:
    critic = load_critic('vlac', str(checkpoints['decimal']), expectation=True, max_new_tokens=6)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        deltas = critic.score_pairs(_pairs(2))
    np.testing.assert_allclose(deltas, 0.205, atol=1e-6)
    assert sum('spans several tokens' in r.getMessage() for r in caplog.records) == 1


def test_expectation_mode_done_is_probability_of_one(checkpoints) -> None:
    critic = load_critic('vlac', str(checkpoints['yes']), expectation=True, max_new_tokens=4)
    done = critic.done_probability([DoneQuery(TASK, f) for f in _frames(2)])
    expected = math.exp(10) / (math.exp(10) + math.exp(9))
    np.testing.assert_allclose(done, expected, atol=1e-5)
    no_digit = load_critic('vlac', str(checkpoints['plus20']), expectation=True,
                           max_new_tokens=4)
    assert np.isnan(no_digit.done_probability([DoneQuery(TASK, _frames(1)[0])])).all()


# -- preprocessing -----------------------------------------------------------------------------


def test_preprocessing_gives_448_normalised_tiles() -> None:
    frames = _frames(2, shape=(480, 640, 3)) + [np.full((300, 200, 3), 128, np.uint8)]
    pixels = preprocess.preprocess_frames(frames)
    assert pixels.shape == (3, 3, 448, 448) and pixels.dtype == torch.float32
    mean = torch.tensor(preprocess.IMAGENET_MEAN)
    std = torch.tensor(preprocess.IMAGENET_STD)
    constant = pixels[2].reshape(3, -1)
    expected = (128 / 255 - mean) / std
    torch.testing.assert_close(constant, expected[:, None].expand_as(constant))
    same = np.zeros((448, 448, 3), np.uint8)
    assert np.array_equal(preprocess.resize_lanczos(same), same)
    with pytest.raises(ValueError, match='uint8'):
        preprocess.preprocess_frame(np.zeros((10, 10), np.uint8))


def test_resize_matches_pil_lanczos() -> None:
    image_module = pytest.importorskip('PIL.Image')
    for shape in [(480, 640, 3), (100, 90, 3), (448, 700, 3), (1000, 448, 3)]:
        frame = _frames(1, seed=shape[0], shape=shape)[0]
        ours = preprocess.resize_lanczos(frame)
        pil = np.asarray(image_module.fromarray(frame).resize(
            (448, 448), image_module.Resampling.LANCZOS))
        assert np.array_equal(ours, pil), shape


# -- conversion of the original checkpoints ----------------------------------------------------


def test_conversion_round_trip(tmp_path) -> None:
    original = make_tiny_original_internvl(tmp_path / 'original', seed=4)
    native = make_tiny_internvl(tmp_path / 'native', seed=4)
    converted = tmp_path / 'converted'
    assert loading.convert_main([str(original), str(converted)]) == 0
    record = json.loads((converted / loading.CONVERSION_RECORD).read_text())
    assert record['tokenizer_source'] == 'tokenizer.json'
    assert not list(converted.glob('*.py'))
    a = loading.load_vlac(native)
    b = loading.load_vlac(converted)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    assert b.eos_token_ids == a.eos_token_ids
    assert loading.convert_main([str(original), str(converted)]) == 1  # exists, no --overwrite
    critic = load_critic('vlac', str(converted), max_new_tokens=2)
    assert critic.score_pairs(_pairs(1)).shape == (1,)


def test_conversion_refuses_bad_sources(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        loading.convert_checkpoint(tmp_path / 'nope', tmp_path / 'out')
    native = make_tiny_internvl(tmp_path / 'native')
    with pytest.raises(ValueError, match='internvl_chat'):
        loading.convert_checkpoint(native, tmp_path / 'out')
    original = make_tiny_original_internvl(tmp_path / 'original')
    for tensor_file in original.glob('*.safetensors'):
        tensor_file.unlink()
    torch.save({}, original / 'pytorch_model.bin')
    with pytest.raises(ValueError, match='non-safetensors'):
        loading.convert_checkpoint(original, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


def test_conversion_never_deletes_foreign_directories(tmp_path) -> None:
    original = make_tiny_original_internvl(tmp_path / 'original')
    with pytest.raises(ValueError, match='contain'):
        loading.convert_checkpoint(original, tmp_path, overwrite=True)
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('keep me')
    with pytest.raises(ValueError, match='refusing to replace'):
        loading.convert_checkpoint(original, foreign, overwrite=True)
    assert (foreign / 'notes.txt').read_text() == 'keep me'
    converted = loading.convert_checkpoint(original, tmp_path / 'out')
    assert loading.convert_checkpoint(original, converted, overwrite=True) == converted


def test_conversion_refuses_unmapped_tensors(tmp_path) -> None:
    original = make_tiny_original_internvl(tmp_path / 'original')
    save_file({'surprise.weight': torch.zeros(2)}, str(original / 'extra.safetensors'))
    with pytest.raises(ValueError, match='unmapped'):
        loading.convert_checkpoint(original, tmp_path / 'out')


def test_internlm2_wqkv_split_matches_the_original_layout() -> None:
    # InternLM2 reads wqkv(x) as 'b q (h gs d) -> b q h gs d' with gs = groups + 2: per kv head
    # its query heads, then its key, then its value; queries regroup as 'b q (h gs) d'.
    torch.manual_seed(0)
    heads, kv_heads, head_dim, hidden = 8, 2, 4, 16
    groups = heads // kv_heads
    wqkv = torch.randn((heads + 2 * kv_heads) * head_dim, hidden)
    x = torch.randn(2, 5, hidden)
    fused = (x @ wqkv.T).reshape(2, 5, kv_heads, groups + 2, head_dim)
    q_ref = fused[..., :groups, :].reshape(2, 5, heads, head_dim)
    k_ref, v_ref = fused[..., -2, :], fused[..., -1, :]
    q_w, k_w, v_w = loading.split_internlm2_wqkv(wqkv, heads, kv_heads, head_dim)
    torch.testing.assert_close((x @ q_w.T).reshape(2, 5, heads, head_dim), q_ref)
    torch.testing.assert_close((x @ k_w.T).reshape(2, 5, kv_heads, head_dim), k_ref)
    torch.testing.assert_close((x @ v_w.T).reshape(2, 5, kv_heads, head_dim), v_ref)
    with pytest.raises(ValueError, match='rows'):
        loading.split_internlm2_wqkv(wqkv[:-1], heads, kv_heads, head_dim)


def test_sentencepiece_model_conversion(tmp_path) -> None:
    pytest.importorskip('google.protobuf')
    from transformers.convert_slow_tokenizer import import_protobuf

    model_pb2 = import_protobuf()
    proto = model_pb2.ModelProto()
    kinds = model_pb2.ModelProto.SentencePiece.Type
    for piece, kind in (('<unk>', kinds.UNKNOWN), ('<s>', kinds.CONTROL),
                        ('</s>', kinds.CONTROL)):
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    for byte in range(256):
        proto.pieces.add(piece=f'<0x{byte:02X}>', score=0.0, type=kinds.BYTE)
    for score, piece in enumerate(['\u2581', 'a', 'b', '2', '0', '+', 'ab', '\u2581ab', '20']):
        proto.pieces.add(piece=piece, score=-float(score), type=kinds.NORMAL)
    proto.trainer_spec.model_type = 2
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.unk_piece = '<unk>'
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    model_file = tmp_path / 'tokenizer.model'
    model_file.write_bytes(proto.SerializeToString())
    size = len(proto.pieces)
    added = {size: ('<img>', True), size + 1: ('<IMG_CONTEXT>', True)}
    tok = loading.tokenizer_from_sentencepiece(model_file, added)
    assert tok.encode('ab ab', add_special_tokens=False).tokens == ['\u2581ab', '\u2581ab']
    assert tok.encode('+20', add_special_tokens=False).tokens == ['\u2581', '+', '20']
    assert tok.encode('\u00e9', add_special_tokens=False).tokens == ['\u2581', '<0xC3>',
                                                                      '<0xA9>']
    ids = tok.encode('ab<img><IMG_CONTEXT>b', add_special_tokens=False).ids
    assert ids[1:3] == [size, size + 1]
    assert tok.decode(tok.encode('ab ab \u00e9', add_special_tokens=False).ids) == 'ab ab \u00e9'


def test_tiny_checkpoint_is_deterministic(tmp_path) -> None:
    a = make_tiny_internvl(tmp_path / 'a', seed=1)
    b = make_tiny_internvl(tmp_path / 'b', seed=1)
    for name in ('model.safetensors', 'tokenizer.json', 'config.json'):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
