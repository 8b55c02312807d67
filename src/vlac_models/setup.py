"""Setup for the vlac_models package (ament_python)."""

from setuptools import find_packages, setup

package_name = 'vlac_models'

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
    description='ROS-free model library of the VLAC stack',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'vlac_convert_checkpoint = vlac_models.vlac_model.loading:convert_main',
        ],
    },
)
