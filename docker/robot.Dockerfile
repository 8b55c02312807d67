# The robot side of the loop (launch/robot.launch.py: policy, critic, episode runner, lifecycle
# manager) on ROS 2 Jazzy. Build from the repository root, which must be the build context:
#   docker build -f docker/robot.Dockerfile -t vlac/robot:jazzy .
# On a robot PC, next to the arm driver (docs/deployment.md):
#   docker run --rm -it --net=host --ipc=host -v /srv/vlac/models:/models:ro \
#       -v /srv/vlac/weights:/data/weights:ro -v /srv/vlac/episodes:/data/episodes \
#       vlac/robot:jazzy ros2 launch vlac_bringup robot.launch.py arm:=ur_joint_trajectory.yaml \
#       reset_service:='' policy_model:=/models/policy critic_model:=/models/critic \
#       weights_dir:=/data/weights episodes_dir:=/data/episodes
# --ipc=host goes with --net=host: Fast DDS then sees one host and uses shared memory, which
# needs the same /dev/shm in every container. docker/compose.yaml runs it with the simulator.
# GPU robot PC: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128.
# Never built in this repository's CI (no Docker there): test/test_docker.py checks every path
# and command below against the repository.
FROM ros:jazzy-ros-base-noble

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1

# The repository is one workspace: the root package vlac_bringup (launch/, config/) and src/*.
WORKDIR /ws
COPY package.xml CMakeLists.txt src/vlac/
COPY launch/ src/vlac/launch/
COPY config/ src/vlac/config/
COPY requirements/ros-machine.txt src/vlac/requirements/
COPY src/ src/vlac/src/

# System and ROS dependencies declared in the package.xml files (apt numpy, OpenCV, cv_bridge).
# Both paths: rosdep, like colcon, does not look inside a package for more packages.
RUN apt-get update \
    && rosdep update --rosdistro "${ROS_DISTRO}" \
    && rosdep install --from-paths src/vlac src/vlac/src --ignore-src -y \
        --rosdistro "${ROS_DISTRO}" \
    && apt-get install -y --no-install-recommends python3-pip \
    && rm -rf /var/lib/apt/lists/*

# Python dependencies rosdep does not cover; torch first, the build for this machine.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip3 install torch==2.13.0 --index-url "${TORCH_INDEX_URL}" \
    && pip3 install -r src/vlac/requirements/ros-machine.txt

RUN source "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && colcon build --base-paths src/vlac src/vlac/src \
        --cmake-args -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    && rm -rf build log

# Every command runs with ROS and the workspace sourced; the default one is the robot side on
# the simulated Panda (robot.launch.py's default arm); compose and real arms pass their own.
ENTRYPOINT ["/bin/bash", "-c", "source /opt/ros/${ROS_DISTRO}/setup.bash && source /ws/install/setup.bash && exec \"$@\"", "--"]
CMD ["ros2", "launch", "vlac_bringup", "robot.launch.py", "policy_model:=/models/policy", "critic_model:=/models/critic", "weights_dir:=/data/weights", "episodes_dir:=/data/episodes"]
