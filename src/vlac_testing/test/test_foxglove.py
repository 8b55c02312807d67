"""The Foxglove layout check finds what a graph lacks (the live check is in test_hitl_loop)."""

import json
import pathlib

import pytest
from vlac_testing.foxglove import layout_paths, layout_problems

LAYOUT = pathlib.Path(__file__).resolve().parents[3] / 'config' / 'foxglove' / 'vlac_robot.json'
GRAPH = [('/robot_1/camera/image_raw', ['sensor_msgs/msg/Image']),
         ('/robot_1/vlac_reward_node/debug_image', ['sensor_msgs/msg/Image']),
         ('/robot_1/progress', ['vlac_interfaces/msg/ProgressReward']),
         ('/robot_1/intervention/active', ['std_msgs/msg/Bool']),
         ('/robot_1/episode_mode', ['std_msgs/msg/String']),
         ('/robot_1/policy_version', ['vlac_interfaces/msg/PolicyVersion']),
         ('/robot_1/help_request', ['vlac_interfaces/msg/HelpRequest'])]


def test_the_shipped_layout_names_the_stack_topics_and_their_fields():
    paths = layout_paths(LAYOUT)
    assert ('/robot_1/progress', ('value',)) in paths
    assert ('/robot_1/vlac_reward_node/debug_image', ()) in paths
    assert layout_problems(LAYOUT, GRAPH) == []


def test_a_missing_topic_or_field_is_reported(tmp_path):
    layout = json.loads(LAYOUT.read_text())
    layout['configById']['Plot!progress']['paths'].append(
        {'value': '/robot_1/progress.reward_sum'})
    layout['configById']['RawMessages!extra'] = {'topicPath': '/robot_1/odometry'}
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(layout))
    assert layout_problems(bad, GRAPH) == [
        '/robot_1/progress: vlac_interfaces/msg/ProgressReward has no field reward_sum',
        '/robot_1/odometry: no such topic in the graph']
    layout['configById']['Map!x'] = {}
    bad.write_text(json.dumps(layout))
    with pytest.raises(ValueError, match='Map!x'):
        layout_paths(bad)
