"""Deterministic, fully populated ROS messages for interface round-trip tests.

``filled(msg_type, seed)`` sets every field of a message (recursively, sequences included) to a
non-default value derived from ``seed`` and the field's path, so a sender and a receiver in
different processes build the same message independently and compare field for field.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

from rosidl_parser import definition as idl

_INT_RANGES = {
    'int8': (-128, 127), 'uint8': (0, 255), 'char': (0, 255), 'octet': (0, 255),
    'int16': (-2**15, 2**15 - 1), 'uint16': (0, 2**16 - 1),
    'int32': (-2**31, 2**31 - 1), 'uint32': (0, 2**32 - 1),
    'int64': (-2**63, 2**63 - 1), 'uint64': (0, 2**64 - 1),
}
_SEQUENCE_LENGTH = 3


def _number(seed: int, path: str) -> int:
    return int.from_bytes(hashlib.sha256(f'{seed}:{path}'.encode()).digest()[:8], 'little')


def _scalar(kind: idl.AbstractType, seed: int, path: str) -> Any:
    n = _number(seed, path)
    if isinstance(kind, idl.AbstractString):
        return f'{path}#{n % 10007}'
    name = kind.typename
    if name == 'boolean':
        return True  # False is the default; True proves the field travelled
    if name in ('float', 'double'):
        return (n % 20001 - 10000) / 64.0  # exactly representable in float32
    low, high = _INT_RANGES[name]
    return low + 1 + n % (high - low)


def _value(kind: idl.AbstractType, seed: int, path: str) -> Any:
    if isinstance(kind, idl.NamespacedType):
        module = importlib.import_module('.'.join(kind.namespaces))
        return filled(getattr(module, kind.name), seed, path)
    if isinstance(kind, idl.AbstractNestedType):
        length = kind.size if isinstance(kind, idl.Array) else _SEQUENCE_LENGTH
        if isinstance(kind, idl.BoundedSequence):
            length = min(length, kind.maximum_size)
        values = [_value(kind.value_type, seed, f'{path}[{i}]') for i in range(length)]
        if isinstance(kind.value_type, idl.BasicType) and kind.value_type.typename in (
                'octet', 'uint8', 'char'):
            return bytes(values)
        return values
    return _scalar(kind, seed, path)


def filled(msg_type: type, seed: int = 0, path: str = '') -> Any:
    """Return an instance of ``msg_type`` with every field set from ``seed``."""
    msg = msg_type()
    for (field, _), kind in zip(msg_type.get_fields_and_field_types().items(),
                                msg_type.SLOT_TYPES, strict=True):
        setattr(msg, field, _value(kind, seed, f'{path}.{field}'))
    return msg


def differences(expected: Any, actual: Any, path: str = '') -> list[str]:
    """List the field paths where two messages of the same type differ (empty if equal)."""
    if hasattr(expected, 'get_fields_and_field_types'):
        out = []
        for field in expected.get_fields_and_field_types():
            out += differences(getattr(expected, field), getattr(actual, field), f'{path}.{field}')
        return out
    if isinstance(expected, (list, tuple)) or hasattr(expected, 'tolist'):
        expected_list, actual_list = list(expected), list(actual)
        if len(expected_list) != len(actual_list):
            return [f'{path}: length {len(expected_list)} != {len(actual_list)}']
        out = []
        for i, (e, a) in enumerate(zip(expected_list, actual_list, strict=True)):
            out += differences(e, a, f'{path}[{i}]')
        return out
    return [] if expected == actual else [f'{path}: {expected!r} != {actual!r}']
