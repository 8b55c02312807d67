"""The nodes' throttled reject log on rclpy's real logger.

rclpy remembers the severity of each logging call site and raises ValueError when one line
logs at two levels; a policy node died of it when a routine wait ('info') was followed by a
stale observation ('warning').
"""

import rclpy.logging
from vlac_models.throttle import RejectLog


def test_one_key_at_every_level_on_an_rclpy_logger_never_raises():
    log = RejectLog(rclpy.logging.get_logger('reject_log_test'), period=0.0)
    for level in ('info', 'warning', 'error', 'info', 'error', 'warning'):
        log.report('no_image', f'held ({level})', level)
    assert log.count == 6
