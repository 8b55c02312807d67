"""Shared library of the VLAC stack.

Top-level modules are ROS-free (no rclpy import) and are tested with plain pytest.
``vlac_core.ros`` holds the thin ROS helpers (message conversion, QoS profiles), and
``vlac_core.testing`` the harness for node tests over real DDS.
"""

__version__ = '0.1.0'
