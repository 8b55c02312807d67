"""The operator's side of one arm: a teleop device, teleop_node and optionally return points.

Usage (an Xbox pad on robot_1, return points from the runner's recordings):
    ros2 launch vlac_bringup teleop.launch.py device:=xbox namespace:=robot_1 \
        return_points:=true episodes_dir:=episodes

``device`` picks the layout (config/teleop/<device>.yaml, or ``device_config``) and the driver
that publishes its sensor_msgs/Joy on ``<namespace>/joy``:

- ``xbox``, ``playstation``: the ``joy`` package's ``joy_node`` (SDL joystick API), autorepeat
  at 20 Hz so a stick held still keeps messages coming within the device's ``timeout``;
- ``spacemouse``: ``spacenav``'s ``spacenav_node`` (needs spacenavd), its ``spacenav/joy``
  remapped to ``joy``;
- ``keyboard``: no driver. A launch file cannot own a terminal, so the operator runs the
  keyboard tool by hand (the command is printed).

``teleop_node`` turns the Joy into takeovers (``intervention/active``, ``intervention/action``)
and operator events; ``rate_hz`` and ``base_frame`` must be the policy node's (robot.launch.py
reads them from the arm configuration). ``device_driver:=false`` leaves the driver out (the
simulated operator publishes the Joy instead, see sim_loop.launch.py).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

DEVICES = ('xbox', 'playstation', 'spacemouse', 'keyboard')
JOY_RATE_HZ = 20.0
"""joy_node autorepeat, Hz: well above 1 / the device timeout (0.5 s in config/teleop)."""


def _teleop_config(share: str, name_or_path: str) -> str:
    """A config/teleop name ('help') as its YAML in vlac_bringup's share; a path unchanged."""
    if not name_or_path or '/' in name_or_path or name_or_path.endswith(('.yaml', '.yml')):
        return name_or_path
    return os.path.join(share, 'config', 'teleop', f'{name_or_path}.yaml')


def _nodes(context):
    share = get_package_share_directory('vlac_bringup')
    device = LaunchConfiguration('device').perform(context)
    namespace = LaunchConfiguration('namespace').perform(context).strip('/')
    device_config = LaunchConfiguration('device_config').perform(context) or device
    help_config = _teleop_config(share, LaunchConfiguration('help_config').perform(context))
    rate = LaunchConfiguration('rate_hz').perform(context)
    try:
        rate_hz = float(rate)
    except ValueError:
        raise ValueError(f'rate_hz {rate!r} is not a number') from None
    joy_id = LaunchConfiguration('joy_device_id').perform(context)
    if not joy_id.isdigit():
        raise ValueError(f'joy_device_id {joy_id!r} must be an integer >= 0')
    driver = LaunchConfiguration('device_driver').perform(context) == 'true'
    actions = [Node(
        package='hitl_teleop', executable='teleop_node', name='teleop_node',
        namespace=namespace, output='screen',
        parameters=[{'device': _teleop_config(share, device_config), 'rate_hz': rate_hz,
                     'base_frame': LaunchConfiguration('base_frame').perform(context),
                     'help_config': help_config}])]
    if driver and device in ('xbox', 'playstation'):
        # In the namespace, joy_node's own `joy` topic already is the teleop node's input.
        # The device YAML owns the deadzone: joy_node's would rescale the sticks a second time.
        actions.append(Node(
            package='joy', executable='joy_node', name='joy_node', namespace=namespace,
            output='screen',
            parameters=[{'device_id': int(joy_id), 'deadzone': 0.0,
                         'autorepeat_rate': JOY_RATE_HZ}]))
    elif driver and device == 'spacemouse':
        actions.append(Node(
            package='spacenav', executable='spacenav_node', name='spacenav',
            namespace=namespace, output='screen', remappings=[('spacenav/joy', 'joy')]))
    elif driver and device == 'keyboard':
        actions.append(LogInfo(msg=(
            'keyboard teleop: run the keyboard tool in a terminal (a launch file cannot own '
            'one): ros2 run hitl_teleop teleop_keyboard --ros-args -r '
            f'__ns:=/{namespace}')))
    if LaunchConfiguration('return_points').perform(context) == 'true':
        actions.append(Node(
            package='hitl_teleop', executable='return_point_server',
            name='return_point_server', namespace=namespace, output='screen',
            parameters=[{'store': LaunchConfiguration('store').perform(context),
                         'episodes_dir': LaunchConfiguration('episodes_dir').perform(context),
                         # The stall thresholds of the help requests, also when those are off.
                         'help_config': help_config or _teleop_config(share, 'help')}]))
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='robot_1',
                              description='robot namespace all topics live under'),
        DeclareLaunchArgument('device', default_value='xbox', choices=list(DEVICES),
                              description='teleop device: its layout (config/teleop) and the '
                              'driver started for it'),
        DeclareLaunchArgument('device_config', default_value='',
                              description='device layout YAML path overriding '
                              'config/teleop/<device>.yaml (another pad on the same driver); '
                              'empty: the shipped one'),
        DeclareLaunchArgument('device_driver', default_value='true', choices=['true', 'false'],
                              description='start the device driver (joy_node, spacenav_node); '
                              'false: something else publishes <namespace>/joy'),
        DeclareLaunchArgument('joy_device_id', default_value='0',
                              description="joy_node's SDL joystick index (xbox, playstation)"),
        DeclareLaunchArgument('rate_hz', default_value='10.0',
                              description="teleop control rate, Hz: the policy node's rate_hz "
                              '(one operator action per control period)'),
        DeclareLaunchArgument('base_frame', default_value='panda_link0',
                              description="frame of the operator's actions: the arm "
                              "configuration's arm.base_frame (REP 103)"),
        DeclareLaunchArgument('help_config', default_value='help',
                              description='help-request thresholds: a config/teleop name or a '
                              'YAML path; empty: no help requests'),
        DeclareLaunchArgument('return_points', default_value='false',
                              choices=['true', 'false'],
                              description='start return_point_server (return_points/next) for '
                              'return-and-explore episodes'),
        DeclareLaunchArgument('store', default_value='return_points',
                              description='return point store folder (one JSON file per point)'),
        DeclareLaunchArgument('episodes_dir', default_value='episodes',
                              description="recorded episodes scanned for return points (the "
                              "episode runner's episodes_dir); empty: serve the store as it is"),
        OpaqueFunction(function=_nodes),
    ])
