"""Launch the zs3_segmenter node.

    ros2 launch zs3_ros segment.launch.py image_topic:=/camera/color/image_raw
    ros2 launch zs3_ros segment.launch.py config:=/path/to/params.yaml namespace:=front compressed:=true
    ros2 launch zs3_ros segment.launch.py cameras:=front,rear,left namespace:=robot

Arguments:
    config       parameters file (default: the package's config/segment.yaml); a file that
                 is missing, unreadable or not YAML stops the launch with an error
    namespace    namespace of the node and its topics (default: none)
    image_topic  camera topic remapped onto `image`; `<image_topic>/compressed` goes to
                 `image/compressed` (the image_transport naming)
    compressed   true | false. true: subscribe the compressed stream (overrides the file's
                 input_transport); false: the file's input_transport decides (raw by default)
    cameras      comma-separated camera names (front,rear,left): one node serves them all
                 with one batched model and one vocabulary, subscribing `<name>/image` and
                 publishing `~/<name>/labels` ...; empty (default): the file's `cameras`
"""
import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = ("config", "namespace", "image_topic", "compressed", "cameras")
COMPRESSED_CHOICES = ("true", "false")


def checked_parameters_file(path: str) -> str:
    """``path`` if it is a readable YAML file, else a RuntimeError that `ros2 launch` prints.

    launch_ros itself only warns about a missing parameters file and starts the node on
    built-in defaults, which would look like a running robot on the wrong configuration.
    """
    if not os.path.isfile(path):
        raise RuntimeError(f"config:={path}: no such parameters file")
    try:
        with open(path, encoding="utf-8") as f:
            yaml.safe_load(f)
    except OSError as err:
        raise RuntimeError(f"config:={path}: cannot read it ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise RuntimeError(f"config:={path}: not valid YAML ({' '.join(str(err).split())})") from None
    return path


def input_transport_override(compressed: str) -> list:
    """The parameters `compressed:=` adds after the file's: only `true` overrides."""
    return [{"input_transport": "compressed"}] if compressed == "true" else []


def cameras_override(cameras: str) -> list:
    """The parameters `cameras:=a,b` adds after the file's: nothing when empty."""
    names = [name.strip() for name in cameras.split(",") if name.strip()]
    return [{"cameras": names}] if names else []


def _segmenter_node(context, *args, **kwargs) -> list:
    config = checked_parameters_file(LaunchConfiguration("config").perform(context))
    compressed = LaunchConfiguration("compressed").perform(context)
    image_topic = LaunchConfiguration("image_topic")
    return [Node(
        package="zs3_ros",
        executable="zs3_segmenter",
        name="zs3_segmenter",
        namespace=LaunchConfiguration("namespace"),
        parameters=[config, *input_transport_override(compressed),
                    *cameras_override(LaunchConfiguration("cameras").perform(context))],
        remappings=[("image", image_topic), ("image/compressed", [image_topic, "/compressed"])],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description() -> LaunchDescription:
    default_config = os.path.join(get_package_share_directory("zs3_ros"), "config", "segment.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config,
                              description="Parameters file of the zs3_segmenter node"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its topics"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="Camera image topic (raw); '<image_topic>/compressed' when compressed"),
        DeclareLaunchArgument("compressed", default_value="false", choices=list(COMPRESSED_CHOICES),
                              description="true: subscribe to the compressed image stream; "
                                          "false: the parameters file's input_transport"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="Comma-separated camera names served by one node (front,rear,left); "
                                          "empty: the parameters file's cameras"),
        OpaqueFunction(function=_segmenter_node),
    ])
