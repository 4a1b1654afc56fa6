"""The images' colcon step, replayed on this machine: the same `colcon build` arguments as
the Dockerfiles, then `build/` removed as the images do, then the generated interfaces
imported and used from what is left. A symlinked install fails here exactly as it would in
the image (its message modules and typesupport libraries point into the deleted build/)."""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dockerfile_parse import DOCKERFILES, ROOT, instructions

# Only where this machine differs from the images: the venv's Python, and no test targets.
ENVIRONMENT_ARGS = {"-DPython3_EXECUTABLE", "-DBUILD_TESTING"}
USE_INTERFACES = """
import zs3_ros.msg, zs3_ros.srv
from rclpy.serialization import deserialize_message, serialize_message
from zs3_ros.msg import LabelInfo, SegmentationInfo
from zs3_ros.srv import GetVocabulary, SetVocabulary
info = SegmentationInfo(backend="tensorrt/fp16/cuda")
assert deserialize_message(serialize_message(info), SegmentationInfo).backend == info.backend
serialize_message(LabelInfo(class_names=["a"]))
serialize_message(SetVocabulary.Request(class_names=["person"]))
serialize_message(GetVocabulary.Response())
print(zs3_ros.msg.__file__)
"""


def colcon_arguments(name: str) -> list[str]:
    """The words after `colcon build` in the image's RUN step, up to the next `&&`."""
    (run,) = [args for kind, args in instructions(name) if kind == "RUN" and "colcon build" in args]
    step = run.split("colcon build", 1)[1].split("&&", 1)[0]
    return shlex.split(step)


def behaviour_flags(arguments: list[str]) -> list[str]:
    return [a for a in arguments if a.split("=", 1)[0] not in ENVIRONMENT_ARGS]


def clean_environment(workspace: Path) -> dict:
    """This shell's environment without the repository's own colcon install (so nothing is
    imported from it) and without the source tree on PYTHONPATH."""
    own = str(ROOT / "install")
    env = dict(os.environ)
    for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "COLCON_PREFIX_PATH"):
        parts = [p for p in env.get(var, "").split(os.pathsep) if p and not p.startswith(own) and p != str(ROOT)]
        env[var] = os.pathsep.join(parts)
    env["PWD"] = str(workspace)
    return env


def test_both_images_build_with_the_same_colcon_flags():
    flags = [behaviour_flags(colcon_arguments(name)) for name in DOCKERFILES]
    assert flags[0] == flags[1], flags
    assert "--symlink-install" not in flags[0]


@pytest.mark.skipif(shutil.which("colcon") is None, reason="colcon is not installed (make bootstrap)")
def test_interfaces_import_from_the_image_install_after_build_is_removed(tmp_path):
    arguments = colcon_arguments("Dockerfile.jetson")
    cmake_args = arguments.index("--cmake-args") + 1 if "--cmake-args" in arguments else len(arguments)
    arguments[cmake_args:cmake_args] = [f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]
    if "--cmake-args" not in arguments:
        arguments[cmake_args:cmake_args] = ["--cmake-args"]
    env = clean_environment(tmp_path)
    build = subprocess.run(["colcon", "--log-base", "log", "build", "--base-paths", str(ROOT), *arguments],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    shutil.rmtree(tmp_path / "build")                        # as the images do: `rm -rf build log`
    shutil.rmtree(tmp_path / "log", ignore_errors=True)
    script = f". {tmp_path}/install/setup.bash && {shlex.quote(sys.executable)} -c {shlex.quote(USE_INTERFACES)}"
    use = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert use.returncode == 0, use.stdout + use.stderr
    assert use.stdout.strip().startswith(str(tmp_path / "install")), use.stdout
