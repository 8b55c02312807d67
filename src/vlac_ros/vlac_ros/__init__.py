"""Thin ROS 2 helpers shared by the nodes: images, QoS, parameters, lifecycle, spin, bags, DDS.

Nothing here creates nodes or holds state; the nodes wire these into their callbacks.
"""
