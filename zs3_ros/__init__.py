"""ROS 2 adapter for zs3_core: the segmenter node, its parameters, frame worker and diagnostics.

colcon installs the generated interfaces (zs3_ros.msg, zs3_ros.srv) in the install tree and
this source folder beside them; extending __path__ lets either copy find the other, so
`python -m zs3_ros.demo` from the repository root still sees the generated messages.
"""
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
