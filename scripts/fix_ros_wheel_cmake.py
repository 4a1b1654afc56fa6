"""Point the ROS 2 PyPI wheels' CMake exports at this environment's Python and numpy headers.

The wheels are built in a manylinux container; their exported targets name include dirs
such as /opt/python/cp311-cp311/include/python3.11 that do not exist elsewhere, and CMake
refuses to configure a package that links them. Rewriting the paths inside the venv needs
no root and survives nothing outside it. Running it twice changes nothing.
"""
from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
NUMPY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_?core/include")


def fix(prefix: Path) -> int:
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = 0
    for path in (prefix / "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        new = NUMPY_INCLUDE.sub(numpy_include, text)
        new = PYTHON_INCLUDE.sub(python_include, new)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    n = fix(Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
    if n:
        print(f"[bootstrap] fixed include paths in {n} CMake files of the ROS wheels")
