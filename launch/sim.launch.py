"""Simulated Panda (vlac_sim) standing in for a real arm driver, optionally with its expert.

Usage:
    ros2 launch vlac_bringup sim.launch.py namespace:=robot_1 task:=press_button expert:=true
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description():
    config = os.path.join(get_package_share_directory('vlac_bringup'), 'config', 'sim.yaml')
    namespace = LaunchConfiguration('namespace')
    args = [
        DeclareLaunchArgument('namespace', default_value='robot_1',
                              description='robot namespace all topics live under'),
        DeclareLaunchArgument('config', default_value=config,
                              description='parameter YAML for sim_node and expert_teleop'),
        DeclareLaunchArgument('task', default_value='pick_place_red',
                              description='initial task (see vlac_sim.tasks)'),
        DeclareLaunchArgument('seed', default_value='0',
                              description='initial-state seed'),
        DeclareLaunchArgument('expert', default_value='false',
                              description='also run the scripted expert as the teleoperator'),
        DeclareLaunchArgument('expert_behaviour', default_value='expert',
                              description='expert | random | stalled | reversed'),
        DeclareLaunchArgument('camera_size', default_value='96',
                              description='side of the square camera image, px (96: what the '
                              'demo records and trains its models on, as vlac_demo runs it)'),
    ]
    sim = Node(package='vlac_sim', executable='sim_node', name='sim_node', namespace=namespace,
               parameters=[LaunchConfiguration('config'),
                           {'task': LaunchConfiguration('task'),
                            'seed': LaunchConfiguration('seed'),
                            'cameras.camera.width': LaunchConfiguration('camera_size'),
                            'cameras.camera.height': LaunchConfiguration('camera_size')}],
               output='screen')
    expert = Node(package='vlac_sim', executable='expert_teleop', name='expert_teleop',
                  namespace=namespace, condition=IfCondition(LaunchConfiguration('expert')),
                  parameters=[LaunchConfiguration('config'),
                              {'behaviour': LaunchConfiguration('expert_behaviour')}],
                  output='screen')
    return LaunchDescription(args + [sim, expert])
