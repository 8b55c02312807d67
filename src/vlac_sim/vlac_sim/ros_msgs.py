"""Build the ROS messages a real arm stack publishes from the simulated scene's state.

Shared by the live node (``sim_node``) and the offline dataset recorder (``record``), so a bag
recorded offline holds exactly what a live recording of the node would.
"""

from __future__ import annotations

import json

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion
import numpy as np
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header
from vlac_models.stamps import is_zero, stamp_seconds
from vlac_ros.images import numpy_to_image

from vlac_interfaces.msg import GroundTruth
from vlac_sim.experts import ExpertObservation
from vlac_sim.scene import BASE_FRAME, FINGER_JOINTS, OBJECTS, CameraSpec, PandaScene
from vlac_sim.tasks import Task, get_task

SNAPSHOT_FORMAT = 'vlac_sim/snapshot/1'
MAX_SNAPSHOT_BYTES = 1 << 20


def to_seconds(stamp: Time) -> float | None:
    """Seconds of a stamp; None for the zero stamp ("now", as ros2_control reads it)."""
    return None if is_zero(stamp) else stamp_seconds(stamp)


def pose_msg(position: np.ndarray, orientation: np.ndarray) -> Pose:
    """geometry_msgs/Pose from a position (m) and quaternion (x, y, z, w)."""
    x, y, z = (float(v) for v in position)
    qx, qy, qz, qw = (float(v) for v in orientation)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def joint_state_msg(scene: PandaScene, stamp: Time) -> JointState:
    """Arm and finger joints: positions (rad, m), velocities (rad/s, m/s); no efforts."""
    return JointState(header=Header(stamp=stamp, frame_id=''), name=list(scene.joint_names()),
                      position=scene.joint_positions().tolist(),
                      velocity=scene.joint_velocities().tolist())


def ee_pose_msg(scene: PandaScene, stamp: Time) -> PoseStamped:
    """End-effector (grasp target) pose in the base frame."""
    return PoseStamped(header=Header(stamp=stamp, frame_id=BASE_FRAME),
                       pose=pose_msg(*scene.ee_pose()))


def image_msgs(scene: PandaScene, camera: CameraSpec, stamp: Time) -> tuple[Image, CameraInfo]:
    """Render one rgb8 frame and its CameraInfo (plumb_bob, no distortion)."""
    header = Header(stamp=stamp, frame_id=camera.frame_id)
    return numpy_to_image(scene.render(camera), 'rgb8', header), camera_info_msg(camera, header)


def camera_info_msg(camera: CameraSpec, header: Header) -> CameraInfo:
    """CameraInfo of an ideal pinhole camera with the spec's field of view."""
    fx, fy, cx, cy = camera.intrinsics()
    return CameraInfo(header=header, width=camera.width, height=camera.height,
                      distortion_model='plumb_bob', d=[0.0] * 5,
                      k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def ground_truth_msg(scene: PandaScene, task: Task, start: dict, stamp: Time) -> GroundTruth:
    """Evaluation-only progress, success and object poses."""
    poses = [pose_msg(*scene.object_pose(name)) for name in OBJECTS]
    return GroundTruth(header=Header(stamp=stamp, frame_id=BASE_FRAME), task=task.name,
                       instruction=task.instruction, progress=task.progress(scene, start),
                       success=task.success(scene, start), object_names=list(OBJECTS),
                       object_poses=poses)


def encode_snapshot(task: Task, seed: int, start: dict, scene: PandaScene) -> bytes:
    """Serialise the scene and task as UTF-8 JSON (never pickle: snapshots cross the network)."""
    return json.dumps({'format': SNAPSHOT_FORMAT, 'task': task.name, 'seed': seed,
                       'start': start, 'scene': scene.state()}).encode()


def finger_opening(msg: JointState) -> float | None:
    """The gripper opening (m, both fingers) of a joint state; None without both fingers."""
    fingers = [p for n, p in zip(msg.name, msg.position, strict=False) if n in FINGER_JOINTS]
    return float(sum(fingers)) if len(fingers) == 2 else None


def expert_observation(truth: GroundTruth, pose: PoseStamped, gripper: float,
                       time: float) -> ExpertObservation:
    """What an operator at the table sees: object positions, end-effector pose, gripper."""
    p, q = pose.pose.position, pose.pose.orientation
    objects = {name: np.array([o.position.x, o.position.y, o.position.z])
               for name, o in zip(truth.object_names, truth.object_poses, strict=True)}
    return ExpertObservation(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]),
                             gripper, objects, time)


def restore_snapshot(scene: PandaScene, data: bytes) -> tuple[Task, int, dict]:
    """Put the scene in a snapshot's state; its (task, seed, start measures). ValueError if bad."""
    snapshot = decode_snapshot(data)
    task = get_task(snapshot['task'])
    scene.restore(snapshot['scene'])
    return task, snapshot['seed'], snapshot['start']


def decode_snapshot(data: bytes) -> dict:
    """Parse and check snapshot bytes; ValueError with the reason if they are not one."""
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise ValueError(f'snapshot of {len(data)} bytes exceeds {MAX_SNAPSHOT_BYTES}')
    try:
        snapshot = json.loads(bytes(data).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f'snapshot is not UTF-8 JSON: {err}') from None
    if not isinstance(snapshot, dict) or snapshot.get('format') != SNAPSHOT_FORMAT:
        raise ValueError(f'snapshot format must be {SNAPSHOT_FORMAT!r}')
    for key, kind in (('task', str), ('seed', int), ('start', dict), ('scene', dict)):
        if not isinstance(snapshot.get(key), kind):
            raise ValueError(f'snapshot field {key!r} missing or not a {kind.__name__}')
    return snapshot
