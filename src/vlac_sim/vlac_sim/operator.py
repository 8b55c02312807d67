"""A simulated person at a teleop device: the scripted expert moving the sticks (no ROS).

``SimulatedOperator`` turns the scripted expert's commands into what a device would send
(``sensor_msgs/Joy`` axes and buttons in a ``hitl_teleop`` device layout), so that human-in-
the-loop episodes run through the real teleop path (Joy -> ``TakeoverMachine`` ->
``intervention/action`` -> the policy node's limits and adapter) without a person. Used by
``sim_operator`` (the node, over DDS) and by the lock-step experiment runner.

What it does, by episode mode (the runner's ``episode_mode``):

- ``demonstration``: takes over at the start and drives the whole episode; once the script
  has held its final pose for ``verdict_after`` seconds it presses *success*.
- ``human_guided``: the policy drives; on a help request (or at ``takeover_at`` seconds into
  the episode) the operator takes over, drives for ``guide_time`` seconds or until the script
  holds its final pose, and gives back.
- anything else: hands off the device (the axes at rest, no button).

Each takeover restarts the script from the arm's current state. The deadman is held while
driving (``deadman_mode: hold``) or pressed once to take over and once to give back
(``toggle``). The gripper buttons follow the expert's gripper command.
"""

from __future__ import annotations

from dataclasses import dataclass

from hitl_teleop.core import DeviceConfig, axes_for

from vlac_sim.experts import ExpertObservation, ScriptedExpert
from vlac_sim.scene import MAX_GRIPPER_WIDTH


@dataclass(frozen=True)
class OperatorSettings:
    """How the simulated operator behaves (seconds)."""

    guide_time: float = 3.0
    """longest takeover in a human-guided episode"""
    takeover_at: float = -1.0
    """human-guided: also take over this long into the episode (< 0: only on help requests)"""
    verdict_after: float = 1.0
    """demonstration: press success once the script held its final pose this long"""
    answer_help: bool = True
    """human-guided: take over on help requests"""

    def validate(self) -> 'OperatorSettings':
        """Raise ValueError naming the bad value; return self."""
        if not 0.1 <= self.guide_time <= 600.0:
            raise ValueError(f'guide_time {self.guide_time} s outside 0.1..600')
        if not 0.0 <= self.verdict_after <= 60.0:
            raise ValueError(f'verdict_after {self.verdict_after} s outside 0..60')
        return self


class SimulatedOperator:
    """The scripted expert of ``task_name`` as a person holding ``device``."""

    def __init__(self, task_name: str, device: DeviceConfig,
                 settings: OperatorSettings | None = None, behaviour: str = 'expert',
                 seed: int = 0) -> None:
        self.task_name, self.device = task_name, device
        self.settings = (settings or OperatorSettings()).validate()
        self.behaviour, self.seed = behaviour, seed
        self.mode = ''
        self.driving = False
        self.takeovers = 0
        self._expert: ScriptedExpert | None = None
        self._episode_start = 0.0
        self._drive_start = 0.0
        self._settled_since: float | None = None
        self._help = False
        self._timed_takeover_done = False
        self._pulse: list[str] = []  # buttons pressed for one message (toggle deadman, verdict)
        self._verdict_sent = False

    # -- episode and requests -----------------------------------------------------------------
    def start(self, mode: str, now: float, task_name: str | None = None) -> None:
        """A new episode in ``mode`` begins at ``now`` (s): forget the last one."""
        if task_name:
            self.task_name = task_name
        if self.driving:
            self._release()
        self.mode, self._episode_start = mode, now
        self._help = self._timed_takeover_done = self._verdict_sent = False
        self._settled_since = None
        self._pulse = []
        if mode == 'demonstration':
            self._take_over(now)

    def on_help(self) -> None:
        """The robot asked for help (a HelpRequest)."""
        if self.mode == 'human_guided' and self.settings.answer_help and not self.driving:
            self._help = True

    # -- one device message -------------------------------------------------------------------
    def joy(self, obs: ExpertObservation, now: float) -> tuple[list[float], list[int]]:
        """The device's axes and buttons now, given what the operator sees."""
        s = self.settings
        if self.mode == 'human_guided' and not self.driving:
            timed = 0.0 <= s.takeover_at <= now - self._episode_start \
                and not self._timed_takeover_done
            if self._help or timed:
                self._timed_takeover_done |= timed
                self._help = False
                self._take_over(now)
        axes = [0.0] * self.device.min_axes
        held: list[str] = []
        if self.driving:
            seen = ExpertObservation(obs.ee_position, obs.ee_orientation, obs.gripper_width,
                                     obs.objects, now - self._drive_start)
            command = self._expert.act(seen)
            axes = axes_for(command.linear, command.angular, self.device,
                            self.device.min_axes)
            held.append('gripper_open' if command.gripper_width >= 0.5 * MAX_GRIPPER_WIDTH
                        else 'gripper_close')
            if self.device.deadman_mode == 'hold':
                held.append('deadman')
            settled = self._expert.settled
            self._settled_since = (self._settled_since if self._settled_since is not None
                                   else now) if settled else None
            held_long = self._settled_since is not None \
                and now - self._settled_since >= s.verdict_after
            if self.mode == 'demonstration' and held_long and not self._verdict_sent:
                self._verdict_sent = True
                self._pulse.append('success')
            elif self.mode == 'human_guided' and (
                    held_long or now - self._drive_start >= s.guide_time):
                self._release()
        buttons = [0] * self.device.min_buttons
        for role in held + self._pulse:
            index = self.device.buttons.get(role)
            if index is not None and index < len(buttons):
                buttons[index] = 1
        self._pulse = []
        return axes, buttons

    # -- internals ----------------------------------------------------------------------------
    def _take_over(self, now: float) -> None:
        self._expert = ScriptedExpert(self.task_name, self.behaviour, self.seed)
        self.driving, self._drive_start, self._settled_since = True, now, None
        self.takeovers += 1
        if self.device.deadman_mode == 'toggle':
            self._pulse.append('deadman')

    def _release(self) -> None:
        self.driving = False
        if self.device.deadman_mode == 'toggle':
            self._pulse.append('deadman')
