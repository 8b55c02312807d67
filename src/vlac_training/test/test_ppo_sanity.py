"""Learning sanity test: PPO raises the greedy return of a small policy on the simulated arm.

A reduced ``vlac_training.sanity`` run (about a minute on one CPU thread): a randomly initialised
small compact policy, ``press_button`` cut to 3 s at 10 Hz, 64 px camera, reward = change of
the simulator's ground-truth progress. Measured with these settings: greedy mean return
0.000 -> 0.600 on the 8 evaluation seeds; with ``lr=0`` (a PPO that cannot learn) before and
after are identical, so the margin below cannot be reached by anything but learning.
"""

from dataclasses import replace

import pytest
import torch
from vlac_training.sanity import SanityConfig, run

REDUCED = SanityConfig(iterations=6, episodes=6, eval_episodes=8, seed=0)
MARGIN = 0.2
"""Required rise of the greedy mean return (progress units, 0..1 per episode)."""

pytestmark = pytest.mark.slow(80)  # s on 2 cores: scheduled first


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.timeout(600)
def test_ppo_raises_greedy_return_on_the_simulated_task():
    result = run(REDUCED)
    assert result.before.returns and len(result.after.returns) == REDUCED.eval_episodes
    assert len(result.history) == REDUCED.iterations
    assert result.improvement > MARGIN, (
        f'PPO did not learn: greedy mean return {result.before.mean_return:.3f} -> '
        f'{result.after.mean_return:.3f} (needs +{MARGIN})')


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match='lr -1'):
        replace(REDUCED, lr=-1.0).validate()
    with pytest.raises(ValueError, match='overlap'):
        replace(REDUCED, eval_seed=10).validate()
    with pytest.raises(ValueError, match='unknown task'):
        replace(REDUCED, task='juggle').validate()
