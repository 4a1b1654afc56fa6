"""The commands a user types on a robot, run for real: `ros2 launch`, `ros2 service call`,
`ros2 topic echo`, `ros2 param get`, `ros2 run`, and Ctrl-C.

Each runs as a subprocess the way a shell runs it: in its own process group, Ctrl-C being
SIGINT to that group (`ros2 run` does not forward a SIGINT sent to its own pid, and a
background job of a non-interactive shell ignores SIGINT). The test process plays the
camera (frames on the node's input topic) and reads the outputs over DDS.

The commands are the README's "on a robot" lines, character for character
(`test_readme_shows_the_tested_commands`). Tests add only what makes a one-shot command
deterministic without the ROS daemon a robot has running: `--no-daemon` (never leave a
daemon process behind) and a discovery wait (`--spin-time`, `--timeout`).

Skipped, with the reason, where the ROS 2 command line is not installed: a sourced ROS 2
distro provides it; without one, `make bootstrap` installs the upstream pure-Python tools
when ZS3_ROS2_PYTHON names their folder (CI: .ci/run).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import rclpy
import yaml

from zs3_ros.synthetic_camera import SegmenterClient, Spinner, moving_shapes, wait_until

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PARAMS_FILE = ROOT / "config" / "segment.yaml"

LAUNCH = "ros2 launch zs3_ros segment.launch.py"
LAUNCH_WITH_ARGUMENTS = ("ros2 launch zs3_ros segment.launch.py namespace:=front "
                         "image_topic:=/camera/image_raw config:=params.yaml compressed:=true")
SET_VOCABULARY = ("ros2 service call /zs3_segmenter/set_vocabulary zs3_ros/srv/SetVocabulary "
                  '"{class_names: [person, forklift]}"')
GET_VOCABULARY = "ros2 service call /zs3_segmenter/get_vocabulary zs3_ros/srv/GetVocabulary"
ECHO_LABEL_INFO = "ros2 topic echo --once /zs3_segmenter/label_info"
PARAM_GET_BACKEND = "ros2 param get /zs3_segmenter backend"
RUN = "ros2 run zs3_ros zs3_segmenter"
ROBOT_COMMANDS = (LAUNCH, SET_VOCABULARY, GET_VOCABULARY, ECHO_LABEL_INFO, PARAM_GET_BACKEND,
                  LAUNCH_WITH_ARGUMENTS, RUN)

START_TIMEOUT_S = 120       # model load on a loaded 2-core CI machine
COMMAND_TIMEOUT_S = 60
CTRL_C_TIMEOUT_S = 10       # "a few seconds", with margin for a loaded machine


def _missing_tooling() -> str | None:
    if shutil.which("ros2") is None:
        return ("the ROS 2 command line is not installed (no `ros2`): source a ROS 2 distro, or set "
                "ZS3_ROS2_PYTHON to the pure-Python tooling folder and run `make bootstrap`")
    for module in ("launch_ros", "ros2launch", "ros2service", "ros2topic", "ros2param", "ros2run",
                   "composition_interfaces"):
        if importlib.util.find_spec(module) is None:
            return f"the ROS 2 command line is incomplete: Python module {module} is missing"
    return None


MISSING_TOOLING = _missing_tooling()
needs_ros2_cli = pytest.mark.skipif(MISSING_TOOLING is not None, reason=MISSING_TOOLING or "")


class Running:
    """A long-running command (launch, run) in its own process group; output to a file, so
    a chatty node can never block on a full pipe."""

    def __init__(self, command: str, log: Path, cwd: Path, extra: tuple = ()):
        self.command, self.log = command, log
        self._out = open(log, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", ROS_LOG_DIR=str(log.parent))
        self.process = subprocess.Popen(shlex.split(command) + list(extra), cwd=cwd, env=env,
                                        stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> bool:
        """True once ``text`` is in the output; False on timeout or when the command exited."""
        return wait_until(lambda: text in self.output() or self.process.poll() is not None, timeout,
                          interval=0.1) and text in self.output()

    def ctrl_c(self, timeout: float = CTRL_C_TIMEOUT_S) -> tuple[int | None, float]:
        """SIGINT to the process group, as a terminal's Ctrl-C: (exit code or None, seconds)."""
        start = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout), time.monotonic() - start
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - start

    def stop(self) -> None:
        """Whatever happened in the test: nothing of the group may outlive it."""
        if self.process.poll() is None:
            self.ctrl_c()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        try:   # the node may still be exiting after its parent
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._out.close()

    def describe(self) -> str:
        return f"$ {self.command}\n" + "\n".join(self.output().splitlines()[-25:])


def run_once(command: str, *extra: str, log_dir: Path, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    """A one-shot command (service call, echo, param get) in its own group, killed on timeout;
    it runs in ``log_dir``, where its ROS log files go too."""
    env = dict(os.environ, ROS_LOG_DIR=str(log_dir))
    process = subprocess.Popen(shlex.split(command) + list(extra), cwd=log_dir, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"`{command}` did not finish within {timeout} s:\n{out}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, "")


@pytest.fixture(scope="module")
def frames():
    return list(moving_shapes(3, size=(120, 160)))


@contextmanager
def camera_on(running: Running, segmenter: str, image_topic: str, compressed: bool = False):
    """Once the node reports ready: a SegmenterClient (own rclpy context) connected to it."""
    assert running.wait_for("ready:", START_TIMEOUT_S), "the node did not start:\n" + running.describe()
    context = rclpy.Context()
    rclpy.init(context=context)
    client = SegmenterClient(context, segmenter=segmenter, image_topic=image_topic, compressed=compressed,
                             name=f"camera_{os.getpid()}")
    try:
        with Spinner(client, context=context):
            if not client.wait_until_connected(30):
                pytest.fail(f"no connection to {segmenter}:\n" + running.describe())
            yield client
    finally:
        client.destroy()
        rclpy.shutdown(context=context)


def segment_one(client: SegmenterClient, frame, running: Running, timeout: float = 30.0):
    """Outputs for ``frame``, published once a second until the node answers: a frame sent
    before the node's subscription matched ours is lost, not queued (volatile QoS)."""
    kinds = ("labels", "confidence", "info")
    keys: list = []

    def answered():
        return next((client.frames[k] for k in keys if client.frames[k].complete(kinds)), None)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys.append(client.publish(frame))
        if client.wait_for(lambda: answered() is not None, 1.0):
            return answered()
    pytest.fail("no labels/confidence/info for published frames:\n" + running.describe())


def assert_ctrl_c_ends_cleanly(running: Running) -> None:
    code, seconds = running.ctrl_c()
    assert code == 0, f"exit code {code} after Ctrl-C ({seconds:.1f} s):\n" + running.describe()
    assert seconds < CTRL_C_TIMEOUT_S
    assert "Traceback" not in running.output(), running.describe()


@pytest.fixture(scope="class")
def system(tmp_path_factory):
    """The default launch with a connected camera, shared by one class's checks."""
    folder = tmp_path_factory.mktemp("default_launch")
    running = Running(LAUNCH, folder / "launch.log", cwd=folder)
    try:
        with camera_on(running, "/zs3_segmenter", "/image") as client:
            yield running, client, folder
    finally:
        running.stop()


@needs_ros2_cli
class TestDefaultLaunch:
    """`ros2 launch zs3_ros segment.launch.py` and the commands an operator uses on it."""

    def test_frames_on_image_come_back_labelled_on_the_node_topics(self, system, frames):
        running, client, folder = system
        outputs = segment_one(client, frames[0], running)
        assert outputs.labels.encoding == "mono8" and outputs.labels.height == 120
        assert list(outputs.info.class_names) == yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]["classes"]
        assert client.wait_for(lambda: client.label_info, 10), "no latched label_info"

    def test_set_vocabulary_by_service_call_takes_effect_on_the_next_frame(self, system, frames):
        running, client, folder = system
        result = run_once(SET_VOCABULARY, log_dir=folder)
        assert result.returncode == 0 and "success=True" in result.stdout, result.stdout
        version = int(re.search(r"vocabulary_version=(\d+)", result.stdout).group(1))
        info = segment_one(client, frames[1], running).info
        assert info.vocabulary_version == version and list(info.class_names) == ["person", "forklift"]

    def test_refused_vocabulary_says_why_and_keeps_the_old_one(self, system):
        _, _, folder = system
        result = run_once(SET_VOCABULARY.replace("[person, forklift]", "[]"), log_dir=folder)
        assert result.returncode == 0, result.stdout
        assert "success=False" in result.stdout and "vocabulary is empty" in result.stdout, result.stdout
        version = int(re.search(r"vocabulary_version=(\d+)", result.stdout).group(1))
        after = run_once(GET_VOCABULARY, log_dir=folder)
        assert f"vocabulary_version={version}," in after.stdout, after.stdout
        assert "class_names=['person', 'forklift']" in after.stdout, after.stdout

    def test_topic_echo_once_prints_the_latched_label_info(self, system):
        _, _, folder = system
        result = run_once(ECHO_LABEL_INFO, "--no-daemon", "--spin-time", "3", log_dir=folder)
        assert result.returncode == 0, result.stdout
        assert "- person" in result.stdout and "- forklift" in result.stdout, result.stdout

    def test_param_get_shows_the_parameters_file_value(self, system):
        _, _, folder = system
        result = run_once(PARAM_GET_BACKEND, "--no-daemon", "--timeout", "10", log_dir=folder)
        assert result.returncode == 0 and "String value is: auto" in result.stdout, result.stdout

    def test_ctrl_c_ends_the_launch_with_exit_0_within_seconds(self, system):
        running, _, _ = system
        assert_ctrl_c_ends_cleanly(running)


@needs_ros2_cli
def test_launch_arguments_namespace_image_topic_config_compressed(tmp_path, frames):
    """All four launch arguments in one launch: the node lives in /front, takes JPEGs from
    /camera/image_raw/compressed and its vocabulary from the given parameters file."""
    params = yaml.safe_load(PARAMS_FILE.read_text())
    params["/**"]["ros__parameters"]["classes"] = ["cyan star", "red circle"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    running = Running(LAUNCH_WITH_ARGUMENTS, tmp_path / "launch.log", cwd=tmp_path)
    try:
        with camera_on(running, "/front/zs3_segmenter", "/camera/image_raw", compressed=True) as client:
            info = segment_one(client, frames[0], running).info
        assert list(info.class_names) == ["cyan star", "red circle"]
        assert_ctrl_c_ends_cleanly(running)
    finally:
        running.stop()


@needs_ros2_cli
def test_ros2_run_starts_the_node_on_its_defaults(tmp_path, frames):
    running = Running(RUN, tmp_path / "run.log", cwd=tmp_path)
    try:
        with camera_on(running, "/zs3_segmenter", "/image") as client:
            segment_one(client, frames[2], running)
        assert_ctrl_c_ends_cleanly(running)
    finally:
        running.stop()


@needs_ros2_cli
def test_missing_parameters_file_stops_the_launch_with_a_clear_error(tmp_path):
    missing = tmp_path / "missing.yaml"
    running = Running(f"{LAUNCH} config:={missing}", tmp_path / "launch.log", cwd=tmp_path)
    try:
        exited = wait_until(lambda: running.process.poll() is not None, COMMAND_TIMEOUT_S, interval=0.1)
        assert exited, "the launch kept running on built-in defaults:\n" + running.describe()
        assert running.process.returncode != 0, running.describe()
        assert f"config:={missing}: no such parameters file" in running.output(), running.describe()
        assert "ready:" not in running.output()
    finally:
        running.stop()


@needs_ros2_cli
def test_named_precision_with_backend_auto_is_refused_not_overridden(tmp_path):
    """backend auto picks the precision itself; a precision given beside it used to be
    dropped silently (the node ran bf16 while the file said fp32)."""
    running = Running(f"{RUN} --ros-args -p precision:=fp32", tmp_path / "run.log", cwd=tmp_path)
    try:
        exited = wait_until(lambda: running.process.poll() is not None, START_TIMEOUT_S, interval=0.1)
        assert exited, "the node started and ignored precision fp32:\n" + running.describe()
        assert running.process.returncode == 2, running.describe()
        assert "precision 'fp32' with backend 'auto'" in running.output(), running.describe()
    finally:
        running.stop()


def test_readme_shows_the_tested_commands():
    text = README.read_text()
    missing = [command for command in ROBOT_COMMANDS if command not in text]
    assert not missing, f"README lacks the tested commands: {missing}"
