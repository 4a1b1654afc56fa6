"""The `zs3` command turns an error the user can fix (missing config, unreadable or unsafe
checkpoint, bad dataset root, unwritable output) into one line and exit code 2; the
traceback comes only with --debug. Once as a user types it (a subprocess of the installed
`zs3`), then through `zs3.cli.main` for every subcommand.
"""
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from zs3.cli import main

ROOT = Path(__file__).resolve().parent.parent
VOC_CONFIG = ROOT / "config" / "models" / "ldvc_vitb16_voc.yaml"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_errors")
    image = folder / "frame.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    pickled = folder / "model.pt"
    torch.save({"weight": torch.zeros(2)}, pickled)   # a pickle: refused, never unpickled
    return {"image": str(image), "pickled": str(pickled), "folder": folder}


def zs3_command() -> list:
    installed = shutil.which("zs3")
    return [installed] if installed else [sys.executable, "-m", "zs3.cli"]


def run_zs3(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(zs3_command() + list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def test_missing_config_is_one_line_and_exit_2_as_typed(files):
    result = run_zs3("segment", files["image"], "--classes", "person, forklift", "--out", "labels.png",
                     "--config", "missing.yaml", cwd=files["folder"])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "missing.yaml" in lines[0] and "does not exist" in lines[0], result.stderr
    assert lines[0].startswith("zs3 segment: error:")


def error_lines(capsys, caplog) -> list:
    """What the user sees of a failure: our stderr lines and the commands' logged errors."""
    printed = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return printed + logged


@pytest.mark.parametrize("case, argv, expected", [
    ("segment: missing model config",
     ["segment", "{image}", "--classes", "a", "--out", "{folder}/l.png", "--config", "missing.yaml"], "missing.yaml"),
    ("segment: pickled checkpoint",
     ["segment", "{image}", "--classes", "a", "--out", "{folder}/l.png", "--checkpoint", "{pickled}"],
     "refused on purpose"),
    ("export: missing model config", ["export", "missing.yaml", "--format", "onnx"], "missing.yaml"),
    ("eval: missing run config", ["eval", "missing.yaml"], "missing.yaml"),
    ("train: bad dataset root", ["train", str(VOC_CONFIG), "--data-root", "{folder}/no_dataset"], "incomplete"),
    ("pretrain: missing config", ["pretrain", "missing.yaml"], "missing.yaml"),
    ("make-bag: unwritable output", ["make-bag", "{image}/bag"], "Not a directory"),
    ("bag-eval: missing vocabulary file", ["bag-eval", "{folder}/bag", "--out", "{folder}/o",
                                           "--vocabulary", "{folder}/classes.txt"], "classes.txt"),
])
def test_every_subcommand_reports_a_known_error_in_one_line(files, capsys, caplog, case, argv, expected):
    argv = [a.format(**files) for a in argv]
    code = main(argv)
    lines = error_lines(capsys, caplog)
    assert code == 2, (case, lines)
    assert len(lines) == 1 and expected in lines[0], (case, lines)


def test_known_errors_are_the_projects_own_and_file_errors():
    """Only errors about the user's input are shortened; a defect keeps its traceback."""
    from zs3.cli_errors import is_known_error
    from zs3_core.config import ConfigError
    from zs3_core.model_checkpoint import CorruptCheckpointError

    assert is_known_error(ConfigError("x")) and is_known_error(CorruptCheckpointError("x"))
    assert is_known_error(FileNotFoundError(2, "No such file or directory", "x.yaml"))
    assert not is_known_error(ZeroDivisionError("a bug")) and not is_known_error(KeyError("a bug"))


def test_debug_shows_the_traceback_also_after_the_command(files, capsys):
    code = main(["segment", files["image"], "--classes", "a", "--out", "l.png", "--config", "missing.yaml", "--debug"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
