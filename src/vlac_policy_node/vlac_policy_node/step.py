"""One control step of the policy node, without the node: observation -> checked commands.

``vlac_policy_node`` calls these on every tick, and the lock-step experiment runner
(``vlac_training.experiment``) calls the same functions on the simulated arm, so both turn a
policy output into arm commands and Transition messages the same way:

- ``pose_arm_state``: the arm state from a joint state and an end-effector pose message;
- ``decide``: policy action, finiteness checks, safety limits (``limit_action``) and the
  adapter's arm and gripper commands, or ``Hold`` saying why the arm must not move;
- ``operator_action`` and ``decide_operator``: the same for the operator's action during an
  intervention (``intervention/action``): the same limits and adapter, the policy's tokens for
  the executed action and, where the policy can score it, its log-prob and value;
- ``delta_msg`` and ``transition_msg``: the ``~/action_preview`` and ``transitions`` messages.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

from geometry_msgs.msg import PoseStamped, Vector3
import numpy as np
from sensor_msgs.msg import JointState
from std_msgs.msg import Header
from vlac_models.policy.base import EefAction, PolicyError, PolicyObservation, PolicyOutput
from vlac_models.stamps import stamp_ns, stamp_seconds
from vlac_models.state import quaternion_matrix

from vlac_interfaces.msg import DeltaAction, Observation, Transition
from vlac_policy_node.actions import (
    ArmAdapter,
    ArmState,
    UnsafeAction,
    gripper_opening,
    limit_action,
)
from vlac_policy_node.config import ArmConfig, SafetyConfig
from vlac_policy_node.kinematics import IkError


class Hold(Exception):
    """This control step must not move the arm; the message says why.

    ``level``: 'info' for the normal waits of a starting system (no task, no image, no URDF
    yet), 'warning' for degraded input (stale data), 'error' for refusals (bad state, unsafe
    or invalid actions, no joint solution).
    """

    def __init__(self, key: str, message: str, level: str = 'error') -> None:
        super().__init__(message)
        self.key, self.level = key, level


def arm_gripper(joint: JointState, arm: ArmConfig) -> float:
    """Normalised gripper opening from the joint state; Hold when it cannot be known."""
    gripper = gripper_opening(list(joint.name), list(joint.position), arm)
    if not np.isfinite(gripper) and arm.gripper_adapter == 'none':
        gripper = 1.0
    if not np.isfinite(gripper):
        raise Hold('bad_state', f'joint_states lack the gripper joints '
                   f'{list(arm.gripper_joint_names)}: holding')
    return gripper


def joint_map(joint: JointState) -> dict[str, float]:
    """Joint positions by name; Hold on non-finite positions or mismatched lengths."""
    names, positions = list(joint.name), list(joint.position)
    if len(names) != len(positions):
        raise Hold('bad_state', f'joint_states has {len(names)} names and {len(positions)} '
                   'positions: holding')
    if not np.all(np.isfinite(positions)):
        raise Hold('bad_state', 'non-finite joint positions: holding')
    return dict(zip(names, positions, strict=True))


def pose_arm_state(joint: JointState, pose: PoseStamped, arm: ArmConfig) -> ArmState:
    """The arm state from a joint state and an end-effector pose in the base frame."""
    joints = joint_map(joint)
    p, q = pose.pose.position, pose.pose.orientation
    position = np.array([p.x, p.y, p.z])
    try:
        rotation = quaternion_matrix(q.x, q.y, q.z, q.w)
    except ValueError as err:
        raise Hold('bad_state', f'invalid end-effector pose ({err}): holding') from err
    if not np.all(np.isfinite(position)):
        raise Hold('bad_state', 'invalid end-effector pose: holding')
    return ArmState(position, rotation, joints, arm_gripper(joint, arm))


@dataclass
class Decision:
    """What one control step sends: the limited action and the commands (None: nothing)."""

    output: PolicyOutput
    action: EefAction
    notes: list[str]
    command: object | None
    gripper: object | None


def decide(policy, observation: PolicyObservation, arm: ArmState, safety: SafetyConfig,
           adapter: ArmAdapter, header: Header, deterministic: bool = False,
           dry_run: bool = False) -> Decision:
    """Act, check and limit the action, build the commands; Hold if the arm must not move."""
    try:
        output = policy.act(observation, deterministic=deterministic)
    except (PolicyError, ValueError) as err:
        raise Hold('policy', f'policy produced no valid action: {err}') from err
    if not (math.isfinite(output.log_prob) and math.isfinite(output.value)):
        raise Hold('unsafe', f'action rejected: non-finite log-prob {output.log_prob} '
                   f'or value {output.value} (policy weights broken?)')
    try:
        action, notes = limit_action(output.action, arm, safety)
    except UnsafeAction as err:
        raise Hold('unsafe', f'action rejected: {err}') from err
    return Decision(output, action, notes, *_commands(action, arm, adapter, header, dry_run))


def _commands(action: EefAction, arm: ArmState, adapter: ArmAdapter, header: Header,
              dry_run: bool) -> tuple[object | None, object | None]:
    """The adapter's (arm, gripper) commands for a limited action; (None, None) in a dry run."""
    if dry_run:
        return None, None
    try:
        command = adapter.command(action, arm, header)
    except IkError as err:
        raise Hold('ik', f'no joint command for the action: {err}') from err
    return command, adapter.gripper_command(action, header)


def operator_action(msg: DeltaAction, base_frame: str) -> EefAction:
    """The operator's DeltaAction as an action; Hold unless finite, in range, in the base frame."""
    if msg.header.frame_id and msg.header.frame_id != base_frame:
        raise Hold('operator', f'operator action in frame {msg.header.frame_id!r} rejected: '
                   f'expected the base frame {base_frame!r}')
    t, r = msg.translation, msg.rotation
    action = EefAction((t.x, t.y, t.z), (r.x, r.y, r.z), msg.gripper)
    if not action.is_finite() or not 0.0 <= msg.gripper <= 1.0:
        raise Hold('operator', f'operator action rejected: not finite or gripper '
                   f'{msg.gripper} outside [0, 1]')
    return action


def decide_operator(policy, observation: PolicyObservation, arm: ArmState, action: EefAction,
                    safety: SafetyConfig, adapter: ArmAdapter, header: Header,
                    dry_run: bool = False) -> Decision:
    """The operator's action through the policy's limits and adapter (an intervention step).

    The output carries the policy's tokens for the executed (limited) action, so behaviour
    cloning learns what the arm did, and the policy's log-prob and value of those tokens (0.0
    where the policy cannot score them; intervention steps never enter the policy gradient).
    """
    try:
        limited, notes = limit_action(action, arm, safety)
    except UnsafeAction as err:
        raise Hold('unsafe', f'operator action rejected: {err}') from err
    try:
        tokens = np.asarray(policy.tokens_for(observation, limited))
    except (PolicyError, ValueError) as err:
        raise Hold('operator', f'operator action has no tokens: {err}') from err
    log_prob = value = 0.0
    try:
        import torch

        with torch.inference_mode():
            lp, _, v = policy.evaluate([observation], [tokens])
        if math.isfinite(float(lp[0])) and math.isfinite(float(v[0])):
            log_prob, value = float(lp[0]), float(v[0])
    except (PolicyError, ValueError, NotImplementedError, AttributeError):
        pass  # a backend that cannot score this action: the transition says 0.0
    return Decision(PolicyOutput(limited, tokens, log_prob, value), limited, notes,
                    *_commands(limited, arm, adapter, header, dry_run))


def delta_msg(action: EefAction, header: Header) -> DeltaAction:
    """The executed end-effector delta as a DeltaAction (``~/action_preview``)."""
    t, r = action.translation, action.rotation
    return DeltaAction(header=header, translation=Vector3(x=t[0], y=t[1], z=t[2]),
                       rotation=Vector3(x=r[0], y=r[1], z=r[2]), gripper=action.gripper)


def transition_msg(robot_id: str, episode_id: str, step: int, version: int,
                   observation: PolicyObservation, output: PolicyOutput, delta: DeltaAction,
                   image_msgs: list, joint: JointState, pose: PoseStamped, latency: float,
                   header: Header, image_topics: list[str] | None = None,
                   is_intervention: bool = False) -> Transition:
    """The Transition of one step: images inline, or as references when ``image_topics``."""
    obs = Observation(joint_state=joint, ee_pose=pose, gripper=float(observation.state[6]))
    if image_topics is None:
        obs.images = list(image_msgs)
    else:
        obs.image_refs = [f'{topic}@{stamp_ns(m.header.stamp)}'
                          for topic, m in zip(image_topics, image_msgs, strict=True)]
    observed = min(image_msgs, key=lambda m: stamp_seconds(m.header.stamp)).header.stamp
    return Transition(
        header=header, robot_id=robot_id, episode_id=episode_id, step=step,
        observation=obs, action=delta,
        action_tokens=[int(t) for t in np.asarray(output.tokens).ravel()],
        log_prob=float(output.log_prob), value=float(output.value),
        is_intervention=is_intervention, policy_version=version, observation_stamp=observed,
        action_stamp=header.stamp, inference_latency=float(latency))
