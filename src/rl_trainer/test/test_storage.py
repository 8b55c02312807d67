"""Episode store and checkpoints: atomic on disk, keep-last-K, and resume bookkeeping."""

import copy
import hashlib
import json

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from rl_trainer.storage import (
    CheckpointError,
    CheckpointManager,
    EpisodeStore,
    TrainerState,
    episode_arrays,
    load_optimizer_state,
    save_optimizer_state,
)
from safetensors.torch import load_file, save_file
import torch
from vlac_models.policy.base import PolicyError

from vlac_interfaces.msg import EpisodeResult, ProgressReward, Transition

torch.set_num_threads(1)


class LinearPolicy(torch.nn.Module):
    """A real (tiny) policy as far as checkpoints go: safetensors weights, sha256-checked."""

    backend = 'tiny'

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Linear(7, 3)

    def trainable_parameters(self):
        return list(self.parameters())

    def save_weights(self, path):
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path))
        return hashlib.sha256(open(path, 'rb').read()).hexdigest()

    def load_weights(self, path, sha256=None):
        data = open(path, 'rb').read()
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise PolicyError(f'{path}: sha256 mismatch')
        weights = load_file(str(path))
        own = self.state_dict()
        if {k: v.shape for k, v in weights.items()} != {k: v.shape for k, v in own.items()}:
            raise PolicyError(f'{path}: weights do not fit this policy')
        self.load_state_dict(weights)


class WiderPolicy(LinearPolicy):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(7, 5)


class CrashingPolicy(LinearPolicy):
    """Dies halfway through writing its weights (a crash mid-checkpoint)."""

    def save_weights(self, path):
        with open(path, 'wb') as f:
            f.write(b'\x00' * 10)
        raise OSError('disk full')


def train_step(policy, optimizer, seed):
    x = torch.randn(8, 7, generator=torch.Generator().manual_seed(seed))
    optimizer.zero_grad()
    policy.net(x).pow(2).mean().backward()
    optimizer.step()


def assert_same_optimizer_state(a: dict, b: dict) -> None:
    assert a['param_groups'] == b['param_groups']
    assert a['state'].keys() == b['state'].keys()
    for index, state in a['state'].items():
        assert state.keys() == b['state'][index].keys()
        for name, value in state.items():
            assert torch.equal(value, b['state'][index][name]), (index, name)


def stamp(ns: int) -> Time:
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def episode(robot: str, episode_id: str, steps: int = 3, base_ns: int = 10**18):
    transitions = []
    for k in range(steps):
        t = Transition(robot_id=robot, episode_id=episode_id, step=k, log_prob=-1.5 - k,
                       value=0.25 * k, reward=0.1 * k, has_reward=k > 0,
                       done=k == steps - 1, is_intervention=k == 1, policy_version=7,
                       action_tokens=[k, 2 * k, 3], inference_latency=0.01)
        t.observation_stamp = stamp(base_ns + k * 10**8)
        t.action_stamp = stamp(base_ns + k * 10**8 + 10**7)
        transitions.append(t)
    progress = [ProgressReward(task='stack', delta=0.1, stamp_a=stamp(base_ns + k * 10**8),
                               stamp_b=stamp(base_ns + (k + 1) * 10**8), done=k == steps - 1)
                for k in range(steps)]
    result = EpisodeResult(robot_id=robot, episode_id=episode_id, task='stack', success=True,
                           steps=steps, end_time=stamp(base_ns + steps * 10**8))
    return transitions, progress, result


def test_an_episode_round_trips_through_the_store(tmp_path):
    store = EpisodeStore(tmp_path)
    transitions, progress, result = episode('/robot_1', 'ep_000')
    # Out of order on arrival; read back sorted by step.
    key, created = store.save('/robot_1', 'ep_000', transitions[::-1], progress, result)
    assert (key, created) == ('robot_1/ep_000', True)
    assert (tmp_path / 'robot_1' / 'ep_000' / 'metadata.yaml').is_file()
    loaded = store.load(key)
    assert [int(t.step) for t in loaded.transitions] == [0, 1, 2]
    assert loaded.result.task == 'stack' and loaded.result.success
    assert [p.delta for p in loaded.progress] == pytest.approx([0.1] * 3)
    arrays = episode_arrays(loaded)
    assert arrays['log_probs'] == [-1.5, -2.5, -3.5]
    assert arrays['dones'] == [False, False, True]
    assert arrays['is_intervention'] == [False, True, False]
    assert np.isnan(arrays['rewards'][0]) and arrays['rewards'][2] == pytest.approx(0.2)
    assert arrays['observation_stamps_ns'][1] == 10**18 + 10**8
    np.testing.assert_array_equal(arrays['tokens'][2], [2, 4, 3])
    # A re-sent episode is not stored (nor trained) twice.
    assert store.save('/robot_1', 'ep_000', transitions) == (key, False)
    with pytest.raises(ValueError, match='episode_id'):
        store.save('robot_1', '../escape', transitions)


def test_a_crash_mid_write_leaves_the_store_as_it_was(tmp_path):
    store = EpisodeStore(tmp_path)
    first = episode('r1', 'ep_a')
    store.save('r1', 'ep_a', *first)
    transitions, progress, result = episode('r1', 'ep_b')

    def dying():
        yield transitions[0]
        raise RuntimeError('trainer killed while writing')

    with pytest.raises(RuntimeError, match='killed'):
        store.save('r1', 'ep_b', dying(), progress, result)
    assert store.keys() == ['r1/ep_a']
    assert len(store.load('r1/ep_a').transitions) == 3
    with pytest.raises(FileNotFoundError):
        store.load('r1/ep_b')
    # The retry (the episode re-sent) stores it completely.
    assert store.save('r1', 'ep_b', transitions, progress, result) == ('r1/ep_b', True)
    assert len(EpisodeStore(tmp_path).load('r1/ep_b').transitions) == 3


def test_optimizer_state_round_trips_without_pickle(tmp_path):
    policy = LinearPolicy()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3, betas=(0.8, 0.95))
    for seed in range(3):
        train_step(policy, optimizer, seed)
    save_optimizer_state(optimizer, tmp_path)
    structure = json.loads((tmp_path / 'optimizer.json').read_text())  # plain JSON
    assert structure
    restored = load_optimizer_state(tmp_path)
    assert_same_optimizer_state(restored, optimizer.state_dict())
    assert restored['param_groups'][0]['betas'] == (0.8, 0.95)
    fresh = torch.optim.AdamW(LinearPolicy().parameters(), lr=1e-3)
    fresh.load_state_dict(restored)  # fits a new optimizer of the same shape


def load_optimizer_state_clone(optimizer):
    state = optimizer.state_dict()
    return {'param_groups': copy.deepcopy(state['param_groups']),
            'state': {i: {k: v.clone() for k, v in st.items()}
                      for i, st in state['state'].items()}}


def test_checkpoints_restore_weights_optimizer_and_state_and_keep_the_last_k(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    assert manager.latest() is None
    policy = LinearPolicy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    saved = []
    for update in range(1, 5):
        train_step(policy, optimizer, update)
        state = TrainerState(update_count=update, policy_version=update, seed=3,
                             rng={'numpy': np.random.default_rng(update).bit_generator.state},
                             consumed_episodes={f'r1/ep_{update}'})
        manager.save(policy, optimizer, state)
        saved.append(({k: v.clone() for k, v in policy.state_dict().items()},
                      load_optimizer_state_clone(optimizer)))
    assert [p.name for p in manager.paths()] == ['checkpoint_000002', 'checkpoint_000003']
    assert not list(tmp_path.glob('.*'))

    latest = manager.latest()
    assert latest.state.update_count == 4 and latest.manifest['policy_version'] == 4
    other = LinearPolicy(seed=9)
    other_opt = torch.optim.Adam(other.parameters(), lr=1e-2)
    state = manager.restore(latest, other, other_opt)
    for key, value in saved[-1][0].items():
        assert torch.equal(other.state_dict()[key], value)
    assert_same_optimizer_state(other_opt.state_dict(), saved[-1][1])
    assert state.consumed_episodes == {'r1/ep_4'}
    assert state.rng['numpy'] == np.random.default_rng(4).bit_generator.state


def test_a_crash_mid_checkpoint_keeps_the_previous_one(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=3)
    policy = LinearPolicy()
    optimizer = torch.optim.Adam(policy.parameters())
    first = manager.save(policy, optimizer, TrainerState(update_count=1))
    crashing = CrashingPolicy()
    with pytest.raises(OSError, match='disk full'):
        manager.save(crashing, torch.optim.Adam(crashing.parameters()),
                     TrainerState(update_count=2))
    assert manager.paths() == [first] and manager.latest().state.update_count == 1
    assert not list(tmp_path.glob('.tmp-*'))

    # A kill -9 mid-write leaves a temporary folder: never taken for a checkpoint, and
    # cleaned up by the next manager.
    leftover = tmp_path / '.tmp-checkpoint-abc'
    leftover.mkdir()
    (leftover / 'policy.safetensors').write_bytes(b'half')
    assert manager.latest().path == first
    CheckpointManager(tmp_path)
    assert not leftover.exists()


def test_a_corrupt_newest_checkpoint_falls_back_and_restore_is_all_or_nothing(tmp_path):
    manager = CheckpointManager(tmp_path)
    policy = LinearPolicy()
    optimizer = torch.optim.Adam(policy.parameters())
    train_step(policy, optimizer, 0)
    good = manager.save(policy, optimizer, TrainerState(update_count=1))
    train_step(policy, optimizer, 1)
    bad = manager.save(policy, optimizer, TrainerState(update_count=2))
    weights = bad / 'policy.safetensors'
    weights.write_bytes(weights.read_bytes()[:-4] + b'\x00\x00\x00\x00')  # bit rot
    assert manager.latest().path == good
    with pytest.raises(CheckpointError, match='sha256'):
        manager.read(bad)

    # Weights that do not fit: neither the policy nor its optimizer changes.
    wider = WiderPolicy()
    wider_opt = torch.optim.Adam(wider.parameters())
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(CheckpointError, match='do not fit'):
        manager.restore(manager.latest(), wider, wider_opt)
    assert wider_opt.state_dict()['state'] == {}
    assert all(torch.equal(v, before[k]) for k, v in wider.state_dict().items())


def test_resume_loses_no_episode_and_trains_none_twice(tmp_path):
    store = EpisodeStore(tmp_path / 'episodes')
    manager = CheckpointManager(tmp_path / 'checkpoints')
    policy = LinearPolicy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    state = TrainerState()
    for name in ('ep_a', 'ep_b'):
        store.save('r1', name, *episode('r1', name))
    store.save('r2', 'ep_c', *episode('r2', 'ep_c'))

    def train(key):  # what the trainer node does with one episode
        train_step(policy, optimizer, len(state.consumed_episodes))
        state.consumed_episodes.add(key)
        state.update_count += 1

    assert store.pending(state) == ['r1/ep_a', 'r1/ep_b', 'r2/ep_c']
    train('r1/ep_a')
    manager.save(policy, optimizer, state)
    checkpointed = {k: v.clone() for k, v in policy.state_dict().items()}
    train('r1/ep_b')  # trained, then the trainer dies before the next checkpoint
    store.save('r1', 'ep_d', *episode('r1', 'ep_d'))  # persisted, never trained
    del policy, optimizer, state

    # Restart: a fresh process sees only the disk.
    store = EpisodeStore(tmp_path / 'episodes')
    manager = CheckpointManager(tmp_path / 'checkpoints')
    policy = LinearPolicy(seed=5)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    state = manager.restore(manager.latest(), policy, optimizer)
    assert all(torch.equal(policy.state_dict()[k], v) for k, v in checkpointed.items())
    assert state.update_count == 1
    # ep_b's update died with the process, so it is trained again; ep_a is not.
    assert store.pending(state) == ['r1/ep_b', 'r2/ep_c', 'r1/ep_d']
    state.rejected_episodes['r2/ep_c'] = 'non-finite reward'
    for key in store.pending(state):
        train(key)
    manager.save(policy, optimizer, state)
    state = CheckpointManager(tmp_path / 'checkpoints').latest().state
    assert store.pending(state) == []
    assert state.consumed_episodes == {'r1/ep_a', 'r1/ep_b', 'r1/ep_d'}
    assert state.rejected_episodes == {'r2/ep_c': 'non-finite reward'}
