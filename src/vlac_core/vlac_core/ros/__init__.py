"""Thin ROS helpers shared by the nodes: message conversion and QoS profiles.

Nothing here spins, creates nodes or holds state; the nodes wire these into their callbacks.
"""
