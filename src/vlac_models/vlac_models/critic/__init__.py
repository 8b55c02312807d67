"""The VLAC progress critic, independent of ROS.

``base`` defines the interface every backend implements (``Critic``) and the value
accumulation; backends: ``compact`` (a small learned pairwise critic, ONNX-served) and
``vlac_backend`` (the published VLAC checkpoints through transformers). ``load_critic`` picks
one by name.
"""

from vlac_models.critic.base import (
    Critic,
    DoneQuery,
    NoInContextMode,
    PairQuery,
    QueryShape,
    accumulate_values,
    load_critic,
)

__all__ = ['accumulate_values', 'Critic', 'DoneQuery', 'load_critic', 'NoInContextMode',
           'PairQuery', 'QueryShape']
