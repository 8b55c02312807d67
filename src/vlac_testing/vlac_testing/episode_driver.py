"""Send RunEpisode goals to one robot's episode_runner and print what happens as JSON lines.

For tests whose robot runs where the test's own node cannot reach it (another network
namespace: ``vlac_testing.netns``): start it there with the robot's DDS environment and read
its output. Run: ``python -m vlac_testing.episode_driver --namespace robot_1
--task press_button --seed 2 --max-duration 8``. One line per event, each a JSON object
with ``event`` and ``time`` (wall clock, s):

- ``{"event": "ready"}``: the runner's action server was discovered;
- ``{"event": "accepted", "seed": ...}``: a goal was accepted (the episode starts);
- ``{"event": "result", "seed", "episode_id", "steps", "success", "termination_reason",
  "episode_return", "bag_path"}``: it ended;
- ``{"event": "error", "message": ...}``: exit status 1.

Goals are sent and their futures spun in one thread (the reason is in
``vlac_bench.sim_loop.EpisodeClient``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
import sys
import time

import rclpy
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from vlac_interfaces.action import RunEpisode


def emit(event: str, **fields) -> None:
    """Print one JSON line (flushed: the reader polls the log file)."""
    print(json.dumps({'event': event, 'time': time.time(), **fields}), flush=True)


def _complete(executor: SingleThreadedExecutor, future, timeout: float):
    executor.spin_until_future_complete(future, timeout_sec=timeout)
    return future.result() if future.done() else None


def drive(node: Node, executor: SingleThreadedExecutor, args: argparse.Namespace) -> None:
    """Wait for the runner, then run the requested episodes one after another."""
    client = ActionClient(node, RunEpisode, f'/{args.namespace.strip("/")}/run_episode')
    deadline = time.monotonic() + args.server_timeout
    while not client.server_is_ready():
        if time.monotonic() >= deadline:
            raise TimeoutError(f'no run_episode server in /{args.namespace} after '
                               f'{args.server_timeout} s')
        executor.spin_once(timeout_sec=0.1)
    emit('ready')
    for k in range(args.episodes):
        seed = args.seed + k
        goal = RunEpisode.Goal(task=args.task, seed=seed, max_duration=args.max_duration,
                               mode=args.mode)
        handle = _complete(executor, client.send_goal_async(goal), 60.0)
        if handle is None or not handle.accepted:
            raise RuntimeError(f'episode with seed {seed}: goal not accepted')
        emit('accepted', seed=seed)
        response = _complete(executor, handle.get_result_async(), args.max_duration + 120.0)
        if response is None:
            raise RuntimeError(f'episode with seed {seed}: no result')
        r = response.result
        emit('result', seed=seed, episode_id=r.episode_id, steps=r.steps, success=r.success,
             termination_reason=r.termination_reason, episode_return=r.episode_return,
             bag_path=r.bag_path)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--namespace', default='robot_1', help='robot namespace')
    parser.add_argument('--task', required=True, help='task name for the goals')
    parser.add_argument('--seed', type=int, default=1, help='seed of the first episode')
    parser.add_argument('--episodes', type=int, default=1, help='episodes to run in a row')
    parser.add_argument('--max-duration', type=float, default=3.0, help='episode limit, s')
    parser.add_argument('--mode', type=int, default=RunEpisode.Goal.MODE_AUTONOMOUS,
                        help='RunEpisode mode')
    parser.add_argument('--server-timeout', type=float, default=120.0,
                        help='longest wait for the runner, s')
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.max_duration <= 0.0:
        parser.error(f'episodes {args.episodes} and max duration {args.max_duration} '
                     'must be positive')
    rclpy.init()
    node = Node(f'episode_driver_{args.namespace.strip("/")}')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        drive(node, executor, args)
    except (RuntimeError, TimeoutError) as err:
        emit('error', message=str(err))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
