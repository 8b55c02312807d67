"""The compact critic: training, the model directory, ONNX serving, caching, evaluation."""

import hashlib
import json
import pathlib
import shutil

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import String
import torch
from vlac_models.critic import compact
from vlac_models.critic.base import Critic, DoneQuery, PairQuery, load_critic
from vlac_models.critic.compact import CompactCritic, load_torch_model, prepare_frames
from vlac_ros.bags import BagWriter
from vlac_training.critic_dataset import load_bag_trajectory

from vlac_training import evaluate_critic as evaluate
from vlac_training import train_critic as train

SIZE = 64
TASKS = {'right': 'move the red square to the right', 'down': 'move the blue square down'}


def scene(task: str, progress: float, seed: int) -> np.ndarray:
    """Both squares on a grey table; the task's square has moved ``progress`` of its way."""
    frame = np.full((SIZE, SIZE, 3), 90, np.uint8)
    offset = 4 * (seed % 3)
    red_x = offset + int(round((progress if task == 'right' else 0.0) * 36))
    blue_y = offset + int(round((progress if task == 'down' else 0.0) * 36))
    frame[8 + offset:20 + offset, red_x:red_x + 12] = (220, 30, 30)
    frame[blue_y:blue_y + 12, 44:56] = (30, 30, 220)
    return frame


def write_episode(path: pathlib.Path, task: str, seed: int, success: bool, n: int = 16):
    with BagWriter(path, {'task': task, 'instruction': TASKS[task], 'seed': seed,
                          'behaviour': 'expert' if success else 'stalled',
                          'success': str(success).lower()}) as writer:
        writer.write('/task', 1, String(data=TASKS[task]))
        for k in range(n):
            progress = k / (n - 1) if success else min(k, 3) / (n - 1)
            frame = scene(task, progress, seed)
            msg = Image(height=SIZE, width=SIZE, encoding='rgb8', step=3 * SIZE,
                        data=frame.tobytes())
            msg.header.stamp.sec = 50 + k // 10
            msg.header.stamp.nanosec = (k % 10) * 100_000_000
            writer.write('/camera/image_raw', 10 + k * 100_000_000, msg)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp('critic_data')
    for task in TASKS:
        for seed in range(3):
            write_episode(root / task / f'expert_{seed:04d}', task, seed, True)
        write_episode(root / task / 'stalled_0003', task, 3, False)
    return root


@pytest.fixture(scope='module')
def model_dir(dataset, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp('critic_model') / 'compact'
    rc = train.main(['--data', str(dataset), '--out', str(out), '--epochs', '3',
                     '--frame-size', '32', '--holdout', '0.3', '--seed', '1', '--no-progress'])
    assert rc == 0
    return out


def test_train_critic_writes_a_complete_model_directory(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert {'critic.safetensors', 'frame_encoder.onnx', 'pair_head.onnx', 'done_head.onnx',
            'config.json', 'model_card.md', 'held_out.json', 'tensorboard'} <= names
    assert not list(model_dir.parent.glob('.compact.*'))  # the staging folder was renamed
    config = json.loads((model_dir / 'config.json').read_text())
    digest = hashlib.sha256((model_dir / 'critic.safetensors').read_bytes()).hexdigest()
    assert config['weights_sha256'] == digest
    split = json.loads((model_dir / 'held_out.json').read_text())
    assert split['held_out'] and split['train']
    assert not set(split['held_out']) & set(split['train'])
    held_seeds = {pathlib.Path(p).name[-4:] for p in split['held_out']}
    assert not any(pathlib.Path(p).name[-4:] in held_seeds for p in split['train'])
    card = (model_dir / 'model_card.md').read_text()
    assert all(pathlib.Path(p).name in card for p in split['held_out'])
    assert 'success_voc' in card
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(model_dir / 'tensorboard'))
    events.Reload()
    tags = set(events.Tags()['scalars'])
    assert {'losses/train', 'losses/val', 'losses/train_delta', 'metrics/success_voc'} <= tags


def test_training_settings_are_validated():
    with pytest.raises(ValueError, match='holdout'):
        train.TrainConfig(holdout=0.95).validate()
    with pytest.raises(ValueError, match='frame_size'):
        compact.CompactConfig(frame_size=40).validate()
    assert train.main(['--data', '/nonexistent/data', '--out', '/tmp/x', '--epochs', '1']) == 2


def test_load_critic_serves_the_protocol(model_dir):
    critic = load_critic('compact', str(model_dir))
    assert isinstance(critic, Critic)
    digest = hashlib.sha256((model_dir / 'critic.safetensors').read_bytes()).hexdigest()
    assert critic.model_id == f'compact:{digest[:12]}'
    a, b = scene('right', 0.2, 0), scene('right', 0.6, 0)
    deltas = critic.score_pairs([PairQuery(TASKS['right'], a, b), PairQuery(TASKS['right'], b, a),
                                 PairQuery(TASKS['down'], a, a)])
    assert deltas.dtype == np.float32 and deltas.shape == (3,)
    assert np.all(np.abs(deltas) <= 1.0)
    assert deltas[0] == pytest.approx(-deltas[1], abs=1e-6)  # antisymmetric by construction
    assert deltas[2] == 0.0  # a frame against itself
    done = critic.done_probability([DoneQuery(TASKS['right'], a), DoneQuery(TASKS['down'], b)])
    assert done.dtype == np.float32 and done.shape == (2,)
    assert np.all((done >= 0) & (done <= 1))
    assert critic.score_pairs([]).shape == (0,)
    with pytest.raises(ValueError, match='uint8'):
        critic.score_pairs([PairQuery(TASKS['right'], a.astype(np.float32), b)])
    critic.close()


def test_onnx_matches_torch_within_1e_4(model_dir):
    critic = CompactCritic.load(model_dir, stagnation_threshold=0.0, delta_resolution=0.0)
    net = load_torch_model(model_dir)
    rng = np.random.default_rng(0)
    frames = [scene(t, p, s) for t in TASKS for p in (0.0, 0.3, 0.9) for s in (0, 4)]
    frames += [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]
    queries = [PairQuery(TASKS['right' if k % 2 else 'down'], frames[k], frames[-1 - k])
               for k in range(len(frames))]
    onnx_deltas = critic.score_pairs(queries)
    onnx_done = critic.done_probability([DoneQuery(q.task, q.frame_b) for q in queries])
    size = critic.architecture.frame_size
    encoder, pair_head, done_head = net.serving_modules()
    with torch.no_grad():
        emb_a = encoder(torch.from_numpy(prepare_frames([q.frame_a for q in queries], size)))
        emb_b = encoder(torch.from_numpy(prepare_frames([q.frame_b for q in queries], size)))
        task = torch.from_numpy(critic.task_embeddings([q.task for q in queries]))
        torch_deltas = pair_head(emb_a, emb_b, task).numpy()
        torch_done = done_head(emb_b, task).numpy()
    np.testing.assert_allclose(onnx_deltas, torch_deltas, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_done, torch_done, atol=1e-4, rtol=0)
    np.testing.assert_allclose(critic.embed_frames([q.frame_a for q in queries]), emb_a.numpy(),
                               atol=1e-4, rtol=0)


class _CountingSession:
    """Wraps the encoder's ONNX session and counts the frames it is given."""

    def __init__(self, session):
        self.session, self.calls, self.frames = session, 0, 0

    def run(self, outputs, feeds):
        self.calls += 1
        self.frames += len(feeds['frames'])
        return self.session.run(outputs, feeds)


def test_each_new_frame_is_encoded_once(model_dir):
    critic = CompactCritic.load(model_dir)
    counter = _CountingSession(critic._sessions['encoder'])
    critic._sessions['encoder'] = counter
    frames = [scene('right', k / 5, 1) for k in range(6)]
    task = TASKS['right']
    critic.score_pairs([PairQuery(task, frames[k], frames[k + 1]) for k in range(5)])
    assert (counter.calls, counter.frames, critic.frames_encoded) == (1, 6, 6)
    critic.score_pairs([PairQuery(task, frames[k + 1], frames[k]) for k in range(5)])
    critic.score_pairs([PairQuery(TASKS['down'], frames[0], frames[5])])
    critic.done_probability([DoneQuery(task, f.copy()) for f in frames])  # same bytes: hits
    assert counter.frames == 6
    critic.score_pairs([PairQuery(task, frames[5], scene('right', 1.0, 2))])
    assert counter.frames == 7 and counter.calls == 2
    small = CompactCritic.load(model_dir, cache_size=2)
    small.score_pairs([PairQuery(task, frames[k], frames[k + 1]) for k in range(5)])
    assert len(small._cache) == 2 and small.frames_encoded == 6
    small.score_pairs([PairQuery(task, frames[0], frames[1])])  # evicted: encoded again
    assert small.frames_encoded == 8


def test_missing_or_corrupt_checkpoints_are_refused_with_their_path(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        load_critic('compact', str(tmp_path / 'nowhere'))

    def variant(name):
        copy = tmp_path / name
        shutil.copytree(model_dir, copy)
        return copy

    no_onnx = variant('no_onnx')
    (no_onnx / 'frame_encoder.onnx').unlink()
    with pytest.raises(FileNotFoundError, match='frame_encoder.onnx'):
        CompactCritic.load(no_onnx)
    bad_json = variant('bad_json')
    (bad_json / 'config.json').write_text('{not json')
    with pytest.raises(ValueError, match='bad_json'):
        CompactCritic.load(bad_json)
    tampered = variant('tampered')
    weights = (tampered / 'critic.safetensors').read_bytes()
    (tampered / 'critic.safetensors').write_bytes(weights[:100])
    with pytest.raises(ValueError, match='tampered'):
        CompactCritic.load(tampered)
    garbage = variant('garbage')
    (garbage / 'critic.safetensors').write_bytes(b'\x00' * 64)
    config = json.loads((garbage / 'config.json').read_text())
    del config['weights_sha256']
    (garbage / 'config.json').write_text(json.dumps(config))
    with pytest.raises(ValueError, match='safetensors'):
        CompactCritic.load(garbage)
    bad_onnx = variant('bad_onnx')
    (bad_onnx / 'pair_head.onnx').write_bytes(b'not a graph')
    with pytest.raises(ValueError, match='pair_head.onnx'):
        CompactCritic.load(bad_onnx)
    bad_arch = variant('bad_arch')
    config = json.loads((bad_arch / 'config.json').read_text())
    config['architecture']['frame_size'] = 33
    (bad_arch / 'config.json').write_text(json.dumps(config))
    with pytest.raises(ValueError, match='33'):
        CompactCritic.load(bad_arch)
    with pytest.raises(ValueError, match='tpu'):
        CompactCritic.load(model_dir, device='tpu')


def test_evaluate_critic_end_to_end(model_dir, dataset, tmp_path):
    plots, report, summary_file = tmp_path / 'plots', tmp_path / 'eval.txt', tmp_path / 's.json'
    rc = evaluate.main(['--model', str(model_dir), '--backend', 'compact', str(dataset),
                        '--split-file', str(model_dir / 'held_out.json'), '--plots', str(plots),
                        '--report', str(report), '--json', str(summary_file)])
    assert rc == 0
    summary = json.loads(summary_file.read_text())
    split = json.loads((model_dir / 'held_out.json').read_text())
    evaluated = {pathlib.Path(r['path']).resolve() for r in summary['trajectories']}
    assert not evaluated & {pathlib.Path(p).resolve() for p in split['train']}
    assert {pathlib.Path(p).resolve() for p in split['held_out']} <= evaluated
    assert set(summary['by_outcome']) <= {'success', 'failure'}
    assert {'voc', 'vroc', 'voc_f1', 'nr', 'n'} <= set(summary['overall'])
    assert summary['mismatch']['mismatched_pairs'] > 0
    pngs = sorted(plots.glob('*.png'))
    assert len(pngs) == len(summary['trajectories'])
    assert cv2.imread(str(pngs[0])).shape[1] == 1200
    text = report.read_text()
    assert 'VOC-F1' in text and 'mismatched-task check' in text


def test_evaluate_an_image_folder(model_dir, dataset, tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    traj = load_bag_trajectory(dataset / 'right' / 'expert_0000', stride=0.0)
    for k, frame in enumerate(traj.frames):
        cv2.imwrite(str(folder / f'{k:03d}.png'), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / 'task.txt').write_text(TASKS['right'] + '\n')
    critic = CompactCritic.load(model_dir)
    found = evaluate.find_trajectories([folder])
    assert found == [('images', folder)]
    from vlac_training.critic_dataset import load_image_folder

    loaded = load_image_folder(folder, stride=0.2, fps=10.0)
    np.testing.assert_array_equal(loaded.frames, traj.frames[::2])
    summary = evaluate.evaluate(critic, [loaded], log=lambda _: None)
    assert summary['by_outcome']['unknown']['n'] == 1
    assert -1.0 <= summary['overall']['voc'] <= 1.0


def test_the_potential_head_reproduces_the_papers_labels():
    head = compact.PairHead(compact.CompactConfig(pair_head='potential'))
    big_t = 12
    u = -torch.log1p(-torch.arange(big_t, dtype=torch.float64) / big_t)  # v = i / T
    for i in range(big_t - 1):
        for dt in range(1, big_t - i):
            forward = head.squash(u[i + dt] - u[i]).item()
            backward = head.squash(u[i] - u[i + dt]).item()
            assert forward == pytest.approx(dt / (big_t - i))  # label of (i, i + dt)
            assert backward == pytest.approx(-dt / (big_t - i))  # and of (i + dt, i)


@pytest.mark.parametrize('kind', compact.PAIR_HEADS)
def test_both_pair_heads_are_antisymmetric_and_export_to_onnx(kind, tmp_path):
    torch.manual_seed(0)
    config = compact.CompactConfig(frame_size=32, pair_head=kind)
    out = compact.export_model_dir(compact.CompactCriticNet(config), tmp_path / kind)
    assert json.loads((out / 'config.json').read_text())['architecture']['pair_head'] == kind
    critic = CompactCritic.load(out, stagnation_threshold=0.0)
    a, b, c = scene('right', 0.0, 0), scene('right', 0.5, 0), scene('down', 0.7, 1)
    deltas = critic.score_pairs([PairQuery(TASKS['right'], x, y)
                                 for x, y in ((a, b), (b, a), (a, c), (c, a), (b, b))])
    assert deltas[0] == pytest.approx(-deltas[1], abs=1e-6)
    assert deltas[2] == pytest.approx(-deltas[3], abs=1e-6)
    assert deltas[4] == 0.0
    with pytest.raises(ValueError, match='pair_head'):
        compact.CompactConfig(pair_head='cosine').validate()


def test_pairs_judged_irrelevant_score_exactly_zero():
    torch.manual_seed(1)
    config = compact.CompactConfig(frame_size=32, relevance_cutoff=0.5)
    head = compact.PairHead(config)
    emb_a, emb_b = torch.randn(64, config.embed_dim), torch.randn(64, config.embed_dim)
    task = torch.nn.functional.normalize(torch.randn(64, config.text_dim), dim=1)
    with torch.no_grad():
        raw, logit = head.raw_and_relevance(emb_a, emb_b, task)
        delta = head(emb_a, emb_b, task)
    relevant = torch.sigmoid(logit) >= 0.5
    assert 0 < relevant.sum() < 64  # both cases occur with random weights
    assert torch.all(delta[~relevant] == 0.0)
    torch.testing.assert_close(delta[relevant], torch.tanh(raw[relevant]))
    # Model directories written before the cutoff existed keep serving without it.
    old = compact.CompactConfig().to_dict()
    del old['relevance_cutoff']
    assert compact.CompactConfig.from_dict(old).relevance_cutoff == 0.0
    with pytest.raises(ValueError, match='relevance_cutoff'):
        compact.CompactConfig(relevance_cutoff=1.0).validate()


def test_deltas_are_served_in_whole_percent(model_dir):
    exact = CompactCritic.load(model_dir, stagnation_threshold=0.0, delta_resolution=0.0)
    served = CompactCritic.load(model_dir, stagnation_threshold=0.0)
    frames = [scene('right', p, 0) for p in (0.0, 0.1, 0.5, 1.0)] + [scene('down', 0.4, 2)]
    queries = [PairQuery(TASKS[t], a, b) for t in TASKS for a in frames for b in frames]
    raw, deltas = exact.score_pairs(queries), served.score_pairs(queries)
    np.testing.assert_allclose(deltas, np.round(raw * 100) / 100, atol=1e-6)
    np.testing.assert_allclose(deltas * 100, np.round(deltas * 100), atol=1e-4)
    rounded = compact.quantize_deltas(np.array([np.nan, 0.004, -0.016]))
    assert np.isnan(rounded[0]) and rounded.dtype == np.float32
    np.testing.assert_allclose(rounded[1:], [0.0, -0.02])
    with pytest.raises(ValueError, match='delta_resolution'):
        CompactCritic.load(model_dir, delta_resolution=-0.1)


def test_a_reference_is_refused_not_ignored(model_dir):
    """The compact critic has no in-context mode: a query with a reference raises."""
    from vlac_models.critic.base import NoInContextMode, QueryShape

    critic = CompactCritic.load(model_dir)
    frame = np.zeros((32, 32, 3), np.uint8)
    assert not critic.in_context and critic.pair_shape(PairQuery('t', frame, frame)) == \
        QueryShape(2)
    with pytest.raises(NoInContextMode, match='no in-context mode'):
        critic.score_pairs([PairQuery('t', frame, frame, (frame, frame), frame)])
    with pytest.raises(NoInContextMode):
        critic.done_probability([DoneQuery('t', frame, (frame, frame))])
