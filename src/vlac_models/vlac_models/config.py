"""Helpers for config dataclasses (ROS-free).

Every node's configuration is a frozen dataclass whose fields carry a description in their
metadata (``field(default=..., metadata=doc('what, unit'))``) and whose ``validate()`` raises
ValueError naming the bad value. ``vlac_ros.params.declare_dataclass`` turns such a
dataclass into ROS parameters (the 'doc' key), the command-line tools into options (tyro reads
the 'help' key), and ``vlac_ros.params`` into the parameter tables of docs/nodes.md: one
declaration per field serves all three.
"""

from typing import Any


def doc(text: str, **kwargs: Any) -> dict:
    """Field metadata carrying a parameter description, e.g. ``doc('control rate, Hz')``."""
    return {'doc': text, 'help': text, **kwargs}
