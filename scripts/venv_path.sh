# Prints the virtual environment of this checkout. It lives outside the source tree because
# CMake refuses to export include dirs (numpy's, from the venv) that lie inside the package
# source; one venv per checkout path, so clones never share an editable install.
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
echo "${ZS3_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/zs3_ros/venv-$(printf '%s' "$_root" | sha1sum | cut -c1-12)}"
