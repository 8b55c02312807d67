"""vlac_interfaces over real DDS, across processes (loopback only, private domain)."""

import pathlib
import sys
import threading

import numpy as np
import pytest
from rclpy.action import ActionClient
from sensor_msgs.msg import Image
from vlac_ros.images import numpy_to_image
from vlac_ros.qos import LATCHED
from vlac_testing.message_publisher import import_type, roundtrip_topic
from vlac_testing.messages import differences, filled

from vlac_interfaces.action import RunEpisode
from vlac_interfaces.srv import ScorePair

MESSAGE_TYPES = [f'vlac_interfaces/msg/{name}' for name in (
    'DeltaAction', 'EpisodeResult', 'GroundTruth', 'Observation', 'PolicyVersion',
    'ProgressReward',
    'Transition')]
PEERS = pathlib.Path(__file__).parent / 'peers'


def test_every_message_type_crosses_processes_field_for_field(ros_graph):
    seed = 7
    ros_graph.start_node('message_publisher', package='vlac_testing', name='roundtrip_sender',
                         parameters={'seed': seed, 'types': MESSAGE_TYPES})
    received = {}
    events = {name: threading.Event() for name in MESSAGE_TYPES}

    def keep(name):
        def callback(msg):
            received[name] = msg
            events[name].set()
        return callback

    subs = [ros_graph.node.create_subscription(import_type(name), roundtrip_topic(name),
                                               keep(name), LATCHED)
            for name in MESSAGE_TYPES]
    assert len(subs) == len(MESSAGE_TYPES)
    for name in MESSAGE_TYPES:
        assert events[name].wait(15.0), f'{name} never arrived'
    for name in MESSAGE_TYPES:
        expected = filled(import_type(name), seed)
        assert differences(expected, received[name]) == [], name
        assert expected == received[name]
    # A different seed differs in every leaf: the comparison is not vacuous.
    assert len(differences(filled(import_type(MESSAGE_TYPES[-1]), seed + 1),
                           received[MESSAGE_TYPES[-1]])) > 50


def _image(value: int, encoding: str = 'rgb8') -> Image:
    return numpy_to_image(np.full((8, 6, 3), value, np.uint8), encoding)


@pytest.fixture
def servers(ros_graph):
    ros_graph.start_process([sys.executable, str(PEERS / 'minimal_servers.py')],
                            name='minimal_servers')
    return ros_graph


def test_pairwise_scoring_service_across_processes(servers):
    client = servers.node.create_client(ScorePair, 'score_pair')
    assert client.wait_for_service(timeout_sec=10.0)
    request = ScorePair.Request(task='put the cube in the bowl', image_a=_image(51),
                                image_b=_image(102), reference=[_image(0), _image(255)])
    response = client.call(request, timeout_sec=10.0)
    assert response is not None and response.success, response
    assert response.delta == pytest.approx(0.2, abs=1e-6)
    assert response.done_probability == pytest.approx(0.4, abs=1e-6)
    assert response.message == 'task=put the cube in the bowl;reference=2'
    assert response.model_id == 'minimal_servers'

    bad = ScorePair.Request(task='t', image_a=_image(1), image_b=Image(encoding='yuv422'))
    response = client.call(bad, timeout_sec=10.0)
    assert not response.success and 'yuv422' in response.message


def test_episode_control_action_across_processes(servers):
    client = ActionClient(servers.node, RunEpisode, 'run_episode')
    assert client.wait_for_server(timeout_sec=10.0)
    feedback = []
    goal = RunEpisode.Goal(task='stack the red cube', mode=RunEpisode.Goal.MODE_HUMAN_GUIDED,
                           max_duration=0.5, seed=42, reset_state=b'\x01\x02\x03')
    send = client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(f.feedback))
    handle = servers.wait_for(lambda: send.done() and send.result(), 10.0, 'goal acceptance')
    assert handle.accepted
    result_future = handle.get_result_async()
    wrapped = servers.wait_for(lambda: result_future.done() and result_future.result(), 10.0,
                               'episode result')
    result = wrapped.result
    assert result.success and result.steps == 5
    assert result.episode_return == pytest.approx(RunEpisode.Goal.MODE_HUMAN_GUIDED)
    assert result.intervention_count == 3
    assert result.episode_id == 'stack the red cube#42'
    servers.wait_for(lambda: len(feedback) == 5, 5.0, 'all feedback')
    assert [f.step for f in feedback] == list(range(5))
    assert feedback[-1].progress == pytest.approx(1.0)
    client.destroy()
