"""The real sim.launch.py under launch_testing: sim_node comes up and publishes (ROS only).

``launch``, ``launch_ros`` and ``launch_testing`` come with a ROS 2 installation, not from
PyPI: without them this module is skipped (``test_launch.py`` checks the launch files
statically everywhere). Run it with pytest (launch_testing's plugin collects it) or with
``launch_test test/test_launch_ros.py``, in a built and sourced workspace as ``colcon test``
has it: vlac_bringup's share directory and vlac_sim's executables found through the ament
index (else the launch test is skipped).

The launch runs on a private ROS_DOMAIN_ID (loopback DDS, as every node test here).
"""

import os
import time
import unittest

import pytest

pytest.importorskip('launch_testing')
pytest.importorskip('launch_ros')

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource
import launch_testing
from launch_testing.actions import ReadyToTest
import launch_testing.asserts
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState
from vlac_testing.dds import DomainLease

from launch import LaunchDescription

try:
    SHARE = get_package_share_directory('vlac_bringup')
except PackageNotFoundError:
    # Not a module-level skip: launch_testing's pytest plugin imports every test module while
    # collecting, and a skip raised there would skip the whole directory. The skipif mark
    # below is carried over to the launch test it collects.
    SHARE = None
NAMESPACE = 'launch_test'
STARTUP_TIMEOUT = 60.0
"""s for sim_node to start (pybullet, renderer) and publish its first joint_states."""
LEASE = DomainLease()


@pytest.mark.launch_test
@pytest.mark.skipif(SHARE is None, reason='vlac_bringup is not installed: build and source '
                    'the workspace')
def generate_test_description() -> LaunchDescription:
    """sim.launch.py as shipped (its defaults), in its own namespace and domain."""
    sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, 'launch', 'sim.launch.py')),
        launch_arguments={'namespace': NAMESPACE}.items())
    return LaunchDescription([
        SetEnvironmentVariable('ROS_DOMAIN_ID', str(LEASE.domain_id)), sim, ReadyToTest()])


class TestSimLaunch(unittest.TestCase):
    """While the launch runs."""

    def test_sim_node_comes_up_and_publishes_joint_states(self, proc_output):
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=LEASE.domain_id)
        executor = SingleThreadedExecutor(context=context)
        node = rclpy.create_node('launch_test_probe', context=context)
        try:
            received = []
            node.create_subscription(JointState, f'/{NAMESPACE}/joint_states', received.append,
                                     10)
            executor.add_node(node)
            # The node's name reaches the graph (ros_discovery_info) after its first messages.
            deadline = time.monotonic() + STARTUP_TIMEOUT
            nodes = []
            while time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
                nodes = node.get_node_names_and_namespaces()
                if received and ('sim_node', f'/{NAMESPACE}') in nodes:
                    break
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown(context=context)
        assert received, f'no /{NAMESPACE}/joint_states within {STARTUP_TIMEOUT} s'
        assert ('sim_node', f'/{NAMESPACE}') in nodes, nodes


@launch_testing.post_shutdown_test()
class TestSimLaunchShutdown(unittest.TestCase):
    """After the launch is shut down (SIGINT): every process exited cleanly."""

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
