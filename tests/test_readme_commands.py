"""Every command in README.md runs as written.

The commands are read from README.md's code blocks, so the README cannot drift from the code:

- run as written, in a scratch folder holding an image this test writes: `zs3 segment`,
  `zs3 export ... --format onnx`, `zs3 data check` (which reports what a missing dataset lacks),
  and the Python API snippet;
- run with small sizes appended (argparse keeps the last value of an option): `zs3 make-bag`,
  `zs3 bag-eval`, `zs3 eval` of a shipped model;
- checked without running where a run takes too long here or needs what is absent (a dataset,
  a GPU, TensorRT, a ROS launch): every `--option` the README gives must be in the command's
  `--help`, every config file it names must exist, every launch argument must be declared by
  the launch file, every script must exist and parse.

A README command that no rule covers fails the test, so a new command gets a rule.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_ros2_cli import ROBOT_COMMANDS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ZS3 = [sys.executable, "-m", "zs3.cli"]
MAX_README_BYTES = 12 * 1024


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def shell_commands() -> list[list[str]]:
    """Each command of the bash blocks as argv: continuation lines joined, comments dropped."""
    commands = []
    for block in code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def subcommand(argv: list[str]) -> list[str]:
    """The `zs3` subcommand words of argv (after `zs3`): `["data", "check"]`, `["train"]`."""
    words = []
    for token in argv:
        if token.startswith("-") or "/" in token or "." in token:
            break
        words.append(token)
    return words


def zs3_args(argv: list[str]) -> list[str]:
    """Arguments after `zs3`, or after `-m zs3.cli` for a torchrun line."""
    if argv[0] == "zs3":
        return argv[1:]
    return argv[argv.index("zs3.cli") + 1:]


def run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch folder that looks like the repository root to the README's commands (its
    config folders linked in) and holds photo.jpg, a scene of the synthetic world."""
    import cv2

    from zs3_core.synthetic import SyntheticWorld, WorldConfig

    path = tmp_path_factory.mktemp("readme")
    for name in ("checkpoints", "config", "scripts"):
        (path / name).symlink_to(ROOT / name)
    scene = SyntheticWorld(WorldConfig(seed=0, image_size=(96, 128))).scene(1_000_000)
    cv2.imwrite(str(path / "photo.jpg"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    return path


def check_options_exist(args: list[str], cwd: Path) -> None:
    words = subcommand(args)
    help_text = run(ZS3 + words + ["--help"], cwd).stdout
    for token in args[len(words):]:
        if token.startswith("--"):
            assert token.split("=")[0] in help_text, f"zs3 {' '.join(words)} has no option {token}"
        elif token.endswith((".yaml", ".sh")):
            assert (ROOT / token).is_file(), f"{token} does not exist"


def check_zs3_command(args: list[str], cwd: Path) -> None:
    words = subcommand(args)
    rest = args[len(words):]
    if words == ["segment"]:
        result = run(ZS3 + args, cwd)
        assert result.returncode == 0, result.stderr[-2000:]
        import cv2
        labels = cv2.imread(str(cwd / rest[rest.index("--out") + 1]), cv2.IMREAD_UNCHANGED)
        assert labels.shape == cv2.imread(str(cwd / rest[0])).shape[:2]
        assert (cwd / rest[rest.index("--overlay") + 1]).is_file()
    elif words == ["make-bag"]:
        result = run(ZS3 + args + ["--seconds", "1", "--size", "64x48"], cwd)
        assert result.returncode == 0, result.stderr[-2000:]
        assert (cwd / rest[0]).is_dir()
    elif words == ["bag-eval"]:
        result = run(ZS3 + args + ["--max-frames", "3", "--no-progress"], cwd)
        assert result.returncode == 0, result.stderr[-2000:]
        out = cwd / rest[rest.index("--out") + 1]
        assert (out / "metrics.json").is_file() and (out / "report.md").is_file()
    elif words == ["eval"] and rest[0].startswith("checkpoints/") and "--checkpoint" not in rest:
        result = run(ZS3 + args + ["--max-images", "2", "--out", "eval_small"], cwd)
        assert result.returncode == 0, result.stderr[-2000:]
        assert (cwd / "eval_small" / "metrics.json").is_file()
    elif words == ["export"] and "onnx" in rest and "--checkpoint" not in rest:
        result = run(ZS3 + args, cwd, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert (cwd / rest[rest.index("--out") + 1]).is_file()
    elif words == ["data", "check"]:
        result = run(ZS3 + args, cwd)   # no dataset here: it must say what is missing, not crash
        assert result.returncode in (0, 1) and "missing" in result.stdout, result.stderr[-2000:]
    else:                               # training, real-dataset evaluation, TensorRT
        check_options_exist(args, cwd)


def check_command(argv: list[str], cwd: Path) -> None:
    if argv[0] == "zs3" or (argv[0] == "torchrun" and "zs3.cli" in argv):
        check_zs3_command(zs3_args(argv), cwd)
    elif argv[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
        assert argv[1] in targets, f"no make target {argv[1]}"
    elif argv[0].startswith("scripts/"):
        script = ROOT / argv[0]
        assert os.access(script, os.X_OK), f"{argv[0]} is not an executable file"
        assert run(["bash", "-n", str(script)], cwd).returncode == 0
    elif argv[0] == "ros2":             # run for real, against a launched node, by test_ros2_cli.py
        tested = [shlex.split(command) for command in ROBOT_COMMANDS]
        assert argv in tested, f"tests/test_ros2_cli.py does not run this command: {shlex.join(argv)}"
        if argv[:2] == ["ros2", "launch"]:
            launch = (ROOT / "launch" / argv[3]).read_text()
            for token in argv[4:]:
                name = token.split(":=")[0]
                assert f'"{name}"' in launch, f"{argv[3]} declares no argument {name}"
    else:
        pytest.fail(f"no rule checks this README command: {shlex.join(argv)}")


COMMANDS = shell_commands()


def test_readme_has_the_commands_a_user_needs():
    heads = {" ".join(argv[:2]) for argv in COMMANDS}
    assert {"make demo", "make test", "zs3 segment", "ros2 launch", "ros2 service"} <= heads
    assert len(code_blocks("python")) == 1


def test_readme_stays_a_five_minute_read():
    assert len(README.read_bytes()) <= MAX_README_BYTES


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a[:3]) for a in COMMANDS])
def test_readme_command_runs_as_written(argv, workdir):
    check_command(argv, workdir)


def test_readme_python_snippet_runs(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    namespace: dict = {}
    exec(compile(code_blocks("python")[0], "README.md", "exec"), namespace)
    out, rgb = namespace["out"], namespace["rgb"]
    assert out.labels.shape == rgb.shape[:2] == out.confidence.shape
    assert len(out.class_confidence) == 2
    assert np.isin(np.unique(out.labels), [0, 1, 255, 65535]).all()
