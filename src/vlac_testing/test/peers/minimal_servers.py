"""Minimal, deterministic servers of the stack's service and actions for interface tests.

Not a critic and not a robot: they answer from the request's own content so the test can
check that every request field arrived and every response field came back across processes.
The real servers come with vlac_reward_node and rl_runner.
"""

import sys
import time

import numpy as np
import rclpy
from rclpy.action import ActionServer
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from vlac_ros.images import ImageEncodingError, image_to_rgb

from vlac_interfaces.action import RunEpisode
from vlac_interfaces.srv import ScorePair


class MinimalServers(Node):
    """ScorePair service and RunEpisode action server with request-derived answers."""

    def __init__(self) -> None:
        super().__init__('minimal_servers')
        self.create_service(ScorePair, 'score_pair', self.on_score_pair)
        self._episodes = ActionServer(self, RunEpisode, 'run_episode', self.on_run_episode)

    def on_score_pair(self, request: ScorePair.Request, response: ScorePair.Response
                      ) -> ScorePair.Response:
        """Delta = mean brightness change of image_b vs image_a, in [-1, 1]."""
        try:
            a = image_to_rgb(request.image_a).astype(np.float64).mean() / 255.0
            b = image_to_rgb(request.image_b).astype(np.float64).mean() / 255.0
        except ImageEncodingError as err:
            response.success, response.message = False, str(err)
            response.delta = response.done_probability = float('nan')
            return response
        response.success = True
        response.delta = float(b - a)
        response.done_probability = float(b)
        response.message = f'task={request.task};reference={len(request.reference)}'
        response.model_id = 'minimal_servers'
        return response

    def on_run_episode(self, goal_handle) -> RunEpisode.Result:
        """Count max_duration * 10 steps, sending feedback for each; echo the goal back."""
        goal = goal_handle.request
        steps = int(round(goal.max_duration * 10))
        for step in range(steps):
            feedback = RunEpisode.Feedback(step=step, progress=(step + 1) / steps,
                                           done_probability=0.0)
            goal_handle.publish_feedback(feedback)
            time.sleep(0.01)
        goal_handle.succeed()
        return RunEpisode.Result(
            success=True, episode_return=float(goal.mode), steps=steps,
            intervention_count=len(goal.reset_state), episode_id=f'{goal.task}#{goal.seed}',
            termination_reason='done')


def main() -> None:
    """Serve until interrupted."""
    rclpy.init(args=sys.argv)
    node = MinimalServers()
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
