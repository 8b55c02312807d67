"""Setup for the vlac_ros package (ament_python)."""

from setuptools import find_packages, setup

package_name = 'vlac_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['resources/*.xml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='VLAC stack maintainers',
    maintainer_email='vlac-maintainers@example.org',
    description='Thin ROS 2 helpers shared by the nodes',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'vlac_dds_env = vlac_ros.dds:main',
            'lifecycle_manager = vlac_ros.lifecycle_manager_node:main',
        ],
    },
)
