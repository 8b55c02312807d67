"""Test harness for node tests over real DDS: see ``ros_graph.RosGraph``."""
