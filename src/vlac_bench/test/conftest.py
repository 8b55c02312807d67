"""The tiny critic the loop tests share (one per session; ``vlac_testing.models`` has policies).

It is trained by the real training code (one epoch) on two demonstrations the simulator
records.
"""

import pathlib

import pytest
from vlac_sim.record import record_dataset
from vlac_sim.scene import CameraSpec
from vlac_training.train_critic import main as train_critic

TASK = 'press_button'


@pytest.fixture(scope='session')
def loop_critic(tmp_path_factory) -> pathlib.Path:
    """A compact critic trained one epoch on two recorded press_button demonstrations."""
    root = tmp_path_factory.mktemp('loop_critic')
    record_dataset(root / 'data', [TASK], episodes=2, failures=0,
                   camera=CameraSpec(width=96, height=96, rate_hz=10.0), log=lambda *_: None)
    assert train_critic(['--data', str(root / 'data'), '--out', str(root / 'critic'),
                         '--seed', '0', '--epochs', '1', '--holdout', '0.0',
                         '--no-progress']) == 0
    return root / 'critic'

