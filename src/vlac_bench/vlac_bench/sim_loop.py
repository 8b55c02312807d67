"""The whole loop on the simulated arm as processes on a private loopback DDS domain.

Used by ``vlac_demo`` (the newcomer's one-command loop), ``benchmark_trainer`` and the loop's
integration test; on a ROS machine ``ros2 launch vlac_bringup sim_loop.launch.py`` starts the
same nodes. ``start_loop`` starts sim_node, vlac_reward_node, vlac_policy_node, trainer_node
and episode_runner (robot namespace ``robot_1``) in a ``vlac_testing.RosGraph``;
``run_episode`` sends one RunEpisode goal and waits for its result. ``start_hitl`` adds the
human in the loop: teleop_node, the simulated operator publishing a device's Joy messages and
the return point server fed by the robot's recorded episodes.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

from vlac_policy_node.config import arm_config_dir

NAMESPACE = 'robot_1'


def loop_yaml() -> pathlib.Path:
    """config/loop.yaml: the loop's parameters, as ``ros2 launch`` passes them."""
    return pathlib.Path(arm_config_dir()).parent / 'loop.yaml'


def robot_namespaces(robots: int) -> list[str]:
    """robot_1 .. robot_N."""
    return [f'robot_{k}' for k in range(1, robots + 1)]


def start_trainer(graph, policy: pathlib.Path, work: pathlib.Path,
                  robots: list[str] | None = None, **parameters):
    """trainer_node learning from ``robots`` (default robot_1), its files under ``work``."""
    return graph.start_node('trainer_node', package='rl_trainer', name='trainer_node',
                            params_files=[loop_yaml()],
                            parameters={'robots': list(robots or [NAMESPACE]),
                                        'learner.work_dir': str(work),
                                        'learner.weights_dir': str(work / 'weights'),
                                        'learner.model_path': str(policy), **parameters})


def start_robot(graph, namespace: str, critic: pathlib.Path, policy: pathlib.Path,
                work: pathlib.Path, task: str, camera: int = 96, rate_hz: float = 10.0,
                arm: str = 'sim_panda_servo.yaml') -> None:
    """One robot: its simulator, critic, policy node and runner in ``namespace``."""
    (work / 'weights').mkdir(parents=True, exist_ok=True)
    graph.start_node('sim_node', package='vlac_sim', name='sim_node', namespace=namespace,
                     parameters={'task': task, 'seed': 0, 'cameras.camera.width': camera,
                                 'cameras.camera.height': camera,
                                 'cameras.camera.rate_hz': max(rate_hz, 10.0)})
    graph.start_node('vlac_reward_node', package='vlac_reward_node', name='vlac_reward_node',
                     namespace=namespace, params_files=[loop_yaml()],
                     parameters={'model_path': str(critic), 'autostart': True,
                                 'debug_image': False})
    graph.start_node('vlac_policy_node', package='vlac_policy_node', name='vlac_policy_node',
                     namespace=namespace, params_files=[arm_config_dir() / arm],
                     parameters={'model_path': str(policy), 'rate_hz': rate_hz,
                                 'weights_dir': str(work / 'weights')})
    graph.start_node('episode_runner', package='rl_runner', name='episode_runner',
                     namespace=namespace, params_files=[loop_yaml()],
                     parameters={'episodes_dir': str(work / 'robot_episodes')})


def start_fleet(graph, robots: int, critic: pathlib.Path, policy: pathlib.Path,
                work: pathlib.Path, task: str, camera: int = 96, rate_hz: float = 10.0,
                trainer: dict[str, Any] | None = None, arm: str = 'sim_panda_servo.yaml'):
    """``robots`` simulated robots (robot_1..N) and one trainer learning from all of them.

    Returns (trainer process, one RunEpisode client per robot).
    """
    namespaces = robot_namespaces(robots)
    for namespace in namespaces:
        start_robot(graph, namespace, critic, policy, work, task, camera, rate_hz, arm)
    trainer_process = start_trainer(graph, policy, work, namespaces, **(trainer or {}))
    clients = [EpisodeClient(graph.context, namespace) for namespace in namespaces]
    for namespace, client in zip(namespaces, clients, strict=True):
        if not client.wait_for_server(120.0 + 30.0 * robots):
            raise RuntimeError(f'{namespace}/episode_runner did not come up:\n'
                               + graph.logs()[-3000:])
    return trainer_process, clients


def start_loop(graph, critic: pathlib.Path, policy: pathlib.Path, work: pathlib.Path,
               task: str, camera: int = 96, rate_hz: float = 10.0,
               trainer: dict[str, Any] | None = None, arm: str = 'sim_panda_servo.yaml'):
    """Start every node of the loop; return (trainer process, RunEpisode action client)."""
    trainer_process, clients = start_fleet(graph, 1, critic, policy, work, task, camera,
                                           rate_hz, trainer, arm)
    return trainer_process, clients[0]


class EpisodeClient:
    """The RunEpisode action client on its own node, spun only in the calling thread.

    rclpy's ActionClient registers a goal's future after sending the request; an executor
    spinning in another thread can take the response in between and drop it ("Ignoring
    unexpected goal response"): the goal runs, its caller never learns (1 goal in 19 in a
    demo run). Sending and spinning in one thread closes that window.
    """

    def __init__(self, context, namespace: str = NAMESPACE) -> None:
        import os

        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        from vlac_interfaces.action import RunEpisode

        self.node = Node(f'episode_client_{os.getpid()}_{namespace}', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.client = ActionClient(self.node, RunEpisode, f'/{namespace}/run_episode')

    def wait_for_server(self, timeout: float) -> bool:
        """Spin until the runner's action server is there (or ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while not self.client.server_is_ready() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.1)
        return self.client.server_is_ready()

    def complete(self, future, timeout: float):
        """Spin until ``future`` is done; its result, or None after ``timeout`` s."""
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        return future.result() if future.done() else None

    def send(self, goal, timeout: float):
        """The RunEpisode result of ``goal`` (RuntimeError if refused or lost)."""
        handle = self.complete(self.client.send_goal_async(goal), 60.0)
        if handle is None or not handle.accepted:
            raise RuntimeError(f'episode {goal.seed}: goal not accepted')
        response = self.complete(handle.get_result_async(), timeout)
        if response is None:
            raise RuntimeError(f'episode {goal.seed}: no result')
        return response.result


def start_hitl(graph, work: pathlib.Path, device: str = 'xbox', scan_period: float = 5.0,
               help_config: str = 'help', **operator: Any) -> None:
    """teleop_node, sim_operator (``operator`` parameters) and return_point_server.

    The operator's Joy messages take the path a person's gamepad takes; the return points come
    from the episodes the runner records under ``work/robot_episodes``.
    """
    graph.start_node('teleop_node', package='hitl_teleop', name='teleop_node',
                     namespace=NAMESPACE, parameters={'device': device, 'bell': False,
                                                      'help_config': help_config})
    graph.start_node('sim_operator', package='vlac_sim', name='sim_operator',
                     namespace=NAMESPACE, parameters={'device': device, **operator})
    graph.start_node('return_point_server', package='hitl_teleop', name='return_point_server',
                     namespace=NAMESPACE,
                     parameters={'store': str(work / 'return_points'),
                                 'episodes_dir': str(work / 'robot_episodes'),
                                 'scan_period': scan_period, 'help_config': help_config})


def run_episode(client: EpisodeClient, task: str, seed: int, max_duration: float,
                mode: int = 0):
    """Run one episode through the runner; return its RunEpisode.Result."""
    from vlac_interfaces.action import RunEpisode

    goal = RunEpisode.Goal(task=task, seed=seed, max_duration=max_duration, mode=mode)
    return client.send(goal, max_duration + 120.0)


def drive_fleet(clients: list, task: str, max_duration: float, *, episodes: int = 0,
                seconds: float = 0.0, mode: int = 0, first_seed: int = 1,
                on_result: Any = None) -> list[list]:
    """Keep every robot busy: one thread per robot runs episodes back to back.

    Each robot runs ``episodes`` episodes (or, with ``seconds``, starts new ones until that
    much time has passed); robot k uses seeds ``first_seed + 100000 * k + i``. Returns the
    RunEpisode results per robot, in order; ``on_result(robot_index, result)`` is called as
    each arrives (from the robot's thread). An episode that fails to run ends that robot's
    thread and is re-raised here.
    """
    import threading

    results: list[list] = [[] for _ in clients]
    errors: list[BaseException] = []
    started = time.monotonic()

    def work(k: int) -> None:
        i = 0
        try:
            while (episodes and i < episodes) or (
                    seconds and time.monotonic() - started < seconds):
                result = run_episode(clients[k], task, first_seed + 100000 * k + i,
                                     max_duration, mode)
                results[k].append(result)
                if on_result is not None:
                    on_result(k, result)
                i += 1
        except BaseException as err:  # noqa: BLE001 - reported to the caller
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,), name=f'robot_{k + 1}', daemon=True)
               for k in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
