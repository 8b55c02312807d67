"""Check a Foxglove layout against a running ROS graph: every topic and field it names exists.

A layout (``config/foxglove/*.json``) names topics in Image panels (``imageMode.imageTopic``),
message paths in Plot and State Transitions panels (``paths[].value``, e.g.
``/robot_1/progress.value``) and Raw Messages panels (``topicPath``). ``layout_paths`` lists
them as (topic, field path); ``layout_problems`` compares them with the graph's topics and
types and with the fields of each message type.
"""

from __future__ import annotations

import importlib
import json
import pathlib
from typing import Iterable


def _split(path: str) -> tuple[str, tuple[str, ...]]:
    """'/ns/topic.a.b' -> ('/ns/topic', ('a', 'b')); the topic is up to the first dot."""
    topic, _, fields = path.partition('.')
    return topic, tuple(f for f in fields.split('.') if f)


def layout_paths(layout: pathlib.Path) -> list[tuple[str, tuple[str, ...]]]:
    """Every (topic, field path) a layout's panels name, in panel order."""
    found = []
    for panel, config in json.loads(pathlib.Path(layout).read_text())['configById'].items():
        kind = panel.split('!')[0]
        if kind == 'Image':
            found.append((config['imageMode']['imageTopic'], ()))
        elif kind in ('Plot', 'StateTransitions'):
            found += [_split(p['value']) for p in config['paths']]
        elif kind == 'RawMessages':
            found.append(_split(config['topicPath']))
        else:
            raise ValueError(f'{layout}: panel {panel} of a kind this check does not know')
    return found


def _message_class(type_name: str):
    package, _, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def layout_problems(layout: pathlib.Path,
                    topics_and_types: Iterable[tuple[str, list[str]]]) -> list[str]:
    """What in ``layout`` the graph (``node.get_topic_names_and_types()``) does not have."""
    types = dict(topics_and_types)
    problems = []
    for topic, fields in layout_paths(layout):
        if topic not in types:
            problems.append(f'{topic}: no such topic in the graph')
            continue
        value = _message_class(types[topic][0])()
        for depth, field in enumerate(fields):
            if field not in value.get_fields_and_field_types():
                problems.append(f'{topic}: {types[topic][0]} has no field '
                                f'{".".join(fields[:depth + 1])}')
                break
            value = getattr(value, field)
    return problems
