"""The scripted operator drives the simulated arm to success through its command topics."""

import pytest
from vlac_ros.qos import RELIABLE

from vlac_interfaces.msg import GroundTruth
from vlac_interfaces.srv import ResetScene


@pytest.mark.parametrize('task', ['press_button', 'pick_place_blue'])
def test_expert_teleop_solves_the_task_over_dds(ros_graph, task):
    ros_graph.start_node('sim_node', package='vlac_sim', name='sim_node', namespace='robot_1',
                         parameters={'task': task, 'seed': 4, 'cameras.camera.rate_hz': 5.0})
    truth = ros_graph.subscribe(GroundTruth, '/robot_1/eval_only/ground_truth', RELIABLE)
    ros_graph.wait_for(lambda: truth.last, 20.0, 'ground truth')
    assert not truth.last.success
    ros_graph.start_node('expert_teleop', package='vlac_sim', name='expert_teleop',
                         namespace='robot_1')
    ros_graph.wait_for(lambda: truth.last.success, 40.0, f'{task} solved by the expert')
    # A reset restarts the operator's script, and it solves the new episode too.
    client = ros_graph.node.create_client(ResetScene, '/robot_1/sim/reset')
    assert client.wait_for_service(timeout_sec=10.0)
    response = client.call(ResetScene.Request(task=task, seed=9), timeout_sec=10.0)
    assert response.success
    ros_graph.wait_for(lambda: not truth.last.success, 10.0, 'reset scene')
    ros_graph.wait_for(lambda: truth.last.success, 40.0, f'{task} solved again after reset')
