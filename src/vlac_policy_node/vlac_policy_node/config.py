"""Parameters of vlac_policy_node, validated into frozen dataclasses (ROS-free, SI units).

ROS parameter names are the dotted field paths, e.g. ``safety.max_step_translation`` or
``arm.adapter``. ``config/arms/*.yaml`` holds one file per arm driver setup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

from vlac_models.config import doc

PANDA_JOINTS = tuple(f'panda_joint{i}' for i in range(1, 8))
ADAPTERS = ('servo', 'pose', 'joint_trajectory', 'forward_position')
GRIPPER_ADAPTERS = ('position', 'joint_trajectory', 'none')


@dataclass(frozen=True)
class SafetyConfig:
    """Limits applied to every action before it reaches the arm."""

    workspace_min: tuple[float, ...] = field(default=(0.2, -0.45, 0.0), metadata=doc(
        'lower corner of the allowed end-effector box in the base frame, m'))
    workspace_max: tuple[float, ...] = field(default=(0.85, 0.45, 0.6), metadata=doc(
        'upper corner of the allowed end-effector box in the base frame, m'))
    max_step_translation: float = field(default=0.05, metadata=doc(
        'largest end-effector translation per control step, m (longer deltas are scaled)'))
    max_step_rotation: float = field(default=0.3, metadata=doc(
        'largest end-effector rotation per control step, rad (larger deltas are scaled)'))
    gripper_min: float = field(default=0.0, metadata=doc('lowest gripper command (0 closed)'))
    gripper_max: float = field(default=1.0, metadata=doc('highest gripper command (1 open)'))
    max_observation_age: float = field(default=0.3, metadata=doc(
        'hold the arm when the newest image or state is older than this, s'))
    max_state_skew: float = field(default=0.1, metadata=doc(
        'largest stamp difference between the image and the matched state, s'))

    def validate(self) -> 'SafetyConfig':
        """Raise ValueError naming the bad value; return self."""
        if len(self.workspace_min) != 3 or len(self.workspace_max) != 3:
            raise ValueError('workspace_min and workspace_max need 3 values (x, y, z) each')
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise ValueError(f'workspace_min {self.workspace_min} must be below '
                             f'workspace_max {self.workspace_max} on every axis')
        if not 0.0 < self.max_step_translation <= 0.5:
            raise ValueError(f'max_step_translation {self.max_step_translation} m '
                             'outside (0, 0.5]')
        if not 0.0 < self.max_step_rotation <= math.pi:
            raise ValueError(f'max_step_rotation {self.max_step_rotation} rad outside (0, pi]')
        if not 0.0 <= self.gripper_min <= self.gripper_max <= 1.0:
            raise ValueError('need 0 <= gripper_min <= gripper_max <= 1')
        if not 0.0 < self.max_observation_age <= 10.0:
            raise ValueError(f'max_observation_age {self.max_observation_age} s outside (0, 10]')
        if not 0.0 < self.max_state_skew <= 10.0:
            raise ValueError(f'max_state_skew {self.max_state_skew} s outside (0, 10]')
        return self


@dataclass(frozen=True)
class ArmConfig:
    """How actions reach the arm: the adapter and the driver's topics (see config/arms)."""

    adapter: str = field(default='servo', metadata=doc(
        "'servo' (TwistStamped), 'pose' (PoseStamped target), 'joint_trajectory' "
        "(JointTrajectory via IK) or 'forward_position' (Float64MultiArray via IK)"))
    command_topic: str = field(default='servo_node/delta_twist_cmds', metadata=doc(
        'topic of the arm command'))
    base_frame: str = field(default='panda_link0', metadata=doc(
        'robot base frame: frame_id of commands and of the actions'))
    joint_names: tuple[str, ...] = field(default=PANDA_JOINTS, metadata=doc(
        'arm joints commanded by the joint-space adapters, in controller order'))
    tip_link: str = field(default='panda_grasptarget', metadata=doc(
        'URDF link whose pose the actions move (the end-effector / TCP)'))
    robot_description_topic: str = field(default='robot_description', metadata=doc(
        'std_msgs/String with the URDF (latched), for IK and forward kinematics'))
    trajectory_duration: float = field(default=0.0, metadata=doc(
        'time_from_start of the trajectory point, s (0: one control period)'))
    gripper_adapter: str = field(default='position', metadata=doc(
        "'position' (Float64MultiArray), 'joint_trajectory' (finger joints) or 'none'"))
    gripper_topic: str = field(default='gripper_controller/commands', metadata=doc(
        'topic of the gripper command'))
    gripper_joint_names: tuple[str, ...] = field(
        default=('panda_finger_joint1', 'panda_finger_joint2'), metadata=doc(
            'finger joints in joint_states; their positions summed give the opening'))
    gripper_open_position: float = field(default=0.08, metadata=doc(
        'gripper command for open (1), in the gripper controller units (m for the Panda)'))
    gripper_closed_position: float = field(default=0.0, metadata=doc(
        'gripper command for closed (0), in the gripper controller units'))
    gripper_max_opening: float = field(default=0.08, metadata=doc(
        'sum of the finger joint positions when fully open, m (normalises the state)'))

    def validate(self) -> 'ArmConfig':
        """Raise ValueError naming the bad value; return self."""
        if self.adapter not in ADAPTERS:
            raise ValueError(f'arm.adapter {self.adapter!r} must be one of {ADAPTERS}')
        if self.gripper_adapter not in GRIPPER_ADAPTERS:
            raise ValueError(f'arm.gripper_adapter {self.gripper_adapter!r} must be one of '
                             f'{GRIPPER_ADAPTERS}')
        if not self.command_topic:
            raise ValueError('arm.command_topic is empty')
        if not self.base_frame:
            raise ValueError('arm.base_frame is empty')
        if self.adapter in ('joint_trajectory', 'forward_position') and not self.joint_names:
            raise ValueError(f'arm.joint_names is empty but adapter {self.adapter!r} needs it')
        if not 0.0 <= self.trajectory_duration <= 10.0:
            raise ValueError(f'arm.trajectory_duration {self.trajectory_duration} s '
                             'outside [0, 10]')
        if self.gripper_max_opening <= 0.0:
            raise ValueError('arm.gripper_max_opening must be > 0')
        return self


@dataclass(frozen=True)
class PolicyNodeConfig:
    """Parameters of ``vlac_policy_node``."""

    backend: str = field(default='compact', metadata=doc("policy backend: 'compact' or 'vlac'"))
    model_path: str = field(default='', metadata=doc('policy model directory'))
    device: str = field(default='cpu', metadata=doc("'cpu' or 'cuda'"))
    runtime: str = field(default='torch', metadata=doc(
        "compact backend: 'torch', or 'onnx' to act through ONNX Runtime (CUDA provider when "
        "device is 'cuda'); the loaded weights are written into a graph template (the "
        "model directory's policy.onnx, else one exported at configure) at configure and at "
        'each hot swap (benchmark_policy compares the two)'))
    trust_remote_code: bool = field(default=False, metadata=doc(
        'vlac backend only: allow the checkpoint to run its own code (explicit opt-in)'))
    inference_threads: int = field(default=1, metadata=doc(
        'torch CPU threads for the policy model (0: torch default, one per core); 1 leaves '
        'the other cores to the executor and the cameras (benchmark_policy, compact '
        'policy, 2 cores: work per tick 1.7-2.4 ms with 1, 2.7-2.9 ms with the default); '
        'raise it for the vlac backend on a CPU'))
    rate_hz: float = field(default=10.0, metadata=doc('control loop rate, Hz'))
    deterministic: bool = field(default=False, metadata=doc(
        'take the most likely action instead of sampling (evaluation)'))
    image_topics: tuple[str, ...] = field(default=('camera/image_raw',), metadata=doc(
        'sensor_msgs/Image topics, one per camera view, in the order the policy expects'))
    joint_state_topic: str = field(default='joint_states', metadata=doc(
        'sensor_msgs/JointState of the arm'))
    ee_pose_topic: str = field(default='ee_pose', metadata=doc(
        'geometry_msgs/PoseStamped of the end-effector in the base frame; empty: forward '
        'kinematics of the joint states from robot_description'))
    task: str = field(default='', metadata=doc(
        'task sentence; empty: taken from the task topic (std_msgs/String, latched)'))
    robot_id: str = field(default='', metadata=doc(
        'robot identifier in transitions; empty: the node namespace'))
    dry_run: bool = field(default=True, metadata=doc(
        'compute actions and publish them on ~/action_preview only; never command the arm'))
    weights_dir: str = field(default='', metadata=doc(
        'directory that hot-swapped weights must lie in; empty: hot swap disabled'))
    transition_images: bool = field(default=True, metadata=doc(
        'carry the images inline in transitions (false: references into the recording)'))
    autostart: bool = field(default=False, metadata=doc(
        'configure and activate at start-up (no lifecycle manager needed)'))
    intervention_timeout: float = field(default=0.3, metadata=doc(
        'while the operator drives (intervention/active), an operator action older than '
        'this (s) holds the arm'))
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    arm: ArmConfig = field(default_factory=ArmConfig)

    def validate(self) -> 'PolicyNodeConfig':
        """Raise ValueError naming the bad value; return self."""
        if self.backend not in ('compact', 'vlac'):
            raise ValueError(f"backend {self.backend!r} must be 'compact' or 'vlac'")
        if self.runtime not in ('torch', 'onnx'):
            raise ValueError(f"runtime {self.runtime!r} must be 'torch' or 'onnx'")
        if self.runtime == 'onnx' and self.backend != 'compact':
            raise ValueError(f"runtime 'onnx' serves the compact backend only, not "
                             f'{self.backend!r}')
        if not self.model_path:
            raise ValueError('model_path is empty: set it to the policy model directory')
        if self.device not in ('cpu', 'cuda'):
            raise ValueError(f"device {self.device!r} must be 'cpu' or 'cuda'")
        if not 0 <= self.inference_threads <= 256:
            raise ValueError(f'inference_threads {self.inference_threads} outside 0..256')
        if not 0.1 <= self.rate_hz <= 500.0:
            raise ValueError(f'rate_hz {self.rate_hz} outside 0.1..500')
        if not self.image_topics or not all(self.image_topics):
            raise ValueError('image_topics must list at least one camera topic')
        if not self.joint_state_topic:
            raise ValueError('joint_state_topic is empty')
        if not 0.0 < self.intervention_timeout <= 10.0:
            raise ValueError(f'intervention_timeout {self.intervention_timeout} s outside '
                             '(0, 10]')
        self.safety.validate()
        self.arm.validate()
        return self


def arm_config_dir():
    """Folder of the shipped arm configurations (config/arms).

    The source tree's copy when running from a checkout (editable install), else the one
    installed in vlac_bringup's share directory.
    """
    import pathlib

    source = pathlib.Path(__file__).resolve().parents[3] / 'config' / 'arms'
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory

    return pathlib.Path(get_package_share_directory('vlac_bringup')) / 'config' / 'arms'
