"""Setup for the vlac_training package (ament_python)."""

from setuptools import find_packages, setup

package_name = 'vlac_training'

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
    description='Offline tools on recorded rosbag2 episodes',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'train_critic = vlac_training.train_critic:main',
            'evaluate_critic = vlac_training.evaluate_critic:main',
            'train_policy_bc = vlac_training.train_bc:main',
            'train_offline = vlac_training.train_offline:main',
            'export_policy_onnx = vlac_training.export_policy:main',
            'evaluate_policy = vlac_training.rollout:main',
            'ppo_sanity = vlac_training.sanity:main',
            'vlac_experiment = vlac_training.experiment:main',
            'vlac_experiment_report = vlac_training.experiment_report:main',
        ],
    },
)
