"""QoS profiles used across the stack, so every publisher and subscriber pair matches.

- SENSOR: camera and state streams. Best effort, depth 1: a late frame is worthless and must
  never queue behind newer ones.
- RELIABLE: commands, rewards, transitions, interventions: every message matters.
- LATCHED: slowly changing state (task sentence, policy version, e-stop): transient local so
  a late joiner receives the last value.
"""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

SENSOR = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)

RELIABLE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def durable(depth: int) -> QoSProfile:
    """Reliable, transient local, the last ``depth`` messages kept for late joiners.

    For the learning data streams (transitions, progress rewards, episode results): a trainer
    that restarts receives what was published while it was down, up to ``depth`` messages.
    Volatile subscribers match it too.
    """
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


TRANSITIONS = durable(1000)
"""vlac_interfaces/Transition: 100 s of history at 10 Hz for a restarting trainer."""

PROGRESS = durable(2000)
"""vlac_interfaces/ProgressReward: 200 s of history at a 0.1 s stride."""

RESULTS = durable(100)
"""vlac_interfaces/EpisodeResult: the last 100 episodes."""
