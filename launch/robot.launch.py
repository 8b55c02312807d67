"""The robot side of the loop on one arm: policy, critic and episode runner in a namespace.

Usage (real arm, dry run until the arm config says otherwise):
    ros2 launch vlac_bringup robot.launch.py arm:=ur_joint_trajectory.yaml \
        policy_model:=/models/policy critic_model:=/models/critic weights_dir:=/data/weights

``arm`` names a file in vlac_bringup's config/arms (or gives a path): swapping the arm is a
YAML file. The policy node and the critic are lifecycle nodes started with ``autostart`` for the
critic; the episode runner configures and activates the policy per episode.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _nodes(context):
    share = get_package_share_directory('vlac_bringup')
    arm = LaunchConfiguration('arm').perform(context)
    if not os.path.isabs(arm):
        arm = os.path.join(share, 'config', 'arms', arm)
    loop = LaunchConfiguration('loop_config').perform(context)
    namespace = LaunchConfiguration('namespace')
    return [
        Node(package='vlac_policy_node', executable='vlac_policy_node',
             name='vlac_policy_node', namespace=namespace, output='screen',
             parameters=[arm, {'model_path': LaunchConfiguration('policy_model'),
                               'weights_dir': LaunchConfiguration('weights_dir')}]),
        Node(package='vlac_reward_node', executable='vlac_reward_node',
             name='vlac_reward_node', namespace=namespace, output='screen',
             parameters=[loop, {'model_path': LaunchConfiguration('critic_model'),
                                'autostart': True}]),
        Node(package='rl_runner', executable='episode_runner', name='episode_runner',
             namespace=namespace, output='screen',
             parameters=[loop, {'episodes_dir': LaunchConfiguration('episodes_dir'),
                                'reset_service': LaunchConfiguration('reset_service')}]),
    ]


def generate_launch_description():
    share = get_package_share_directory('vlac_bringup')
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='robot_1'),
        DeclareLaunchArgument('arm', default_value='sim_panda_servo.yaml',
                              description='arm configuration in config/arms (or a path)'),
        DeclareLaunchArgument('loop_config',
                              default_value=os.path.join(share, 'config', 'loop.yaml')),
        DeclareLaunchArgument('policy_model', description='policy model directory'),
        DeclareLaunchArgument('critic_model', description='critic model directory'),
        DeclareLaunchArgument('weights_dir', default_value='',
                              description='hot-swap weights directory (empty: no hot swap)'),
        DeclareLaunchArgument('episodes_dir', default_value='episodes'),
        DeclareLaunchArgument('reset_service', default_value='sim/reset',
                              description="'' on a real arm: the operator signals ready"),
        OpaqueFunction(function=_nodes),
    ])
