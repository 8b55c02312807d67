"""Setup for the vlac_testing package (ament_python)."""

from setuptools import find_packages, setup

package_name = 'vlac_testing'

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
    description='Test-only harness of the VLAC stack',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'message_publisher = vlac_testing.message_publisher:main',
        ],
        # The ros_graph fixture for node tests, available to every package's tests.
        'pytest11': ['vlac_ros_graph = vlac_testing.pytest_plugin'],
    },
)
