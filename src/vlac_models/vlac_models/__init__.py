"""ROS-free model library of the VLAC stack; imports and runs with no rclpy on the path.

``critic`` and ``policy`` (interfaces, compact and VLAC backends), ``vlac_model`` (InternVL
checkpoints: loading, prompts, preprocessing), ``frames``, ``encoders`` and ``text`` (what the
compact models share), ``state`` (the policy state vector), ``episodes`` (which transitions
and scores make up an episode), ``stamps``, ``files`` (the atomic write), ``config`` and
``throttle``.
"""

__version__ = '0.1.0'
