"""return_point_server: return points for return-and-explore episodes, as a service.

Serves ``hitl_teleop.return_points.ReturnPointStore`` (a folder of return points chosen from
recorded episodes where the critic's progress stalled or regressed) on ``return_points/next``
(vlac_interfaces/GetReturnPoint: task in, snapshot bytes out, round robin in rank order). With
``episodes_dir`` set it scans the recorded episodes for new points every ``scan_period``
seconds, so points from the robot's own recent failures become available while it learns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import pathlib

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from vlac_models.config import doc
from vlac_ros.params import declare_dataclass
from vlac_ros.spin import run_node

from hitl_teleop.help import HelpConfig
from hitl_teleop.return_points import ReturnPointStore, episode_bags, pick_from_episode
from hitl_teleop.teleop_node import help_config
from vlac_interfaces.srv import GetReturnPoint


@dataclass(frozen=True)
class ReturnPointServerConfig:
    """Parameters of ``return_point_server``."""

    store: str = field(default='return_points', metadata=doc(
        'folder of the return points (one JSON file per point)'))
    episodes_dir: str = field(default='', metadata=doc(
        "recorded episodes scanned for new points (the runner's episodes_dir); empty: serve "
        'the store as it is'))
    scan_period: float = field(default=30.0, metadata=doc('s between two scans'))
    help_config: str = field(default='help', metadata=doc(
        "stall thresholds (the help requests' own): config/teleop name or YAML path"))

    def validate(self) -> 'ReturnPointServerConfig':
        """Raise ValueError naming the bad value; return self."""
        if not self.store:
            raise ValueError('store is empty')
        if not 1.0 <= self.scan_period <= 86400.0:
            raise ValueError(f'scan_period {self.scan_period} s outside 1..86400')
        return self


class ReturnPointServer(Node):
    """``return_points/next`` over a ReturnPointStore, refilled from recorded episodes."""

    def __init__(self, **kwargs) -> None:
        super().__init__('return_point_server', **kwargs)
        self.config = cfg = declare_dataclass(self, ReturnPointServerConfig)
        self.store = ReturnPointStore(pathlib.Path(cfg.store).expanduser())
        self.help: HelpConfig = help_config(cfg.help_config)
        self._scanned: set[str] = set()
        group = MutuallyExclusiveCallbackGroup()
        self.create_service(GetReturnPoint, 'return_points/next', self._on_next,
                            callback_group=group)
        if cfg.episodes_dir:
            self.scan()
            self.create_timer(cfg.scan_period, self.scan, callback_group=group)
        self.get_logger().info(f'serving {len(self.store.points())} return points from '
                               f'{self.store.root}')

    def scan(self) -> int:
        """Add the points of episodes not scanned yet; return how many were added."""
        root = pathlib.Path(self.config.episodes_dir).expanduser()
        added = 0
        if not root.is_dir():  # nothing recorded yet
            return 0
        for bag in episode_bags(root):
            if str(bag) in self._scanned:
                continue
            self._scanned.add(str(bag))
            try:
                points = pick_from_episode(bag, self.help)
            except ValueError as err:
                self.get_logger().warning(f'episode {bag} skipped: {err}')
                continue
            for point in points:
                self.store.add(point)
                added += 1
        if added:
            self.get_logger().info(f'{added} new return points from {root}')
        return added

    def _on_next(self, request: GetReturnPoint.Request, response: GetReturnPoint.Response
                 ) -> GetReturnPoint.Response:
        point = self.store.next(request.task)
        if point is None:
            response.success = False
            response.message = f'no return point for task {request.task!r} yet'
            return response
        response.success = True
        response.message = f'{point.reason} at progress {point.progress:.2f}'
        response.episode_id, response.progress = point.episode_id, float(point.progress)
        response.reason, response.snapshot = point.reason, bytes(point.snapshot)
        return response


def main(args: list[str] | None = None) -> None:
    """Console entry point: ``ros2 run hitl_teleop return_point_server``."""
    run_node(ReturnPointServer, args)


if __name__ == '__main__':
    main()
