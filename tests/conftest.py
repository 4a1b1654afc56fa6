"""Shared test setup.

Each pytest session gets its own ROS domain on loopback so parallel runs (and other
machines' traffic) never cross-talk, and torch stays on the two cores CI has.
"""
import os
import random

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # Iron and newer
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")  # Humble
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
