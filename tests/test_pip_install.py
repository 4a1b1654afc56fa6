"""`pip install .[bag]` in a fresh virtual environment without ROS gives a working
`zs3 make-bag` and `zs3 bag-eval`: the ROS-free core carries everything the bag commands
need (bag I/O, the message definitions, the image conversions, ground truth).

torch is not a dependency (it is installed first, with the build that fits the machine), so
the fresh environment sees this interpreter's torch through a .pth file that lists only
torch and the packages torch itself requires; everything else comes from `pip install`
(with open_clip's tokenizer file installed `--no-deps`, the documented second prerequisite).
Needs a package index (PyPI or a local mirror); skips, saying so, where none answers.
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY_CONFIG = ROOT / "config" / "models" / "clip_baseline_tiny.yaml"


def torch_and_its_requirements() -> list[metadata.Distribution]:
    """torch's distribution and, recursively, those it requires (markers evaluated here)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    pending = ["torch"]
    while pending:
        name = re.sub(r"[-_.]+", "-", pending.pop()).lower()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(found.values())


def link_host_torch(site_packages: Path, links: Path) -> None:
    """Symlink torch's packages (and its requirements') into `links` and put that on the path."""
    links.mkdir()
    for dist in torch_and_its_requirements():
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (links / top).exists() and top != "__pycache__":
                (links / top).symlink_to(source)
    (site_packages / "host_torch.pth").write_text(str(links) + "\n")


def clean_env() -> dict[str, str]:
    """The environment without the checkout, the ROS install or the project venv on any path."""
    drop = ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH", "VIRTUAL_ENV",
            "LD_LIBRARY_PATH", "ROS_DISTRO", "ROS_VERSION", "ROS_PYTHON_VERSION")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(sys.prefix))
    return env


@pytest.fixture(scope="module")
def bag_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pip_bag")
    env = clean_env()
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest",
                            str(tmp / "probe"), "pyyaml"], capture_output=True, text=True, env=env)
    if probe.returncode != 0:
        pytest.skip(f"no package index answers pip here: {probe.stderr.strip().splitlines()[-1:]}")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, env=env).stdout.strip())
    link_host_torch(site, tmp / "host_torch")
    for args in ([f"{ROOT}[bag]"], ["--no-deps", "open_clip_torch"]):   # the tokenizer file, as README says
        install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args],
                                 capture_output=True, text=True, env=env, cwd=tmp)
        assert install.returncode == 0, install.stdout + install.stderr
    return venv


def test_pip_install_bag_runs_make_bag_and_bag_eval_without_ros(bag_venv, tmp_path):
    env = clean_env()
    python, zs3 = bag_venv / "bin" / "python", bag_venv / "bin" / "zs3"
    no_ros = subprocess.run([str(python), "-c", "import rclpy"], capture_output=True, text=True, env=env)
    assert no_ros.returncode != 0 and "rclpy" in no_ros.stderr          # really without ROS
    where = subprocess.run([str(python), "-c", "import zs3_core; print(zs3_core.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(bag_venv) in where.stdout                                  # the installed copy, not the checkout

    bag, out = tmp_path / "sample_bag", tmp_path / "eval"
    made = subprocess.run([str(zs3), "make-bag", str(bag), "--seconds", "0.5", "--size", "64x48"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    config = tmp_path / "tiny64.yaml"
    config.write_text(TINY_CONFIG.read_text().replace("input_size: 224", "input_size: 64"))
    evaluated = subprocess.run([str(zs3), "bag-eval", str(bag), "--out", str(out), "--write-bag",
                                "--config", str(config), "--no-progress"],
                               capture_output=True, text=True, env=env, cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and metrics["frames"] == metrics["frames_scored"] == 5
