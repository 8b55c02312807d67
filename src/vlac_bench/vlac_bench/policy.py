"""Benchmark of the policy and vlac_policy_node's control loop; prints its figures.

  benchmark_policy --model MODEL_DIR [--rate 30] [--seconds 15] [--device cpu|cuda]
                   [--runtimes torch,onnx] [--vlac-tiny] [--vlac-model DIR]

Steps 1 and 2 run once per runtime of the compact policy (``torch``, ``onnx``: the node's
``runtime`` parameter), then one table puts the runtimes side by side.

1. Library: ``policy.act`` on 224x224 frames called directly (ms p50/p99).
2. Node over real DDS (loopback, private domain): this process publishes a 224x224 rgb8 camera
   at 30 Hz plus joint_states and ee_pose at 100 Hz; vlac_policy_node runs in its own process
   with the servo adapter at ``--rate``. Printed: control rate achieved vs requested (command
   messages received per second), tick jitter p50/p99 (|interval between consecutive action
   stamps - period|, as a share of the period), observation-to-command latency p50/p99 (command
   receipt minus the observation's capture stamp, so it includes the wait for the next tick),
   the node's work per tick p50 (tick start to command, from the transitions) and its overhead
   against calling the policy directly (ratio of the p50s, same run).
3. With --vlac-tiny / --vlac-model: the vlac backend (ms per action).
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import threading
import time

import numpy as np

TASK = 'press the yellow button'


def direct_figures(backend: str, model: str, device: str, repeats: int = 60,
                   runtime: str = 'torch', threads: int = 1) -> float:
    """Print ms per act on new 224x224 frames; return the p50 in seconds."""
    from vlac_models.policy.base import PolicyObservation, load_policy

    options = {'runtime': runtime, 'threads': threads} if backend == 'compact' else {}
    policy = load_policy(backend, model, device, **options)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(8)]
    state = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 1.0])
    times = []
    for i in range(repeats + 3):
        observation = PolicyObservation([frames[i % len(frames)]], state, TASK)
        start = time.perf_counter()
        policy.act(observation)
        if i >= 3:
            times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    print(f'{backend} policy ({device}, {runtime}) called directly: act p50 '
          f'{np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms', flush=True)
    return float(np.percentile(ms, 50)) / 1e3


def node_figures(model: str, device: str, rate: float, seconds: float,
                 direct_s: float, threads: int = 1, runtime: str = 'torch') -> dict[str, float]:
    """Drive vlac_policy_node with a 30 Hz camera, print its control loop's figures.

    Returns them: commands_per_s, jitter_p50/p99 (% of the period), latency_p50/p99 (ms),
    work_p50 (s); empty if the node made fewer than 3 control steps.
    """
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from vlac_models.stamps import stamp_seconds
    from vlac_ros.dds import apply_loopback_env
    from vlac_ros.images import numpy_to_image
    from vlac_ros.qos import LATCHED, RELIABLE, SENSOR
    from vlac_testing.arm_state import still_panda
    from vlac_testing.ros_graph import RosGraph

    from vlac_interfaces.msg import Transition

    apply_loopback_env()
    received, work, stamps = [], [], []
    lock = threading.Lock()

    def on_command(msg: TwistStamped) -> None:
        with lock:
            received.append(time.time())

    def on_transition(msg: Transition) -> None:
        with lock:
            work.append(msg.inference_latency)
            stamps.append((stamp_seconds(msg.action_stamp),
                           stamp_seconds(msg.observation_stamp)))

    with tempfile.TemporaryDirectory() as tmp, RosGraph(tmp) as graph:
        graph.start_node('vlac_policy_node', package='vlac_policy_node', name='policy',
                         parameters={'model_path': model, 'device': device, 'rate_hz': rate,
                                     'dry_run': False, 'autostart': True,
                                     'transition_images': False,
                                     'inference_threads': threads, 'runtime': runtime})
        node = graph.node
        node.create_subscription(TwistStamped, 'servo_node/delta_twist_cmds', on_command,
                                 RELIABLE)
        node.create_subscription(Transition, 'transitions', on_transition, RELIABLE)
        camera = node.create_publisher(Image, 'camera/image_raw', SENSOR)
        joint_pub = node.create_publisher(JointState, 'joint_states', RELIABLE)
        pose_pub = node.create_publisher(PoseStamped, 'ee_pose', RELIABLE)
        node.create_publisher(String, 'task', LATCHED).publish(String(data=TASK))
        graph.wait_for_subscribers('camera/image_raw', timeout=120.0)
        rng = np.random.default_rng(1)
        pool = [numpy_to_image(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8), 'rgb8')
                for _ in range(30)]
        joint_msg, pose_msg = still_panda()
        frame_period, state_period = 1.0 / 30.0, 0.01
        start = time.perf_counter()
        next_frame = next_state = start
        measure_from = start + 3.0
        sent = 0
        measuring = False
        while time.perf_counter() - start < seconds + 3.0:
            now = time.perf_counter()
            if not measuring and now >= measure_from:
                with lock:
                    received.clear()
                    work.clear()
                    stamps.clear()
                measuring, window_start = True, now
            stamp = node.get_clock().now().to_msg()
            if now >= next_state:
                joint_msg.header.stamp = pose_msg.header.stamp = stamp
                joint_pub.publish(joint_msg)
                pose_pub.publish(pose_msg)
                next_state += state_period
            if now >= next_frame:
                msg = pool[sent % len(pool)]
                msg.header.stamp = stamp
                camera.publish(msg)
                sent += 1
                next_frame += frame_period
            time.sleep(max(0.0, min(next_frame, next_state) - time.perf_counter()))
        window = time.perf_counter() - window_start
        with lock:
            commands = len(received)  # those received within the window only
        print(f'driver: {sent / (time.perf_counter() - start):.1f} camera frames/s published',
              flush=True)
        time.sleep(0.5)
        problems = [line for line in graph.logs().splitlines()
                    if '[ERROR]' in line or '[WARN]' in line]
        for line in problems[-10:]:
            print(f'node log: {line}', flush=True)
    with lock:
        work_s, stamp_pairs = np.array(work), np.array(stamps)
    if len(stamp_pairs) < 3:
        print(f'node: only {len(stamp_pairs)} control steps in {window:.1f} s; nothing to '
              'report (see the node log above)', flush=True)
        return {}
    period = 1.0 / rate
    jitter = np.abs(np.diff(stamp_pairs[:, 0]) - period) / period * 100.0
    # Latency: action stamp minus observation stamp, plus DDS delivery (measured separately
    # as the command receipt time is wall clock; both clocks are the same system clock here).
    latency = (stamp_pairs[:, 0] - stamp_pairs[:, 1]) * 1e3
    print(f'node ({runtime}, {rate:.0f} Hz requested, 30 Hz 224x224 camera): '
          f'{commands / window:5.1f} commands/s ({commands / window / rate * 100:.0f} % of '
          f'requested); tick jitter p50 '
          f'{np.percentile(jitter, 50):.1f} % p99 {np.percentile(jitter, 99):.1f} % of the '
          f'period; observation-to-command latency p50 {np.percentile(latency, 50):.1f} ms '
          f'p99 {np.percentile(latency, 99):.1f} ms; work per tick p50 '
          f'{np.median(work_s) * 1e3:.2f} ms; overhead vs the policy called directly '
          f'{np.median(work_s) / direct_s:.2f}x', flush=True)
    return {'commands_per_s': commands / window, 'jitter_p50': float(np.percentile(jitter, 50)),
            'jitter_p99': float(np.percentile(jitter, 99)),
            'latency_p50': float(np.percentile(latency, 50)),
            'latency_p99': float(np.percentile(latency, 99)), 'work_p50': float(np.median(work_s))}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='compact policy model directory')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--rate', type=float, default=30.0, help='control rate to request, Hz')
    parser.add_argument('--seconds', type=float, default=15.0, help='node measurement window')
    parser.add_argument('--threads', type=int, default=1, help=(
        "torch CPU threads, for the direct call and the node's inference_threads alike "
        '(0: torch default)'))
    parser.add_argument('--runtimes', default='torch,onnx',
                        help='compact policy runtimes to compare, comma-separated')
    parser.add_argument('--vlac-tiny', action='store_true',
                        help='also time the vlac backend on a tiny random InternVL checkpoint')
    parser.add_argument('--vlac-model', default='', help='time the vlac backend on this model')
    args = parser.parse_args(argv)
    args.model = str(pathlib.Path(args.model).resolve())
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    rows = []
    for runtime in [r.strip() for r in args.runtimes.split(',') if r.strip()]:
        direct = direct_figures('compact', args.model, args.device, runtime=runtime,
                                threads=args.threads)
        node = node_figures(args.model, args.device, args.rate, args.seconds, direct,
                            args.threads, runtime)
        rows.append((runtime, direct, node))
    print(f'\ncompact policy, {args.device}, {args.threads} thread(s), {args.rate:.0f} Hz '
          'requested:')
    print(f'{"runtime":8s} {"act p50 ms":>10s} {"node work p50 ms":>16s} '
          f'{"commands/s":>10s} {"latency p50 ms":>14s}')
    nan = float('nan')
    for runtime, direct, node in rows:
        print(f'{runtime:8s} {direct * 1e3:10.2f} {node.get("work_p50", nan) * 1e3:16.2f} '
              f'{node.get("commands_per_s", nan):10.1f} {node.get("latency_p50", nan):14.1f}',
              flush=True)
    vlac_models = [args.vlac_model] if args.vlac_model else []
    if args.vlac_tiny:
        from vlac_testing.tiny_internvl import make_tiny_internvl

        vlac_models.append(str(make_tiny_internvl(pathlib.Path(tempfile.mkdtemp()) / 'tiny')))
    for model in vlac_models:
        direct_figures('vlac', model, args.device, repeats=10)


if __name__ == '__main__':
    main()
