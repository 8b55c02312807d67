"""rosbag2 folders (version 9, MCAP) without ros2 bag, through the ``rosbags`` library.

``BagWriter`` writes a bag atomically: it records into ``<parent>/.recording/<name>`` and
renames it to ``<parent>/<name>`` only when closed, so a bag folder outside ``.recording`` is
always complete for ``ros2 bag info``/``rosbags``; a crash leaves the staged folder for
inspection (its MCAP chunks up to the crash are intact; ``ros2 bag reindex`` recovers them).

Messages may be given as rclpy message objects (converted field for field to the
``rosbags`` types, then CDR-serialised by rosbags: rclpy's own serialiser pads some messages,
e.g. an empty ``JointState.effort``, in a way rosbags refuses) or as CDR bytes received with
``raw=True`` subscriptions (written unchanged).

The type store is ROS 2 Jazzy's plus this stack's ``vlac_interfaces``, whose definitions are
read from the installed ``share/vlac_interfaces/msg`` folder.
"""

from __future__ import annotations

from collections.abc import Iterator
import functools
import os
import pathlib
import re
import shutil
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from vlac_models.files import fsync_path, fsync_tree

STAGING_DIR = '.recording'
_PRIMITIVES = {
    'boolean': np.bool_, 'byte': np.uint8, 'octet': np.uint8, 'char': np.uint8,
    'int8': np.int8, 'uint8': np.uint8, 'int16': np.int16, 'uint16': np.uint16,
    'int32': np.int32, 'uint32': np.uint32, 'int64': np.int64, 'uint64': np.uint64,
    'float': np.float32, 'double': np.float64,
}
_ARRAY = re.compile(r'^(?:sequence<(?P<seq>[^,>]+)(?:, \d+)?>|(?P<arr>[^\[]+)\[\d+\])$')


@functools.cache
def typestore():
    """ROS 2 Jazzy types plus vlac_interfaces messages, for reading and writing bags."""
    from ament_index_python.packages import get_package_share_directory

    store = get_typestore(Stores.ROS2_JAZZY)
    msg_dir = pathlib.Path(get_package_share_directory('vlac_interfaces')) / 'msg'
    types = {}
    for path in sorted(msg_dir.glob('*.msg')):
        types.update(get_types_from_msg(path.read_text(), f'vlac_interfaces/msg/{path.stem}'))
    store.register(types)
    return store


def ros_type_name(msg: Any) -> str:
    """'pkg/msg/Name' of an rclpy message object."""
    package = type(msg).__module__.split('.')[0]
    return f'{package}/msg/{type(msg).__name__}'


def _convert(value: Any, field_type: str, store) -> Any:
    match = _ARRAY.match(field_type)
    if match:
        element = match.group('seq') or match.group('arr')
        if element in _PRIMITIVES:
            return np.asarray(value, dtype=_PRIMITIVES[element])
        if element.startswith('string') or element.startswith('wstring'):
            return list(value)
        return [to_rosbags(v, store) for v in value]
    if hasattr(value, 'get_fields_and_field_types'):
        return to_rosbags(value, store)
    return value


def to_rosbags(msg: Any, store=None) -> Any:
    """Convert an rclpy message to the equivalent ``rosbags`` message object."""
    store = store or typestore()
    cls = store.types[ros_type_name(msg)]
    return cls(**{name: _convert(getattr(msg, name), kind, store)
                  for name, kind in msg.get_fields_and_field_types().items()})


class BagWriter:
    """One rosbag2 folder (MCAP, version 9), written atomically. Use as a context manager."""

    def __init__(self, path: os.PathLike, custom_data: dict[str, str] | None = None) -> None:
        self.path = pathlib.Path(path)
        if self.path.exists():
            raise FileExistsError(f'bag {self.path} exists; refusing to overwrite a recording')
        self.partial = self.path.parent / STAGING_DIR / self.path.name
        if self.partial.exists():  # an earlier crashed attempt at this very episode
            shutil.move(self.partial, self.partial.with_name(
                f'{self.path.name}.crashed.{os.getpid()}.{len(os.listdir(self.partial.parent))}'))
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._store = typestore()
        self._writer = Writer(self.partial, version=9, storage_plugin=StoragePlugin.MCAP)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, str(value))
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def set_custom_data(self, key: str, value: str) -> None:
        """Add a metadata.yaml custom_data entry (e.g. the episode's outcome)."""
        self._writer.set_custom_data(key, str(value))

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare a topic and its type ('pkg/msg/Name') before writing to it."""
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype,
                                                                   typestore=self._store)
            self.counts[topic] = 0

    def write(self, topic: str, stamp_ns: int, msg: Any) -> None:
        """Write one message: an rclpy or rosbags message (topic added on first use) or CDR."""
        if isinstance(msg, (bytes, bytearray, memoryview)):
            if topic not in self._connections:
                raise KeyError(f'add_topic({topic!r}, msgtype) before writing raw bytes')
            data = msg
        elif hasattr(msg, '__msgtype__'):  # a rosbags message (e.g. read from another bag)
            self.add_topic(topic, msg.__msgtype__)
            data = self._store.serialize_cdr(msg, msg.__msgtype__)
        else:
            self.add_topic(topic, ros_type_name(msg))
            data = self._store.serialize_cdr(to_rosbags(msg, self._store),
                                             ros_type_name(msg))
        self._writer.write(self._connections[topic], int(stamp_ns), data)
        self.counts[topic] += 1

    def close(self) -> pathlib.Path:
        """Finish the bag (metadata.yaml) and move it to its final name; return that path."""
        self._writer.close()
        fsync_tree(self.partial)  # on disk before it carries its final name
        self.partial.rename(self.path)
        fsync_path(self.path.parent)
        return self.path

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        # On error the staged folder stays: nothing recorded is deleted.


def read_messages(path: os.PathLike, topics: list[str] | None = None
                  ) -> Iterator[tuple[str, int, Any]]:
    """Yield (topic, bag timestamp ns, rosbags message) from a bag folder, in time order."""
    store = typestore()
    with Reader(pathlib.Path(path)) as reader:
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        for connection, stamp, data in reader.messages(connections=connections):
            yield connection.topic, stamp, store.deserialize_cdr(data, connection.msgtype)


def bag_metadata(path: os.PathLike) -> dict:
    """Topics with types and counts, duration and custom data of a bag folder."""
    with Reader(pathlib.Path(path)) as reader:
        return {
            'topics': {c.topic: (c.msgtype, c.msgcount) for c in reader.connections},
            'duration_ns': reader.duration, 'message_count': reader.message_count,
            'custom_data': dict(reader.storage.metadata.custom or {}),
        }
