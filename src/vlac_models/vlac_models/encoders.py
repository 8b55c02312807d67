"""Networks shared by the compact critic and the compact policy (ROS-free).

``FrameEncoder`` turns uint8 frames into an embedding (spatial-softmax keypoints or a flattened
CNN), ``FilmLinear`` modulates a layer by the task embedding, ``export_graph_onnx`` exports a
module with a dynamic batch axis and ``onnx_session`` serves one through ONNX Runtime. Both
models build on these, so neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import os
import pathlib
from typing import Any, Sequence
import warnings

import torch
from torch import nn

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderSpec:
    """What ``FrameEncoder`` needs from a model's architecture (critic's or policy's).

    Attributes:
        frame_size: side of the square frames the encoder sees, pixels (multiple of 16).
        encoder: 'keypoints' (spatial-softmax keypoints) or 'flatten'.
        channels: output channels of the four convolutions (the last: keypoints).
        embed_dim: frame embedding size.

    """

    frame_size: int
    encoder: str
    channels: tuple[int, int, int, int]
    embed_dim: int

    def validate(self) -> 'EncoderSpec':
        """Return self; raise ValueError naming the first bad field."""
        if not 32 <= self.frame_size <= 512 or self.frame_size % 16:
            raise ValueError(f'frame_size must be a multiple of 16 in 32..512, '
                             f'got {self.frame_size}')
        if self.encoder not in ('keypoints', 'flatten'):
            raise ValueError(f"encoder must be 'keypoints' or 'flatten', got {self.encoder!r}")
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f'channels must be 4 positive ints, got {self.channels}')
        if self.embed_dim < 1:
            raise ValueError(f'embed_dim must be >= 1, got {self.embed_dim}')
        return self


class FrameEncoder(nn.Module):
    """(B, S, S, 3) uint8 RGB frames -> (B, embed_dim) float32 embeddings.

    'keypoints': three stride-2 convolutions to an S/8 grid, a fourth (stride 1) with
    ``channels[3]`` maps, each turned into an expected image position by a spatial softmax
    (x, y in [-1, 1]) and a presence (its maximum); the 3 x channels[3] values are projected
    to ``embed_dim``. Positions of things rather than their pixels generalise across layouts.
    'flatten': four stride-2 convolutions, flattened and projected.
    """

    def __init__(self, config: EncoderSpec) -> None:
        super().__init__()
        self.keypoints = config.encoder == 'keypoints'
        layers: list[nn.Module] = []
        previous = 3
        for k, channels in enumerate(config.channels):
            last = k == len(config.channels) - 1
            layers.append(nn.Conv2d(previous, channels, 5 if k == 0 else 3,
                                    stride=1 if last and self.keypoints else 2,
                                    padding=2 if k == 0 else 1))
            if not (last and self.keypoints):
                layers += [nn.GroupNorm(min(8, channels), channels), nn.ReLU()]
            previous = channels
        self.conv = nn.Sequential(*layers)
        if self.keypoints:
            side = config.frame_size // 8
            grid = (torch.arange(side, dtype=torch.float32) + 0.5) / side * 2.0 - 1.0
            self.register_buffer('grid_x', grid.repeat(side), persistent=False)
            self.register_buffer('grid_y', grid.repeat_interleave(side), persistent=False)
            self.project = nn.Linear(3 * previous, config.embed_dim)
        else:
            side = config.frame_size // 16
            self.project = nn.Linear(previous * side * side, config.embed_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Embed uint8 NHWC frames."""
        x = frames.permute(0, 3, 1, 2).to(torch.float32) * (1.0 / 127.5) - 1.0
        maps = self.conv(x)
        if not self.keypoints:
            return self.project(maps.flatten(1))
        logits = maps.flatten(2)  # (B, K, side * side)
        weights = torch.softmax(logits, dim=2)
        features = torch.cat([weights @ self.grid_x, weights @ self.grid_y,
                              logits.amax(dim=2)], dim=1)
        return self.project(features)


class FilmLinear(nn.Module):
    """Linear layer whose output is scaled and shifted per task: relu(W x (1 + g) + b)."""

    def __init__(self, in_dim: int, out_dim: int, text_dim: int, task_dim: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.film = nn.Sequential(nn.Linear(text_dim, task_dim), nn.ReLU(),
                                  nn.Linear(task_dim, 2 * out_dim))

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The modulated layer's output for inputs ``x`` and task embeddings ``task``."""
        gamma, beta = self.film(task).chunk(2, dim=-1)
        return torch.relu(self.linear(x) * (1.0 + gamma) + beta)


def export_graph_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str],
                      output: str, path: pathlib.Path, optimize: bool = True) -> None:
    """Export ``module`` to ONNX at ``path`` with a dynamic batch axis on every input.

    ``optimize`` False keeps every parameter as an initializer named by its module path
    (e.g. ``net.layer1.linear.weight``), so new weights can be written into the graph.
    """
    batch = torch.export.Dim('batch', min=1, max=65536)
    parameters = list(module.forward.__code__.co_varnames[1:1 + len(inputs)])
    exporter_log = logging.getLogger('torch.onnx')
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # not 'torchvision is not installed' four times
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(module, inputs, str(path), input_names=names,
                              output_names=[output],
                              dynamic_shapes={p: {0: batch} for p in parameters}, dynamo=True,
                              external_data=False, verbose=False, optimize=optimize)
    finally:
        exporter_log.setLevel(level)


def onnx_providers(device: str, providers: Sequence[Any] | None = None,
                   user: str = 'the model') -> list:
    """ONNX Runtime providers for ``device`` ('cpu', 'auto', 'cuda' or 'cuda:N').

    CUDA when asked for (or 'auto') and onnxruntime has it, else CPU with a warning naming
    ``user``; ``providers`` overrides the choice. ValueError for an unknown device.
    """
    import onnxruntime as ort

    if providers is not None:
        return list(providers)
    if device not in ('cpu', 'auto', 'cuda') and not device.startswith('cuda:'):
        raise ValueError(f"device must be 'cpu', 'auto', 'cuda' or 'cuda:N', got {device!r}")
    if device != 'cpu' and 'CUDAExecutionProvider' in ort.get_available_providers():
        device_id = int(device.split(':')[1]) if ':' in device else 0
        return [('CUDAExecutionProvider', {'device_id': device_id}), 'CPUExecutionProvider']
    if device.startswith('cuda'):
        LOG.warning('onnxruntime has no CUDAExecutionProvider here; %s runs on CPU', user)
    return ['CPUExecutionProvider']


def onnx_session(model: os.PathLike | bytes, providers: list, threads: int = 1):
    """An ONNX Runtime session for a node: ``threads`` intra-op threads that sleep when idle.

    Inside a node the threads share the cores with the executor and the camera callbacks
    (spinning threads made a reward 4.5x slower there). ``threads`` 0 lets onnxruntime
    choose. Raises onnxruntime's own exceptions for a bad graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=providers)
