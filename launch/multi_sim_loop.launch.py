"""Several simulated robots, one learner: N arms in robot_1..N and one trainer_node.

Usage:
    ros2 launch vlac_bringup multi_sim_loop.launch.py robots:=4 task:=press_button \
        policy_model:=/models/policy critic_model:=/models/critic work_dir:=/data/trainer

Each robot namespace gets its simulator, critic, policy node and episode runner (sim.launch.py
and robot.launch.py, as sim_loop.launch.py starts one); the single trainer learns from all of
them, logs per-robot statistics (``<work_dir>/logs/robots.csv``, TensorBoard ``robots/<id>/``)
and publishes every new version on each robot's ``policy_version``. An episode driver keeps
the robots busy, e.g. ``vlac_bench.sim_loop.drive_fleet`` or one
``ros2 action send_goal /robot_<k>/run_episode ...`` loop per robot; ``benchmark_fleet``
measures episodes per hour and learner samples/s with 1, 2 and 4 robots.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.actions import Node

from launch import LaunchDescription

MAX_ROBOTS = 16


def _fleet(context):
    share = get_package_share_directory('vlac_bringup')
    value = context.launch_configurations

    robots = value['robots']
    if not robots.isdigit() or not 1 <= int(robots) <= MAX_ROBOTS:
        raise ValueError(f'robots:={robots!r} must be an integer in 1..{MAX_ROBOTS}')
    namespaces = [f'robot_{k}' for k in range(1, int(robots) + 1)]
    work = value['work_dir']
    weights = os.path.join(work, 'weights')
    actions = []
    for namespace in namespaces:
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'sim.launch.py')),
            launch_arguments={'namespace': namespace, 'task': value['task'],
                              'camera_size': value['camera_size']}.items()))
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'robot.launch.py')),
            launch_arguments={'namespace': namespace, 'policy_model': value['policy_model'],
                              'critic_model': value['critic_model'], 'weights_dir': weights,
                              'episodes_dir': os.path.join(work, 'robot_episodes')}.items()))
    actions.append(Node(
        package='rl_trainer', executable='trainer_node', name='trainer_node', output='screen',
        parameters=[os.path.join(share, 'config', 'loop.yaml'),
                    {'robots': namespaces, 'learner.model_path': value['policy_model'],
                     'learner.work_dir': work, 'learner.weights_dir': weights}]))
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('robots', default_value='2',
                              description=f'number of simulated robots (1..{MAX_ROBOTS}), '
                              'namespaces robot_1..robot_N'),
        DeclareLaunchArgument('task', default_value='press_button',
                              description='task (see vlac_sim.tasks)'),
        DeclareLaunchArgument('camera_size', default_value='96',
                              description='square camera side, px'),
        DeclareLaunchArgument('policy_model', description='initial policy model directory'),
        DeclareLaunchArgument('critic_model', description='critic model directory'),
        DeclareLaunchArgument('work_dir', default_value='trainer',
                              description='trainer folder (episodes, checkpoints, weights, '
                              'logs) shared by the robots on this machine'),
        OpaqueFunction(function=_fleet),
    ])
