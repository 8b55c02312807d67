#!/usr/bin/env bash
# Idempotent set-up of the no-ROS world: a .venv with the pinned ROS 2 Jazzy wheels and every
# Python dependency, the wheels' CMake paths fixed, the CMake packages (interfaces, bringup)
# built and installed into the venv, and every Python package installed editable.
#
# Each step is skipped when a hash of its inputs matches the stamp it left last time, so a
# second run on an unchanged tree takes a few seconds. Usage: tools/setup_venv.sh [VENV]
set -euo pipefail
trap 'echo "setup: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-$root/.venv}
python=${PYTHON:-python3.11}
stamps=$venv/.vlac-stamps
build=$root/build/venv
cd "$root"

log() { printf '[setup] %s\n' "$*"; }
# pip, quiet (editable installs of our own packages); drops the "Location ... is ignored"
# lines some pip configurations print.
pip_install() {
  "$vpy" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v ' is ignored: ' >&2)
}
# pip with its own progress (downloads with sizes, what it installs): the long steps, so a
# first `make setup` is minutes of visible work, not minutes of silence.
pip_install_loud() {
  "$vpy" -m pip install --progress-bar on --disable-pip-version-check "$@" \
    2> >(grep -v ' is ignored: ' >&2) | { grep -v '^Requirement already satisfied' || true; }
}

# hash_of FILE_OR_DIR... : one hash over the listed files' paths and contents.
hash_of() {
  { find "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 2>/dev/null || true; } \
    | sort -z | xargs -0 -r sha256sum | sha256sum | cut -c1-16
}

# step NAME HASH : true when the step must run (its stamp is missing or differs).
step_needed() { [ "$(cat "$stamps/$1" 2>/dev/null)" != "$2" ]; }
step_done() { mkdir -p "$stamps"; echo "$2" > "$stamps/$1"; }

if [ ! -x "$venv/bin/python" ]; then
  command -v "$python" >/dev/null || { echo "setup: $python not found (need CPython 3.11)" >&2; exit 1; }
  log "creating $venv"
  "$python" -m venv "$venv"
fi
vpy=$venv/bin/python
"$vpy" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "setup: $venv is not Python 3.11 (the ROS 2 Jazzy wheels are cp311)" >&2; exit 1; }

h=$(hash_of requirements tools/fix_wheel_cmake.py)
if step_needed deps "$h"; then
  log 'step 1/4: torch==2.13.0 first (CPU build, 750 MB installed; keeps CUDA wheels out)'
  pip_install_loud torch==2.13.0
  log 'step 2/4: ROS 2 Jazzy wheels and Python dependencies (pinned; the venv ends at 2.7 GB)'
  pip_install_loud -c requirements/constraints.txt \
    -r requirements/dev.txt -r requirements/ros-jazzy.txt -r requirements/python.txt
  "$vpy" tools/fix_wheel_cmake.py "$venv"
  rm -f "$stamps"/cmake-*   # new wheels: rebuild the interfaces against them
  # The venv is an ament prefix (as install/ is after `source install/setup.bash`): make
  # ament_index_python find it without any sourcing.
  site=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import os, sys; os.environ.setdefault('AMENT_PREFIX_PATH', sys.prefix)" \
    > "$site/vlac_ament_prefix.pth"
  step_done deps "$h"
fi

# CMake packages (rosidl interfaces, the bringup package) into the venv prefix.
export AMENT_PREFIX_PATH=$venv
mkdir -p "$build"
for pkg_dir in src/vlac_interfaces .; do
  name=$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$pkg_dir/package.xml" | head -n1)
  if [ "$pkg_dir" = . ]; then inputs=(package.xml CMakeLists.txt launch config)
  else inputs=("$pkg_dir"); fi
  h=$(hash_of "${inputs[@]}")
  if step_needed "cmake-$name" "$h"; then
    log "step 3/4: building $name (cmake, install prefix $venv)"
    rm -rf "$build/$name"
    cmake -S "$pkg_dir" -B "$build/$name" -DCMAKE_INSTALL_PREFIX="$venv" \
      -DPython3_EXECUTABLE="$vpy" -DBUILD_TESTING=OFF > "$build.$name.log" 2>&1 \
      && cmake --build "$build/$name" -j "$(nproc)" >> "$build.$name.log" 2>&1 \
      && cmake --install "$build/$name" >> "$build.$name.log" 2>&1 \
      || { tail -n 40 "$build.$name.log" >&2; echo "setup: building $name failed" >&2; exit 1; }
    step_done "cmake-$name" "$h"
  fi
done

# ament_python packages: editable installs; their resource markers and package.xml are linked
# into the venv's ament index so ament_index_python finds them as on a ROS machine.
for setup_py in src/*/setup.py; do
  pkg_dir=$(dirname "$setup_py")
  name=$(basename "$pkg_dir")
  h=$(hash_of "$pkg_dir/setup.py" "$pkg_dir/setup.cfg" "$pkg_dir/package.xml")
  if step_needed "py-$name" "$h"; then
    log "step 4/4: installing $name (editable)"
    pip_install --no-deps --no-build-isolation -e "$pkg_dir"
    mkdir -p "$venv/share/ament_index/resource_index/packages" "$venv/share/$name"
    ln -sfn "$root/$pkg_dir/resource/$name" \
      "$venv/share/ament_index/resource_index/packages/$name"
    ln -sfn "$root/$pkg_dir/package.xml" "$venv/share/$name/package.xml"
    # Executables where `ros2 run` and launch_ros look for them: <prefix>/lib/<package>/.
    rm -rf "$venv/lib/$name" && mkdir -p "$venv/lib/$name"
    "$vpy" - "$name" <<'PY' | while read -r script; do ln -sfn "$venv/bin/$script" "$venv/lib/$name/$script"; done
import importlib.metadata, sys
for entry in importlib.metadata.distribution(sys.argv[1]).entry_points.select(group='console_scripts'):
    print(entry.name)
PY
    step_done "py-$name" "$h"
  fi
done
# tcpdump for the DDS loopback guard (src/vlac_ros/test/test_dds_loopback_only.py): installed
# where set-up runs as root with apt (a CI box, a container); elsewhere the guard is skipped
# and says why. A failure here (no network, no apt) only costs that one test.
if ! command -v tcpdump >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    && ! [ -e "$stamps/tcpdump-tried" ]; then
  log 'installing tcpdump (apt) for the DDS loopback guard test'
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tcpdump \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q --no-install-recommends tcpdump; }; } > "$build.tcpdump.log" 2>&1 \
    || log "tcpdump not installed (see $build.tcpdump.log): the loopback guard will be skipped"
  mkdir -p "$stamps" && touch "$stamps/tcpdump-tried"
fi
log "ready: $venv"
