"""The node's parameters: declared once with descriptors and ranges, read into a typed
frozen :class:`NodeConfig`, validated with messages a user can act on.

Parameters that need a model reload (model, backend, device, precision, input size, QoS,
transport) are read-only; the rest (threshold, overlay, rate) may change at run time and
produce a new ``NodeConfig`` that the node swaps in as one reference.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from zs3_core import config as core_config
from zs3_core.backends.base import BACKEND_NAMES, PRECISIONS
from zs3_core.config import ConfigError, dataclass_from_dict

__all__ = ["ConfigError", "NodeConfig", "PARAMETERS", "declare_parameters", "read_config",
           "updated_config", "resolve_path", "model_threshold", "DYNAMIC_PARAMETERS"]

# The node adds 'auto' (chosen with backend auto, or the named backend's usual one).
NODE_PRECISIONS = ("auto",) + PRECISIONS
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
# A camera name becomes one token of its topics (`front/image`, `~/front/labels`).
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class NodeConfig:
    model_config: str = "checkpoints/synthetic/ldvc.yaml"
    checkpoint: str = ""
    backend: str = "auto"
    device: str = "cpu"
    precision: str = "auto"                   # auto: backend auto picks it; see backend_precision
    input_size: int = 0                       # 0 = the model config's own input size
    classes: tuple[str, ...] = ("red circle", "green square", "blue triangle")
    prompt_template: str = ""          # empty: the model config's template (what it was trained with)
    prompt_templates: tuple[str, ...] = ()    # an ensemble instead (templates or set names, e.g. "imagenet")
    unlabeled_threshold: float = -1.0         # < 0: the model's calibrated open-set threshold (docs/open_set.md)
    background_classes: tuple[str, ...] = ("background",)   # their pixels are published as unlabeled
    publish_overlay: bool = True
    overlay_alpha: float = 0.5
    qos_reliability: str = "best_effort"      # best_effort = REP 2003 sensor-data QoS
    qos_depth: int = 1
    input_transport: str = "raw"
    cameras: tuple[str, ...] = ()             # empty: one input `image`; else `<name>/image` per camera
    camera_transports: tuple[str, ...] = ()   # per camera raw | compressed; empty: input_transport for all
    batch_size: int = 0                       # most frames per model call; 0 = one per camera
    max_rate_hz: float = 0.0                  # 0 = as fast as frames arrive and inference allows
    diagnostics_period_s: float = 1.0

    def validate(self) -> "NodeConfig":
        """Return self, or raise ConfigError naming the first bad parameter."""
        _one_of("backend", self.backend, BACKEND_NAMES)
        _one_of("precision", self.precision, NODE_PRECISIONS)
        if self.backend == "auto" and self.precision != "auto":
            raise ConfigError(
                f"precision {self.precision!r} with backend 'auto': auto picks the precision together with "
                "the backend (bf16 on CPUs with native bf16, fp16 on CUDA, else fp32); set precision to "
                f"'auto', or name a backend (torch, onnxruntime, tensorrt) to run {self.precision}")
        _one_of("input_transport", self.input_transport, TRANSPORTS)
        _one_of("qos_reliability", self.qos_reliability, RELIABILITIES)
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not self.model_config:
            raise ConfigError("model_config is empty: give the path of a model YAML (e.g. checkpoints/synthetic/ldvc.yaml)")
        if self.prompt_template and "{}" not in self.prompt_template:
            raise ConfigError(f"prompt_template must contain '{{}}' where the class name goes, got {self.prompt_template!r}")
        if self.prompt_template and self.prompt_templates:
            raise ConfigError("set prompt_template or prompt_templates, not both (one template, or an ensemble)")
        if not self.classes:
            raise ConfigError("classes is empty: give at least one class name")
        _in_range("input_size", self.input_size, 0, 4096)
        if self.input_size and (self.input_size < 32 or self.input_size % 16):
            raise ConfigError(f"input_size must be 0 (the model's) or a multiple of 16 >= 32, got {self.input_size}")
        if not -1.0 <= self.unlabeled_threshold < 1.0:
            raise ConfigError(f"unlabeled_threshold must be in [0, 1), or negative for the model's calibrated "
                              f"threshold, got {self.unlabeled_threshold}")
        _in_range("overlay_alpha", self.overlay_alpha, 0.0, 1.0)
        _in_range("qos_depth", self.qos_depth, 1, 100)
        self._validate_cameras()
        _in_range("max_rate_hz", self.max_rate_hz, 0.0, 1000.0)
        _in_range("diagnostics_period_s", self.diagnostics_period_s, 0.1, 60.0)
        return self

    def _validate_cameras(self) -> None:
        for name in self.cameras:
            if not CAMERA_NAME.match(name):
                raise ConfigError(f"camera name {name!r} must start with a letter and hold only letters, digits "
                                  "and '_' (it becomes a topic name: <name>/image, ~/<name>/labels)")
        if len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"cameras must be distinct, got {list(self.cameras)}")
        if self.camera_transports:
            if len(self.camera_transports) != len(self.cameras):
                raise ConfigError(f"camera_transports has {len(self.camera_transports)} entries for "
                                  f"{len(self.cameras)} cameras: give one per camera, or none (input_transport for all)")
            for transport in self.camera_transports:
                _one_of("camera_transports entry", transport, TRANSPORTS)
        _in_range("batch_size", self.batch_size, 0, 64)

    @property
    def camera_names(self) -> tuple[str, ...]:
        """The cameras the node serves; ("",) for the single `image` input."""
        return self.cameras or ("",)

    def transport_of(self, index: int) -> str:
        """raw or compressed for camera `index` of `camera_names`."""
        return self.camera_transports[index] if self.camera_transports else self.input_transport

    @property
    def frames_per_batch(self) -> int:
        """Frames one model call takes: one per camera, or at most `batch_size`."""
        cameras = len(self.camera_names)
        return min(self.batch_size, cameras) if self.batch_size else cameras

    @property
    def backend_precision(self) -> str:
        """The precision handed to the backend: for backend auto it is unused (auto chooses);
        'auto' with a named backend is that backend's usual one (tensorrt fp16, else fp32)."""
        if self.precision != "auto":
            return self.precision
        return "fp16" if self.backend == "tensorrt" else "fp32"


def model_threshold(unlabeled_threshold: float) -> Optional[float]:
    """The node's unlabeled_threshold as the model config takes it: None (the threshold calibrated
    with the checkpoint) for a negative value, else the fixed override."""
    return None if unlabeled_threshold < 0 else float(unlabeled_threshold)


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value}")


def _float_range(low: float, high: float) -> dict:
    return {"floating_point_range": [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]}


def _int_range(low: int, high: int) -> dict:
    return {"integer_range": [IntegerRange(from_value=int(low), to_value=int(high), step=0)]}


# name -> (ParameterType, description, extra descriptor fields, read_only)
_SPEC: dict[str, tuple[int, str, dict, bool]] = {
    "model_config": (ParameterType.PARAMETER_STRING,
                     "Model YAML; relative paths resolve against the working directory, then the package share", {}, True),
    "checkpoint": (ParameterType.PARAMETER_STRING, "Weights file; empty = the model config's own (or random weights)", {}, True),
    "backend": (ParameterType.PARAMETER_STRING, "Image-path backend", {"additional_constraints": "one of " + ", ".join(BACKEND_NAMES)}, True),
    "device": (ParameterType.PARAMETER_STRING, "cpu, cuda or cuda:N", {}, True),
    "precision": (ParameterType.PARAMETER_STRING,
                  "Inference precision; auto = chosen with backend auto, or the named backend's usual one", {"additional_constraints": "one of " + ", ".join(NODE_PRECISIONS)}, True),
    "input_size": (ParameterType.PARAMETER_INTEGER, "Square network input size in pixels; 0 = the model config's", _int_range(0, 4096), True),
    "classes": (ParameterType.PARAMETER_STRING_ARRAY, "Initial vocabulary; change it at run time with ~/set_vocabulary", {}, True),
    "prompt_template": (ParameterType.PARAMETER_STRING, "Text prompt with '{}' for the class name; empty = the model config's", {}, True),
    "prompt_templates": (ParameterType.PARAMETER_STRING_ARRAY,
                         "Template ensemble instead of prompt_template: templates with '{}' or built-in set names "
                         "(imagenet: CLIP's 80); a class's embedding averages them (LDVC keeps its own template)", {}, True),
    "unlabeled_threshold": (ParameterType.PARAMETER_DOUBLE,
                            "Pixels whose top probability is below this get the unlabeled value; negative = the "
                            "threshold calibrated with the model's checkpoint (docs/open_set.md)", _float_range(-1.0, 1.0), False),
    "background_classes": (ParameterType.PARAMETER_STRING_ARRAY,
                           "Vocabulary classes meaning 'none of the objects': their pixels are published as the "
                           "unlabeled value and left out of per-class confidence and shares", {}, False),
    "publish_overlay": (ParameterType.PARAMETER_BOOL, "Publish ~/overlay (computed only while someone subscribes)", {}, False),
    "overlay_alpha": (ParameterType.PARAMETER_DOUBLE, "Opacity of the class colours in ~/overlay", _float_range(0.0, 1.0), False),
    "qos_reliability": (ParameterType.PARAMETER_STRING, "Input subscription reliability (best_effort = sensor-data QoS)",
                        {"additional_constraints": "one of " + ", ".join(RELIABILITIES)}, True),
    "qos_depth": (ParameterType.PARAMETER_INTEGER, "Input subscription history depth (the node keeps only the newest frame)", _int_range(1, 100), True),
    "input_transport": (ParameterType.PARAMETER_STRING, "raw: subscribe 'image'; compressed: subscribe 'image/compressed'",
                        {"additional_constraints": "one of " + ", ".join(TRANSPORTS)}, True),
    "cameras": (ParameterType.PARAMETER_STRING_ARRAY,
                "Camera names served by one model and vocabulary: subscribe <name>/image, publish ~/<name>/labels, "
                "confidence, info, overlay; empty = the single input 'image'", {}, True),
    "camera_transports": (ParameterType.PARAMETER_STRING_ARRAY,
                          "raw or compressed for each camera, in the order of cameras; empty = input_transport for all",
                          {}, True),
    "batch_size": (ParameterType.PARAMETER_INTEGER,
                   "Most camera frames segmented in one model call; 0 = one frame of every camera that has one",
                   _int_range(0, 64), True),
    "max_rate_hz": (ParameterType.PARAMETER_DOUBLE, "Upper bound on segmented frames (batches with cameras) per second; 0 = no limit", _float_range(0.0, 1000.0), False),
    "diagnostics_period_s": (ParameterType.PARAMETER_DOUBLE, "Period of /diagnostics", _float_range(0.1, 60.0), True),
}
PARAMETERS = tuple(_SPEC)
DYNAMIC_PARAMETERS = frozenset(name for name, spec in _SPEC.items() if not spec[3])


def declare_parameters(node: Any, defaults: Optional[NodeConfig] = None) -> None:
    """Declare every parameter on ``node`` with its descriptor; values from a params file win."""
    defaults = defaults or NodeConfig()
    for name, (ptype, description, extra, read_only) in _SPEC.items():
        value = getattr(defaults, name)
        if isinstance(value, tuple):
            # An empty default would be typed as a byte array: declare the type itself instead,
            # left without a value until a file or override gives one (`_value` reads the default).
            value = list(value) if value else _parameter_type(ptype)
        descriptor = ParameterDescriptor(name=name, type=ptype, description=description, read_only=read_only, **extra)
        node.declare_parameter(name, value, descriptor)


def _parameter_type(ptype: int) -> Any:
    from rclpy.parameter import Parameter
    return Parameter.Type(ptype)


def read_config(node: Any) -> NodeConfig:
    """The node's current parameter values as a validated NodeConfig."""
    return _build({name: _value(node, name) for name in PARAMETERS})


def _value(node: Any, name: str) -> Any:
    """A parameter's value; an empty list in a parameters file (`cameras: []`) leaves the
    parameter without a value in rcl's YAML reader, which means the default here."""
    try:
        return node.get_parameter(name).value
    except Exception as err:   # rclpy's ParameterUninitializedException (not in every distro)
        if type(err).__name__ != "ParameterUninitializedException":
            raise
        value = getattr(NodeConfig(), name)
        return list(value) if isinstance(value, tuple) else value


def updated_config(config: NodeConfig, parameters: list) -> NodeConfig:
    """A new validated NodeConfig with ``parameters`` (rclpy Parameter objects) applied.

    Raises ConfigError for read-only or invalid values, so the set-parameters callback can
    reject the change with the message.
    """
    changes = {}
    for param in parameters:
        if param.name not in _SPEC:
            continue
        if param.name not in DYNAMIC_PARAMETERS:
            raise ConfigError(f"{param.name} is read-only while the node runs; restart the node to change it")
        changes[param.name] = param.value
    return _build({**dataclasses.asdict(config), **changes})


def _build(values: dict) -> NodeConfig:
    """The same typed reader as every config file (`dataclass_from_dict`), then the node's checks."""
    return dataclass_from_dict(NodeConfig, values).validate()


def _share_dirs() -> list[Path]:
    """The package share dir when installed through colcon; none otherwise."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return [Path(get_package_share_directory("zs3_ros"))]
    except Exception:  # not installed through colcon / no ament index: the source tree still works
        return []


def resolve_path(path: str, what: str = "file") -> str:
    """Absolute path of ``path``: as given (relative to the working directory), else under the
    package share dir, else the source tree; ConfigError naming ``what`` where none exists.

    The core's resolver (`zs3_core.config.resolve_path`) with the ROS share lookup layered on.
    """
    return core_config.resolve_path(path, Path.cwd(), roots=_share_dirs(), what=what)
