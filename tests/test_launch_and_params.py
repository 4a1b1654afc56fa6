"""The node's parameters (declared with descriptors, read into NodeConfig, validated), the
shipped parameter file through `--ros-args --params-file`, and the launch file's arguments.

The launch file is parsed here, and evaluated with launch's own objects where launch_ros is
installed; the real `ros2 launch` runs in tests/test_ros2_cli.py, the node with the same
parameter file in tests/test_node_*.py.
"""
import ast
from pathlib import Path

import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter

from zs3_ros.params import (DYNAMIC_PARAMETERS, PARAMETERS, ConfigError, NodeConfig, declare_parameters,
                            read_config, resolve_path, updated_config)

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = ROOT / "config" / "segment.yaml"
LAUNCH_FILE = ROOT / "launch" / "segment.launch.py"


@pytest.fixture(scope="module")
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def make_node(context, name, **kwargs):
    node = rclpy.create_node(name, context=context, **kwargs)
    declare_parameters(node)
    return node


def test_params_file_loads_through_ros_args(context):
    node = make_node(context, "zs3_segmenter", cli_args=["--ros-args", "--params-file", str(PARAMS_FILE)])
    try:
        config = read_config(node)
        expected = yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]
        assert set(expected) <= set(PARAMETERS), "the YAML sets a parameter the node does not declare"
        for name, value in expected.items():
            got = getattr(config, name)
            assert (list(got) if isinstance(got, tuple) else got) == value, name
        assert Path(resolve_path(config.model_config)).is_file()
    finally:
        node.destroy_node()


def test_every_parameter_has_a_descriptor_with_ranges_where_numeric(context):
    node = make_node(context, "described")
    try:
        for name in PARAMETERS:
            descriptor = node.describe_parameter(name)
            assert descriptor.description, name
            if descriptor.type in (ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_INTEGER):
                assert descriptor.floating_point_range or descriptor.integer_range, name
            assert descriptor.read_only == (name not in DYNAMIC_PARAMETERS), name
    finally:
        node.destroy_node()


def test_out_of_range_override_is_refused_by_the_descriptor(context):
    with pytest.raises(Exception, match="overlay_alpha|range"):
        make_node(context, "bad_alpha", parameter_overrides=[Parameter("overlay_alpha", value=3.0)])


@pytest.mark.parametrize("change, message", [
    (dict(backend="cuda_magic"), "backend must be one of"),
    (dict(precision="int3"), "precision must be one of"),
    (dict(backend="auto", precision="fp32"), "precision 'fp32' with backend 'auto'"),
    (dict(input_transport="theora"), "input_transport must be one of"),
    (dict(qos_reliability="sometimes"), "qos_reliability must be one of"),
    (dict(prompt_template="no placeholder"), "must contain '{}'"),
    (dict(classes=()), "classes is empty"),
    (dict(unlabeled_threshold=1.0), r"unlabeled_threshold must be in \[0, 1\)"),
    (dict(device="tpu"), "device must be"),
    (dict(input_size=100), "multiple of 16"),
])
def test_invalid_values_are_refused_with_a_clear_message(change, message):
    import dataclasses
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(NodeConfig(), **change).validate()


def test_shipped_file_never_names_a_precision_that_backend_auto_would_override():
    values = yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]
    assert values["backend"] != "auto" or values["precision"] == "auto", values


@pytest.mark.parametrize("backend, precision, handed_over", [
    ("torch", "auto", "fp32"), ("onnxruntime", "auto", "fp32"), ("tensorrt", "auto", "fp16"),
    ("torch", "bf16", "bf16"), ("auto", "auto", "fp32"),
])
def test_precision_handed_to_the_backend(backend, precision, handed_over):
    import dataclasses
    config = dataclasses.replace(NodeConfig(), backend=backend, precision=precision).validate()
    assert config.backend_precision == handed_over


def test_run_time_changes_only_for_dynamic_parameters():
    config = NodeConfig()
    changed = updated_config(config, [Parameter("overlay_alpha", value=0.25), Parameter("max_rate_hz", value=2.0)])
    assert (changed.overlay_alpha, changed.max_rate_hz) == (0.25, 2.0)
    assert config.overlay_alpha == 0.5, "NodeConfig is immutable; updates make a new one"
    with pytest.raises(ConfigError, match="read-only"):
        updated_config(config, [Parameter("backend", value="torch")])


def test_missing_model_config_names_where_it_looked():
    with pytest.raises(ConfigError, match="not found"):
        resolve_path("config/models/does_not_exist.yaml", "model_config")


def _launch_arguments(tree: ast.Module) -> dict:
    """name -> keyword arguments of every DeclareLaunchArgument(...) call."""
    found = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "DeclareLaunchArgument":
            name = ast.literal_eval(call.args[0])
            found[name] = {kw.arg: kw.value for kw in call.keywords}
    return found


def test_launch_file_declares_the_documented_arguments():
    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    arguments = _launch_arguments(tree)
    assert set(arguments) == {"config", "namespace", "image_topic", "compressed", "cameras"}
    for name, keywords in arguments.items():
        assert "description" in keywords and "default_value" in keywords, name
    source = LAUNCH_FILE.read_text()
    assert 'executable="zs3_segmenter"' in source and '"segment.yaml"' in source
    assert '("image", image_topic)' in source and '("image/compressed"' in source


def _launch_module():
    pytest.importorskip("launch_ros")
    import importlib.util
    spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_file_imports_where_launch_ros_exists():
    description = _launch_module().generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert names == {"config", "namespace", "image_topic", "compressed", "cameras"}


def _input_transports(module, compressed: str, config: Path) -> list:
    """The input_transport values the launch hands the node for `compressed:=<value>`,
    found by expanding the launch description with launch's own objects (no process starts)."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node
    from launch_ros.utilities import evaluate_parameters

    context = LaunchContext()
    context.launch_configurations.update(config=str(config), namespace="", image_topic="image",
                                         compressed=compressed, cameras="")
    pending, nodes = list(module.generate_launch_description().entities), []
    while pending:
        entity = pending.pop(0)
        if isinstance(entity, Node):
            nodes.append(entity)
        elif not isinstance(entity, DeclareLaunchArgument):
            pending.extend(entity.visit(context) or [])
    assert len(nodes) == 1
    parameters = evaluate_parameters(context, nodes[0]._Node__parameters)
    return [p["input_transport"] for p in parameters if isinstance(p, dict) and "input_transport" in p]


def test_compressed_has_one_spelling_for_true_the_one_the_argument_accepts():
    module = _launch_module()
    [argument] = [a for a in module.generate_launch_description().get_launch_arguments() if a.name == "compressed"]
    selecting = {value for value in ("true", "True", "TRUE", "1", "yes", "on")
                 if _input_transports(module, value, PARAMS_FILE) == ["compressed"]}
    assert selecting == {"true"} and set(argument.choices) == {"true", "false"}


def test_compressed_false_leaves_the_parameters_file_transport(tmp_path):
    params = yaml.safe_load(PARAMS_FILE.read_text())
    params["/**"]["ros__parameters"]["input_transport"] = "compressed"
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump(params))
    assert _input_transports(_launch_module(), "false", config) == []


def test_parameters_file_that_cannot_be_used_stops_the_launch(tmp_path):
    check = _launch_module().checked_parameters_file
    assert check(str(PARAMS_FILE)) == str(PARAMS_FILE)
    with pytest.raises(RuntimeError, match="no such parameters file"):
        check(str(tmp_path / "missing.yaml"))
    with pytest.raises(RuntimeError, match="no such parameters file"):
        check(str(tmp_path))
    (tmp_path / "broken.yaml").write_text("/**: {ros__parameters: [unclosed\n")
    with pytest.raises(RuntimeError, match="not valid YAML"):
        check(str(tmp_path / "broken.yaml"))


def test_cameras_argument_becomes_the_cameras_parameter():
    """Parsed without launch_ros: the override the `cameras:=` argument adds after the file."""
    namespace = {}
    source = LAUNCH_FILE.read_text()
    tree = ast.parse(source)
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "cameras_override"]
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(LAUNCH_FILE), "exec"), namespace)
    assert namespace["cameras_override"]("front, rear,left") == [{"cameras": ["front", "rear", "left"]}]
    assert namespace["cameras_override"]("") == []


@pytest.mark.parametrize("change, message", [
    (dict(cameras=("front", "front")), "cameras must be distinct"),
    (dict(cameras=("front/left",)), "camera name 'front/left'"),
    (dict(cameras=("front", "rear"), camera_transports=("raw",)), "camera_transports has 1 entries for 2 cameras"),
    (dict(cameras=("front",), camera_transports=("h264",)), "camera_transports entry must be one of"),
])
def test_camera_parameters_are_checked(change, message):
    import dataclasses
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(NodeConfig(), **change).validate()


def test_an_empty_cameras_list_in_a_file_means_the_single_image_input(context, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    cameras: []\n    camera_transports: []\n")
    node = make_node(context, "empty_cameras", cli_args=["--ros-args", "--params-file", str(params)])
    try:
        config = read_config(node)
        assert config.cameras == () and config.camera_names == ("",) and config.frames_per_batch == 1
    finally:
        node.destroy_node()
    node = make_node(context, "three_cameras", parameter_overrides=[Parameter("cameras", value=["a", "b", "c"]),
                                                                    Parameter("batch_size", value=2)])
    try:
        config = read_config(node)
        assert config.cameras == ("a", "b", "c") and config.frames_per_batch == 2
    finally:
        node.destroy_node()
