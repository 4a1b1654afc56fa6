"""Imports only point down: zs3_core ← training ← zs3 (the command line), zs3_core ← zs3_ros.

The ROS-free core must install and run without ROS and without the training extras, so it
may import neither `training`, `zs3_ros`, the `zs3` command line nor any ROS package;
`training` may not import the node or the command line. The test reads every module's
syntax tree, imports inside functions included (a lazy import is still a dependency).
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# What each first-party package may not import (its own layer and the ones below are fine).
ROS_PACKAGES = {"rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "diagnostic_msgs",
                "builtin_interfaces", "launch", "launch_ros", "rosidl_runtime_py",
                "ament_index_python"}
FORBIDDEN = {
    "zs3_core": {"training", "zs3", "zs3_ros"} | ROS_PACKAGES,
    "training": {"zs3", "zs3_ros"} | ROS_PACKAGES,
    "zs3": {"zs3_ros"} | ROS_PACKAGES,
    "zs3_ros": {"zs3", "training"},
}


def imported_packages(source: str) -> set[tuple[str, int]]:
    """Top-level package names imported anywhere in ``source``, with their line numbers."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def upward_imports(package: str) -> list[str]:
    """'path:line imports name' for every import of ``package`` that FORBIDDEN rules out."""
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for name, line in sorted(imported_packages(path.read_text())):
            if name in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_down(package):
    assert upward_imports(package) == []


def test_the_walker_sees_lazy_and_dotted_imports():
    source = ("import os\nfrom zs3_core.bags import bag_io\n"
              "def f():\n    import rclpy.node\n    from training.train import train\n"
              "from . import sibling\n")
    assert {name for name, _ in imported_packages(source)} == {"os", "zs3_core", "rclpy", "training"}
