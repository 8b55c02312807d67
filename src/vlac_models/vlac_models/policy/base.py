"""Policy interface shared by vlac_policy_node and the PPO trainer (ROS-free).

An observation is what the node matched at one control step: the camera image(s), the
end-effector state and the task sentence. A policy maps it to an action in SI units
(``EefAction``) together with the action *tokens* it sampled, their log-probability and the
value-head estimate, which is what PPO needs to recompute the same quantities later through
``evaluate``.

Conventions (REP 103):
  - state: ``[x, y, z, roll, pitch, yaw, gripper]`` (``vlac_models.state``, built only by
    ``policy_state``): end-effector position in metres and fixed-axis roll/pitch/yaw in
    radians in the robot base frame; gripper opening normalised to [0, 1].
  - action: translation delta (m) and rotation delta (rad, roll/pitch/yaw about the base
    frame's fixed axes, each wrapped to [-pi, pi]) of the end-effector over one control step,
    plus the gripper command (0 close, 1 open).
Tokens are backend-specific integer ids: per-dimension bins for ``compact``, the generated
numeric token ids of the action text for ``vlac``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import importlib
import os
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

ACTION_DIM = 7
"""dx, dy, dz (m), droll, dpitch, dyaw (rad), gripper command (0 close / 1 open)."""


class PolicyError(RuntimeError):
    """A policy could not be loaded or could not produce a valid action."""


@dataclass(frozen=True)
class EefAction:
    """End-effector delta action in SI units, expressed in the robot base frame."""

    translation: tuple[float, float, float]
    rotation: tuple[float, float, float]
    gripper: float

    @classmethod
    def from_vector(cls, vector: Sequence[float]) -> 'EefAction':
        """From ``ACTION_DIM`` values (dx dy dz m, droll dpitch dyaw rad, gripper)."""
        v = np.asarray(vector, dtype=np.float64).ravel()
        if v.shape != (ACTION_DIM,):
            raise ValueError(f'an action has {ACTION_DIM} values, got shape {v.shape}')
        return cls(tuple(float(x) for x in v[:3]), tuple(float(x) for x in v[3:6]),
                   float(v[6]))

    def as_vector(self) -> np.ndarray:
        """The ``ACTION_DIM`` float64 values, in ``from_vector`` order."""
        return np.array([*self.translation, *self.rotation, self.gripper], dtype=np.float64)

    def is_finite(self) -> bool:
        """True when no value is NaN or infinite."""
        return bool(np.all(np.isfinite(self.as_vector())))


@dataclass
class PolicyObservation:
    """What the policy sees at one control step."""

    images: Sequence[np.ndarray]
    """RGB uint8 arrays (H, W, 3), one per configured camera, in the configured order."""
    state: np.ndarray
    """``STATE_DIM`` floats, see the module docstring."""
    task: str
    """The instruction sentence."""


@dataclass
class PolicyOutput:
    """One sampled (or greedy) action with what PPO needs to re-evaluate it."""

    action: EefAction
    tokens: np.ndarray
    """int64 action token ids (backend-specific)."""
    log_prob: float
    """log pi(tokens | observation), summed over the action tokens (nats)."""
    value: float
    """Value-head estimate V(observation)."""
    text: str = ''
    """The action as text, where the backend produces text (``vlac``)."""
    extras: dict = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """The actor: one implementation per backend (``compact``, ``vlac``)."""

    backend: str
    """Backend name, e.g. ``'compact'``."""

    def act(self, observation: PolicyObservation, deterministic: bool = False
            ) -> PolicyOutput:
        """Sample (or take the most likely) action for one observation, without gradients."""

    def evaluate(self, observations: Sequence[PolicyObservation],
                 tokens: Sequence[np.ndarray]):
        """Differentiable ``(log_prob, entropy, value)``, torch tensors of shape (B,).

        ``tokens[i]`` are the action tokens recorded for ``observations[i]`` (as returned by
        ``act`` or produced by encoding a demonstrated action with ``tokens_for``).
        """

    def tokens_for(self, observation: PolicyObservation, action: EefAction) -> np.ndarray:
        """The action tokens that represent ``action`` (for demonstrations and interventions)."""

    def trainable_parameters(self) -> Iterable:
        """The torch parameters the trainer optimises (policy and value head)."""

    def save_weights(self, path: str | os.PathLike) -> str:
        """Write the trainable weights as safetensors (atomically); return their sha256."""

    def load_weights(self, path: str | os.PathLike, sha256: str | None = None) -> None:
        """Load safetensors weights; on any error raise ``PolicyError`` and keep the old ones."""


BACKENDS = {
    'compact': 'vlac_models.policy.compact:load_compact_policy',
    'vlac': 'vlac_models.policy.vlac_backend:load_vlac_policy',
}


def load_policy(backend: str, path: str | os.PathLike, device: str = 'cpu',
                **options) -> Policy:
    """Load a policy backend from a local model directory (nothing is downloaded)."""
    if backend not in BACKENDS:
        raise PolicyError(f'unknown policy backend {backend!r}; choose one of {sorted(BACKENDS)}')
    module_name, function = BACKENDS[backend].split(':')
    module = importlib.import_module(module_name)
    return getattr(module, function)(path, device=device, **options)
