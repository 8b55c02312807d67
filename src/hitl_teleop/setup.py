"""Setup for the hitl_teleop package (ament_python)."""

from setuptools import find_packages, setup

package_name = 'hitl_teleop'

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
    description='Human in the loop for the VLAC RL loop: teleop devices, takeover, help '
                'requests and return points.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'teleop_node = hitl_teleop.teleop_node:main',
            'teleop_keyboard = hitl_teleop.keyboard:main',
            'return_points = hitl_teleop.return_points:main',
            'return_point_server = hitl_teleop.return_point_node:main',
        ],
    },
)
