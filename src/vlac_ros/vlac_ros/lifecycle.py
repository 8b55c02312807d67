"""The one lifecycle helper of the stack's model-holding nodes.

``autostart`` gives a lifecycle node the ``autostart`` behaviour of nav2's nodes for machines
without a lifecycle manager: when its ``autostart`` parameter is true it configures and then
activates itself once its executor spins (a failed configure leaves it unconfigured and says
why in its own log).
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn


def autostart(node: LifecycleNode, parameter: str = 'autostart') -> None:
    """Configure and activate ``node`` once spinning if its ``parameter`` is true."""
    if not node.get_parameter(parameter).value:
        return
    timer = None

    def once() -> None:
        node.destroy_timer(timer)
        if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            node.trigger_activate()

    timer = node.create_timer(0.01, once)
