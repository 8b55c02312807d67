"""Tiny real models for tests: saved and loaded by the production code, random weights."""

from __future__ import annotations

import pathlib


def tiny_policy(folder: pathlib.Path, keypoint_temperature: float = 10.0,
                seed: int = 0) -> pathlib.Path:
    """A randomly initialised small compact policy saved in ``folder`` (its model directory).

    ``keypoint_temperature`` 1.0 makes the random policy's actions small (a soft keypoint
    softmax), for tests that need the arm to stay near its start.
    """
    import torch
    from vlac_models.policy.compact import (
        CompactPolicy,
        CompactPolicyNet,
        PolicyConfig,
        save_model_dir,
    )

    torch.manual_seed(seed)
    net = CompactPolicyNet(PolicyConfig(frame_size=64, channels=(8, 16, 16, 8), embed_dim=32,
                                        hidden_dim=64,
                                        keypoint_temperature=keypoint_temperature))
    return save_model_dir(CompactPolicy(net, seed=seed), folder)
