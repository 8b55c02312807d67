"""Setup for the vlac_bench package (ament_python)."""

from setuptools import find_packages, setup

package_name = 'vlac_bench'

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
    description='Benchmarks of every node and the simulated-arm demo (vlac_demo)',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'vlac_demo = vlac_bench.demo:main',
            'vlac_live_curve = vlac_bench.live_curve:main',
            'benchmark_policy = vlac_bench.policy:main',
            'benchmark_vlac_policy = vlac_bench.vlac_policy:main',
            'benchmark_reward = vlac_bench.reward:main',
            'benchmark_trainer = vlac_bench.trainer:main',
            'benchmark_sim = vlac_bench.sim:main',
            'benchmark_teleop = vlac_bench.teleop_latency:main',
            'benchmark_fleet = vlac_bench.fleet:main',
            'evaluate_policy_node = vlac_bench.evaluate_policy_node:main',
            'vlac_node_docs = vlac_bench.node_docs:main',
            'vlac_bench_report = vlac_bench.report:main',
        ],
    },
)
