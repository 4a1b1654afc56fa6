"""The node's parameters (declared with descriptors, read into NodeConfig, validated), the
shipped parameter file through `--ros-args --params-file`, and the launch file's arguments.

`ros2 launch` cannot run here (no launch_ros wheel), so the launch file is checked by
parsing it; the full node with the same parameter file runs in tests/test_node_*.py.
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
    assert set(arguments) == {"config", "namespace", "image_topic", "compressed"}
    for name, keywords in arguments.items():
        assert "description" in keywords and "default_value" in keywords, name
    source = LAUNCH_FILE.read_text()
    assert 'executable="zs3_segmenter"' in source and '"segment.yaml"' in source
    assert '("image", image_topic)' in source and '("image/compressed"' in source


def test_launch_file_imports_where_launch_ros_exists():
    pytest.importorskip("launch_ros")
    import importlib.util
    spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert names == {"config", "namespace", "image_topic", "compressed"}
