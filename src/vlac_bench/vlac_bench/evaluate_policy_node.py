"""evaluate_policy_node: success rate of a policy driving the simulated arm through the node.

  evaluate_policy_node --model MODEL_DIR --tasks press_button,push_red --episodes 20
                       [--seed-start 1000] [--arm config/arms/sim_panda_servo.yaml]
                       [--rate 10] [--camera 224] [--sample]

On a private loopback DDS domain it starts vlac_sim's ``sim_node`` and ``vlac_policy_node``
(the given arm configuration; the most likely action, or with ``--sample`` actions sampled
from the policy as it acts during RL) as separate processes, then per episode:
resets the scene (task, seed), publishes the task sentence, activates the policy node
(lifecycle), waits for success on the simulator's evaluation-only ground truth topic or the
task's time limit, and deactivates the node. Ground truth decides success here only: it is
never an input of the policy. Prints one line per episode and the success rate per task.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

from vlac_policy_node.config import arm_config_dir


def _call(graph, client, request, timeout: float = 60.0):
    future = client.call_async(request)
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not future.done() or future.result() is None:
        raise RuntimeError(f'no response from {client.srv_name}')
    return future.result()


def evaluate(model: str, tasks: list[str], episodes: int, seed_start: int, arm: str,
             rate: float, camera: int, device: str = 'cpu',
             sample: bool = False) -> dict[str, float]:
    """Run the episodes; return the success rate per task."""
    from lifecycle_msgs.msg import Transition as LifecycleTransition
    from lifecycle_msgs.srv import ChangeState
    from std_msgs.msg import String
    from vlac_ros.dds import apply_loopback_env
    from vlac_ros.qos import LATCHED, RELIABLE
    from vlac_sim.tasks import get_task
    from vlac_testing.ros_graph import RosGraph

    from vlac_interfaces.msg import GroundTruth
    from vlac_interfaces.srv import ResetScene

    apply_loopback_env()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp, RosGraph(tmp) as graph:
        graph.start_node('sim_node', package='vlac_sim', name='sim_node', namespace='robot_1',
                         parameters={'task': tasks[0], 'seed': seed_start,
                                     'cameras.camera.width': camera,
                                     'cameras.camera.height': camera,
                                     'cameras.camera.rate_hz': max(rate, 10.0)})
        graph.start_node('vlac_policy_node', package='vlac_policy_node',
                         name='vlac_policy_node', namespace='robot_1', params_files=[arm],
                         parameters={'model_path': model, 'device': device, 'rate_hz': rate,
                                     'deterministic': not sample, 'dry_run': False})
        node = graph.node
        truth = graph.subscribe(GroundTruth, '/robot_1/eval_only/ground_truth', RELIABLE)
        task_pub = node.create_publisher(String, '/robot_1/task', LATCHED)
        episode_pub = node.create_publisher(String, '/robot_1/episode', LATCHED)
        reset = node.create_client(ResetScene, '/robot_1/sim/reset')
        change = node.create_client(ChangeState, '/robot_1/vlac_policy_node/change_state')
        assert reset.wait_for_service(timeout_sec=60.0), 'sim_node did not come up'
        assert change.wait_for_service(timeout_sec=60.0), 'policy node did not come up'
        result = _call(graph, change, ChangeState.Request(transition=LifecycleTransition(
            id=LifecycleTransition.TRANSITION_CONFIGURE)), timeout=300.0)
        if not result.success:
            raise RuntimeError('policy node failed to configure:\n' + graph.logs()[-3000:])
        for task in tasks:
            successes = 0
            limit = get_task(task).max_duration
            for k in range(episodes):
                seed = seed_start + k
                reply = _call(graph, reset, ResetScene.Request(task=task, seed=seed))
                if not reply.success:
                    raise RuntimeError(f'reset failed: {reply.message}')
                task_pub.publish(String(data=reply.instruction))
                episode_pub.publish(String(data=f'eval-{task}-{seed}'))
                time.sleep(0.3)
                truth.clear()
                _call(graph, change, ChangeState.Request(transition=LifecycleTransition(
                    id=LifecycleTransition.TRANSITION_ACTIVATE)))
                started, success = time.monotonic(), False
                while time.monotonic() - started < limit:
                    last = truth.last
                    if last is not None and last.success:
                        success = True
                        break
                    time.sleep(0.05)
                _call(graph, change, ChangeState.Request(transition=LifecycleTransition(
                    id=LifecycleTransition.TRANSITION_DEACTIVATE)))
                successes += success
                progress = truth.last.progress if truth.last is not None else float('nan')
                print(f'{task:18s} seed {seed:5d}: {"success" if success else "failure"} '
                      f'(progress {progress:.2f}, {time.monotonic() - started:.1f} s)',
                      flush=True)
            rates[task] = successes / episodes
            print(f'{task}: {successes}/{episodes} = {rates[task]:.0%} success through '
                  f'vlac_policy_node ({pathlib.Path(arm).name}, '
                  f'{"sampled" if sample else "most likely"} actions)', flush=True)
    return rates


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and evaluate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='policy model directory')
    parser.add_argument('--tasks', default='press_button', help='comma-separated task names')
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--seed-start', type=int, default=1000)
    parser.add_argument('--arm', default=str(arm_config_dir() / 'sim_panda_servo.yaml'),
                        help='arm configuration YAML for the policy node')
    parser.add_argument('--rate', type=float, default=10.0, help='control rate, Hz')
    parser.add_argument('--camera', type=int, default=224, help='square camera size, px')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--sample', action='store_true',
                        help='sample actions from the policy (as during RL) instead of taking '
                        'the most likely bins')
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(',') if t]
    rates = evaluate(str(pathlib.Path(args.model).resolve()), tasks, args.episodes,
                     args.seed_start, str(pathlib.Path(args.arm).resolve()), args.rate,
                     args.camera, args.device, args.sample)
    print('overall: ' + ', '.join(f'{t} {r:.0%}' for t, r in rates.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
