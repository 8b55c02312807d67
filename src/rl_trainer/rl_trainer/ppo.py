"""PPO for any ``vlac_models.policy.base.Policy``, readable top to bottom (ROS-free).

The trainer only talks to the policy through ``evaluate(observations, tokens)``, which returns
differentiable ``(log_prob, entropy, value)`` of shape (B,), and ``trainable_parameters()``.
One call of ``PPOTrainer.update`` is one policy improvement step on a batch of finished
episodes (a ``RolloutBatch``), optionally with a demonstration/intervention buffer
(``DemoBatch``) whose behaviour-cloning NLL is added to the loss: the paper's offline
demonstration replay.

What happens in ``update`` (in this order):

1. Input checks: rewards, recorded log-probs and values must be finite. A NaN/inf anywhere
   skips the whole update with ``stats['error']`` naming the field and index.
2. A snapshot of the weights and optimizer state is taken (on CPU). If anything later turns
   non-finite (evaluate outputs, advantages, a loss, a gradient, a weight after a step), the
   snapshot is restored, so the weights are bit-identical to before the call, and the update
   is reported as skipped with the error. Any other exception (e.g. an optimizer step that
   overflows halfway) also restores the snapshot, then propagates.
3. Value warm-up, once, before the first PPO update (``value_warmup_steps``): the value head
   is regressed on the Monte Carlo returns of the demonstrations (or of the first rollout when
   no demonstration returns are given), to cut the initial advantage variance (paper: "value
   head lightly pretrained on demonstrations and early exploration"). If the policy offers an
   optional ``value_parameters()`` method, only those parameters move during warm-up.
4. One no-grad pass with the current weights gives the *proximal* log-probs and values. GAE
   runs on the current value estimates (``recompute_values``) or on the recorded ones.
5. Staleness: a transition collected by weights ``policy_version - s`` has staleness ``s``.
   Transitions with ``0 <= s <= max_staleness`` use the standard clipped ratio against their
   recorded (behaviour) log-prob. Older ones (or a version from the future, i.e. unknown
   provenance) are either dropped from the losses (``staleness='reject'``) or kept with the
   decoupled PPO objective: the ratio is taken against the proximal policy and the term is
   weighted by the truncated importance ratio ``min(pi_prox / pi_behaviour, importance_clip)``
   (``staleness='importance'``).
6. Interventions (``is_intervention``) never enter the policy-gradient term: their action was
   the operator's, so the acting policy's log-prob does not describe it. They still provide
   value targets, and belong in the demonstration buffer for the BC term.
7. ``epochs`` passes over shuffled minibatches: loss = clipped policy loss
   - ``entropy_coef`` * entropy + ``value_coef`` * value loss + ``bc_coef`` * BC NLL. The
   approximate KL to the proximal policy is checked before each optimizer step; above
   ``target_kl`` the update stops early (the first minibatch always steps: its KL is 0).
8. ``update_count`` and ``policy_version`` are incremented when the weights changed.

Statistics are named like cleanrl's: ``losses/policy_loss``, ``losses/value_loss``,
``losses/entropy``, ``losses/approx_kl``, ``losses/clipfrac``, ``losses/explained_variance``,
``losses/bc_loss``, ``losses/grad_norm``, plus ``train/*`` counters, ``skipped`` and ``error``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
import math
from typing import Any, Sequence

import numpy as np
import torch
from vlac_models.config import doc
from vlac_models.policy.base import Policy, PolicyObservation

STALENESS_MODES = ('reject', 'importance')


@dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters of the PPO trainer (cleanrl naming where one exists)."""

    gamma: float = field(default=0.99, metadata=doc('discount factor per control step'))
    gae_lambda: float = field(default=0.95, metadata=doc('GAE lambda'))
    clip_range: float = field(default=0.2, metadata=doc(
        'PPO ratio clip epsilon: the ratio is clipped to [1 - eps, 1 + eps]'))
    value_clip: float = field(default=0.0, metadata=doc(
        'clip of the value change per update around the pre-update value, in return units; '
        '0 disables value clipping'))
    value_coef: float = field(default=0.5, metadata=doc('weight of the value loss'))
    entropy_coef: float = field(default=0.0, metadata=doc('weight of the entropy bonus'))
    normalize_advantages: bool = field(default=True, metadata=doc(
        'normalise advantages to zero mean, unit std over the transitions in the policy loss'))
    max_grad_norm: float = field(default=0.5, metadata=doc(
        'global gradient-norm clip; 0 disables clipping (the norm is still checked and logged)'))
    epochs: int = field(default=4, metadata=doc('passes over the rollout per update'))
    minibatch_size: int = field(default=64, metadata=doc('transitions per gradient step'))
    target_kl: float = field(default=0.0, metadata=doc(
        'stop the update early once the approximate KL to the pre-update policy exceeds '
        'this, nats; 0 disables early stopping'))
    lr: float = field(default=3e-4, metadata=doc('Adam learning rate (default optimizer)'))
    adam_eps: float = field(default=1e-5, metadata=doc('Adam epsilon (default optimizer)'))
    bc_coef: float = field(default=0.0, metadata=doc(
        'weight of the behaviour-cloning NLL on the demonstration/intervention buffer '
        '(offline demonstration replay); 0 disables it'))
    bc_minibatch_size: int = field(default=64, metadata=doc(
        'demonstration transitions sampled per gradient step for the BC term'))
    value_warmup_steps: int = field(default=0, metadata=doc(
        'gradient steps of value-only regression on demonstration returns before the first '
        'PPO update; 0 disables the warm-up'))
    recompute_values: bool = field(default=True, metadata=doc(
        'GAE uses the current value head (one no-grad pass per update) instead of the values '
        'recorded by the acting policy, which may be several versions old'))
    recompute_log_probs: bool = field(default=False, metadata=doc(
        "use the learner's own log-probs at the start of the update as the old log-probs of "
        'every transition (actions sampled by a different engine, paper: ratios 0.4-1.8)'))
    max_staleness: int = field(default=4, metadata=doc(
        'policy versions a transition may lag the current weights before it counts as stale'))
    staleness: str = field(default='importance', metadata=doc(
        "stale transitions: 'reject' (left out of the losses) or 'importance' (decoupled PPO "
        'with a truncated importance weight)'))
    importance_clip: float = field(default=2.0, metadata=doc(
        "truncation of pi_prox / pi_behaviour for stale transitions ('importance' mode)"))
    seed: int = field(default=0, metadata=doc('seed of the minibatch shuffling generator'))

    def validate(self) -> 'PPOConfig':
        """Raise ValueError naming the bad value; return self."""
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f'gamma {self.gamma} outside [0, 1]')
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f'gae_lambda {self.gae_lambda} outside [0, 1]')
        if not 0.0 < self.clip_range < 1.0:
            raise ValueError(f'clip_range {self.clip_range} outside (0, 1)')
        for name in ('value_clip', 'value_coef', 'entropy_coef', 'max_grad_norm', 'target_kl',
                     'bc_coef'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f'{name} {value} must be a finite number >= 0')
        if not (math.isfinite(self.lr) and self.lr > 0.0):
            raise ValueError(f'lr {self.lr} must be > 0')
        if not self.adam_eps > 0.0:
            raise ValueError(f'adam_eps {self.adam_eps} must be > 0')
        for name in ('epochs', 'minibatch_size', 'bc_minibatch_size'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} {getattr(self, name)} must be >= 1')
        if self.value_warmup_steps < 0:
            raise ValueError(f'value_warmup_steps {self.value_warmup_steps} must be >= 0')
        if self.max_staleness < 0:
            raise ValueError(f'max_staleness {self.max_staleness} must be >= 0')
        if self.staleness not in STALENESS_MODES:
            raise ValueError(f'staleness {self.staleness!r} must be one of {STALENESS_MODES}')
        if not self.importance_clip >= 1.0:
            raise ValueError(f'importance_clip {self.importance_clip} must be >= 1')
        return self


def compute_gae(rewards: Sequence[float], values: Sequence[float], dones: Sequence[bool],
                truncated: Sequence[bool], last_value: float, gamma: float, lam: float,
                bootstrap_values: Sequence[float] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over one time axis; return (advantages, returns).

    All arrays have shape (T,) and may hold several episodes back to back; ``values[t]`` is
    V(s_t). Step t ends an episode when ``dones[t]`` (terminal: the task is over, nothing
    follows, V(s_{t+1}) = 0) or ``truncated[t]`` (time limit / operator stop: the state is not
    terminal, so the return is bootstrapped with V(s_{t+1})). Either way no advantage flows
    from the next episode into this one. ``dones`` wins when both are set.

    V(s_{t+1}) is ``values[t+1]`` inside an episode. At a truncated step it is
    ``bootstrap_values[t]`` when given, else ``last_value`` if t is the final step (a
    truncated step inside the arrays without ``bootstrap_values`` is a ValueError). A final
    step that ends no episode (rollout cut mid-episode) also bootstraps with ``last_value``.

        delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_t) - V(s_t)
        A_t = delta_t + gamma * lam * (1 - end_t) * A_{t+1},    returns_t = A_t + V(s_t)
    """
    r = np.asarray(rewards, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    done = np.asarray(dones, dtype=bool)
    trunc = np.asarray(truncated, dtype=bool) & ~done
    n = len(r)
    if not (v.shape == done.shape == trunc.shape == r.shape == (n,)):
        raise ValueError(f'rewards {r.shape}, values {v.shape}, dones {done.shape} and '
                         f'truncated {trunc.shape} must all have shape ({n},)')
    boot = None if bootstrap_values is None else np.asarray(bootstrap_values, np.float64)
    if boot is not None and boot.shape != (n,):
        raise ValueError(f'bootstrap_values shape {boot.shape} != ({n},)')
    advantages = np.zeros(n, dtype=np.float64)
    next_advantage = 0.0
    for t in reversed(range(n)):
        if done[t]:
            next_value, continues = 0.0, 0.0
        elif trunc[t]:
            if boot is not None:
                next_value = boot[t]
            elif t == n - 1:
                next_value = float(last_value)
            else:
                raise ValueError(f'step {t} is truncated inside the arrays: pass '
                                 'bootstrap_values with V of the observation after it')
            continues = 0.0
        else:
            next_value = float(last_value) if t == n - 1 else v[t + 1]
            continues = 1.0
        delta = r[t] + gamma * next_value - v[t]
        next_advantage = delta + gamma * lam * continues * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + v


@dataclass
class RolloutBatch:
    """Finished episodes back to back, one entry per control step (all arrays shape (N,)).

    Each episode's last step has ``dones`` (terminal) or ``truncated`` set.
    ``bootstrap_observations`` maps the index of a truncated step to the observation that
    followed it, when known; otherwise V(s_{t+1}) at a truncated step is approximated by
    V(s_t) (one control step apart).
    """

    observations: list[PolicyObservation]
    tokens: list[np.ndarray]
    rewards: np.ndarray
    dones: np.ndarray
    truncated: np.ndarray
    log_probs: np.ndarray
    """log pi_behaviour(tokens | observation) recorded by the acting policy, nats."""
    values: np.ndarray
    """V(observation) recorded by the acting policy."""
    policy_versions: np.ndarray
    is_intervention: np.ndarray
    bootstrap_observations: dict[int, PolicyObservation] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.observations)

    def __post_init__(self) -> None:
        self.rewards = np.asarray(self.rewards, dtype=np.float64)
        self.dones = np.asarray(self.dones, dtype=bool)
        self.truncated = np.asarray(self.truncated, dtype=bool)
        self.log_probs = np.asarray(self.log_probs, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float64)
        self.policy_versions = np.asarray(self.policy_versions, dtype=np.int64)
        self.is_intervention = np.asarray(self.is_intervention, dtype=bool)
        n = len(self.observations)
        for name in ('rewards', 'dones', 'truncated', 'log_probs', 'values',
                     'policy_versions', 'is_intervention'):
            if getattr(self, name).shape != (n,):
                raise ValueError(f'{name} has shape {getattr(self, name).shape}, expected '
                                 f'({n},) like observations')
        if len(self.tokens) != n:
            raise ValueError(f'{len(self.tokens)} token arrays for {n} observations')
        if n == 0:
            raise ValueError('a rollout batch needs at least one transition')
        if not (self.dones[-1] or self.truncated[-1]):
            raise ValueError('the last step ends no episode: set done or truncated on it')
        for index in self.bootstrap_observations:
            if not (0 <= index < n and self.truncated[index] and not self.dones[index]):
                raise ValueError(f'bootstrap observation for step {index}, which is not a '
                                 'truncated step')

    @classmethod
    def concatenate(cls, batches: Sequence['RolloutBatch']) -> 'RolloutBatch':
        """Put several batches (e.g. one per episode) back to back."""
        if not batches:
            raise ValueError('nothing to concatenate')
        offsets = np.cumsum([0] + [len(b) for b in batches])[:-1]
        return cls(
            observations=[o for b in batches for o in b.observations],
            tokens=[t for b in batches for t in b.tokens],
            **{name: np.concatenate([getattr(b, name) for b in batches])
               for name in ('rewards', 'dones', 'truncated', 'log_probs', 'values',
                            'policy_versions', 'is_intervention')},
            bootstrap_observations={
                int(off) + i: o for off, b in zip(offsets, batches, strict=True)
                for i, o in b.bootstrap_observations.items()})


@dataclass
class DemoBatch:
    """Demonstrations and interventions for the BC term (and the value warm-up).

    ``returns`` (shape (N,)) are the discounted returns-to-go of each step (e.g.
    ``monte_carlo_returns``); only the value warm-up needs them.
    """

    observations: list[PolicyObservation]
    tokens: list[np.ndarray]
    returns: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.observations)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.observations):
            raise ValueError(f'{len(self.tokens)} token arrays for '
                             f'{len(self.observations)} observations')
        if self.returns is not None:
            self.returns = np.asarray(self.returns, dtype=np.float64)
            if self.returns.shape != (len(self.observations),):
                raise ValueError(f'returns shape {self.returns.shape} != '
                                 f'({len(self.observations)},)')


def monte_carlo_returns(rewards: Sequence[float], dones: Sequence[bool],
                        truncated: Sequence[bool], gamma: float) -> np.ndarray:
    """Discounted reward-to-go per step; episodes end at done or truncated (no bootstrap)."""
    zeros = np.zeros(len(rewards))
    _, returns = compute_gae(rewards, zeros, dones, truncated, 0.0, gamma, 1.0,
                             bootstrap_values=zeros)
    return returns


def clipped_policy_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor,
                        advantages: torch.Tensor, clip_range: float,
                        weights: torch.Tensor | None = None, mask: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (to minimise) and the ratio; all tensors shape (B,).

        ratio = exp(log_prob - old_log_prob)
        loss = mean_masked(weights * max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))

    The gradient is zero where the clipped branch is active, i.e. ratio > 1 + eps with A > 0
    or ratio < 1 - eps with A < 0: the update cannot push the ratio further that way.
    ``weights`` (detached) are truncated importance weights, ``mask`` selects the steps in
    the loss (the mean is over the selected steps).
    """
    ratio = (log_prob - old_log_prob).exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    per_step = torch.max(unclipped, clipped)
    if weights is not None:
        per_step = per_step * weights
    if mask is None:
        return per_step.mean(), ratio
    return (per_step * mask).sum() / mask.sum().clamp(min=1.0), ratio


def clipped_value_loss(value: torch.Tensor, old_value: torch.Tensor, target: torch.Tensor,
                       value_clip: float) -> torch.Tensor:
    """0.5 * mean squared error to the returns, pessimistically clipped when value_clip > 0."""
    loss = (value - target) ** 2
    if value_clip > 0.0:
        clipped = old_value + (value - old_value).clamp(-value_clip, value_clip)
        loss = torch.max(loss, (clipped - target) ** 2)
    return 0.5 * loss.mean()


class NonFiniteError(RuntimeError):
    """A NaN/inf was found in a batch, a loss, a gradient or a weight."""


def _check_finite(name: str, values: np.ndarray | torch.Tensor) -> None:
    array = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
    bad = np.flatnonzero(~np.isfinite(np.asarray(array, dtype=np.float64)))
    if bad.size:
        raise NonFiniteError(f'non-finite {name} at index {int(bad[0])} '
                             f'({bad.size} of {array.size}): {array.flat[bad[0]]}')


def _explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    var = float(np.var(target))
    return float('nan') if var == 0.0 else 1.0 - float(np.var(target - predicted)) / var


def _to_cpu(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().to('cpu', copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return copy.deepcopy(value)


@dataclass
class _Prepared:
    """What one update trains on (all numpy arrays over the rollout, shape (N,))."""

    old_log_probs: np.ndarray
    prox_log_probs: np.ndarray
    weights: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    gae_values: np.ndarray
    in_policy_loss: np.ndarray
    in_value_loss: np.ndarray
    stale: np.ndarray


class PPOTrainer:
    """Clipped PPO with GAE, entropy bonus, BC replay, value warm-up and staleness handling.

    ``policy_version`` is the version of the current weights (incremented whenever an update
    changes them); ``update_count`` counts updates that changed the weights. Both, the
    warm-up flag and the shuffling generator are in ``state_dict()`` for checkpoints, with
    the optimizer (``trainer.optimizer.state_dict()``).
    """

    def __init__(self, policy: Policy, config: PPOConfig | None = None,
                 optimizer: torch.optim.Optimizer | None = None,
                 policy_version: int = 0) -> None:
        self.policy = policy
        self.config = (config or PPOConfig()).validate()
        self.parameters = [p for p in policy.trainable_parameters() if p.requires_grad]
        if not self.parameters:
            raise ValueError('the policy has no trainable parameters')
        self.optimizer = optimizer or torch.optim.Adam(
            self.parameters, lr=self.config.lr, eps=self.config.adam_eps)
        self.policy_version = int(policy_version)
        self.update_count = 0
        self.value_warmed_up = self.config.value_warmup_steps == 0
        self.seed = self.config.seed
        self.rng = np.random.default_rng(self.config.seed)
        value_parameters = getattr(policy, 'value_parameters', None)
        self._value_ids = ({id(p) for p in value_parameters()} if callable(value_parameters)
                           else None)

    # ----------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict:
        """JSON-able trainer state (the optimizer's is separate: ``optimizer.state_dict()``)."""
        return {'update_count': self.update_count, 'policy_version': self.policy_version,
                'value_warmed_up': self.value_warmed_up, 'seed': self.seed,
                'rng': {'numpy': self.rng.bit_generator.state}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (after a restart)."""
        self.update_count = int(state['update_count'])
        self.policy_version = int(state['policy_version'])
        self.value_warmed_up = bool(state['value_warmed_up'])
        self.seed = int(state['seed'])
        self.rng = np.random.default_rng(self.seed)
        numpy_state = (state.get('rng') or {}).get('numpy')
        if numpy_state:
            self.rng.bit_generator.state = numpy_state

    # ----------------------------------------------------------------- helpers
    @property
    def device(self) -> torch.device:
        """Device of the trainable weights (batches are moved there)."""
        return self.parameters[0].device

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values), dtype=torch.float32, device=self.device)

    def _evaluate(self, observations: Sequence[PolicyObservation],
                  tokens: Sequence[np.ndarray]) -> tuple[torch.Tensor, ...]:
        log_prob, entropy, value = self.policy.evaluate(observations, tokens)
        for name, out in (('log_prob', log_prob), ('entropy', entropy), ('value', value)):
            if tuple(out.shape) != (len(observations),):
                raise ValueError(f'policy.evaluate returned {name} of shape '
                                 f'{tuple(out.shape)}, expected ({len(observations)},)')
        return log_prob, entropy, value.float()

    @torch.no_grad()
    def _evaluate_all(self, observations: Sequence[PolicyObservation],
                      tokens: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """log-probs and values of the current weights, in minibatch-sized chunks."""
        log_probs, values = [], []
        size = self.config.minibatch_size
        for start in range(0, len(observations), size):
            lp, _, v = self._evaluate(observations[start:start + size],
                                      tokens[start:start + size])
            log_probs.append(lp.double().cpu().numpy())
            values.append(v.double().cpu().numpy())
        return np.concatenate(log_probs), np.concatenate(values)

    def _minibatches(self, indices: np.ndarray, size: int) -> list[np.ndarray]:
        shuffled = self.rng.permutation(indices)
        return [shuffled[i:i + size] for i in range(0, len(shuffled), size)]

    def _snapshot(self) -> tuple[list[torch.Tensor], dict]:
        return ([p.detach().to('cpu', copy=True) for p in self.parameters],
                _to_cpu(self.optimizer.state_dict()))

    @torch.no_grad()
    def _restore(self, snapshot: tuple[list[torch.Tensor], dict]) -> None:
        weights, optimizer_state = snapshot
        for p, saved in zip(self.parameters, weights, strict=True):
            p.copy_(saved)
        self.optimizer.load_state_dict(optimizer_state)

    def _step(self, loss: torch.Tensor, only: set[int] | None = None) -> float:
        """Backward, check, clip, step; return the gradient norm (before clipping)."""
        _check_finite('loss', loss.detach().reshape(1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if only is not None:
            for p in self.parameters:
                if id(p) not in only:
                    p.grad = None
        with_grad = [p for p in self.parameters if p.grad is not None]
        max_norm = self.config.max_grad_norm or float('inf')
        norm = float(torch.nn.utils.clip_grad_norm_(with_grad, max_norm)) if with_grad else 0.0
        if not math.isfinite(norm):
            raise NonFiniteError(f'non-finite gradient (norm {norm})')
        self.optimizer.step()
        with torch.no_grad():
            for i, p in enumerate(self.parameters):
                if not bool(torch.isfinite(p).all()):
                    raise NonFiniteError(f'weight tensor {i} became non-finite after a step')
        return norm

    # ----------------------------------------------------------------- value warm-up
    def warmup_value(self, batch: DemoBatch, steps: int | None = None) -> dict:
        """Regress the value head on ``batch.returns`` for ``steps`` gradient steps.

        Default ``steps`` is ``config.value_warmup_steps``. Only the policy's optional
        ``value_parameters()`` move when it has them. On a non-finite value the weights are
        restored and the stats carry the error. Counts as a weight change (version + 1).
        """
        if batch.returns is None:
            raise ValueError('value warm-up needs returns in the demonstration batch')
        stats = {'skipped': False, 'error': ''}
        snapshot = self._snapshot()
        try:
            _check_finite('demonstration returns', batch.returns)
            stats.update(self._warmup(batch, self.config.value_warmup_steps
                                      if steps is None else steps))
        except NonFiniteError as error:
            self._restore(snapshot)
            return {'skipped': True, 'error': f'value warm-up: {error}'}
        except BaseException:
            self._restore(snapshot)
            raise
        if stats['warmup/steps']:
            self.policy_version += 1
        self.value_warmed_up = True
        return stats

    def _warmup(self, batch: DemoBatch, steps: int) -> dict:
        all_indices = np.arange(len(batch))
        losses, done = [], 0
        while done < steps and len(batch):
            for idx in self._minibatches(all_indices, self.config.minibatch_size):
                if done >= steps:
                    break
                _, _, value = self._evaluate([batch.observations[i] for i in idx],
                                             [batch.tokens[i] for i in idx])
                _check_finite('value (warm-up)', value.detach())
                loss = 0.5 * ((value - self._tensor(batch.returns[idx])) ** 2).mean()
                self._step(loss, only=self._value_ids)
                losses.append(float(loss.detach()))
                done += 1
        return {'warmup/steps': done,
                'warmup/value_loss_first': losses[0] if losses else float('nan'),
                'warmup/value_loss_last': losses[-1] if losses else float('nan')}

    # ----------------------------------------------------------------- PPO update
    def _prepare(self, rollout: RolloutBatch) -> _Prepared:
        """No-grad pass, staleness masks, GAE. Raises NonFiniteError."""
        cfg = self.config
        prox_log_probs, current_values = self._evaluate_all(rollout.observations,
                                                            rollout.tokens)
        _check_finite('log_prob from policy.evaluate', prox_log_probs)
        _check_finite('value from policy.evaluate', current_values)
        gae_values = current_values if cfg.recompute_values else rollout.values
        bootstrap = gae_values.copy()  # V(s_{t+1}) ~ V(s_t) where the next one is unknown
        if rollout.bootstrap_observations:
            steps = sorted(rollout.bootstrap_observations)
            observations = [rollout.bootstrap_observations[i] for i in steps]
            # The token argument is irrelevant for the value; reuse the step's own tokens.
            _, boot_values = self._evaluate_all(observations, [rollout.tokens[i]
                                                               for i in steps])
            _check_finite('bootstrap value from policy.evaluate', boot_values)
            bootstrap[steps] = boot_values
        advantages, returns = compute_gae(rollout.rewards, gae_values, rollout.dones,
                                          rollout.truncated, 0.0, cfg.gamma, cfg.gae_lambda,
                                          bootstrap_values=bootstrap)
        _check_finite('advantage', advantages)

        lag = self.policy_version - rollout.policy_versions
        stale = (lag < 0) | (lag > cfg.max_staleness)
        usable = ~stale if cfg.staleness == 'reject' else np.ones(len(rollout), bool)
        old_log_probs = rollout.log_probs.copy()
        weights = np.ones(len(rollout))
        if cfg.recompute_log_probs:
            old_log_probs = prox_log_probs.copy()
        elif cfg.staleness == 'importance' and stale.any():
            old_log_probs[stale] = prox_log_probs[stale]
            weights[stale] = np.minimum(
                np.exp(np.clip(prox_log_probs[stale] - rollout.log_probs[stale], -50.0, 50.0)),
                cfg.importance_clip)
        in_policy_loss = usable & ~rollout.is_intervention
        if cfg.normalize_advantages and in_policy_loss.sum() > 1:
            selected = advantages[in_policy_loss]
            advantages = (advantages - selected.mean()) / (selected.std() + 1e-8)
        return _Prepared(old_log_probs, prox_log_probs, weights, advantages, returns,
                         gae_values, in_policy_loss, usable, stale)

    def _bc_loss(self, demo: DemoBatch) -> torch.Tensor:
        size = min(self.config.bc_minibatch_size, len(demo))
        idx = self.rng.choice(len(demo), size=size, replace=False)
        log_prob, _, _ = self._evaluate([demo.observations[i] for i in idx],
                                        [demo.tokens[i] for i in idx])
        _check_finite('log_prob (demonstrations)', log_prob.detach())
        return -log_prob.mean()

    def update(self, rollout: RolloutBatch | None, demo: DemoBatch | None = None) -> dict:
        """One PPO update on ``rollout`` (plus BC on ``demo``); return statistics.

        ``rollout=None`` with a demonstration batch runs BC alone (offline demonstration
        replay before any robot episode). A non-finite input or intermediate skips the
        update, leaves weights and optimizer state exactly as they were and sets
        ``stats['skipped']`` and ``stats['error']``.
        """
        cfg = self.config
        if rollout is None and (demo is None or len(demo) == 0 or cfg.bc_coef == 0.0):
            raise ValueError('nothing to train on: no rollout and no BC term '
                             '(demonstrations with bc_coef > 0)')
        use_bc = demo is not None and len(demo) > 0 and cfg.bc_coef > 0.0
        try:  # cheap checks first: nothing has been touched yet
            if rollout is not None:
                _check_finite('reward', rollout.rewards)
                _check_finite('recorded log_prob', rollout.log_probs)
                _check_finite('recorded value', rollout.values)
            if demo is not None and demo.returns is not None:
                _check_finite('demonstration returns', demo.returns)
        except NonFiniteError as error:
            return {'skipped': True, 'error': str(error)}

        snapshot, warmed_up = self._snapshot(), self.value_warmed_up
        try:
            stats = self._update(rollout, demo, use_bc)
        except NonFiniteError as error:
            self._restore(snapshot)
            self.value_warmed_up = warmed_up
            return {'skipped': True, 'error': f'{error}; update skipped, weights restored'}
        except BaseException:  # e.g. an optimizer step that overflowed halfway: undo, re-raise
            self._restore(snapshot)
            self.value_warmed_up = warmed_up
            raise
        if stats['train/optimizer_steps'] > 0 or stats.get('warmup/steps', 0) > 0:
            self.update_count += 1
            self.policy_version += 1
        stats['train/policy_version'] = self.policy_version
        stats['train/update_count'] = self.update_count
        return stats

    def _update(self, rollout: RolloutBatch | None, demo: DemoBatch | None,
                use_bc: bool) -> dict:
        cfg = self.config
        stats: dict[str, Any] = {'skipped': False, 'error': ''}
        if not self.value_warmed_up:
            if demo is not None and demo.returns is not None:
                stats.update(self._warmup(demo, cfg.value_warmup_steps))
            elif rollout is not None:  # early exploration: Monte Carlo returns
                returns = monte_carlo_returns(rollout.rewards, rollout.dones,
                                              rollout.truncated, cfg.gamma)
                stats.update(self._warmup(DemoBatch(rollout.observations, rollout.tokens,
                                                    returns), cfg.value_warmup_steps))
            self.value_warmed_up = 'warmup/steps' in stats

        if rollout is None:
            return stats | self._bc_only(demo)
        if not use_bc:
            demo = None

        prep = self._prepare(rollout)
        trained = np.flatnonzero(prep.in_value_loss)
        if trained.size == 0:
            stale = int(prep.stale.sum())
            return stats | {'skipped': True, 'error': 'every transition is stale (rejected)',
                            'train/optimizer_steps': 0, 'train/early_stopped': False,
                            'train/transitions': len(rollout), 'train/stale': stale,
                            'train/stale_rejected': stale}
        sums = dict.fromkeys(('policy_loss', 'value_loss', 'entropy', 'approx_kl',
                              'old_approx_kl', 'clipfrac', 'bc_loss', 'grad_norm'), 0.0)
        steps, early_stopped = 0, False
        for epoch in range(cfg.epochs):
            for idx in self._minibatches(trained, cfg.minibatch_size):
                observations = [rollout.observations[i] for i in idx]
                tokens = [rollout.tokens[i] for i in idx]
                log_prob, entropy, value = self._evaluate(observations, tokens)
                _check_finite(f'log_prob (epoch {epoch})', log_prob.detach())
                _check_finite(f'value (epoch {epoch})', value.detach())

                policy_mask = self._tensor(prep.in_policy_loss[idx])
                policy_loss, ratio = clipped_policy_loss(
                    log_prob, self._tensor(prep.old_log_probs[idx]),
                    self._tensor(prep.advantages[idx]), cfg.clip_range,
                    weights=self._tensor(prep.weights[idx]), mask=policy_mask)
                value_loss = clipped_value_loss(value, self._tensor(prep.gae_values[idx]),
                                                self._tensor(prep.returns[idx]), cfg.value_clip)
                entropy_mean = entropy.mean()

                loss = policy_loss - cfg.entropy_coef * entropy_mean + cfg.value_coef * value_loss
                bc_loss = torch.zeros((), device=self.device)
                if demo is not None:
                    bc_loss = self._bc_loss(demo)
                    loss = loss + cfg.bc_coef * bc_loss

                with torch.no_grad():
                    n_policy = policy_mask.sum().clamp(min=1.0)
                    prox_log_ratio = log_prob - self._tensor(prep.prox_log_probs[idx])
                    approx_kl = float(((prox_log_ratio.exp() - 1.0) - prox_log_ratio).mean())
                    log_ratio = log_prob - self._tensor(prep.old_log_probs[idx])
                    old_approx_kl = float(
                        (((ratio - 1.0) - log_ratio) * policy_mask).sum() / n_policy)
                    clipfrac = float(
                        (((ratio - 1.0).abs() > cfg.clip_range).float() * policy_mask).sum()
                        / n_policy)
                if cfg.target_kl > 0.0 and steps > 0 and approx_kl > cfg.target_kl:
                    early_stopped = True
                    break
                grad_norm = self._step(loss)
                steps += 1
                for key, val in (('policy_loss', policy_loss), ('value_loss', value_loss),
                                 ('entropy', entropy_mean), ('approx_kl', approx_kl),
                                 ('old_approx_kl', old_approx_kl), ('clipfrac', clipfrac),
                                 ('bc_loss', bc_loss), ('grad_norm', grad_norm)):
                    sums[key] += float(val.detach() if torch.is_tensor(val) else val)
            if early_stopped:
                break

        n = max(steps, 1)
        stats.update({f'losses/{k}': v / n for k, v in sums.items()})
        in_value = prep.in_value_loss
        stats.update({
            'losses/explained_variance': _explained_variance(prep.gae_values[in_value],
                                                             prep.returns[in_value]),
            'train/optimizer_steps': steps,
            'train/early_stopped': early_stopped,
            'train/transitions': len(rollout),
            'train/policy_loss_transitions': int(prep.in_policy_loss.sum()),
            'train/stale': int(prep.stale.sum()),
            'train/stale_rejected': int((prep.stale & ~prep.in_value_loss).sum()),
            'train/importance_weight_mean': float(prep.weights[prep.in_policy_loss].mean())
            if prep.in_policy_loss.any() else float('nan'),
            'charts/intervention_rate': float(rollout.is_intervention.mean()),
        })
        return stats

    def _bc_only(self, demo: DemoBatch) -> dict:
        cfg = self.config
        per_epoch = math.ceil(len(demo) / cfg.bc_minibatch_size)
        losses, norms = [], []
        for _ in range(cfg.epochs * per_epoch):
            bc_loss = self._bc_loss(demo)
            norms.append(self._step(cfg.bc_coef * bc_loss))
            losses.append(float(bc_loss.detach()))
        return {'losses/bc_loss': float(np.mean(losses)),
                'losses/grad_norm': float(np.mean(norms)),
                'train/optimizer_steps': len(losses), 'train/early_stopped': False}

