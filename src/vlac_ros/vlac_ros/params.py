"""Declare ROS parameters from a config dataclass and read them back into a validated instance.

A node's configuration is one frozen dataclass (ROS-free, tested with plain pytest) whose
``validate()`` raises ValueError naming the bad value. ``declare_dataclass`` declares one
parameter per field (nested dataclasses become dotted prefixes), with the field's ``doc``
metadata as the description, reads the values (from the YAML the node was started with) and
returns the validated instance. Tuples map to ROS arrays and back.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, get_type_hints

from rcl_interfaces.msg import ParameterDescriptor, ParameterType

T = TypeVar('T')

_ARRAY_TYPES = {
    float: ParameterType.PARAMETER_DOUBLE_ARRAY, int: ParameterType.PARAMETER_INTEGER_ARRAY,
    str: ParameterType.PARAMETER_STRING_ARRAY, bool: ParameterType.PARAMETER_BOOL_ARRAY,
}
_SCALAR_TYPES = {
    float: ParameterType.PARAMETER_DOUBLE, int: ParameterType.PARAMETER_INTEGER,
    str: ParameterType.PARAMETER_STRING, bool: ParameterType.PARAMETER_BOOL,
}


def _ros_type(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        element = type(value[0]) if value else float
        return _ARRAY_TYPES[element]
    return _SCALAR_TYPES[type(value)]


def parameters_of(cls: type, prefix: str = '', overrides: dict | None = None
                  ) -> list[tuple[str, Any, str]]:
    """(name, default, description) of every parameter ``cls`` declares, nested ones dotted.

    The one walk over a config dataclass: ``declare_dataclass`` declares these parameters and
    docs/nodes.md lists them, so the documentation cannot drift from the node.
    """
    rows = []
    for f in dataclasses.fields(cls):
        default = (overrides or {}).get(f.name, f.default)
        if default is dataclasses.MISSING:
            default = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            rows += parameters_of(type(default), f'{prefix}{f.name}.')
            continue
        rows.append((prefix + f.name, default, f.metadata.get('doc', '')))
    return rows


def declare_dataclass(node, cls: type[T], prefix: str = '', overrides: dict | None = None,
                      validate: bool = True) -> T:
    """Declare ``cls``'s fields as parameters under ``prefix`` and return the config.

    ``overrides`` replaces defaults (not values given at launch), e.g. a per-camera name.
    With ``validate`` (default) the dataclass's ``validate()`` runs and raises ValueError
    naming the bad value; lifecycle nodes declare in ``__init__`` with ``validate=False`` and
    call ``read_dataclass`` in ``on_configure``.
    """
    for name, default, description in parameters_of(cls, prefix, overrides):
        descriptor = ParameterDescriptor(description=description, type=_ros_type(default))
        ros_default = list(default) if isinstance(default, tuple) else default
        node.declare_parameter(name, ros_default, descriptor)
    return read_dataclass(node, cls, prefix, validate)


def _as_field(kind: Any, value: Any) -> Any:
    """A parameter value as the dataclass field holds it: lists as tuples, ints as floats."""
    if isinstance(value, list):
        return tuple(value)
    if kind is float and isinstance(value, int):
        return float(value)
    return value


def read_dataclass(node, cls: type[T], prefix: str = '', validate: bool = True) -> T:
    """Read already declared parameters back into ``cls`` (validated unless told not to)."""
    hints = get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        kind = hints.get(f.name)
        if dataclasses.is_dataclass(kind):
            values[f.name] = read_dataclass(node, kind, f'{prefix}{f.name}.', validate)
            continue
        values[f.name] = _as_field(kind, node.get_parameter(prefix + f.name).value)
    config = cls(**values)
    check = getattr(config, 'validate', None)
    return check() if validate and callable(check) else config


def params_file_values(path, node_name: str) -> dict[str, Any]:
    """The dotted parameter values a ROS 2 parameter file gives ``node_name``.

    Sections match as ``ros2 run --params-file`` matches them: ``/**``, ``/**/<node>`` and
    ``<node>``; later sections win. Nested mappings become dotted names.
    """
    import pathlib

    import yaml

    data = yaml.safe_load(pathlib.Path(path).read_text()) or {}
    values: dict[str, Any] = {}

    def flatten(prefix: str, tree: dict) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                flatten(f'{prefix}{key}.', value)
            else:
                values[prefix + key] = value

    for section, body in data.items():
        if section.lstrip('/') in ('**', f'**/{node_name}', node_name) and body:
            flatten('', body.get('ros__parameters', {}) or {})
    return values


def dataclass_from_values(cls: type[T], values: dict[str, Any], prefix: str = '',
                          validate: bool = True) -> T:
    """``cls`` from dotted parameter values (defaults for the rest), as ``read_dataclass``.

    Unknown names raise ValueError, as a node refuses an undeclared parameter.
    """
    known = {name for name, _, _ in parameters_of(cls, prefix)}
    unknown = sorted(k for k in values if k.startswith(prefix) and k not in known)
    if unknown:
        raise ValueError(f'unknown parameters for {cls.__name__}: {unknown}')
    hints = get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        kind, name = hints.get(f.name), prefix + f.name
        if dataclasses.is_dataclass(kind):
            fields[f.name] = dataclass_from_values(kind, values, f'{name}.', validate)
        elif name in values:
            fields[f.name] = _as_field(kind, values[name])
    config = cls(**fields)
    check = getattr(config, 'validate', None)
    return check() if validate and callable(check) else config
