"""No DDS packet leaves loopback while nodes talk (needs root and tcpdump, else skipped)."""

import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest
from std_msgs.msg import String
from vlac_ros.qos import LATCHED
from vlac_testing.message_publisher import roundtrip_topic

TCPDUMP = shutil.which('tcpdump')
RTPS_FILTER = 'udp and (portrange 7400-7700 or dst net 239.255.0.0/16)'

pytestmark = pytest.mark.skipif(
    TCPDUMP is None or os.geteuid() != 0,
    reason='needs root and tcpdump (apt-get install tcpdump) to watch the network cards')


def test_node_traffic_stays_on_loopback(ros_graph, tmp_path):
    cards = [c.name for c in pathlib.Path('/sys/class/net').iterdir() if c.name != 'lo']
    captures = [subprocess.Popen([TCPDUMP, '-i', card, '-n', '-q', '-l', RTPS_FILTER],
                                 stdout=open(tmp_path / f'{card}.txt', 'w'),  # noqa: SIM115
                                 stderr=subprocess.DEVNULL) for card in cards]
    try:
        time.sleep(1.0)  # tcpdump attaches
        ros_graph.start_node('message_publisher', package='vlac_testing', name='sender',
                             parameters={'seed': 1, 'types': ['std_msgs/msg/String']})
        received = []
        ros_graph.node.create_subscription(String, roundtrip_topic('std_msgs/msg/String'),
                                           received.append, LATCHED)
        ros_graph.wait_for(lambda: received, 10.0, 'message over DDS')
        time.sleep(1.5)  # discovery announcements keep flowing; give them time to leak
    finally:
        for capture in captures:
            capture.send_signal(signal.SIGINT)
            capture.wait(5)
    leaked = {card: (tmp_path / f'{card}.txt').read_text().count('UDP') for card in cards}
    assert sum(leaked.values()) == 0, f'DDS packets seen off loopback: {leaked}'
