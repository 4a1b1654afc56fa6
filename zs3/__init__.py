"""The `zs3` command line: the top of the ROS-free layers, above `zs3_core` and `training`."""
