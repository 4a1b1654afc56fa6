"""Launch the zs3_segmenter node.

    ros2 launch zs3_ros segment.launch.py image_topic:=/camera/color/image_raw
    ros2 launch zs3_ros segment.launch.py config:=/path/to/params.yaml namespace:=front compressed:=true

Arguments:
    config       parameters file (default: the package's config/segment.yaml)
    namespace    namespace of the node and its topics (default: none)
    image_topic  camera topic remapped onto `image`; `<image_topic>/compressed` goes to
                 `image/compressed` (the image_transport naming)
    compressed   true: subscribe the compressed stream (overrides input_transport)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

ARGUMENTS = ("config", "namespace", "image_topic", "compressed")


def generate_launch_description() -> LaunchDescription:
    default_config = os.path.join(get_package_share_directory("zs3_ros"), "config", "segment.yaml")
    config = LaunchConfiguration("config")
    image_topic = LaunchConfiguration("image_topic")
    compressed = LaunchConfiguration("compressed")
    transport = PythonExpression(["'compressed' if '", compressed, "'.lower() in ('true', '1', 'yes') else 'raw'"])
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=default_config,
                              description="Parameters file of the zs3_segmenter node"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its topics"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="Camera image topic (raw); '<image_topic>/compressed' when compressed"),
        DeclareLaunchArgument("compressed", default_value="false", choices=["true", "false"],
                              description="Subscribe to the compressed image stream"),
        Node(
            package="zs3_ros",
            executable="zs3_segmenter",
            name="zs3_segmenter",
            namespace=LaunchConfiguration("namespace"),
            parameters=[config, {"input_transport": transport}],
            remappings=[("image", image_topic), ("image/compressed", [image_topic, "/compressed"])],
            output="screen",
            emulate_tty=True,
        ),
    ])
