"""Bag reading and writing through the `rosbags` library (no rosbag2_py, no ROS install).

rosbag2 (sqlite3 and MCAP) and ROS 1 bags open through one `AnyReader`; reading turns
storage failures into `BagReadError` naming the last good message, and a missing topic
into `TopicNotFoundError` listing the topics that exist, so a user with a half-copied bag
knows what happened. Writing registers this package's messages from msg/*.msg so that
`ros2 bag play`, Foxglove and `AnyReader` see full definitions of the custom types.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from zs3_core.bags.conversions import (
    ImageConversionError, compressed_to_rgb, image_to_numpy, image_to_rgb, numpy_to_image,
    rgb_to_compressed,
)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/Image")
COMPRESSED_TYPES = ("sensor_msgs/msg/CompressedImage", "sensor_msgs/CompressedImage")
CUSTOM_DATA_KEY = "zs3.classes"       # rosbag2 metadata custom_data key (YAML text)
SIDECAR_SUFFIX = ".classes.yaml"     # beside a ROS 1 bag, which has no custom metadata
STORAGES = ("sqlite3", "mcap", "ros1")


class BagError(RuntimeError):
    """Base of the bag errors below."""


class TopicNotFoundError(BagError):
    """A requested topic is not in the bag; the message lists the topics that are."""


class BagReadError(BagError):
    """The bag is corrupt or truncated; the message names the last message read intact."""

    def __init__(self, message: str, messages_read: int):
        super().__init__(message)
        self.messages_read = messages_read


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any           # deserialised message (rosbags dataclass)
    index: int         # position among the messages read, from 0


def is_rosbag1(path: Path) -> bool:
    return Path(path).is_file() and Path(path).suffix == ".bag"


MCAP_MAGIC = b"\x89MCAP0\r\n"


@dataclass
class OpenBag:
    """An opened AnyReader; `truncated` says why only a salvaged prefix is readable."""

    reader: Any
    path: Path
    truncated: str | None = None
    _tmp: Any = None

    @property
    def connections(self) -> list:
        return self.reader.connections

    def close(self) -> None:
        self.reader.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def open_bag(path: str | Path) -> OpenBag:
    """Open a bag; a truncated MCAP recording is salvaged up to its last complete record."""
    from rosbags.highlevel import AnyReader, AnyReaderError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag {path} does not exist")
    try:
        reader = AnyReader([path], default_typestore=_default_typestore())
        reader.open()
        return OpenBag(reader, path)
    except AnyReaderError as err:
        salvaged = _salvage_truncated_mcap(path)
        if salvaged is None:
            raise BagReadError(f"cannot open bag {path}: {err}", 0) from err
        tmp, copy, kept, size = salvaged
        reader = AnyReader([copy], default_typestore=_default_typestore())
        reader.open()
        return OpenBag(reader, path, f"MCAP file ends mid-record ({kept} of {size} bytes intact)", tmp)


def _salvage_truncated_mcap(path: Path):
    """Copy the complete top-level records of a footer-less MCAP and close it properly.

    A recorder killed mid-write leaves an MCAP without footer that readers refuse; every
    chunk written before the crash is still intact, so the prefix up to the last complete
    record plus an empty footer is a valid (unindexed) MCAP.
    """
    import shutil
    import struct
    import tempfile

    files = sorted(path.glob("*.mcap")) if path.is_dir() else []
    if len(files) != 1:
        return None
    data = files[0].read_bytes()
    if not data.startswith(MCAP_MAGIC) or data.endswith(MCAP_MAGIC):
        return None
    pos = good = len(MCAP_MAGIC)
    tail = b""
    while pos + 9 <= len(data):
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        if op in (0x02, 0x0F):  # footer or data end: nothing more to salvage
            break
        if pos + 9 + length > len(data):
            if op == 0x06:
                tail = _complete_chunk_records(data, pos + 9)
            break
        pos += 9 + length
        good = pos
    tmp = tempfile.TemporaryDirectory(prefix="zs3_salvage_")
    copy = Path(tmp.name) / path.name
    copy.mkdir()
    if (path / "metadata.yaml").exists():
        shutil.copy(path / "metadata.yaml", copy / "metadata.yaml")
    footer = bytes([0x02]) + struct.pack("<QQQI", 20, 0, 0, 0)
    (copy / files[0].name).write_bytes(data[:good] + tail + footer + MCAP_MAGIC)
    return tmp, copy, good + len(tail), len(data)


def _complete_chunk_records(data: bytes, start: int) -> bytes:
    """The complete records inside a cut-off uncompressed chunk, to re-emit at top level."""
    import struct

    pos = start + 28                                    # start/end time, size, crc
    if pos + 4 > len(data):
        return b""
    (clen,) = struct.unpack_from("<I", data, pos)
    compression = data[pos + 4:pos + 4 + clen]
    pos += 4 + clen + 8                                 # compression string, records length
    if compression:                                     # a compressed chunk is lost whole
        return b""
    begin = pos
    while pos + 9 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        if pos + 9 + length > len(data):
            break
        pos += 9 + length
    return data[begin:pos]


def _default_typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_HUMBLE)


def describe_topics(reader) -> str:
    return ", ".join(f"{c.topic} ({c.msgtype}, {c.msgcount} msgs)" for c in
                     sorted(reader.connections, key=lambda c: c.topic)) or "none"


def connections_for(reader, topic: str, allowed_types: Sequence[str] | None = None) -> list:
    """Connections of `topic`, checked against `allowed_types`."""
    found = [c for c in reader.connections if c.topic == topic]
    if not found:
        raise TopicNotFoundError(f"topic {topic!r} is not in the bag; topics in the bag: "
                                 f"{describe_topics(reader)}")
    if allowed_types is not None:
        bad = [c.msgtype for c in found if c.msgtype not in allowed_types]
        if bad:
            raise TopicNotFoundError(f"topic {topic!r} has type {bad[0]}, expected one of "
                                     f"{', '.join(allowed_types)}")
    return found


def iter_messages(bag: OpenBag, connections: Sequence) -> Iterator[BagMessage]:
    """Deserialised messages in log-time order; storage or decoding failures → BagReadError."""
    reader = bag.reader
    index = 0
    last = "none (the first message is unreadable)"
    stream = reader.messages(connections=connections)
    while True:
        try:
            item = next(stream)
        except StopIteration:
            break
        except Exception as err:  # sqlite3/mcap/struct errors differ by storage; one message here
            raise BagReadError(_corrupt_message(bag.path, index, last, f"{type(err).__name__}: {err}"),
                               index) from err
        conn, log_time, raw = item
        try:
            msg = reader.deserialize(raw, conn.msgtype)
        except Exception as err:
            raise BagReadError(_corrupt_message(bag.path, index, last, f"{type(err).__name__}: {err}"),
                               index) from err
        yield BagMessage(conn.topic, conn.msgtype, int(log_time), msg, index)
        last = f"#{index} on {conn.topic} at log time {log_time / 1e9:.6f} s"
        index += 1
    if bag.truncated:
        raise BagReadError(_corrupt_message(bag.path, index, last, bag.truncated), index)


def _corrupt_message(path, index: int, last: str, reason: str) -> str:
    return (f"bag {path} is corrupt or truncated: reading stopped after {index} messages; "
            f"last good message: {last}; cause: {reason}")


def stamp_ns(msg: Any) -> int:
    """Header stamp in ns (ROS 2 `stamp.sec/nanosec` or ROS 1 `stamp.secs/nsecs`)."""
    stamp = msg.header.stamp
    if hasattr(stamp, "sec"):
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return int(stamp.secs) * 1_000_000_000 + int(stamp.nsecs)


def decode_rgb(message: BagMessage) -> np.ndarray:
    """Image or CompressedImage → (H, W, 3) uint8 RGB, through the node's own conversions."""
    if message.msgtype in COMPRESSED_TYPES:
        return compressed_to_rgb(message.msg)
    return image_to_rgb(message.msg)


def decode_label_image(message: BagMessage) -> np.ndarray:
    """A ground-truth label image (mono8/mono16 raw, or lossless PNG) → (H, W) integer array."""
    if message.msgtype in COMPRESSED_TYPES:
        import cv2
        decoded = cv2.imdecode(np.frombuffer(bytes(message.msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is None or decoded.ndim != 2:
            raise ImageConversionError(f"ground-truth label image on {message.topic} is not a "
                                       "single-channel PNG")
        return decoded
    labels = image_to_numpy(message.msg)
    if labels.ndim != 2:
        raise ImageConversionError(f"ground-truth label image on {message.topic} has encoding "
                                   f"{message.msg.encoding}; expected mono8 or mono16")
    return labels


def read_class_metadata(path: str | Path) -> dict | None:
    """Class names / split written by `zs3 make-bag` (rosbag2 custom data or ROS 1 sidecar)."""
    path = Path(path)
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if sidecar.is_file():
        return yaml.safe_load(sidecar.read_text())
    meta = path / "metadata.yaml"
    if meta.is_file():
        info = (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {})
        text = (info.get("custom_data") or {}).get(CUSTOM_DATA_KEY)
        return yaml.safe_load(text) if text else None
    return None


# -- writing ---------------------------------------------------------------------------

def package_msg_dir() -> Path:
    """msg/ of the zs3_ros package, without asking ROS where it is.

    A checkout and a pip-installed wheel carry the definitions beside this module (`msg`, a
    link to the repository's msg/ that the wheel stores as files); a colcon install without
    --symlink-install has them in <prefix>/share/zs3_ros/msg under AMENT_PREFIX_PATH.
    """
    candidates = [Path(__file__).resolve().parent / "msg"]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "zs3_ros" / "msg")
    for candidate in candidates:
        if any(candidate.glob("*.msg")):
            return candidate
    raise BagError("the zs3_ros message definitions (LabelInfo.msg, SegmentationInfo.msg) were not found; "
                   f"looked in: {', '.join(str(c) for c in candidates)}")


def output_typestore(ros1: bool = False):
    """Typestore with the standard messages (ROS 2 Humble, or ROS 1 Noetic for .bag files)
    plus zs3_ros/msg/* parsed from their .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC) if ros1 else _default_typestore()
    types: dict = {}
    for path in sorted(package_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"zs3_ros/msg/{path.stem}"))
    store.register(types)
    return store


def _latched_qos():
    """Transient-local reliable keep-last 1: what `ros2 bag play` re-offers for ~/label_info."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


class BagWriter:
    """One writer for rosbag2 (sqlite3, MCAP) and ROS 1 with the same calls.

    Messages are built with `make(msgtype, **fields)` and `header(stamp_ns, frame_id)` so the
    caller never deals with the ROS 1 / ROS 2 differences (Header.seq, serialisation).
    """

    def __init__(self, path: str | Path, storage: str = "sqlite3"):
        if storage not in STORAGES:
            raise ValueError(f"unknown storage {storage!r}; expected one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; remove it or choose another output path")
        self.storage = storage
        self.ros1 = storage == "ros1"
        self.typestore = output_typestore(ros1=self.ros1)
        if self.ros1:
            from rosbags.rosbag1 import Writer as Writer1
            self._writer = Writer1(self.path)
        else:
            from rosbags.rosbag2 import StoragePlugin, Writer as Writer2
            plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
            self._writer = Writer2(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._custom: dict[str, str] = {}

    def add_topic(self, topic: str, msgtype: str, latched: bool = False):
        if self.ros1:
            return self._writer.add_connection(topic, msgtype, typestore=self.typestore,
                                               latching=1 if latched else None)
        return self._writer.add_connection(topic, msgtype, typestore=self.typestore,
                                           offered_qos_profiles=[_latched_qos()] if latched else ())

    def make(self, msgtype: str, **fields: Any) -> Any:
        """An instance of `msgtype` from this writer's typestore."""
        return self.typestore.types[msgtype](**fields)

    def header(self, stamp: int, frame_id: str) -> Any:
        t = self.make("builtin_interfaces/msg/Time", sec=stamp // 1_000_000_000,
                      nanosec=stamp % 1_000_000_000)
        if self.ros1:
            return self.make("std_msgs/msg/Header", seq=0, stamp=t, frame_id=frame_id)
        return self.make("std_msgs/msg/Header", stamp=t, frame_id=frame_id)

    def write(self, connection, log_time_ns: int, msg: Any) -> None:
        if self.ros1:
            data = self.typestore.serialize_ros1(msg, connection.msgtype)
        else:
            data = self.typestore.serialize_cdr(msg, connection.msgtype)
        self._writer.write(connection, int(log_time_ns), data)

    def set_custom_data(self, key: str, value: str) -> None:
        """rosbag2 metadata custom data; for ROS 1 written to the sidecar YAML on close."""
        self._custom[key] = value
        if not self.ros1:
            self._writer.set_custom_data(key, value)

    def close(self) -> None:
        self._writer.close()
        if self.ros1 and CUSTOM_DATA_KEY in self._custom:
            self.path.with_name(self.path.name + SIDECAR_SUFFIX).write_text(self._custom[CUSTOM_DATA_KEY])

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def image_message(writer: BagWriter, array: np.ndarray, encoding: str, header: Any) -> Any:
    """numpy → sensor_msgs/Image of the writer's typestore, via the node's numpy_to_image."""
    from types import SimpleNamespace

    ns = numpy_to_image(array, encoding, header, msg_type=SimpleNamespace)
    return writer.make("sensor_msgs/msg/Image", header=header, height=ns.height, width=ns.width,
                       encoding=ns.encoding, is_bigendian=int(ns.is_bigendian), step=ns.step,
                       data=np.frombuffer(ns.data, np.uint8))


def compressed_message(writer: BagWriter, rgb: np.ndarray, header: Any, fmt: str = "jpeg") -> Any:
    """RGB → sensor_msgs/CompressedImage of the writer's typestore, via the node's rgb_to_compressed."""
    from types import SimpleNamespace

    ns = rgb_to_compressed(rgb, fmt, header, msg_type=SimpleNamespace)
    return writer.make("sensor_msgs/msg/CompressedImage", header=header, format=ns.format,
                       data=np.frombuffer(ns.data, np.uint8))
