"""Benchmark of the simulated arm; prints its figures.

  benchmark_sim [--seconds 10] [--episodes 20] [--skip-node] [--skip-experts]

1. Physics: control periods/s and physics steps/s of the ROS-free core (servo IK + stepping).
2. Node over real DDS (loopback, private domain): sim_node as its own process with one camera
   at 224x224 and then 640x480 (30 Hz requested, 50 Hz control); a subscriber process measures
   the camera publish rate, frame latency (receipt minus header stamp) p50/p99 and the
   joint_states rate; CPU use per core over the window.
3. Scripted experts: success over ``--episodes`` seeded episodes per task (offline, no ROS).
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np
from vlac_models.stamps import stamp_seconds


def cpu_times() -> list[tuple[int, int]]:
    """(busy, total) jiffies per core from /proc/stat."""
    cores = []
    for line in pathlib.Path('/proc/stat').read_text().splitlines():
        if line.startswith('cpu') and line[3].isdigit():
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]
            cores.append((sum(values) - idle, sum(values)))
    return cores


def cpu_percent(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> list[float]:
    """Busy percentage per core between two ``cpu_times`` samples."""
    return [100.0 * (b1 - b0) / max(t1 - t0, 1)
            for (b0, t0), (b1, t1) in zip(before, after, strict=True)]


def bench_physics(seconds: float = 3.0) -> None:
    """Time servo control periods (IK + physics) of the core, no ROS, no rendering."""
    from vlac_sim.control import ArmController
    from vlac_sim.scene import CameraSpec, PandaScene
    from vlac_sim.tasks import TASKS, reset_scene

    scene = PandaScene()
    reset_scene(scene, TASKS['pick_place_red'], 0)
    controller = ArmController(scene)
    dt, now, periods = 0.02, 0.0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        direction = 1.0 if (periods // 50) % 2 == 0 else -1.0
        controller.servo([0.0, 0.1 * direction, 0.0], [0.0, 0.0, 0.0], '', now)
        controller.update(now, dt)
        scene.step(dt)
        now += dt
        periods += 1
    elapsed = time.perf_counter() - start
    substeps = int(round(dt / scene.physics_dt))
    print(f'physics: {periods / elapsed:8.1f} control periods/s (servo IK + {substeps} physics '
          f'steps each) = {periods * substeps / elapsed:8.0f} physics steps/s, '
          f'{elapsed / periods * 1e3:.2f} ms per 20 ms period ({periods * dt / elapsed:.1f}x '
          'real time)')
    for width, height in ((224, 224), (640, 480)):
        camera = CameraSpec(width=width, height=height)
        scene.render(camera)
        start = time.perf_counter()
        for _ in range(10):
            scene.render(camera)
        print(f'render {width}x{height}: {(time.perf_counter() - start) / 10 * 1e3:.1f} ms '
              'per frame (TinyRenderer, one core)')
    scene.close()


def measure_node(width: int, height: int, seconds: float) -> str:
    """Run sim_node with one camera of the given size over DDS; return the figures line."""
    from sensor_msgs.msg import Image, JointState
    from vlac_ros.qos import RELIABLE, SENSOR
    from vlac_testing.ros_graph import RosGraph

    latencies, image_times, joint_times = [], [], []

    def on_image(msg: Image) -> None:
        now = time.time()
        image_times.append(now)
        latencies.append(now - stamp_seconds(msg.header.stamp))

    with tempfile.TemporaryDirectory() as tmp, RosGraph(tmp) as graph:
        graph.start_node('sim_node', package='vlac_sim', name='sim', parameters={
            'control_rate_hz': 50.0, 'cameras.camera.width': width,
            'cameras.camera.height': height, 'cameras.camera.rate_hz': 30.0})
        graph.node.create_subscription(Image, 'camera/image_raw', on_image, SENSOR)
        graph.node.create_subscription(JointState, 'joint_states',
                                       lambda _: joint_times.append(time.time()), RELIABLE)
        graph.wait_for(lambda: len(image_times) > 5, 30.0, 'camera frames')
        time.sleep(1.0)  # warm-up
        for samples in (image_times, joint_times, latencies):
            samples.clear()
        before, start = cpu_times(), time.time()
        time.sleep(seconds)
        after, elapsed = cpu_times(), time.time() - start
    lat = np.array(latencies) * 1e3
    return (f'node {width}x{height}@30Hz: camera {len(image_times) / elapsed:5.1f} Hz, '
            f'latency p50 {np.percentile(lat, 50):5.1f} ms p99 {np.percentile(lat, 99):5.1f} ms, '
            f'joint_states (control) {len(joint_times) / elapsed:5.1f} Hz of 50, CPU per core '
            f'{" ".join(f"{c:4.0f}%" for c in cpu_percent(before, after))}')


def bench_experts(episodes: int) -> None:
    """Success of each task's scripted expert over seeded episodes (offline)."""
    from vlac_sim.control import ArmController
    from vlac_sim.experts import ScriptedExpert, run_offline_episode
    from vlac_sim.scene import PandaScene
    from vlac_sim.tasks import TASKS

    scene = PandaScene()
    controller = ArmController(scene)
    for name, task in TASKS.items():
        start = time.perf_counter()
        wins = sum(run_offline_episode(scene, controller, task, ScriptedExpert(name, 'expert', s),
                                       s).success for s in range(episodes))
        print(f'expert {name:18s}: {wins}/{episodes} = {100.0 * wins / episodes:5.1f} % success '
              f'({(time.perf_counter() - start) / episodes:.2f} s wall per episode)', flush=True)
    scene.close()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run the selected benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=10.0, help='node window per size, s')
    parser.add_argument('--episodes', type=int, default=20, help='expert episodes per task')
    parser.add_argument('--skip-node', action='store_true', help='skip the DDS node benchmark')
    parser.add_argument('--skip-experts', action='store_true', help='skip the expert success')
    args = parser.parse_args(argv)
    print(f'cores: {len(cpu_times())}')
    bench_physics()
    if not args.skip_node:
        from vlac_ros.dds import apply_loopback_env

        apply_loopback_env()
        for width, height in ((224, 224), (640, 480)):
            print(measure_node(width, height, args.seconds), flush=True)
    if not args.skip_experts:
        bench_experts(args.episodes)


if __name__ == '__main__':
    main()
