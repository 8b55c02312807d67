"""Setup for the vlac_sim package (ament_python)."""

from setuptools import find_packages, setup

package_name = 'vlac_sim'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='VLAC stack maintainers',
    maintainer_email='vlac-maintainers@example.org',
    description='Simulated Franka Panda speaking the ROS 2 interfaces of a real arm.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'sim_node = vlac_sim.sim_node:main',
            'expert_teleop = vlac_sim.expert_node:main',
            'record_dataset = vlac_sim.record:main',
            'sim_operator = vlac_sim.sim_operator_node:main',
        ],
    },
)
