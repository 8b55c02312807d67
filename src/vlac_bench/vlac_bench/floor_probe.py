"""The least any rclpy node pays per camera frame on this machine, for ``benchmark_reward``.

A bare ``rclpy`` node (no lifecycle, no parameter services, no model) with one subscription
to the camera (the reward node's QoS) on a ``SingleThreadedExecutor``. For every frame it
records the time from the frame's receipt by its DDS reader (rmw ``received_timestamp``) to
the callback's start, then publishes one ``ProgressReward`` on the reward node's QoS and
records how long ``publish`` takes. On exit it prints one JSON line with both series'
percentiles (ms). The reward node's own latency can only approach the sum plus its model call.
It runs until its standard input closes (the benchmark closes it after the last phase; by
hand: Ctrl-D).

  python -m vlac_bench.floor_probe --topic probe/image_raw
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    """Run the probe for ``--seconds`` and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--topic', default='probe/image_raw')
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from vlac_ros.qos import PROGRESS, SENSOR

    from vlac_interfaces.msg import ProgressReward

    rclpy.init()
    node = rclpy.create_node('floor_probe', start_parameter_services=False)
    receipt, publish = [], []
    progress = node.create_publisher(ProgressReward, 'probe/progress', PROGRESS)

    def on_image(msg: Image, info) -> None:
        entry = time.time()
        receipt.append(entry - info['received_timestamp'] * 1e-9)
        reward = ProgressReward(header=Header(stamp=node.get_clock().now().to_msg()),
                                task='probe', stamp_a=msg.header.stamp,
                                stamp_b=msg.header.stamp, delta=0.0, value=0.0,
                                done_probability=0.0, done=False, model_id='probe',
                                inference_latency=0.0)
        begin = time.perf_counter()
        progress.publish(reward)
        publish.append(time.perf_counter() - begin)

    node.create_subscription(Image, args.topic, on_image, SENSOR)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()

    def figures(values: list[float]) -> dict:
        ms = np.array(values[5:] or [np.nan]) * 1e3  # the first few frames warm up
        return {'n': int(ms.size), 'p50': float(np.percentile(ms, 50)),
                'p99': float(np.percentile(ms, 99))}

    print(json.dumps({'receipt_to_callback_ms': figures(receipt),
                      'publish_ms': figures(publish)}), flush=True)


if __name__ == '__main__':
    main()
