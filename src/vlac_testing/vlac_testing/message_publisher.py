"""Node that latches deterministic, fully populated messages: the sender of round-trip tests.

Parameters:
  seed (int, default 0): seed of ``vlac_testing.messages.filled``.
  types (string[]): message types as 'pkg/msg/Type'.

For each type it latches ``filled(Type, seed)`` (reliable, transient local) on
``roundtrip/<pkg>_<Type>`` and spins until interrupted. The receiver builds the same message
with ``filled`` and compares field for field. Run: ``ros2 run vlac_testing message_publisher
--ros-args -p seed:=7 -p types:='[vlac_interfaces/msg/Transition]'``.
"""

from __future__ import annotations

import importlib

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from vlac_ros.qos import LATCHED
from vlac_ros.spin import run_node

from vlac_testing.messages import filled


def import_type(name: str) -> type:
    """Import a message type from 'pkg/msg/Type'; ValueError naming it if malformed."""
    parts = name.split('/')
    if len(parts) != 3:
        raise ValueError(f'message type {name!r} is not of the form pkg/msg/Type')
    pkg, kind, cls = parts
    return getattr(importlib.import_module(f'{pkg}.{kind}'), cls)


def roundtrip_topic(name: str) -> str:
    """Topic a message type 'pkg/msg/Type' is published on."""
    pkg, _, cls = name.split('/')
    return f'roundtrip/{pkg}_{cls}'


class MessagePublisher(Node):
    """Latches one filled message per configured type."""

    def __init__(self) -> None:
        super().__init__('message_publisher')
        seed = self.declare_parameter(
            'seed', 0, ParameterDescriptor(description='seed of the filled messages')).value
        names = self.declare_parameter(
            'types', [''], ParameterDescriptor(description="types as 'pkg/msg/Type'")).value
        self._latched = []
        for name in filter(None, names):
            msg_type = import_type(name)
            pub = self.create_publisher(msg_type, roundtrip_topic(name), LATCHED)
            pub.publish(filled(msg_type, seed))
            self._latched.append(pub)
        self.get_logger().info(f'latched {len(self._latched)} message type(s), seed {seed}')


def main(args: list[str] | None = None) -> None:
    """Run the node until interrupted."""
    run_node(MessagePublisher, args)


if __name__ == '__main__':
    main()
