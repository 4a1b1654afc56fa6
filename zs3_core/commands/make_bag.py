"""`zs3 make-bag OUT`: a sample bag of the synthetic camera with ground-truth labels.

Bag writing lives in zs3_ros (ROS message types); it is imported only when this runs.
"""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("make-bag", help="write a synthetic-world bag (camera images + ground-truth labels)")
    p.add_argument("out", help="bag path to create (a directory for rosbag2, a .bag file for ROS 1)")
    p.add_argument("--storage", choices=["sqlite3", "mcap", "ros1"], default="sqlite3")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the camera images")
    p.add_argument("--compressed", action="store_true", help="record sensor_msgs/CompressedImage (JPEG)")
    p.add_argument("--cameras", default="", help="comma-separated camera names (front,rear): one image and "
                                                 "labels topic each, /<name>/image_raw and /<name>/labels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zs3_core.bags.sample_bag import write_sample_bag

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        log.error("--size must look like 320x240, got %r", args.size)
        return 2
    try:
        bag = write_sample_bag(args.out, args.storage, seconds=args.seconds, fps=args.fps,
                               seed=args.seed, compressed=args.compressed, image_size=(height, width),
                               cameras=[c.strip() for c in args.cameras.split(",") if c.strip()])
    except (FileExistsError, ValueError) as err:
        log.error("%s", err)
        return 2
    print(f"wrote {bag.path}: {bag.frames} frames on {bag.image_topic}, labels on {bag.labels_topic}, "
          f"{len(bag.class_names)} classes ({len(bag.unseen)} unseen) in the bag metadata")
    return 0
