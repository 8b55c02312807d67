"""The robot side of the loop on one arm: policy, critic and episode runner in a namespace.

Usage (real arm, dry run until the arm config says otherwise):
    ros2 launch vlac_bringup robot.launch.py arm:=ur_joint_trajectory.yaml \
        policy_model:=/models/policy critic_model:=/models/critic weights_dir:=/data/weights

``arm`` names a file in vlac_bringup's config/arms (or gives a path): swapping the arm is a
YAML file. The critic, the policy node and the episode runner are lifecycle nodes brought up in
order by ``lifecycle_manager`` (vlac_ros; docs/bringup.md): critic configured and active, then
the policy configured (the runner activates it per episode), then the runner active; a node
whose process died is brought back to its state when it respawns (``respawn`` restarts it).
``lifecycle_manager:=false`` uses each node's own ``autostart`` instead.

``teleop:=xbox`` (playstation, spacemouse, keyboard) adds the operator: teleop.launch.py with
that device, at the policy node's rate and in the arm's base frame (both read from the arm
configuration), e.g.
    ros2 launch vlac_bringup robot.launch.py arm:=ur_joint_trajectory.yaml teleop:=xbox \
        policy_model:=/models/policy critic_model:=/models/critic reset_service:=''
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
import yaml

from launch import LaunchDescription

TELEOP_DEVICES = ('xbox', 'playstation', 'spacemouse', 'keyboard')


def _policy_rate_and_frame(arm: str) -> tuple[str, str]:
    """The policy node's rate_hz and arm.base_frame in an arm configuration (its defaults)."""
    with open(arm) as stream:
        data = yaml.safe_load(stream) or {}
    for key, value in data.items():
        if str(key).rsplit('/', 1)[-1] == 'vlac_policy_node':
            params = (value or {}).get('ros__parameters', {})
            arm_params = params.get('arm', {})
            frame = arm_params.get('base_frame') if isinstance(arm_params, dict) else None
            return (str(params.get('rate_hz', 10.0)),
                    str(frame or params.get('arm.base_frame', 'panda_link0')))
    return '10.0', 'panda_link0'


def _nodes(context):
    share = get_package_share_directory('vlac_bringup')
    arm = LaunchConfiguration('arm').perform(context)
    if not os.path.isabs(arm):
        arm = os.path.join(share, 'config', 'arms', arm)
    loop = LaunchConfiguration('loop_config').perform(context)
    namespace = LaunchConfiguration('namespace')
    teleop = LaunchConfiguration('teleop').perform(context)
    managed = LaunchConfiguration('lifecycle_manager').perform(context) == 'true'
    operator = []
    if teleop != 'none':
        rate_hz, base_frame = _policy_rate_and_frame(arm)
        operator.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'teleop.launch.py')),
            launch_arguments={'namespace': namespace, 'device': teleop, 'rate_hz': rate_hz,
                              'base_frame': base_frame,
                              'episodes_dir': LaunchConfiguration('episodes_dir')}.items()))
    respawn = {'respawn': managed, 'respawn_delay': 2.0}
    manager = [Node(
        package='vlac_ros', executable='lifecycle_manager', name='lifecycle_manager',
        namespace=namespace, output='screen',
        parameters=[{'node_names': ['vlac_reward_node', 'vlac_policy_node', 'episode_runner'],
                     'configure_only': ['vlac_policy_node'], 'autostart': True}])] \
        if managed else []
    return operator + manager + [
        Node(package='vlac_policy_node', executable='vlac_policy_node',
             name='vlac_policy_node', namespace=namespace, output='screen', **respawn,
             parameters=[arm, {'model_path': LaunchConfiguration('policy_model'),
                               'weights_dir': LaunchConfiguration('weights_dir')}]),
        Node(package='vlac_reward_node', executable='vlac_reward_node',
             name='vlac_reward_node', namespace=namespace, output='screen', **respawn,
             parameters=[loop, {'model_path': LaunchConfiguration('critic_model'),
                                'autostart': not managed}]),
        Node(package='rl_runner', executable='episode_runner', name='episode_runner',
             namespace=namespace, output='screen', **respawn,
             parameters=[loop, {'episodes_dir': LaunchConfiguration('episodes_dir'),
                                'reset_service': LaunchConfiguration('reset_service'),
                                'autostart': not managed}]),
    ]


def generate_launch_description():
    share = get_package_share_directory('vlac_bringup')
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='robot_1',
                              description='robot namespace all topics live under'),
        DeclareLaunchArgument('arm', default_value='sim_panda_servo.yaml',
                              description='arm configuration in config/arms (or a path)'),
        DeclareLaunchArgument('loop_config',
                              default_value=os.path.join(share, 'config', 'loop.yaml'),
                              description='parameter YAML of the critic and the episode runner'),
        DeclareLaunchArgument('policy_model', description='policy model directory'),
        DeclareLaunchArgument('critic_model', description='critic model directory'),
        DeclareLaunchArgument('weights_dir', default_value='',
                              description='hot-swap weights directory (empty: no hot swap)'),
        DeclareLaunchArgument('episodes_dir', default_value='episodes',
                              description='root folder of the episode recordings'),
        DeclareLaunchArgument('reset_service', default_value='sim/reset',
                              description="'' on a real arm: the operator signals ready"),
        DeclareLaunchArgument('lifecycle_manager', default_value='true',
                              choices=['true', 'false'],
                              description='ordered bring-up and restarts by lifecycle_manager '
                              "(false: the nodes' own autostart)"),
        DeclareLaunchArgument('teleop', default_value='none',
                              choices=['none', *TELEOP_DEVICES],
                              description='teleop device of the operator (teleop.launch.py); '
                              'none: no operator'),
        OpaqueFunction(function=_nodes),
    ])
