"""Camera rendering in a separate process, so physics and cameras use both CPU cores.

pybullet's CPU TinyRenderer takes ~35 ms for a 224x224 frame and ~170 ms for 640x480; done in
the physics thread it would stall the control loop. The node instead sends the pose state
(joint positions and object poses, a few hundred bytes) to a worker process that owns its own
copy of the scene, poses it, renders and sends the pixels back. The frame is stamped with the
time its state was captured, as a hardware-triggered camera would be.

The pipe carries raw float64 / uint8 bytes only (no pickle). One request per camera is in
flight at a time: a camera whose previous frame is still rendering skips a tick instead of
queueing, so the published rate degrades gracefully and latency stays bounded. The worker exits
when the pipe closes (its parent died or closed it).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import signal
import struct
import threading

import numpy as np

from vlac_sim.scene import OBJECTS, CameraSpec, PandaScene

_HEADER = struct.Struct('<I')  # camera index


def pose_state(scene: PandaScene) -> np.ndarray:
    """Flat float64 vector: 9 joint positions, then position + quaternion of each object."""
    parts = [scene.joint_positions()]
    for name in OBJECTS:
        pos, quat = scene.object_pose(name)
        parts += [pos, quat]
    return np.concatenate(parts).astype(np.float64)


def apply_pose_state(scene: PandaScene, state: np.ndarray) -> None:
    """Pose a (render-only) scene from ``pose_state`` output, without stepping physics."""
    for idx, q in zip(scene.arm_idx + scene.finger_idx, state[:9], strict=True):
        scene.client.resetJointState(scene.robot, idx, float(q), 0.0)
    for k, name in enumerate(OBJECTS):
        chunk = state[9 + 7 * k: 16 + 7 * k]
        scene.client.resetBasePositionAndOrientation(scene.body(name), chunk[:3].tolist(),
                                                     chunk[3:].tolist())


def _serve(conn, cameras_json: str) -> None:
    """Worker loop: receive (camera index, pose state), reply with the rendered rgb8 bytes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us by closing the pipe
    cameras = [CameraSpec(**c) for c in json.loads(cameras_json)]
    scene = PandaScene()
    try:
        while True:
            try:
                request = conn.recv_bytes()
                (index,) = _HEADER.unpack_from(request)
                apply_pose_state(scene, np.frombuffer(request, np.float64,
                                                      offset=_HEADER.size))
                conn.send_bytes(_HEADER.pack(index) + scene.render(cameras[index]).tobytes())
            except (EOFError, OSError):  # the parent closed the pipe (shutdown): just stop
                return
    finally:
        scene.close()


def _camera_dict(camera: CameraSpec) -> dict:
    data = dataclasses.asdict(camera)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


class RenderWorker:
    """A rendering process for a fixed list of cameras."""

    def __init__(self, cameras: list[CameraSpec]) -> None:
        self.cameras = cameras
        context = multiprocessing.get_context('spawn')  # never fork a process running DDS
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, json.dumps([_camera_dict(c) for c in cameras])),
            name='vlac_sim_render', daemon=True)
        self._process.start()
        child.close()
        self._busy = [False] * len(cameras)
        self._lock = threading.Lock()

    def request(self, index: int, state: np.ndarray) -> bool:
        """Ask for a frame of camera ``index``; False (skipped) if its last frame is pending."""
        with self._lock:
            if self._busy[index]:
                return False
            try:
                self._conn.send_bytes(_HEADER.pack(index) + state.astype(np.float64).tobytes())
            except OSError:  # worker gone or closed: no frame (alive() says which)
                return False
            self._busy[index] = True
            return True

    def receive(self, timeout: float) -> tuple[int, np.ndarray] | None:
        """Wait up to ``timeout`` s for the next rendered frame: (camera index, HxWx3 uint8)."""
        try:
            if not self._conn.poll(timeout):
                return None
            reply = self._conn.recv_bytes()
        except (EOFError, OSError):  # worker gone or pipe closed by close()
            return None
        (index,) = _HEADER.unpack_from(reply)
        camera = self.cameras[index]
        pixels = np.frombuffer(reply, np.uint8, offset=_HEADER.size)
        with self._lock:
            self._busy[index] = False
        return index, pixels.reshape(camera.height, camera.width, 3)

    def alive(self) -> bool:
        """Return True while the worker process runs."""
        return self._process.is_alive()

    def close(self) -> None:
        """Stop the worker."""
        self._conn.close()
        self._process.join(timeout=5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
