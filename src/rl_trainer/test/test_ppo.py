"""PPO core: GAE by hand, the clipped objective's gradient, BC, NaN safety, staleness."""

import hashlib

import numpy as np
import pytest
from rl_trainer.ppo import (
    DemoBatch,
    PPOConfig,
    PPOTrainer,
    RolloutBatch,
    clipped_policy_loss,
    compute_gae,
    monte_carlo_returns,
)
from safetensors.torch import load_file, save_file
import torch
from vlac_models.policy.base import (
    ACTION_DIM,
    EefAction,
    Policy,
    PolicyError,
    PolicyObservation,
    PolicyOutput,
)
from vlac_models.state import STATE_DIM

torch.set_num_threads(1)
BINS = 5


class TinyPolicy(torch.nn.Module):
    """A real (small) policy: per-dimension categorical over bins from an MLP on the state."""

    backend = 'tiny'

    def __init__(self, seed: int = 0, hidden: int = 16) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = torch.nn.Sequential(torch.nn.Linear(STATE_DIM, hidden), torch.nn.Tanh())
        self.logits = torch.nn.Linear(hidden, ACTION_DIM * BINS)
        self.value_head = torch.nn.Linear(hidden, 1)
        self.generator = torch.Generator().manual_seed(seed)

    def _forward(self, observations):
        state = torch.as_tensor(np.stack([o.state for o in observations]), dtype=torch.float32)
        h = self.trunk(state)
        log_probs = torch.log_softmax(self.logits(h).view(-1, ACTION_DIM, BINS), dim=-1)
        return log_probs, self.value_head(h).squeeze(-1)

    def evaluate(self, observations, tokens):
        log_probs, value = self._forward(observations)
        index = torch.as_tensor(np.stack(tokens), dtype=torch.int64).unsqueeze(-1)
        log_prob = log_probs.gather(-1, index).squeeze(-1).sum(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1).sum(-1)
        return log_prob, entropy, value

    @torch.no_grad()
    def act(self, observation, deterministic=False):
        log_probs, value = self._forward([observation])
        if deterministic:
            tokens = log_probs[0].argmax(-1)
        else:
            tokens = torch.multinomial(log_probs[0].exp(), 1, generator=self.generator)[:, 0]
        log_prob = float(log_probs[0].gather(-1, tokens[:, None]).sum())
        action = EefAction.from_vector(tokens.numpy() / (BINS - 1))
        return PolicyOutput(action, tokens.numpy().astype(np.int64), log_prob, float(value[0]))

    def tokens_for(self, observation, action):
        return np.clip(np.round(action.as_vector() * (BINS - 1)), 0, BINS - 1).astype(np.int64)

    def trainable_parameters(self):
        return list(self.parameters())

    def value_parameters(self):
        return list(self.value_head.parameters())

    def save_weights(self, path):
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path))
        return hashlib.sha256(open(path, 'rb').read()).hexdigest()

    def load_weights(self, path, sha256=None):
        if sha256 and hashlib.sha256(open(path, 'rb').read()).hexdigest() != sha256:
            raise PolicyError(f'{path}: sha256 mismatch')
        self.load_state_dict(load_file(str(path)))


def obs(state) -> PolicyObservation:
    return PolicyObservation(images=[], state=np.asarray(state, dtype=np.float32), task='t')


def weights(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_bit_identical(before: dict, module: torch.nn.Module) -> None:
    after = module.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


def bandit_rollout(policy: TinyPolicy, n: int, rng: np.random.Generator, version: int = 0
                   ) -> RolloutBatch:
    """One-step episodes; reward 1 when dimension 0 picks bin 3."""
    observations = [obs(rng.normal(size=STATE_DIM)) for _ in range(n)]
    outputs = [policy.act(o) for o in observations]
    return RolloutBatch(
        observations=observations, tokens=[o.tokens for o in outputs],
        rewards=[float(o.tokens[0] == 3) for o in outputs], dones=np.ones(n, bool),
        truncated=np.zeros(n, bool), log_probs=[o.log_prob for o in outputs],
        values=[o.value for o in outputs], policy_versions=np.full(n, version),
        is_intervention=np.zeros(n, bool))


def test_tiny_policy_implements_the_protocol():
    assert isinstance(TinyPolicy(), Policy)


def test_gae_matches_a_hand_computed_example():
    # Three episodes back to back: steps 0-1 end terminal, steps 2-3 end truncated (next
    # value 10 known), step 4 is cut mid-episode (bootstrap 7).
    rewards = [1.0, 2.0, 3.0, 4.0, 5.0]
    values = [0.5, 1.0, 1.5, 2.0, 2.5]
    dones = [False, True, False, False, False]
    truncated = [False, False, False, True, False]
    gamma, lam = 0.9, 0.8
    bootstrap = [0.0, 0.0, 0.0, 10.0, 0.0]
    adv, ret = compute_gae(rewards, values, dones, truncated, 7.0, gamma, lam, bootstrap)
    a1 = 2.0 - 1.0                          # terminal: no next value
    a0 = (1.0 + 0.9 * 1.0 - 0.5) + 0.72 * a1  # = 1.4 + 0.72
    a3 = 4.0 + 0.9 * 10.0 - 2.0             # truncated: bootstrap, trace cut
    a2 = (3.0 + 0.9 * 2.0 - 1.5) + 0.72 * a3
    a4 = 5.0 + 0.9 * 7.0 - 2.5              # cut mid-episode: last_value
    np.testing.assert_allclose(adv, [a0, a1, a2, a3, a4])
    np.testing.assert_allclose(adv, [2.12, 1.0, 11.22, 11.0, 8.8])
    np.testing.assert_allclose(ret, np.array([2.12, 1.0, 11.22, 11.0, 8.8]) + values)

    # A truncated last step bootstraps with last_value; done wins over truncated.
    adv, _ = compute_gae([1.0], [0.5], [False], [True], 3.0, gamma, lam)
    np.testing.assert_allclose(adv, [1.0 + 0.9 * 3.0 - 0.5])
    adv, _ = compute_gae([1.0], [0.5], [True], [True], 3.0, gamma, lam)
    np.testing.assert_allclose(adv, [0.5])
    with pytest.raises(ValueError, match='bootstrap_values'):
        compute_gae(rewards, values, dones, truncated, 7.0, gamma, lam)
    np.testing.assert_allclose(monte_carlo_returns([1, 1, 1], [False, False, True],
                                                   [False] * 3, 0.5), [1.75, 1.5, 1.0])


def test_clipped_objective_gradient_is_zero_outside_the_clip_range_only():
    eps = 0.2
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.9, 1.5, 0.5])
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, 1.0])
    log_prob = ratios.log().clone().requires_grad_(True)
    loss, ratio = clipped_policy_loss(log_prob, torch.zeros(6), advantages, eps)
    loss.backward()
    grad = log_prob.grad
    torch.testing.assert_close(ratio, ratios)
    # Clipped: ratio > 1 + eps with A > 0, ratio < 1 - eps with A < 0: no push further.
    assert grad[0] == 0.0 and grad[1] == 0.0
    # Inside the range the loss pulls the ratio toward the advantage's sign...
    assert grad[2] < 0.0 and grad[3] > 0.0
    # ...and outside it in the other direction the unclipped (pessimistic) branch stays active.
    assert grad[4] > 0.0 and grad[5] < 0.0
    torch.testing.assert_close(grad[2], torch.tensor(-1.1 / 6))


def test_ppo_learns_a_bandit_and_reports_its_statistics():
    policy = TinyPolicy(seed=1)
    trainer = PPOTrainer(policy, PPOConfig(lr=3e-3, minibatch_size=32, epochs=4,
                                           entropy_coef=0.0, target_kl=0.0))
    rng = np.random.default_rng(0)
    probe = [obs(rng.normal(size=STATE_DIM)) for _ in range(64)]

    def good_prob():
        with torch.no_grad():
            log_probs, _ = policy._forward(probe)
        return float(log_probs[:, 0, 3].exp().mean())

    start = good_prob()
    for _ in range(12):
        stats = trainer.update(bandit_rollout(policy, 64, rng, trainer.policy_version))
        assert not stats['skipped'], stats['error']
    assert good_prob() > start + 0.3, (start, good_prob())
    assert trainer.update_count == 12 and trainer.policy_version == 12
    for key in ('losses/policy_loss', 'losses/value_loss', 'losses/entropy', 'losses/approx_kl',
                'losses/clipfrac', 'losses/explained_variance', 'losses/bc_loss',
                'losses/grad_norm', 'train/optimizer_steps', 'train/early_stopped'):
        assert key in stats
    assert stats['train/optimizer_steps'] == 4 * 2


def test_target_kl_stops_the_update_early():
    policy = TinyPolicy(seed=2)
    trainer = PPOTrainer(policy, PPOConfig(lr=0.05, minibatch_size=8, epochs=10,
                                           target_kl=1e-4))
    stats = trainer.update(bandit_rollout(policy, 64, np.random.default_rng(1)))
    assert stats['train/early_stopped'] is True
    assert 1 <= stats['train/optimizer_steps'] < 80


def test_bc_term_alone_makes_the_policy_match_the_demonstrations():
    policy = TinyPolicy(seed=3)
    rng = np.random.default_rng(2)
    states = rng.normal(size=(32, STATE_DIM))
    # The demonstrator's bin per dimension depends on the sign of the first state value.
    tokens = [np.where(s[0] > 0, np.arange(ACTION_DIM) % BINS, (np.arange(ACTION_DIM) + 2)
                       % BINS).astype(np.int64) for s in states]
    demo = DemoBatch([obs(s) for s in states], tokens)
    trainer = PPOTrainer(policy, PPOConfig(lr=0.02, bc_coef=1.0, bc_minibatch_size=32,
                                           epochs=1))
    first = trainer.update(None, demo)['losses/bc_loss']
    for _ in range(150):
        stats = trainer.update(None, demo)
    assert stats['losses/bc_loss'] < 0.05 * first
    with torch.no_grad():
        log_probs, _ = policy._forward(demo.observations)
    np.testing.assert_array_equal(log_probs.argmax(-1).numpy(), np.stack(tokens))


def test_value_warmup_moves_only_the_value_head_before_the_first_update():
    policy = TinyPolicy(seed=4)
    rng = np.random.default_rng(3)
    states = rng.normal(size=(16, STATE_DIM))
    demo = DemoBatch([obs(s) for s in states], [np.zeros(ACTION_DIM, np.int64)] * 16,
                     returns=states[:, 0] * 2.0)
    trainer = PPOTrainer(policy, PPOConfig(lr=0.01, value_warmup_steps=60, minibatch_size=16))
    stats = trainer.update(bandit_rollout(policy, 16, rng), demo)
    assert not stats['skipped'], stats['error']
    assert stats['warmup/steps'] == 60
    assert stats['warmup/value_loss_last'] < 0.5 * stats['warmup/value_loss_first']
    assert trainer.value_warmed_up
    # The PPO epochs after it moved everything; warm-up alone must not touch the policy.
    policy = TinyPolicy(seed=4)
    trunk, logits, head = weights(policy.trunk), weights(policy.logits), weights(policy.value_head)
    trainer = PPOTrainer(policy, PPOConfig(lr=0.01, value_warmup_steps=10))
    assert not trainer.warmup_value(demo)['skipped']
    assert_bit_identical(trunk, policy.trunk)
    assert_bit_identical(logits, policy.logits)
    assert not torch.equal(head['weight'], policy.value_head.weight)
    assert trainer.policy_version == 1


@pytest.mark.parametrize('field', ['rewards', 'log_probs', 'values'])
def test_a_non_finite_input_is_caught_before_it_reaches_the_weights(field):
    policy = TinyPolicy(seed=5)
    trainer = PPOTrainer(policy, PPOConfig(lr=0.01, minibatch_size=8))
    rng = np.random.default_rng(4)
    assert not trainer.update(bandit_rollout(policy, 16, rng))['skipped']  # optimizer state
    before, opt_before = weights(policy), trainer.optimizer.state_dict()['state'][0]
    opt_before = {k: v.clone() for k, v in opt_before.items()}
    batch = bandit_rollout(policy, 16, rng, trainer.policy_version)
    getattr(batch, field)[5] = np.nan if field != 'values' else np.inf
    stats = trainer.update(batch)
    assert stats['skipped'] is True
    assert 'index 5' in stats['error'] and 'non-finite' in stats['error']
    assert_bit_identical(before, policy)
    for key, value in trainer.optimizer.state_dict()['state'][0].items():
        assert torch.equal(value, opt_before[key])
    assert trainer.policy_version == 1 and trainer.update_count == 1


def test_a_non_finite_observation_is_caught_by_the_evaluation_pass():
    policy = TinyPolicy(seed=6)
    trainer = PPOTrainer(policy, PPOConfig(minibatch_size=4))
    rng = np.random.default_rng(5)
    batch = bandit_rollout(policy, 12, rng)
    batch.observations[7] = obs(np.full(STATE_DIM, np.inf))
    before = weights(policy)
    stats = trainer.update(batch)
    assert stats['skipped'] and 'log_prob from policy.evaluate at index 7' in stats['error']
    assert_bit_identical(before, policy)


class NanAfter(TinyPolicy):
    """A policy whose evaluate turns NaN after a number of calls (a diverging model)."""

    def __init__(self, calls: int) -> None:
        super().__init__(seed=7)
        self.calls_left = calls

    def evaluate(self, observations, tokens):
        log_prob, entropy, value = super().evaluate(observations, tokens)
        self.calls_left -= 1
        if self.calls_left < 0:
            value = value * float('nan')
        return log_prob, entropy, value


def test_a_nan_in_the_middle_of_an_update_rolls_every_step_back():
    policy = NanAfter(calls=6)  # 2 no-grad chunks, then 4 steps succeed, the 5th goes NaN
    trainer = PPOTrainer(policy, PPOConfig(lr=0.05, minibatch_size=8, epochs=4))
    before = weights(policy)
    stats = trainer.update(bandit_rollout(policy, 16, np.random.default_rng(6)))
    assert stats['skipped'] and 'weights restored' in stats['error'], stats
    assert_bit_identical(before, policy)
    assert trainer.optimizer.state_dict()['state'] == {}
    assert trainer.policy_version == 0


def test_an_optimizer_step_that_fails_halfway_is_undone():
    policy = TinyPolicy(seed=8)
    trainer = PPOTrainer(policy, PPOConfig(lr=1e39, max_grad_norm=0.0, minibatch_size=8))
    before = weights(policy)
    with pytest.raises(RuntimeError, match='overflow'):  # Adam: lr does not fit a float32
        trainer.update(bandit_rollout(policy, 8, np.random.default_rng(7)))
    assert_bit_identical(before, policy)
    assert trainer.policy_version == 0


def test_weights_that_overflow_in_a_step_are_caught_and_restored():
    policy = TinyPolicy(seed=8)
    huge = float(torch.finfo(torch.float32).max)
    trainer = PPOTrainer(policy, PPOConfig(max_grad_norm=0.0, minibatch_size=4),
                         optimizer=torch.optim.SGD(policy.parameters(), lr=huge))
    before = weights(policy)
    stats = trainer.update(bandit_rollout(policy, 8, np.random.default_rng(7)))
    assert stats['skipped'] and 'non-finite' in stats['error'], stats
    assert_bit_identical(before, policy)


def test_stale_transitions_are_rejected_or_importance_weighted():
    policy = TinyPolicy(seed=9)
    rng = np.random.default_rng(8)
    config = {'max_staleness': 1, 'minibatch_size': 16, 'epochs': 1}
    batch = bandit_rollout(policy, 16, rng)
    batch.policy_versions[:4] = 0  # trainer at version 5: these four are 5 versions old

    trainer = PPOTrainer(policy, PPOConfig(staleness='reject', **config), policy_version=5)
    batch.policy_versions[4:] = 5
    stats = trainer.update(batch)
    assert stats['train/stale'] == 4 and stats['train/stale_rejected'] == 4
    assert stats['train/policy_loss_transitions'] == 12

    trainer = PPOTrainer(policy, PPOConfig(staleness='importance', importance_clip=1.5,
                                           **config), policy_version=5)
    batch.log_probs[:4] -= 3.0  # behaviour much less likely than now: weight truncated
    stats = trainer.update(batch)
    assert stats['train/stale'] == 4 and stats['train/stale_rejected'] == 0
    assert stats['train/policy_loss_transitions'] == 16
    assert stats['train/importance_weight_mean'] == pytest.approx((4 * 1.5 + 12) / 16)

    all_stale = bandit_rollout(policy, 8, rng, version=0)
    trainer = PPOTrainer(policy, PPOConfig(staleness='reject', **config), policy_version=5)
    before = weights(policy)
    stats = trainer.update(all_stale)
    assert stats['skipped'] and 'stale' in stats['error']
    assert_bit_identical(before, policy)


def test_interventions_are_left_out_of_the_policy_loss():
    policy = TinyPolicy(seed=10)
    batch = bandit_rollout(policy, 16, np.random.default_rng(9))
    batch.is_intervention[:6] = True
    trainer = PPOTrainer(policy, PPOConfig(minibatch_size=16, epochs=1))
    stats = trainer.update(batch)
    assert stats['train/policy_loss_transitions'] == 10
    assert stats['charts/intervention_rate'] == pytest.approx(6 / 16)


def test_config_and_batches_name_the_bad_value():
    with pytest.raises(ValueError, match='clip_range 1.5'):
        PPOConfig(clip_range=1.5).validate()
    with pytest.raises(ValueError, match="staleness 'drop'"):
        PPOConfig(staleness='drop').validate()
    with pytest.raises(ValueError, match='last step ends no episode'):
        RolloutBatch([obs(np.zeros(STATE_DIM))], [np.zeros(ACTION_DIM, np.int64)], [0.0],
                     [False], [False], [0.0], [0.0], [0], [False])
    with pytest.raises(ValueError, match='rewards has shape'):
        RolloutBatch([obs(np.zeros(STATE_DIM))], [np.zeros(ACTION_DIM, np.int64)], [0.0, 1.0],
                     [True], [False], [0.0], [0.0], [0], [False])


def test_trainer_state_round_trips():
    policy = TinyPolicy(seed=11)
    trainer = PPOTrainer(policy, PPOConfig(minibatch_size=8))
    trainer.update(bandit_rollout(policy, 16, np.random.default_rng(10)))
    state = trainer.state_dict()
    expected = trainer.rng.permutation(10)
    other = PPOTrainer(TinyPolicy(seed=11), PPOConfig(minibatch_size=8))
    other.load_state_dict(state)
    assert other.policy_version == 1 and other.update_count == 1
    np.testing.assert_array_equal(other.rng.permutation(10), expected)
