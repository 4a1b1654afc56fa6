"""Bags and image messages as plain data, without ROS: reading and writing rosbag2/ROS 1
bags through `rosbags`, image message <-> numpy conversions, ground truth, vocabulary
schedules, the sample bag and bag evaluation. The node (`zs3_ros`) shares the conversions
and the message fields, so a bag replay and a live node see the same pixels.
"""
