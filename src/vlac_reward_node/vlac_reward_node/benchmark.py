"""Benchmark of the critic and the reward node; prints its figures.

  benchmark_reward --model MODEL_DIR [--device cpu|cuda] [--seconds 10] [--vlac-tiny]

1. Library: compact critic pairs/s at batch sizes 1, 8 and 32 (new frames every call, so the
   frame encoder runs), and per-reward time (one pair + one done query, as the node does).
2. Node over real DDS (loopback, private domain): a 30 Hz 224x224 rgb8 camera (every frame
   new) published from this process, vlac_reward_node in its own process at a 0.1 s stride.
   Frame-to-reward latency (reward receipt minus the scored frame's capture stamp) p50/p99,
   reward rate, dropped frames, and the node's overhead against calling the library directly
   (same kind of frames, same run): the model call inside the node against the direct call,
   and the whole frame-to-reward latency against the direct call.
3. With --vlac-tiny: the vlac backend on a tiny random InternVL checkpoint (ms per pair).
   (A full-size 2B model is timed on a GPU machine with --vlac-model DIR --device cuda.)
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np


def library_figures(model: str, device: str, backend: str = 'compact') -> float:
    """Print batched pairs/s; return the median seconds of one node-style reward."""
    from vlac_core.critic import DoneQuery, PairQuery, load_critic

    critic = load_critic(backend, model, device)
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(64)]
    counter = [0]

    def frames(n):
        """``n`` frames never seen before (a pool frame with one pixel changed: cheap)."""
        out = []
        for _ in range(n):
            counter[0] += 1
            frame = pool[counter[0] % len(pool)].copy()
            frame[0, 0] = (counter[0] % 251, counter[0] // 251 % 251, counter[0] // 63001)
            out.append(frame)
        return out

    def pairs(n):
        return [PairQuery('press the yellow button', a, b)
                for a, b in zip(frames(n), frames(n), strict=True)]

    for batch in (1, 8, 32):
        critic.score_pairs(pairs(batch))  # warm up
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            critic.score_pairs(pairs(batch))
            runs += 1
        elapsed = time.perf_counter() - start
        print(f'{backend} critic ({critic.model_id}, {device}): batch {batch:2d}: '
              f'{runs * batch / elapsed:7.1f} pairs/s (new frames each call)', flush=True)
    times, previous = [], frames(1)[0]
    for frame in frames(60):
        start = time.perf_counter()
        critic.score_pairs([PairQuery('press the yellow button', previous, frame)])
        critic.done_probability([DoneQuery('press the yellow button', frame)])
        times.append(time.perf_counter() - start)
        previous = frame
    critic.close()
    median = float(np.median(times))
    print(f'library, one reward (pair + done, anchor cached): p50 {median * 1e3:.2f} ms, '
          f'p99 {np.percentile(times, 99) * 1e3:.2f} ms', flush=True)
    return median


def node_figures(model: str, device: str, seconds: float, direct_s: float) -> None:
    """Drive the node with a 30 Hz camera and measure frame-to-reward latency."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from vlac_core.ros.images import numpy_to_image
    from vlac_core.ros.qos import LATCHED, RELIABLE, SENSOR
    from vlac_core.testing.dds import apply_loopback_env
    from vlac_core.testing.ros_graph import RosGraph

    from vlac_interfaces.msg import ProgressReward

    apply_loopback_env()
    latencies, inference, diagnostics = [], [], {}

    def on_reward(msg: ProgressReward) -> None:
        latencies.append(time.time() - (msg.stamp_b.sec + msg.stamp_b.nanosec * 1e-9))
        inference.append(msg.inference_latency)

    with tempfile.TemporaryDirectory() as tmp, RosGraph(tmp) as graph:
        graph.start_node('vlac_reward_node', package='vlac_reward_node', name='reward',
                         parameters={'model_path': model, 'device': device, 'stride': 0.1,
                                     'autostart': True, 'debug_image': False})
        graph.node.create_subscription(ProgressReward, 'progress', on_reward, RELIABLE)
        graph.node.create_subscription(
            DiagnosticArray, '/diagnostics', lambda m: diagnostics.update(
                {kv.key: kv.value for st in m.status for kv in st.values}), RELIABLE)
        camera = graph.node.create_publisher(Image, 'camera/image_raw', SENSOR)
        task = graph.node.create_publisher(String, 'task', LATCHED)
        task.publish(String(data='press the yellow button'))
        try:
            graph.wait_for_subscribers('camera/image_raw', timeout=60.0)
        except TimeoutError:
            print(graph.logs()[-3000:], flush=True)
            raise
        rng = np.random.default_rng(1)
        # Every frame is new (one pixel of a pool frame changed), as from a real camera: the
        # node's frame-embedding cache never hits, so the encoder runs as in library_figures.
        pool = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(30)]
        period, sent = 1.0 / 30.0, 0
        start = next_tick = time.perf_counter()
        warmup_until = start + 2.0
        while time.perf_counter() - start < seconds + 2.0:
            if time.perf_counter() >= warmup_until and warmup_until:
                latencies.clear()
                inference.clear()
                warmup_until = 0.0
                measured_from = time.perf_counter()
            frame = pool[sent % len(pool)].copy()
            frame[0, 0] = (sent % 251, sent // 251 % 251, sent // 63001 % 251)
            msg = numpy_to_image(frame, 'rgb8')
            msg.header.stamp = graph.node.get_clock().now().to_msg()
            camera.publish(msg)
            sent += 1
            next_tick += period
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        window = time.perf_counter() - measured_from
        time.sleep(1.5)  # one more diagnostics message
    lat = np.array(latencies) * 1e3
    print(f'node, 30 Hz 224x224 camera, 0.1 s stride: {len(latencies) / window:5.1f} rewards/s,'
          f' frame-to-reward latency p50 {np.percentile(lat, 50):5.1f} ms p99 '
          f'{np.percentile(lat, 99):5.1f} ms; inference inside the node p50 '
          f'{np.median(inference) * 1e3:.2f} ms; overhead vs the library called directly: '
          f'model call inside the node {np.median(inference) / direct_s - 1.0:+.0%} '
          f'(p50 in-node inference / p50 direct call), end to end '
          f'{np.percentile(lat, 50) / 1e3 / direct_s:.2f}x (p50 frame-to-reward latency, DDS '
          f'transport and image conversion included / p50 direct call)'
          f'; node diagnostics: scored {diagnostics.get("scored")}, dropped '
          f'{diagnostics.get("dropped")}, rejected {diagnostics.get("rejected")}', flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='compact critic model directory')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--seconds', type=float, default=10.0, help='node measurement window')
    parser.add_argument('--vlac-tiny', action='store_true',
                        help='also time the vlac backend on a tiny random InternVL checkpoint')
    parser.add_argument('--vlac-model', default='', help='time the vlac backend on this model')
    args = parser.parse_args(argv)
    args.model = str(pathlib.Path(args.model).resolve())  # the node runs in another folder
    direct = library_figures(args.model, args.device)
    node_figures(args.model, args.device, args.seconds, direct)
    vlac_models = [args.vlac_model] if args.vlac_model else []
    if args.vlac_tiny:
        from vlac_core.testing.tiny_internvl import make_tiny_internvl

        vlac_models.append(str(make_tiny_internvl(pathlib.Path(tempfile.mkdtemp()) / 'tiny')))
    for model in vlac_models:
        library_figures(model, args.device, backend='vlac')


if __name__ == '__main__':
    main()
