"""The node-test harness itself: domains, loopback DDS, logs, waiting, teardown."""

import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest
from rclpy.node import Node
from std_msgs.msg import String
from vlac_ros.dds import loopback_env, loopback_profile
from vlac_ros.qos import LATCHED
from vlac_testing.dds import DomainLease
from vlac_testing.message_publisher import roundtrip_topic
from vlac_testing.messages import filled
from vlac_testing.ros_graph import RosGraph, is_live


def test_domain_leases_are_exclusive_and_reusable(tmp_path):
    first, second = DomainLease(tmp_path), DomainLease(tmp_path)
    assert first.domain_id != second.domain_id
    assert 0 < first.domain_id <= 101
    taken = first.domain_id
    first.release()
    third = DomainLease(tmp_path)
    assert third.domain_id == taken
    second.release()
    third.release()


def test_loopback_env_never_falls_back_to_lan_discovery():
    env = loopback_env({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET', 'ROS_LOCALHOST_ONLY': '0',
                        'HOME': '/nonexistent'}, domain_id=17)
    assert 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in env and 'ROS_LOCALHOST_ONLY' not in env
    assert env['ROS_DOMAIN_ID'] == '17'
    profile = pathlib.Path(env['FASTRTPS_DEFAULT_PROFILES_FILE'])
    assert profile == loopback_profile() and profile.is_file()
    text = profile.read_text()
    assert '<address>127.0.0.1</address>' in text
    assert '<useBuiltinTransports>false</useBuiltinTransports>' in text
    assert env['ROS_LOG_DIR']
    # This test process was configured the same way by the plugin.
    assert os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] == str(profile)
    assert 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in os.environ


def test_node_process_with_parameter_file_and_in_process_node(ros_graph):
    name = 'std_msgs/msg/String'
    ros_graph.start_node('message_publisher', package='vlac_testing', name='sender',
                         namespace='robot_1', parameters={'seed': 3, 'types': [name]})
    ros_graph.wait_for_node('/robot_1/sender')
    received = []

    class Listener(Node):
        def __init__(self):
            super().__init__('listener', context=ros_graph.context)
            self.create_subscription(String, f'/robot_1/{roundtrip_topic(name)}',
                                     received.append, LATCHED)

    ros_graph.add_node(Listener())
    ros_graph.wait_for(lambda: received, 10.0, 'latched String')
    assert received[0] == filled(String, 3)
    # The node logs after publishing; under load the line reaches its log file a bit later.
    ros_graph.wait_for(lambda: 'latched 1 message type(s), seed 3' in ros_graph.logs(), 10.0,
                       'the publisher log line')


def test_wait_for_times_out_with_a_clear_message(ros_graph):
    ros_graph.start_process([sys.executable, '-c', 'raise SystemExit(3)'], name='quitter')
    ros_graph.wait_for(lambda: not ros_graph.processes[0].is_running(), 10.0, 'quitter exit')
    with pytest.raises(TimeoutError, match=r'never.*quitter \(exit 3\)'):
        ros_graph.wait_for(lambda: False, 0.1, 'never')


STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
    print('grandchild', child.pid, flush=True)
    time.sleep(600)
""")


def test_teardown_kills_stubborn_children_and_grandchildren(tmp_path):
    graph = RosGraph(tmp_path)
    proc = graph.start_process([sys.executable, '-c', STUBBORN], name='stubborn')
    grandchild = int(graph.wait_for(
        lambda: [w for w in proc.output().split() if w.isdigit()], 10.0, 'grandchild pid')[0])
    start = time.monotonic()
    assert graph.close(sigint_timeout=0.5, sigterm_timeout=0.5) == []
    assert time.monotonic() - start < 5.0
    assert not proc.is_running()
    assert not is_live(grandchild)


def test_failed_test_prints_node_logs_and_leaves_nothing_behind(tmp_path):
    test_file = tmp_path / 'test_inner.py'
    test_file.write_text(textwrap.dedent("""
        import sys

        def test_fails(ros_graph):
            p = ros_graph.start_process(
                [sys.executable, '-c', 'print("hello from the node"); import time; '
                 'time.sleep(600)'], name='chatty')
            ros_graph.wait_for(lambda: 'hello' in p.output(), 10.0, 'greeting')
            print('PID', p.pid)
            assert False, 'deliberate'
    """))
    result = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                             str(test_file)], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert '===== node logs' in out and 'hello from the node' in out, out
    pid = int(out.split('PID ')[1].split()[0])
    assert not is_live(pid)
