# The off-board learner (rl_trainer trainer_node) on ROS 2 Jazzy with CUDA torch. Build from the
# repository root, which must be the build context:
#   docker build -f docker/trainer.Dockerfile -t vlac/trainer:jazzy .
# On the GPU host (docs/deployment.md; the NVIDIA Container Toolkit gives the container the
# host's driver, the CUDA libraries come with the torch wheels):
#   docker run --rm -it --gpus all --net=host -v /srv/vlac/models:/models:ro \
#       -v /srv/vlac/weights:/data/weights -v /srv/vlac/trainer:/data/trainer vlac/trainer:jazzy \
#       ros2 run rl_trainer trainer_node --ros-args \
#       --params-file /ws/install/vlac_bringup/share/vlac_bringup/config/loop.yaml \
#       -p 'robots:=[robot_1, robot_2]' -p learner.model_path:=/models/policy \
#       -p learner.work_dir:=/data/trainer -p learner.weights_dir:=/data/weights \
#       -p learner.device:=cuda
# The robots read each new weights file by the path the trainer announces: mount the same
# folder at the same path (/data/weights) on both sides.
# Never built in this repository's CI (no Docker there): test/test_docker.py checks every path
# and command below against the repository.
FROM ros:jazzy-ros-base-noble

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# The whole workspace: the trainer imports vlac_models, vlac_ros and vlac_interfaces, and reads
# its parameters from vlac_bringup's config/loop.yaml.
WORKDIR /ws
COPY package.xml CMakeLists.txt src/vlac/
COPY launch/ src/vlac/launch/
COPY config/ src/vlac/config/
COPY requirements/ros-machine.txt src/vlac/requirements/
COPY src/ src/vlac/src/

# Both paths: rosdep, like colcon, does not look inside a package for more packages.
RUN apt-get update \
    && rosdep update --rosdistro "${ROS_DISTRO}" \
    && rosdep install --from-paths src/vlac src/vlac/src --ignore-src -y \
        --rosdistro "${ROS_DISTRO}" \
    && apt-get install -y --no-install-recommends python3-pip \
    && rm -rf /var/lib/apt/lists/*

# torch==2.13.0 as everywhere in the repository, the CUDA 12 build: its wheels bring the CUDA
# runtime and cuDNN, the host needs only the NVIDIA driver. Pick the index for your driver.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN pip3 install torch==2.13.0 --index-url "${TORCH_INDEX_URL}" \
    && pip3 install -r src/vlac/requirements/ros-machine.txt

RUN source "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && colcon build --base-paths src/vlac src/vlac/src \
        --cmake-args -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    && rm -rf build log

# Every command runs with ROS and the workspace sourced; the default one is the trainer for one
# robot on the GPU. docker/compose.yaml passes the fleet's robots.
ENTRYPOINT ["/bin/bash", "-c", "source /opt/ros/${ROS_DISTRO}/setup.bash && source /ws/install/setup.bash && exec \"$@\"", "--"]
CMD ["ros2", "run", "rl_trainer", "trainer_node", "--ros-args", "--params-file", "/ws/install/vlac_bringup/share/vlac_bringup/config/loop.yaml", "-p", "robots:=[robot_1]", "-p", "learner.model_path:=/models/policy", "-p", "learner.work_dir:=/data/trainer", "-p", "learner.weights_dir:=/data/weights", "-p", "learner.device:=cuda"]
