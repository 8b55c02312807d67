"""Arm commands as the simulated driver applies them (no node; used by ``sim_node``).

``sim_node``'s subscriptions and the lock-step experiment runner (``vlac_training.experiment``)
both hand the policy node's command messages to the ``ArmController`` through these functions,
so a command means the same on either path. Each raises ``CommandRejected`` for a command the
driver refuses (the arm then holds).
"""

from __future__ import annotations

from vlac_sim import ros_msgs
from vlac_sim.control import ArmController, CommandRejected


def apply_twist(controller: ArmController, msg, now: float) -> None:
    """Servo: a geometry_msgs/TwistStamped Cartesian velocity of the end effector."""
    lin, ang = msg.twist.linear, msg.twist.angular
    controller.servo([lin.x, lin.y, lin.z], [ang.x, ang.y, ang.z], msg.header.frame_id, now,
                     ros_msgs.to_seconds(msg.header.stamp))


def apply_gripper(controller: ArmController, msg, now: float) -> None:
    """Gripper: a std_msgs/Float64MultiArray holding the finger opening, m."""
    if len(msg.data) != 1:
        raise CommandRejected(f'gripper command needs 1 value (opening, m), got '
                              f'{len(msg.data)}')
    controller.gripper(msg.data[0], now)
