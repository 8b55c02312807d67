"""vlac_core: shared library of the VLAC stack (ament_python)."""

from setuptools import find_packages, setup

package_name = 'vlac_core'

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
    description='Shared library of the VLAC real-world RL stack.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'message_publisher = vlac_core.testing.message_publisher:main',
            'vlac_dds_env = vlac_core.dds_env:main',
            'train_critic = vlac_core.critic.train:main',
            'evaluate_critic = vlac_core.critic.evaluate:main',
            'train_policy_bc = vlac_core.policy.train_bc:main',
            'vlac_convert_checkpoint = vlac_core.vlac_model.loading:convert_main',
        ],
        # The ros_graph fixture for node tests, available to every package's tests.
        'pytest11': ['vlac_ros_graph = vlac_core.testing.pytest_plugin'],
    },
)
