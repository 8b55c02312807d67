"""The compact policy backend: distributions, tokens, weights, ONNX, data and a tiny BC run."""

import hashlib
import json
import math
import pathlib
import pickle
import shutil

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import torch
from vlac_models.policy.base import EefAction, PolicyError, PolicyObservation, load_policy
from vlac_models.policy.compact import (
    CONFIG_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    CompactPolicy,
    CompactPolicyNet,
    PolicyConfig,
    load_compact_policy,
    save_model_dir,
)

TASKS = ('press the yellow button', 'pick up the red cube and put it on the green pad')
TINY = {'frame_size': 32, 'channels': (4, 8, 8, 4), 'embed_dim': 16, 'hidden_dim': 32,
        'translation_bins': 11, 'rotation_bins': 7, 'translation_limit': 0.02,
        'rotation_limit': 0.1}


pytestmark = pytest.mark.usefixtures('torch_one_thread')


def make_policy(seed: int = 0, **overrides) -> CompactPolicy:
    torch.manual_seed(seed)
    return CompactPolicy(CompactPolicyNet(PolicyConfig(**{**TINY, **overrides})), seed=seed)


def observations(n: int, seed: int = 0, size: int = 48) -> list[PolicyObservation]:
    rng = np.random.default_rng(seed)
    return [PolicyObservation(
        [rng.integers(0, 256, (size, size + 8 * (k % 2), 3), dtype=np.uint8)],
        np.array([0.5 + 0.1 * rng.standard_normal(), 0.1 * rng.standard_normal(),
                  0.2 + 0.05 * rng.standard_normal(), math.pi - 0.1 * rng.random(),
                  0.1 * rng.standard_normal(), rng.uniform(-math.pi, math.pi), rng.random()]),
        TASKS[k % 2]) for k in range(n)]


@pytest.fixture(scope='module')
def policy() -> CompactPolicy:
    return make_policy()


def test_act_log_prob_equals_evaluate(policy):
    obs = observations(6)
    outputs = [policy.act(o, deterministic=k % 2 == 0) for k, o in enumerate(obs)]
    log_prob, entropy, value = (t.detach() for t in policy.evaluate(
        obs, [o.tokens for o in outputs]))
    assert log_prob.shape == entropy.shape == value.shape == (6,)
    for k, out in enumerate(outputs):
        assert out.tokens.dtype == np.int64 and out.tokens.shape == (7,)
        assert abs(out.log_prob - float(log_prob[k])) < 1e-5
        assert abs(out.value - float(value[k])) < 1e-5
        assert out.action == policy.action_from_tokens(out.tokens)
    # Sum over dimensions: the manual sum of each dimension's log-softmax agrees.
    with torch.no_grad():
        frames, states, tasks = policy._inputs(obs[:1])
        logits, _ = policy.net(frames, states, tasks)
    manual, offset = 0.0, 0
    for d, n in enumerate(policy.config.bins):
        manual += float(torch.log_softmax(logits[0, offset:offset + n], 0)[outputs[0].tokens[d]])
        offset += n
    assert abs(manual - outputs[0].log_prob) < 1e-5
    assert 0.0 < float(entropy[0]) <= sum(math.log(n) for n in policy.config.bins) + 1e-4


def test_deterministic_act_takes_most_likely_bins(policy):
    obs = observations(1, seed=3)[0]
    greedy = policy.act(obs, deterministic=True)
    samples = [policy.act(obs).log_prob for _ in range(20)]
    assert all(s <= greedy.log_prob + 1e-6 for s in samples)
    assert policy.act(obs, deterministic=True).tokens.tolist() == greedy.tokens.tolist()


def test_evaluate_is_differentiable_and_batched(policy):
    obs = observations(4, seed=1)
    tokens = [policy.act(o).tokens for o in obs]
    policy.net.zero_grad()
    log_prob, entropy, value = policy.evaluate(obs, tokens)
    (log_prob.sum() + entropy.sum() + value.sum()).backward()
    grads = [p.grad for p in policy.trainable_parameters()]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    single = policy.evaluate(obs[2:3], tokens[2:3])[0].detach()
    assert abs(float(single[0]) - float(log_prob.detach()[2])) < 1e-5
    policy.net.zero_grad()


def test_malformed_observations_raise(policy):
    good = observations(1)[0]
    with pytest.raises(ValueError):
        policy.act(PolicyObservation([], good.state, good.task))
    with pytest.raises(ValueError):
        policy.act(PolicyObservation(good.images, np.full(7, np.nan), good.task))
    with pytest.raises(ValueError):
        policy.act(PolicyObservation([good.images[0].astype(np.float32)], good.state, good.task))
    with pytest.raises(ValueError):
        policy.act(PolicyObservation(good.images, good.state, '  '))
    with pytest.raises(ValueError):
        policy.evaluate([good], [np.array([0, 0, 0, 0, 0, 0, 2])])


finite = st.floats(-0.05, 0.05, allow_nan=False)
angles = st.floats(-0.3, 0.3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=3, max_size=3), st.lists(angles, min_size=3, max_size=3),
       st.floats(0.0, 1.0))
def test_tokens_for_round_trip_within_bin_resolution(translation, rotation, gripper):
    policy = _shared_policy()
    action = EefAction(tuple(translation), tuple(rotation), gripper)
    tokens = policy.tokens_for(None, action)
    back = policy.action_from_tokens(tokens).as_vector()
    want = action.as_vector()
    cfg = policy.config
    limits = np.array([cfg.translation_limit] * 3 + [cfg.rotation_limit] * 3)
    half = policy.bin_width()[:6] / 2 + 1e-12
    inside = np.abs(want[:6]) <= limits
    assert np.all(np.abs(back[:6] - want[:6])[inside] <= half[inside])
    # Beyond a range: the edge bin of the right sign.
    assert np.all(back[:6][~inside] == np.sign(want[:6][~inside]) * limits[~inside])
    assert back[6] == (1.0 if gripper >= 0.5 else 0.0)
    assert policy.tokens_for(None, policy.action_from_tokens(tokens)).tolist() == tokens.tolist()


_POLICY = []


def _shared_policy() -> CompactPolicy:
    if not _POLICY:
        _POLICY.append(make_policy())
    return _POLICY[0]


def test_tokens_reject_non_finite(policy):
    with pytest.raises(ValueError):
        policy.tokens_for(None, EefAction((math.nan, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0))
    with pytest.raises(ValueError):
        policy.action_from_tokens([0, 0, 0, 0, 0, 0, 5])


def _outputs(policy: CompactPolicy, obs) -> np.ndarray:
    with torch.no_grad():
        logits, value = policy.net(*policy._inputs(obs))
    return torch.cat([logits, value[:, None]], 1).numpy()


def test_save_load_round_trip(tmp_path):
    source, target = make_policy(1), make_policy(2)
    obs = observations(3, seed=5)
    assert not np.allclose(_outputs(source, obs), _outputs(target, obs))
    digest = source.save_weights(tmp_path / 'w.safetensors')
    assert digest == hashlib.sha256((tmp_path / 'w.safetensors').read_bytes()).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ['w.safetensors']  # no temp file left
    target.load_weights(tmp_path / 'w.safetensors', digest)
    np.testing.assert_array_equal(_outputs(source, obs), _outputs(target, obs))


def test_bad_weights_rejected_and_old_weights_kept(tmp_path):
    source, target = make_policy(1), make_policy(2)
    obs = observations(2, seed=6)
    before = _outputs(target, obs)
    path = tmp_path / 'w.safetensors'
    digest = source.save_weights(path)
    with pytest.raises(PolicyError, match='sha256'):
        target.load_weights(path, '0' * 64)
    # A pickle of the same tensors, with its own correct sha256: still refused, never unpickled.
    pickled = tmp_path / 'w.pt'
    pickled.write_bytes(pickle.dumps({k: v.numpy() for k, v in source.net.state_dict().items()}))
    with pytest.raises(PolicyError, match='safetensors'):
        target.load_weights(pickled, hashlib.sha256(pickled.read_bytes()).hexdigest())
    with pytest.raises(PolicyError):
        target.load_weights(pickled)
    other = make_policy(3, hidden_dim=24)  # another architecture
    other_digest = other.save_weights(tmp_path / 'other.safetensors')
    with pytest.raises(PolicyError, match='architecture'):
        target.load_weights(tmp_path / 'other.safetensors', other_digest)
    truncated = tmp_path / 'cut.safetensors'
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PolicyError):
        target.load_weights(truncated)
    with pytest.raises(PolicyError):
        target.load_weights(tmp_path / 'missing.safetensors')
    np.testing.assert_array_equal(before, _outputs(target, obs))
    target.load_weights(path, digest)  # and a good file still loads afterwards
    np.testing.assert_array_equal(_outputs(source, obs), _outputs(target, obs))


def test_model_dir_round_trip(tmp_path):
    source = make_policy(4)
    save_model_dir(source, tmp_path / 'model', '# card\n', {'tasks': list(TASKS)})
    assert sorted(p.name for p in (tmp_path / 'model').iterdir()) == [
        CONFIG_FILE, 'model_card.md', WEIGHTS_FILE]
    loaded = load_policy('compact', tmp_path / 'model', 'cpu')
    obs = observations(3, seed=7)
    np.testing.assert_array_equal(_outputs(source, obs), _outputs(loaded, obs))
    assert loaded.backend == 'compact' and loaded.config.to_dict() == source.config.to_dict()
    # Weights that do not match config.json's sha256 are refused.
    make_policy(5).save_weights(tmp_path / 'model' / WEIGHTS_FILE)
    with pytest.raises(PolicyError, match='sha256'):
        load_compact_policy(tmp_path / 'model')
    with pytest.raises(PolicyError):
        load_compact_policy(tmp_path / 'nowhere')
    config = json.loads((tmp_path / 'model' / CONFIG_FILE).read_text())
    config['architecture']['translation_bins'] = 4
    (tmp_path / 'model' / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(PolicyError, match='translation_bins'):
        load_compact_policy(tmp_path / 'model')


def test_onnx_export_cli_matches_torch(tmp_path):
    import onnxruntime as ort
    from vlac_training.export_policy import main as export_main

    policy = make_policy(6, num_cameras=2)
    model = save_model_dir(policy, tmp_path / 'model')
    assert export_main(['--model', str(model), '--out', str(model)]) == 0
    assert json.loads((model / CONFIG_FILE).read_text())['onnx']['file'] == ONNX_FILE
    session = ort.InferenceSession(str(model / ONNX_FILE), providers=['CPUExecutionProvider'])
    rng = np.random.default_rng(0)
    obs = [PolicyObservation([rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)] * 2,
                             o.state, o.task) for o in observations(3, seed=8)]
    frames, states, tasks = policy._inputs(obs)
    got = session.run(None, {'frames': frames.numpy(), 'state': states.numpy(),
                             'task': tasks.numpy()})[0]
    assert np.abs(got - _outputs(policy, obs)).max() < 1e-4
    # Exported into the model directory, the graph is the ONNX runtime's template (no export
    # at load) and serves the directory's weights.
    served = load_compact_policy(model, runtime='onnx')
    assert served.graph_source == str(model / ONNX_FILE)
    for o in obs:
        logits, value = served._forward(o)
        assert np.abs(np.append(logits, value) - _outputs(policy, [o])[0]).max() < 1e-4
    assert export_main(['--model', str(tmp_path / 'nowhere'), '--out',
                        str(tmp_path / 'out2')]) == 2
    assert not (tmp_path / 'out2').exists()


def test_onnx_runtime_acts_like_torch_and_follows_a_hot_swap(tmp_path):
    """runtime='onnx': same tokens, log-probs and values as torch, before and after new weights."""
    save_model_dir(make_policy(9), tmp_path / 'model')
    torch_policy = load_compact_policy(tmp_path / 'model', seed=3)
    onnx_policy = load_policy('compact', tmp_path / 'model', 'cpu', seed=3, runtime='onnx')
    assert onnx_policy.runtime == 'onnx' and onnx_policy.model_id == torch_policy.model_id
    assert onnx_policy.graph_source == 'exported in this process'  # no policy.onnx there

    def agree(obs):
        for k, o in enumerate(obs):  # sampled and greedy, drawing from equal seeds
            a, b = (p.act(o, deterministic=k % 3 == 0) for p in (torch_policy, onnx_policy))
            np.testing.assert_array_equal(a.tokens, b.tokens)
            assert abs(a.log_prob - b.log_prob) < 1e-3 and abs(a.value - b.value) < 1e-4

    agree(observations(8, seed=10))
    # Hot swap: new weights load into both; the ONNX graph is re-exported from them.
    digest = make_policy(10).save_weights(tmp_path / 'v2.safetensors')
    obs = observations(1, seed=11)[0]
    before = onnx_policy.act(obs, deterministic=True)
    for p in (torch_policy, onnx_policy):
        p.load_weights(tmp_path / 'v2.safetensors', digest)
    agree(observations(8, seed=12))
    assert onnx_policy.act(obs, deterministic=True).value != before.value
    # Refused weights keep the served graph; training calls still run on torch.
    with pytest.raises(PolicyError, match='sha256'):
        onnx_policy.load_weights(tmp_path / 'v2.safetensors', '0' * 64)
    agree(observations(2, seed=13))
    log_prob, _, _ = onnx_policy.evaluate(observations(2, seed=14), [np.zeros(7, np.int64)] * 2)
    assert log_prob.requires_grad
    with pytest.raises(PolicyError, match='runtime'):
        load_compact_policy(tmp_path / 'model', runtime='tensorrt')


# -- data and behaviour cloning on a dataset the test records ---------------------------------
@pytest.fixture(scope='module')
def recorded(tmp_path_factory) -> pathlib.Path:
    record = pytest.importorskip('vlac_sim.record')
    from vlac_sim.scene import CameraSpec

    out = tmp_path_factory.mktemp('bags')
    entries = record.record_dataset(out, ['press_button'], episodes=4, failures=0,
                                    camera=CameraSpec(width=64, height=64, rate_hz=10.0),
                                    log=lambda _: None)
    assert [e['success'] for e in entries] == [True] * 4
    # A copy of the first recording marked as failed (cheaper than a 12 s failing episode).
    failed = out / 'press_button' / 'failed_copy'
    shutil.copytree(out / 'press_button' / 'expert_0000', failed)
    meta = failed / 'metadata.yaml'
    assert "success: 'true'" in meta.read_text()
    meta.write_text(meta.read_text().replace("success: 'true'", "success: 'false'"))
    return out


def test_dataset_derivation_matches_the_recorded_motion(recorded):
    from vlac_models.state import rotation_of
    from vlac_ros.bags import read_messages
    from vlac_training.policy_dataset import load_bag_episode, load_episodes

    bag = recorded / 'press_button' / 'expert_0000'
    episode = load_bag_episode(bag, period=0.1, frame_size=32)
    assert episode.task == 'press the yellow button' and episode.success is True
    assert episode.frames.shape == (len(episode), 1, 32, 32, 3)
    np.testing.assert_allclose(episode.times[1:] - episode.times[:-1], 0.1, atol=1e-6)
    # Poses straight from the bag at the control steps (the recorder stamps them every 0.05 s).
    poses = {}
    origin = None
    for topic, _, msg in read_messages(bag, ['/ee_pose', '/camera/image_raw']):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        origin = stamp if origin is None else min(origin, stamp)
        if topic == '/ee_pose':
            p, q = msg.pose.position, msg.pose.orientation
            poses[stamp] = (np.array([p.x, p.y, p.z]), Rotation.from_quat([q.x, q.y, q.z, q.w]))
    at = {round((s - origin) * 1e-9, 3): v for s, v in poses.items()}
    for k in range(len(episode) - 1):
        (p0, r0), (p1, r1) = at[round(episode.times[k], 3)], at[round(episode.times[k + 1], 3)]
        np.testing.assert_allclose(episode.states[k, :3], p0, atol=1e-6)
        np.testing.assert_allclose(episode.actions[k, :3], p1 - p0, atol=1e-6)
        # The rotation delta applied on the left of the current orientation gives the next one.
        composed = rotation_of(episode.actions[k, 3:6]) * r0
        assert (composed * r1.inv()).magnitude() < 1e-5
        assert np.all(np.abs(episode.actions[k, 3:6]) <= math.pi)
    # press_button: the gripper is commanded closed from the start and stays closed.
    assert set(episode.actions[:, 6].tolist()) == {0.0}
    assert 0.0 <= episode.states[:, 6].min() and episode.states[:, 6].max() <= 1.0
    assert episode.states[0, 6] == pytest.approx(1.0, abs=0.01)  # open at the start
    # Failing episodes are left out unless asked for.
    assert len(load_episodes([recorded], frame_size=32)) == 4
    assert len(load_episodes([recorded], frame_size=32, successful_only=False)) == 5


def test_bc_on_a_tiny_recorded_dataset_lowers_held_out_loss(recorded, tmp_path):
    from vlac_training.train_bc import BCConfig, train_bc

    config = BCConfig(epochs=12, batch_size=16, lr=2e-3, holdout=0.25, threads=1, shift=1,
                      architecture=PolicyConfig(**TINY))
    result = train_bc([recorded], tmp_path / 'model', config, progress=False)
    before, after = result['held_out_before'], result['held_out_metrics']
    assert len(result['held_out']) == 1 and len(result['train']) == 3
    assert after['nll'] < before['nll'] - 1.0
    model = tmp_path / 'model'
    assert {'config.json', 'policy.safetensors', 'model_card.md', 'held_out.json',
            'tensorboard'} <= {p.name for p in model.iterdir()}
    assert any((model / 'tensorboard').iterdir())
    card = (model / 'model_card.md').read_text()
    assert 'press_button' in card and 'nll' in card
    loaded = load_compact_policy(model)
    assert loaded.config.control_period == 0.1
    output = loaded.act(observations(1, size=64)[0], deterministic=True)
    assert output.action.is_finite()
