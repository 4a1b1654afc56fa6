# Source me: activates .venv and the colcon install (zs3_ros messages, node executable).
_zs3_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$(bash "$_zs3_root/scripts/venv_path.sh")/bin/activate"
if [ -z "${ROS_DISTRO:-}" ] || [ -n "${ZS3_FORCE_ROS_WHEELS:-}" ]; then
  export AMENT_PREFIX_PATH=$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
fi
. "$_zs3_root/install/setup.bash"
# The source tree first: new modules are seen without a rebuild; zs3_ros/__init__.py then
# extends its path to the generated msg/ srv/ in the install tree.
export PYTHONPATH=$_zs3_root${PYTHONPATH:+:$PYTHONPATH}
unset _zs3_root
