"""setup.py and pyproject.toml describe one package: `python setup.py --version` and the
version pip installed (the bootstrap's `pip install -e .`) are pyproject's."""
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pyproject_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version\s*=\s*"([^"]+)"', project, re.M).group(1)


def test_setup_py_reports_the_pyproject_version():
    result = subprocess.run([sys.executable, "setup.py", "--name", "--version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["zs3-ros", pyproject_version()]


def test_installed_distribution_has_the_pyproject_version():
    assert importlib.metadata.version("zs3-ros") == pyproject_version()
