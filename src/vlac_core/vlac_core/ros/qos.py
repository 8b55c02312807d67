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
