"""Static checks of a workspace's launch files, without the ROS 2 launch packages.

``launch`` and ``launch_ros`` are not on PyPI, so CI cannot run ``ros2 launch``. Instead
``check_launch_files`` installs small stand-ins for the launch API into ``sys.modules`` (removed
again afterwards), executes each launch file's ``generate_launch_description()`` and its
``OpaqueFunction`` bodies and ``IncludeLaunchDescription`` targets with fake launch contexts
(the argument defaults, every combination of the arguments' ``choices`` and given overrides),
and records every ``Node`` the launch would start. Then it checks what a real launch would only
find out on a robot:

- ``evaluation``: every launch file and context evaluates (no missing launch configuration,
  no unsupported launch API, no error raised by the launch file itself);
- ``packages``: each node's package is a workspace package or an allowed external one, and an
  ``<exec_depend>`` of the package owning the launch files;
- ``executables``: each executable is a console script of its workspace package (whose
  ``module:function`` exists) or an allowed executable of an external package, also where a
  log message tells the operator to ``ros2 run`` one;
- ``paths``: every parameter file, included launch file and string parameter pointing into the
  share directory exists in the repository (share/<bringup>/<dir> is <dir> of the repository,
  as its CMakeLists.txt installs it), and so does every ``config/...`` path a string names;
- ``parameters``: every parameter set in a dict or a parameter file is one the target node
  declares (from its config dataclasses, ``vlac_ros.params.parameters_of``), and every
  parameter file gives the node a section;
- ``arguments``: every ``DeclareLaunchArgument`` has a description and a default among its
  choices, every ``LaunchConfiguration`` read is declared in the same file, every declared one
  is read, every include passes only arguments the included file declares and all it requires.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
import contextlib
import dataclasses
import functools
import importlib.util
import itertools
import os
import pathlib
import re
import sys
import tempfile
import types
from typing import Any
import xml.etree.ElementTree as ElementTree

from vlac_ros.params import parameters_of
import yaml

CATEGORIES = ('evaluation', 'packages', 'executables', 'paths', 'parameters', 'arguments')
MAX_CHOICE_COMBINATIONS = 256
"""Above this many combinations of the choices of one file, each choice is tried alone."""
_CONFIG_PATH = re.compile(r'(?<![\w/.])(?:config|launch)/[\w<>*.\-/]*')
_ROS2_RUN = re.compile(r'ros2 run (\S+) (\S+)')


@dataclasses.dataclass(frozen=True)
class ParameterBlock:
    """Parameters a node declares from one config dataclass under ``prefix``.

    A prefix containing ``<name>`` is declared once per name listed in the node's
    ``names_from`` parameter (e.g. sim_node's ``cameras.<name>.`` per ``camera_names``).
    """

    cls: type
    prefix: str = ''
    names_from: str | None = None


@dataclasses.dataclass
class LaunchedNode:
    """One ``Node`` action a launch file produced in one context, values resolved."""

    where: str
    package: str
    executable: str
    name: str
    namespace: str
    parameter_files: list[str]
    parameters: dict[str, Any]


@dataclasses.dataclass
class LaunchReport:
    """What ``check_launch_files`` found: problems per category and the nodes launched."""

    problems: dict[str, list[str]]
    nodes: list[LaunchedNode]
    files: list[str]

    def format(self, category: str) -> str:
        """The problems of ``category``, one a line, for an assertion message."""
        found = self.problems[category]
        return f'{len(found)} {category} problem(s):\n' + '\n'.join(f'  {p}' for p in found)


# --- stand-ins for the launch API ---------------------------------------------------------

class LaunchStubError(RuntimeError):
    """A launch file did something the real launch would reject (e.g. an unset argument)."""


class _Configurations(dict):
    """Launch configurations that remember which were read (``[name]`` or ``get``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.reads: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.reads.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.reads.add(key)
        return super().get(key, default)


class _Context:
    """The part of ``launch.LaunchContext`` launch files use: the launch configurations."""

    def __init__(self, configurations: Mapping[str, str]):
        self.launch_configurations = _Configurations(configurations)

    def perform_substitution(self, substitution: Any) -> str:
        return resolve(substitution, self)


class _Substitution:
    def perform(self, context: _Context) -> str:
        raise NotImplementedError


class _LaunchConfiguration(_Substitution):
    def __init__(self, variable_name: Any, *, default: Any = None):
        self.variable_name = variable_name
        self.default = default

    def perform(self, context: _Context) -> str:
        name = resolve(self.variable_name, context)
        if name in context.launch_configurations:
            return context.launch_configurations[name]
        if self.default is not None:
            return resolve(self.default, context)
        raise LaunchStubError(f'launch configuration {name!r} is not set')


class _TextSubstitution(_Substitution):
    def __init__(self, *, text: str):
        self.text = text

    def perform(self, context: _Context) -> str:
        return self.text


class _PathJoinSubstitution(_Substitution):
    def __init__(self, substitutions: Sequence[Any]):
        # As launch (Humble to Rolling 2024): each component is one str or Substitution; a
        # nested list raises TypeError when the launch file is loaded.
        self.substitutions = [_substitution_item(s) for s in substitutions]

    def perform(self, context: _Context) -> str:
        return os.path.join(*(resolve(part, context) for part in self.substitutions))


class _Action:
    """A recorded launch action: its arguments, evaluated by the checker."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs
        self.condition = kwargs.get('condition')


class _DeclareLaunchArgument(_Action):
    def __init__(self, name: str, *, default_value: Any = None, description: Any = None,
                 choices: Any = None, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.name, self.default_value = name, default_value
        self.description = description
        self.choices = None if choices is None else list(choices)


class _IncludeLaunchDescription(_Action):
    def __init__(self, launch_description_source: Any, *, launch_arguments: Any = None,
                 **kwargs: Any):
        super().__init__(launch_description_source, **kwargs)
        self.source = launch_description_source
        self.launch_arguments = list(launch_arguments or ())


class _OpaqueFunction(_Action):
    def __init__(self, *, function: Any, args: Any = None, kwargs: Any = None, **left: Any):
        super().__init__(**left)
        self.function, self.function_args = function, list(args or ())
        self.function_kwargs = dict(kwargs or {})


class _LogInfo(_Action):
    def __init__(self, *, msg: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.msg = msg


class _Node(_Action):
    def __init__(self, *, executable: Any, package: Any = None, name: Any = None,
                 namespace: Any = None, parameters: Any = None, remappings: Any = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.executable, self.package, self.name = executable, package, name
        self.namespace = namespace
        self.parameters = list(parameters or ())
        self.remappings = list(remappings or ())


class _LaunchDescription:
    def __init__(self, initial_entities: Iterable[Any] | None = None, **kwargs: Any):
        self.entities = list(initial_entities or ())

    def add_action(self, action: Any) -> None:
        self.entities.append(action)


class _PythonLaunchDescriptionSource:
    def __init__(self, launch_file_path: Any):
        self.location = launch_file_path


class _IfCondition:
    expected = True

    def __init__(self, predicate_expression: Any):
        self.predicate = predicate_expression

    def evaluate(self, context: _Context) -> bool:
        value = resolve(self.predicate, context).strip().lower()
        if value not in ('true', 'false', '1', '0'):
            raise LaunchStubError(f'condition value {value!r} is not a boolean')
        return (value in ('true', '1')) == self.expected


class _UnlessCondition(_IfCondition):
    expected = False


class _PackageNotFoundError(KeyError):
    pass


def _substitution_item(item: Any) -> Any:
    """``item`` if launch's ``normalize_to_list_of_substitutions`` accepts it in a list."""
    if isinstance(item, (str, _Substitution)):
        return item
    raise TypeError(f"Failed to normalize given item of type '{type(item)}', when only 'str' "
                    "or 'launch.Substitution' were expected.")


def resolve(value: Any, context: _Context) -> str:
    """A launch ``SomeSubstitutionsType`` as the string the launch would make of it."""
    if isinstance(value, str):
        return value
    if isinstance(value, _Substitution):
        return value.perform(context)
    if isinstance(value, (list, tuple)):
        return ''.join(resolve(_substitution_item(part), context) for part in value)
    raise TypeError(f'cannot resolve {value!r} to a string')


def _parameter_value(value: Any, context: _Context) -> Any:
    """A parameter value in a ``Node(parameters=[{...}])`` dict, substitutions performed.

    As launch_ros normalizes it: a list of str and at least one Substitution is one string
    (concatenated); any other list is an array (``[[subst]]`` for an array of one string).
    """
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, _Substitution) for v in value) and all(
                isinstance(v, (str, _Substitution)) for v in value):
            return resolve(value, context)
        return [resolve(v, context) if isinstance(v, (str, _Substitution, list, tuple)) else v
                for v in value]
    if isinstance(value, _Substitution):
        return value.perform(context)
    return value


@contextlib.contextmanager
def stub_launch_modules(share_directories: Mapping[str, str]) -> Iterator[None]:
    """Install the launch API stand-ins into ``sys.modules``; restore what was there after.

    ``get_package_share_directory`` (and ``FindPackageShare``) answer from
    ``share_directories`` and raise ``PackageNotFoundError`` for any other package.
    """
    def get_package_share_directory(package_name: str, print_warning: bool = True) -> str:
        if package_name not in share_directories:
            raise _PackageNotFoundError(
                f'no share directory of {package_name!r} known to the launch check')
        return share_directories[package_name]

    class FindPackageShare(_Substitution):
        def __init__(self, package: Any):
            self.package = package

        def perform(self, context: _Context) -> str:
            return get_package_share_directory(resolve(self.package, context))

    contents = {
        'launch': {'LaunchDescription': _LaunchDescription, 'LaunchContext': _Context},
        'launch.actions': {
            'DeclareLaunchArgument': _DeclareLaunchArgument,
            'IncludeLaunchDescription': _IncludeLaunchDescription,
            'OpaqueFunction': _OpaqueFunction, 'LogInfo': _LogInfo},
        'launch.substitutions': {
            'LaunchConfiguration': _LaunchConfiguration, 'TextSubstitution': _TextSubstitution,
            'PathJoinSubstitution': _PathJoinSubstitution},
        'launch.conditions': {'IfCondition': _IfCondition, 'UnlessCondition': _UnlessCondition},
        'launch.launch_description_sources': {
            'PythonLaunchDescriptionSource': _PythonLaunchDescriptionSource},
        'launch_ros': {},
        'launch_ros.actions': {'Node': _Node},
        'launch_ros.substitutions': {'FindPackageShare': FindPackageShare},
        'ament_index_python': {
            'get_package_share_directory': get_package_share_directory,
            'PackageNotFoundError': _PackageNotFoundError},
        'ament_index_python.packages': {
            'get_package_share_directory': get_package_share_directory,
            'PackageNotFoundError': _PackageNotFoundError},
    }
    saved = {name: sys.modules.get(name) for name in contents}
    try:
        for name, attributes in contents.items():
            module = types.ModuleType(name, f'launch check stand-in for {name}')
            module.__dict__.update(attributes)
            sys.modules[name] = module
            parent, _, child = name.rpartition('.')
            if parent:
                setattr(sys.modules[parent], child, module)
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


# --- the workspace ------------------------------------------------------------------------

@functools.cache
def _exec_depends(package_xml: pathlib.Path) -> set[str]:
    tree = ElementTree.parse(package_xml).getroot()
    return {e.text.strip() for e in tree if e.tag in ('exec_depend', 'depend') and e.text}


@functools.cache
def _console_scripts(setup_py: pathlib.Path) -> dict[str, str]:
    """``name -> 'module:function'`` of the ``console_scripts`` in a setup.py's ``setup()``."""
    for call in ast.walk(ast.parse(setup_py.read_text())):
        if not (isinstance(call, ast.Call) and getattr(call.func, 'id', '') == 'setup'):
            continue
        for keyword in call.keywords:
            if keyword.arg == 'entry_points':
                entry_points = ast.literal_eval(keyword.value)
                scripts = {}
                for line in entry_points.get('console_scripts', ()):
                    name, _, target = line.partition('=')
                    scripts[name.strip()] = target.strip()
                return scripts
    return {}


@functools.cache
def _defines(module_file: pathlib.Path, function: str) -> bool:
    """Whether ``module_file`` binds ``function`` at its top level (def, assignment, import)."""
    names = set()
    for node in ast.parse(module_file.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(a.asname or a.name for a in node.names)
    return function in names


@dataclasses.dataclass
class _Static:
    """What a launch file's source says without running it."""

    declared: list[tuple[str, int]]
    read: list[tuple[str | None, int]]
    strings: list[str]


@functools.cache
def _static(path: pathlib.Path) -> _Static:
    tree = ast.parse(path.read_text(), str(path))
    declared, read, strings = [], [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append(node.value)
        if not isinstance(node, ast.Call):
            continue
        func = node.func.id if isinstance(node.func, ast.Name) else \
            getattr(node.func, 'attr', '')
        if func not in ('DeclareLaunchArgument', 'LaunchConfiguration'):
            continue
        first = node.args[0] if node.args else next(
            (k.value for k in node.keywords if k.arg in ('name', 'variable_name')), None)
        name = first.value if isinstance(first, ast.Constant) else None
        if func == 'DeclareLaunchArgument' and name is not None:
            declared.append((name, node.lineno))
        elif func == 'LaunchConfiguration':
            read.append((name, node.lineno))
    return _Static(declared, read, strings)


@functools.cache
def _load_yaml(path: str) -> Any:
    return yaml.safe_load(pathlib.Path(path).read_text()) or {}


def _flatten(tree: Mapping[Any, Any], prefix: str = '') -> Iterator[tuple[Any, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f'{prefix}{key}.')
        else:
            yield f'{prefix}{key}', value


# --- the checker --------------------------------------------------------------------------

@dataclasses.dataclass
class _Frame:
    file: str
    chain: tuple[str, ...]
    label: str

    @property
    def where(self) -> str:
        via = f' (included by {" < ".join(reversed(self.chain))})' if self.chain else ''
        return f'{self.file}{via}' + (f' [{self.label}]' if self.label else '')


class _Checker:
    def __init__(self, root: pathlib.Path, nodes: Mapping[tuple[str, str], Sequence[Any]],
                 external: Mapping[str, Collection[str]], share: pathlib.Path):
        self.root, self.nodes, self.external = root, nodes, external
        self.bringup = ElementTree.parse(root / 'package.xml').getroot().findtext('name')
        self.share = share
        self.share_prefix = str(share) + os.sep
        self.exec_depends = _exec_depends(root / 'package.xml')
        self.workspace = {ElementTree.parse(xml).getroot().findtext('name'): xml.parent
                          for xml in [root / 'package.xml', *root.glob('src/*/package.xml')]}
        self.found: dict[str, dict[tuple[str, str], tuple[int, str]]] = {
            c: {} for c in CATEGORIES}
        self.launched: list[LaunchedNode] = []
        self.modules: dict[pathlib.Path, Any] = {}
        self.arguments: dict[tuple[str, str], _DeclareLaunchArgument] = {}
        self.reads: dict[str, set[str]] = {}

    def problem(self, category: str, frame: _Frame | str, text: str) -> None:
        """Record a problem once per file; the shortest include chain names where it was."""
        file, where, depth = (frame, frame, 0) if isinstance(frame, str) else (
            frame.file, frame.where, len(frame.chain))
        seen = self.found[category].get((file, text))
        if seen is None or depth < seen[0]:
            self.found[category][(file, text)] = (depth, f'{where}: {text}')

    def name_in_share(self, path: str) -> str:
        return f'share/{self.bringup}/' + path[len(self.share_prefix):]

    # -- evaluation

    def module(self, path: pathlib.Path) -> Any:
        if path not in self.modules:
            name = '_launch_check_' + re.sub(r'\W', '_', path.name)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.modules[path] = module
        return self.modules[path]

    def evaluate(self, path: pathlib.Path, values: Mapping[str, str], frame: _Frame) -> None:
        context = _Context(values)
        try:
            description = self.module(path).generate_launch_description()
            self.walk(description.entities, context, frame)
        except Exception as err:  # any error is a finding
            self.problem('evaluation', frame, f'{type(err).__name__}: {err}')
        self.reads.setdefault(frame.file, set()).update(context.launch_configurations.reads)

    def walk(self, entities: Iterable[Any], context: _Context, frame: _Frame) -> None:
        for entity in entities:
            condition = getattr(entity, 'condition', None)
            if condition is not None:
                # Resolved (it must name a declared boolean) but not obeyed: every node
                # behind a condition is checked, whichever way the condition goes.
                condition.evaluate(context)
            if isinstance(entity, _DeclareLaunchArgument):
                self.declare(entity, context, frame)
            elif isinstance(entity, _Node):
                self.node(entity, context, frame)
            elif isinstance(entity, _IncludeLaunchDescription):
                self.include(entity, context, frame)
            elif isinstance(entity, _OpaqueFunction):
                produced = entity.function(context, *entity.function_args,
                                           **entity.function_kwargs)
                self.walk(produced or (), context, frame)
            elif isinstance(entity, _LogInfo):
                for package, executable in _ROS2_RUN.findall(resolve(entity.msg, context)):
                    self.package(package, executable, frame)
            elif isinstance(entity, _LaunchDescription):
                self.walk(entity.entities, context, frame)
            else:
                raise LaunchStubError(f'unsupported launch entity {entity!r}')

    def declare(self, argument: _DeclareLaunchArgument, context: _Context,
                frame: _Frame) -> None:
        self.arguments.setdefault((frame.file, argument.name), argument)
        if argument.name not in context.launch_configurations:
            if argument.default_value is None:
                self.problem('arguments', frame,
                             f'required argument {argument.name!r} is not given')
                return
            # A default outside the choices is reported once, by check_arguments.
            context.launch_configurations[argument.name] = resolve(argument.default_value,
                                                                   context)
            return
        value = dict.__getitem__(context.launch_configurations, argument.name)  # not a read
        if argument.choices is not None and value not in argument.choices:
            self.problem('arguments', frame, f'{argument.name}:={value!r} is not one of its '
                         f'choices {argument.choices}')

    def include(self, action: _IncludeLaunchDescription, context: _Context,
                frame: _Frame) -> None:
        # A launch description source, or (as launch allows) the path itself.
        path = resolve(getattr(action.source, 'location', action.source), context)
        if not self.share_path(path, frame, 'included launch file'):
            return
        given = {resolve(k, context): resolve(v, context) for k, v in action.launch_arguments}
        child = pathlib.Path(path)
        declared = {name for name, _ in _static(child).declared}
        for name in sorted(set(given) - declared):
            self.problem('arguments', frame,
                         f'passes {name!r} to {child.name}, which declares no such argument')
        self.evaluate(child, {**context.launch_configurations, **given},
                      _Frame(child.name, (*frame.chain, frame.file), frame.label))

    def share_path(self, path: str, frame: _Frame, what: str) -> bool:
        """Whether ``path`` exists; a path outside the share directory is a problem too."""
        if not path.startswith(self.share_prefix):
            self.problem('paths', frame, f'{what} {path!r} is not in a package share '
                         'directory (found via get_package_share_directory)')
            return False
        if not os.path.exists(path):
            relative = path[len(self.share_prefix):]
            self.problem('paths', frame, f'{what} {self.name_in_share(path)} does not exist '
                         f'({relative} of the repository)')
            return False
        return True

    # -- nodes

    def package(self, package: str, executable: str, frame: _Frame) -> bool:
        """Check a package and executable; whether the executable is a known one."""
        if package not in self.exec_depends:
            self.problem('packages', frame, f'package {package!r} (of {executable}) is not an '
                         f'<exec_depend> of {self.bringup}')
        if package in self.workspace:
            return self.executable(package, executable, frame)
        if package in self.external:
            if executable in self.external[package]:
                return True
            self.problem('executables', frame, f'{executable!r} is not an allowed executable '
                         f'of the external package {package!r} ({sorted(self.external[package])})')
            return False
        self.problem('packages', frame, f'package {package!r} (of {executable}) is neither a '
                     'workspace package nor an allowed external one')
        return False

    def executable(self, package: str, executable: str, frame: _Frame) -> bool:
        setup_py = self.workspace[package] / 'setup.py'
        if not setup_py.is_file():
            self.problem('executables', frame, f'{package} has no setup.py: cannot check its '
                         f'executable {executable!r}')
            return False
        scripts = _console_scripts(setup_py)
        if executable not in scripts:
            self.problem('executables', frame, f'{executable!r} is not a console script of '
                         f'{package} ({sorted(scripts)})')
            return False
        module, _, function = scripts[executable].partition(':')
        source = self.workspace[package].joinpath(*module.split('.')).with_suffix('.py')
        if not source.is_file() or not _defines(source, function):
            self.problem('executables', frame, f'{package} {executable} -> '
                         f'{scripts[executable]}: no such module function')
        return True

    def node(self, action: _Node, context: _Context, frame: _Frame) -> None:
        package = resolve(action.package, context)
        executable = resolve(action.executable, context)
        name = resolve(action.name, context) if action.name is not None else executable
        namespace = resolve(action.namespace, context) if action.namespace else ''
        fqn = '/' + '/'.join(p for p in (namespace.strip('/'), name) if p)
        known = self.package(package, executable, frame)
        files: list[str] = []
        values: dict[str, tuple[Any, str]] = {}
        for entry in action.parameters:
            if isinstance(entry, Mapping):
                for key, value in _flatten(entry):
                    values[resolve(key, context)] = (_parameter_value(value, context),
                                                     'the launch file')
                continue
            path = resolve(entry, context)
            files.append(path)
            if self.share_path(path, frame, f'parameter file of {name}'):
                for key, value in self.parameter_file(path, name, fqn, frame):
                    values[key] = (value, self.name_in_share(path))
        for key, (value, _) in values.items():
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str) and text.startswith(self.share_prefix):
                    self.share_path(text, frame, f'parameter {name}.{key}')
        self.launched.append(LaunchedNode(frame.where, package, executable, name, namespace,
                                          files, {k: v for k, (v, _) in values.items()}))
        if known and package in self.workspace:
            self.parameters(package, executable, name, values, frame)
        # External packages' parameters are declared in their (C++) sources, which this
        # workspace does not hold: only their package and executable are checked.

    def parameter_file(self, path: str, name: str, fqn: str,
                       frame: _Frame) -> list[tuple[str, Any]]:
        """The dotted parameters ``path`` gives node ``name`` (``fqn``), as ros2 matches them."""
        try:
            data = _load_yaml(path)
        except yaml.YAMLError as err:
            self.problem('parameters', frame, f'{self.name_in_share(path)}: invalid YAML: {err}')
            return []
        sections = [key for key in data if isinstance(key, str) and (
            key.lstrip('/') in ('**', f'**/{name}', name) or key == fqn)]
        if not sections:
            self.problem('parameters', frame, f'{self.name_in_share(path)} gives {name} no '
                         f"parameters (no section '/**/{name}', '{name}' or '{fqn}')")
        found = []
        for section in sections:
            body = data[section]
            if not isinstance(body, Mapping) or not isinstance(
                    body.get('ros__parameters'), Mapping):
                self.problem('parameters', frame, f'{self.name_in_share(path)}: section '
                             f'{section!r} has no ros__parameters mapping')
                continue
            found += _flatten(body['ros__parameters'])
        return found

    def parameters(self, package: str, executable: str, name: str,
                   values: Mapping[str, tuple[Any, str]], frame: _Frame) -> None:
        blocks = self.nodes.get((package, executable))
        if blocks is None:
            self.problem('parameters', frame, f'{executable} ({package}): no config dataclass '
                         'known for it: add the node to the registry of declared parameters')
            return
        declared: dict[str, Any] = {}
        for block in (b for b in blocks if '<name>' not in b.prefix):
            declared.update((n, d) for n, d, _ in parameters_of(block.cls, block.prefix))
        for block in (b for b in blocks if '<name>' in b.prefix):
            names = values.get(block.names_from, (declared.get(block.names_from, ()),))[0]
            for each in names or ():
                declared.update((n.replace('<name>', str(each)), d)
                                for n, d, _ in parameters_of(block.cls, block.prefix))
        for key, (_, source) in values.items():
            if key not in declared:
                self.problem('parameters', frame, f'{executable} ({package}) named {name!r} '
                             f'does not declare parameter {key!r} (set in {source})')

    # -- what the source says

    def static(self, path: pathlib.Path) -> None:
        static, file = _static(path), path.name
        names = [name for name, _ in static.declared]
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.problem('arguments', file, f'argument {name!r} is declared more than once')
        read = {name for name, _ in static.read}
        for name, line in static.read:
            if name is None:
                self.problem('arguments', file,
                             f'line {line}: LaunchConfiguration of a non-literal name')
            elif name not in names:
                self.problem('arguments', file,
                             f'line {line}: LaunchConfiguration({name!r}) is not declared')
        self.reads.setdefault(file, set()).update(read)
        for text in static.strings:
            for mention in _CONFIG_PATH.findall(text):
                pattern = re.sub(r'<[^>]*>', '*', mention.rstrip('./'))
                if not list(self.share.glob(pattern)):
                    self.problem('paths', file, f'names {mention!r}, which does not exist in '
                                 'the repository')

    def check_arguments(self) -> None:
        for (file, name), argument in sorted(self.arguments.items()):
            if name not in self.reads.get(file, ()):
                self.problem('arguments', file, f'argument {name!r} is declared but never read '
                             '(no LaunchConfiguration, not read in any evaluated context)')
            description = argument.description
            if not isinstance(description, str) or not description.strip():
                self.problem('arguments', file, f'argument {name!r} has no description')
            default = argument.default_value
            if argument.choices is not None and isinstance(default, str) and \
                    default not in argument.choices:
                self.problem('arguments', file, f'argument {name!r}: default {default!r} is '
                             f'not one of its choices {argument.choices}')


def _contexts(arguments: Sequence[_DeclareLaunchArgument],
              overrides: Sequence[Mapping[str, str]]) -> list[tuple[dict[str, str], str]]:
    """Argument values to evaluate a file with, each with a label naming what was chosen."""
    required = {a.name: f'<{a.name}>' for a in arguments if a.default_value is None}
    with_choices = [a for a in arguments if a.choices]
    chosen = [{a.name: c for a, c in zip(with_choices, combination, strict=True)}
              for combination in itertools.product(*(a.choices for a in with_choices))]
    if len(chosen) > MAX_CHOICE_COMBINATIONS:
        chosen = [{a.name: c} for a in with_choices for c in a.choices]
    contexts = []
    for choice in chosen or [{}]:
        for override in [{}, *overrides]:
            values = {**required, **choice, **override}
            label = ' '.join(f'{k}:={v}' for k, v in {**choice, **override}.items())
            contexts.append((values, label))
    return contexts


def check_launch_files(root: pathlib.Path, nodes: Mapping[tuple[str, str], Sequence[Any]],
                       external: Mapping[str, Collection[str]],
                       overrides: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
                       ) -> LaunchReport:
    """Evaluate and check every ``<root>/launch/*.launch.py`` of the package at ``root``.

    ``nodes`` maps (package, executable) to the ``ParameterBlock``s the node declares;
    ``external`` maps each allowed external package to its allowed executables; ``overrides``
    maps a launch file's name to extra argument values to evaluate it with (each on top of
    the defaults and of every combination of choices). The package's share directory is
    what its CMakeLists.txt installs (``install(DIRECTORY ... DESTINATION share/...)``),
    linked from a temporary directory.
    """
    for cached in (_exec_depends, _console_scripts, _defines, _static, _load_yaml):
        cached.cache_clear()  # the files may have changed since the last check
    cmake = (root / 'CMakeLists.txt').read_text()
    installed = re.findall(r'install\(DIRECTORY\s+([^)]*?)\s+DESTINATION\s+share/'
                           r'\$\{PROJECT_NAME\}', cmake)
    with tempfile.TemporaryDirectory(prefix='launch_check_') as tmp:
        share = pathlib.Path(tmp, 'share', 'bringup')
        share.mkdir(parents=True)
        for directory in (d for group in installed for d in group.split()):
            if (root / directory).is_dir():
                (share / directory).symlink_to((root / directory).resolve())
        checker = _Checker(root, nodes, external, share)
        files = sorted((root / 'launch').glob('*.launch.py'))
        with stub_launch_modules({checker.bringup: str(share)}):
            for path in files:
                checker.static(path)
                in_share = share / 'launch' / path.name
                frame = _Frame(path.name, (), '')
                try:
                    entities = checker.module(in_share).generate_launch_description().entities
                except Exception as err:  # any error is a finding
                    checker.problem('evaluation', frame, f'{type(err).__name__}: {err}')
                    continue
                arguments = [e for e in entities if isinstance(e, _DeclareLaunchArgument)]
                for values, label in _contexts(arguments, (overrides or {}).get(path.name, ())):
                    checker.evaluate(in_share, values, _Frame(path.name, (), label))
        checker.check_arguments()
    problems = {c: sorted(text for _, text in found.values())
                for c, found in checker.found.items()}
    return LaunchReport(problems, checker.launched, [p.name for p in files])
