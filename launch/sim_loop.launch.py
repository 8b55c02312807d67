"""The whole asynchronous loop on the simulated arm: sim + robot side + trainer.

Usage:
    ros2 launch vlac_bringup sim_loop.launch.py task:=press_button \
        policy_model:=/models/policy critic_model:=/models/critic work_dir:=/data/trainer

Episodes are started through the runner's action, e.g.
    ros2 action send_goal /robot_1/run_episode vlac_interfaces/action/RunEpisode \
        "{task: press_button, seed: 1, max_duration: 20.0}"

``sim_operator:=true`` adds the human in the loop without a human, as
``vlac_bench.sim_loop.start_hitl`` does: the simulated operator (vlac_sim ``sim_operator``, the
scripted expert publishing ``operator_device``'s Joy), teleop_node with the same device layout
(teleop.launch.py, no device driver) and the return point server fed by the runner's
recordings. Then demonstration (mode 3), human-guided (mode 2, takeovers on help requests) and
return-and-explore (mode 1) goals run as on a real arm with an operator.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory('vlac_bringup')
    namespace = LaunchConfiguration('namespace')
    work = LaunchConfiguration('work_dir')
    weights = PathJoinSubstitution([work, 'weights'])
    sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'sim.launch.py')),
        launch_arguments={'namespace': namespace, 'task': LaunchConfiguration('task'),
                          'camera_size': LaunchConfiguration('camera_size')}.items())
    robot = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'robot.launch.py')),
        launch_arguments={'namespace': namespace,
                          'policy_model': LaunchConfiguration('policy_model'),
                          'critic_model': LaunchConfiguration('critic_model'),
                          'weights_dir': weights,
                          'episodes_dir': PathJoinSubstitution([work, 'robot_episodes'])
                          }.items())
    trainer = Node(package='rl_trainer', executable='trainer_node', name='trainer_node',
                   output='screen',
                   parameters=[os.path.join(share, 'config', 'loop.yaml'),
                               {'robots': [[namespace]],  # a list of one string, not one string
                                'learner.model_path': LaunchConfiguration('policy_model'),
                                'learner.work_dir': work, 'learner.weights_dir': weights}])
    with_operator = IfCondition(LaunchConfiguration('sim_operator'))
    device = LaunchConfiguration('operator_device')
    # The simulator runs the policy node's default arm (sim_panda_servo.yaml: 10 Hz,
    # panda_link0): teleop.launch.py's defaults.
    teleop = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'teleop.launch.py')),
        condition=with_operator,
        launch_arguments={'namespace': namespace, 'device': device, 'device_driver': 'false',
                          'return_points': 'true',
                          'store': PathJoinSubstitution([work, 'return_points']),
                          'episodes_dir': PathJoinSubstitution([work, 'robot_episodes'])
                          }.items())
    operator = Node(package='vlac_sim', executable='sim_operator', name='sim_operator',
                    namespace=namespace, output='screen', condition=with_operator,
                    # [substitution, str] in a parameter dict concatenates to one string;
                    # PathJoinSubstitution itself takes no nested list (TypeError on load).
                    parameters=[{'device': [PathJoinSubstitution(
                        [share, 'config', 'teleop', device]), '.yaml']}])
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='robot_1',
                              description='robot namespace (the trainer learns from it)'),
        DeclareLaunchArgument('task', default_value='press_button',
                              description='task (see vlac_sim.tasks)'),
        DeclareLaunchArgument('camera_size', default_value='96',
                              description='square camera side, px (as vlac_demo and the models '
                              'it trains use)'),
        DeclareLaunchArgument('policy_model', description='initial policy model directory'),
        DeclareLaunchArgument('critic_model', description='critic model directory'),
        DeclareLaunchArgument('work_dir', default_value='trainer',
                              description='trainer folder (episodes, checkpoints, weights)'),
        DeclareLaunchArgument('sim_operator', default_value='false', choices=['true', 'false'],
                              description='also run the simulated operator, teleop_node and '
                              'the return point server (work_dir/return_points)'),
        DeclareLaunchArgument('operator_device', default_value='xbox',
                              choices=['xbox', 'playstation', 'spacemouse', 'keyboard'],
                              description="device layout the simulated operator's Joy uses "
                              '(teleop_node uses the same)'),
        sim, robot, trainer, teleop, operator,
    ])
