"""Simulated Franka Panda speaking the ROS 2 interfaces of a real arm driver stack."""
