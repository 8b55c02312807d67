"""The Docker files agree with the repository: copied paths, commands, launch arguments, params.

Docker is not available where these tests run, so the images are never built here (see
docs/deployment.md). Every ``docker/*Dockerfile`` and ``docker/compose.yaml`` is read as data
instead: each COPY source exists; each file a command names was copied into the image (or
bind-mounted from the repository) and exists; rosdep and colcon see every copied package;
each ``ros2 launch`` names a launch file of launch/ with declared arguments, every required
one given; each ``ros2 run`` names a console script of its package with declared parameters;
every base image is pinned to a tag; the compose services agree with each other (discovery
server address, robot namespaces, shared weights folder). A deliberately broken Dockerfile
and compose file show that each check reports what it should.
"""

import ast
import dataclasses
import functools
import importlib
import ipaddress
import itertools
import json
import pathlib
import posixpath
import re
import shlex

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / 'docker').glob('*Dockerfile'))
COMPOSE = ROOT / 'docker' / 'compose.yaml'
SHELLS = {'bash', 'sh', '/bin/bash', '/bin/sh'}
TOOLS = SHELLS | {'ros2', 'fastdds'}  # programs an image or service command may start
PATH_OPTIONS = {'-r', '--requirement', '-c', '--constraint', '-f', '--params-file'}
INTERFACE = re.compile(r'^(\w+)/(msg|srv|action)/(\w+)$')
SHARE = re.compile(r'/share/(\w+)/((?:config|launch)/\S+)$')
SHELL_WORDS = {'exec', 'do', 'then', 'else', 'time', '!', '{', '}'}


def _variables(text: str, known: dict[str, str]) -> str:
    """``text`` with the ``$NAME`` / ``${NAME}`` it knows replaced (ARG defaults)."""
    def value(match: re.Match) -> str:
        return known.get(match.group(1) or match.group(2), match.group(0))
    return re.sub(r'\$\{(\w+)\}|\$(\w+)', value, text)


def _shell_words(script: str) -> list[str]:
    """Tokens of a shell script; runs of ``();&|<>`` are tokens of their own."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ''
    return list(lexer)


def simple_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script, without ``exec``, keywords and assignments."""
    commands, current = [], []
    for word in _shell_words(script) + [';']:
        if set(word) <= set('();&|<>'):
            while current and (current[0] in SHELL_WORDS or re.match(r'^\w+=', current[0])):
                current.pop(0)
            if current:
                commands.append(current)
            current = []
        else:
            current.append(word)
    return commands


def _instructions(text: str):
    """(line, INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    current, start = '', 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            continue
        if not current:
            start = number
        if stripped.endswith('\\'):
            current += stripped[:-1] + ' '
            continue
        keyword, _, rest = (current + stripped).partition(' ')
        current = ''
        yield start, keyword.upper(), rest.strip()


def _argv(rest: str) -> list[str]:
    """The exec form (JSON array) of a CMD / ENTRYPOINT, or its shell form run by /bin/sh."""
    if rest.startswith('['):
        try:
            return json.loads(rest)
        except ValueError:
            pass
    return ['/bin/sh', '-c', rest]


@functools.cache
def console_scripts(setup_py: pathlib.Path) -> frozenset[str]:
    """Console script names declared in a setup.py's ``entry_points`` (read with ast)."""
    for node in ast.walk(ast.parse(setup_py.read_text())):
        if isinstance(node, ast.keyword) and node.arg == 'entry_points':
            entries = ast.literal_eval(node.value).get('console_scripts', [])
            return frozenset(entry.split('=')[0].strip() for entry in entries)
    return frozenset()


@functools.cache
def launch_arguments(launch_file: pathlib.Path) -> dict[str, tuple[bool, tuple | None]]:
    """Each DeclareLaunchArgument of a launch file: name -> (required, choices or None)."""
    tree = ast.parse(launch_file.read_text())
    constants = {}  # module-level literals, for choices=['none', *DEVICES]
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    declared = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = getattr(node.func, 'id', getattr(node.func, 'attr', ''))
        if func != 'DeclareLaunchArgument' or not node.args:
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        choices = None
        if isinstance(keywords.get('choices'), (ast.List, ast.Tuple)):
            choices = []
            for element in keywords['choices'].elts:
                if isinstance(element, ast.Constant):
                    choices.append(element.value)
                elif isinstance(element, ast.Starred) and isinstance(element.value, ast.Name):
                    choices += constants.get(element.value.id, [])
            choices = tuple(choices)
        declared[ast.literal_eval(node.args[0])] = ('default_value' not in keywords, choices)
    return declared


@functools.cache
def node_parameters(package: str, executable: str) -> frozenset[str] | None:
    """Parameter names the node declares (its config dataclasses), None if not one of ours."""
    from vlac_bench.node_docs import NODES
    from vlac_ros.params import parameters_of

    names, known = set(), False
    for exe, pkg, config, prefix, _ in NODES:
        if (pkg, exe) == (package, executable) and '<' not in prefix:
            module, name = config.split(':')
            cls = getattr(importlib.import_module(module), name)
            names |= {row[0] for row in parameters_of(cls, prefix)}
            known = True
    return frozenset(names) if known else None


@functools.cache
def _package_name(manifest: pathlib.Path) -> str:
    """The <name> of a package.xml."""
    match = re.search(r'<name>\s*(\S+?)\s*</name>', manifest.read_text())
    return match.group(1) if match else manifest.parent.name


def _root_package(root: pathlib.Path) -> str:
    return _package_name(root / 'package.xml')


@dataclasses.dataclass
class Image:
    """What a Dockerfile leaves in its image, as far as the checks need it."""

    root: pathlib.Path
    copies: list = dataclasses.field(default_factory=list)  # (container path, repo path)
    install_bases: set = dataclasses.field(default_factory=set)
    entrypoint: list = dataclasses.field(default_factory=list)
    cmd: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)

    def to_repo(self, container: str, mounts: tuple = ()) -> pathlib.Path | None:
        """The repository path behind a container path (copied or mounted), else None."""
        for target, source in [*reversed(mounts), *reversed(self.copies)]:
            if container == target:
                return source
            if source.is_dir() and container.startswith(target.rstrip('/') + '/'):
                return source / posixpath.relpath(container, target)
        implied = set()  # a folder the COPYs filled, e.g. the workspace's src/vlac
        for target, source in self.copies:
            if target.startswith(container.rstrip('/') + '/'):
                inner = pathlib.PurePosixPath(posixpath.relpath(target, container)).parts
                outer = source.relative_to(self.root).parts
                implied.add(outer[:len(outer) - len(inner)] if outer[-len(inner):] == inner
                            else None)
        if len(implied) == 1 and None not in implied:
            return self.root.joinpath(*implied.pop())
        share = SHARE.search(container)
        if share and any(container.startswith(b + '/') for b in self.install_bases):
            if share.group(1) == _root_package(self.root):
                return self.root / share.group(2)
        return None

    def copied(self, path: pathlib.Path, mounts: tuple = ()) -> bool:
        """Whether a repository path went into the image (or is mounted into the container)."""
        return any(path == s or (s.is_dir() and path.is_relative_to(s))
                   for _, s in [*self.copies, *mounts])

    def packages(self) -> dict[str, str]:
        """Container folder -> package name of every package.xml copied into the image."""
        packages = {}
        for target, source in self.copies:
            manifests = sorted(source.rglob('package.xml')) if source.is_dir() else \
                [source] if source.name == 'package.xml' else []
            for manifest in manifests:
                inside = manifest.parent.relative_to(source) if source.is_dir() else None
                folder = posixpath.join(target, str(inside)) if inside is not None \
                    else posixpath.dirname(target)
                packages[posixpath.normpath(folder)] = _package_name(manifest)
        return packages


def _options_values(command: list[str], option: str) -> list[str]:
    """The words after ``option`` up to the next option (``--base-paths a b --x`` -> a, b)."""
    if option not in command:
        return []
    rest = command[command.index(option) + 1:]
    return rest[:next((i for i, w in enumerate(rest) if w.startswith('-')), len(rest))]


def _packages_seen(image: Image, tool: str, paths: list[str], workdir: str, where: str) -> None:
    """Report copied packages that ``tool`` (rosdep, colcon) does not find from ``paths``.

    Both crawl each path for package.xml files and never look inside a package they found.
    """
    packages = image.packages()
    found = set()
    for value in paths:
        base = posixpath.normpath(posixpath.join(workdir, value))
        under = [d for d in packages if d == base or d.startswith(base.rstrip('/') + '/')]
        if not under and image.to_repo(base) is None:
            image.problems.append(f'{where}: {tool} path {value} was not copied into the image')
        found |= {d for d in under if not any(
            e != d and d.startswith(e.rstrip('/') + '/') for e in under)}
    missed = sorted(packages[d] for d in set(packages) - found)
    if missed:
        image.problems.append(f'{where}: {tool} from {" ".join(paths)} misses packages '
                              f'{", ".join(missed)} (it does not look inside a package)')


def _run(image: Image, script: str, workdir: str, where: str) -> None:
    """Checks of one RUN: copied files it names, rosdep and colcon paths, colcon's install."""
    words = _shell_words(script)
    for option, value in itertools.pairwise(words):
        if option in PATH_OPTIONS and '://' not in value and '$' not in value:
            repo = image.to_repo(posixpath.normpath(posixpath.join(workdir, value)))
            if repo is None:
                image.problems.append(f'{where}: {option} {value} was not copied into the image')
            elif not repo.exists():
                image.problems.append(f'{where}: {option} {value}: no '
                                      f'{repo.relative_to(image.root)} in the repository')
    for command in simple_commands(script):
        if command[:2] == ['rosdep', 'install'] and '--from-paths' in command:
            paths = _options_values(command, '--from-paths')
            _packages_seen(image, 'rosdep', paths, workdir, where)
        if command[:2] == ['colcon', 'build']:
            paths = _options_values(command, '--base-paths') or ['.']
            if '--base-paths' not in command:
                repo = image.to_repo(workdir)
                defaults = repo / 'colcon_defaults.yaml' if repo else None
                if defaults and defaults.is_file():
                    paths = yaml.safe_load(defaults.read_text())['build']['base-paths']
            _packages_seen(image, 'colcon', paths, workdir, where)
            base = command[command.index('--install-base') + 1] \
                if '--install-base' in command else 'install'
            image.install_bases.add(posixpath.normpath(posixpath.join(workdir, base)))


def read_dockerfile(dockerfile: pathlib.Path, context: pathlib.Path) -> Image:
    """Read a Dockerfile built with ``context`` as its context; problems found on the way."""
    image = Image(root=context)
    variables, stages, workdir = {}, set(), '/'
    for line, keyword, rest in _instructions(dockerfile.read_text()):
        where = f'{dockerfile.name}:{line}'
        if keyword == 'ARG':
            name, _, default = rest.partition('=')
            variables[name] = default.strip('"')
        elif keyword == 'FROM':
            words = [w for w in rest.split() if not w.startswith('--')]
            base = _variables(words[0], variables)
            name, _, tag = base.rsplit('/', 1)[-1].partition(':')
            if base not in stages and base != 'scratch' and '@sha256:' not in base \
                    and (not tag or tag == 'latest' or '$' in tag):
                image.problems.append(f'{where}: FROM {base} is not pinned to a tag')
            if len(words) == 3 and words[1].lower() == 'as':
                stages.add(words[2])
        elif keyword == 'WORKDIR':
            workdir = posixpath.normpath(posixpath.join(workdir, _variables(rest, variables)))
        elif keyword in ('COPY', 'ADD'):
            words = json.loads(rest) if rest.startswith('[') else shlex.split(rest)
            if any(w.startswith('--from=') for w in words):
                continue  # from another stage
            *sources, dest = [w for w in words if not w.startswith('--')]
            target = posixpath.normpath(posixpath.join(workdir, dest))
            into = dest.endswith('/') or len(sources) > 1
            for source in sources:
                if '://' in source:
                    continue
                found = sorted(context.glob(source.rstrip('/')))
                if not found or not all(p.resolve().is_relative_to(context) for p in found):
                    image.problems.append(f'{where}: {keyword} {source}: no such path in the '
                                          'repository')
                for path in found:
                    image.copies.append((posixpath.join(target, path.name)
                                         if into and not path.is_dir() else target, path))
        elif keyword == 'RUN':
            _run(image, _variables(rest, variables), workdir, where)
        elif keyword == 'ENTRYPOINT':
            image.entrypoint, image.cmd = _argv(rest), []
        elif keyword == 'CMD':
            image.cmd = _argv(rest)
    return image


def _path_problems(value: str, image: Image | None, mounts: tuple, where: str) -> list[str]:
    """A container path in a command that comes from the repository must exist there."""
    if not value.startswith('/') or '$' in value or image is None:
        return []
    repo = image.to_repo(posixpath.normpath(value), mounts)
    if repo is not None and not (repo.exists() and image.copied(repo, mounts)):
        return [f'{where}: {value} is not in the image (repository path '
                f'{repo.relative_to(image.root)})']
    return []


def _ros2_problems(argv: list[str], image: Image | None, mounts: tuple, where: str,
                   root: pathlib.Path) -> list[str]:
    """Checks of one ``ros2 <verb> ...`` command line."""
    problems = []
    for word in argv:
        match = INTERFACE.match(word)
        if match and (root / 'src' / match.group(1)).is_dir() and not (
                root / 'src' / match.group(1) / match.group(2)
                / f'{match.group(3)}.{match.group(2)}').is_file():
            problems.append(f'{where}: no interface {word} in src/')
    verb, args = (argv[1] if len(argv) > 1 else ''), argv[2:]
    if verb == 'launch' and len(args) >= 2:
        package, name = args[:2]
        folder = root / 'launch' if package == _root_package(root) \
            else root / 'src' / package / 'launch'
        if not (folder / name).is_file():
            return problems + [f'{where}: ros2 launch {package} {name}: no such launch file']
        declared = launch_arguments(folder / name)
        given = dict(a.split(':=', 1) for a in args[2:] if ':=' in a)
        for key, value in given.items():
            required, choices = declared.get(key, (False, None))
            if key not in declared:
                problems.append(f'{where}: {name} declares no launch argument {key!r}')
            elif choices and value not in choices and '$' not in value:
                problems.append(f'{where}: {name} {key}:={value} is not one of {choices}')
            problems += _path_problems(value, image, mounts, where)
        problems += [f'{where}: {name} needs {key}:=... (it has no default)'
                     for key, (required, _) in declared.items()
                     if required and key not in given]
    elif verb == 'run' and len(args) >= 2:
        package, executable = args[:2]
        setup = root / 'src' / package / 'setup.py'
        if not setup.is_file():
            return problems + [f'{where}: ros2 run {package}: no such package in src/']
        if executable not in console_scripts(setup):
            return problems + [f'{where}: {executable} is no console script of {package}']
        ros_args = args[args.index('--ros-args') + 1:] if '--ros-args' in args else []
        for option, value in itertools.pairwise(ros_args):
            if option == '--params-file':
                repo = image.to_repo(value, mounts) if image else None
                if repo is None or not repo.is_file() or not image.copied(repo, mounts):
                    problems.append(f'{where}: --params-file {value} is not in the image')
            elif option in ('-p', '--param'):
                name, _, value = value.partition(':=')
                declared = node_parameters(package, executable)
                if declared is not None and name not in declared:
                    problems.append(f'{where}: {executable} declares no parameter {name!r}')
                problems += _path_problems(value, image, mounts, where)
    return problems


def command_problems(argv: list[str], image: Image | None, mounts: tuple, where: str,
                     root: pathlib.Path) -> list[str]:
    """Checks of a container's command (ENTRYPOINT + CMD, or a compose service's)."""
    if not argv:
        return []
    program = argv[0]
    if program == 'ros2':
        return _ros2_problems(argv, image, mounts, where, root)
    if program not in TOOLS:
        return [f'{where}: runs {program!r}, neither ros2 nor a known tool ({sorted(TOOLS)})']
    if program not in SHELLS:
        return []
    flag = next((i for i, a in enumerate(argv[1:], 1)
                 if a.startswith('-') and 'c' in a), None)
    if flag is None or flag + 1 >= len(argv):
        return []  # an interactive shell
    problems = []
    for command in simple_commands(argv[flag + 1]):
        if command[0] in ('source', '.') and len(command) > 1:
            sourced = command[1]
            if sourced.endswith('/install/setup.bash') and image is not None and \
                    posixpath.dirname(sourced) not in image.install_bases:
                problems.append(f'{where}: sources {sourced}, but colcon installs into '
                                f'{sorted(image.install_bases)}')
        elif command[0] == 'ros2':
            problems += _ros2_problems(command, image, mounts, where, root)
        elif command == ['$@']:
            problems += command_problems(argv[flag + 3:], image, mounts, where, root)
    return problems


def check_dockerfile(dockerfile: pathlib.Path, context: pathlib.Path) -> list[str]:
    """Every problem of a Dockerfile, its default command included."""
    image = read_dockerfile(dockerfile, context)
    return image.problems + command_problems(image.entrypoint + image.cmd, image, (),
                                             f'{dockerfile.name} CMD', context)


def _argv_of(value, escape: bool = True) -> list[str]:
    """A compose command / entrypoint as argv (``$$`` is compose's escaped ``$``)."""
    words = shlex.split(value) if isinstance(value, str) else list(value or [])
    return [str(w).replace('$$', '$') if escape else str(w) for w in words]


def _launch_values(argv: list[str], launch_file: str) -> dict[str, str] | None:
    """The ``name:=value`` arguments of ``ros2 launch <pkg> <launch_file>``, else None."""
    if argv[:2] != ['ros2', 'launch'] or launch_file not in argv[3:4]:
        return None
    return dict(a.split(':=', 1) for a in argv[4:] if ':=' in a)


def _params(argv: list[str], executable: str) -> dict[str, str] | None:
    """The ``-p name:=value`` parameters of ``ros2 run <pkg> <executable>``, else None."""
    if argv[:2] != ['ros2', 'run'] or executable not in argv[3:4]:
        return None
    return dict(v.split(':=', 1) for o, v in itertools.pairwise(argv)
                if o in ('-p', '--param') and ':=' in v)


def _volume(entry) -> tuple[str, str, bool]:
    """(source, target, read_only) of a compose volume, short or long syntax."""
    if isinstance(entry, dict):
        return str(entry.get('source', '')), entry['target'], bool(entry.get('read_only'))
    parts = str(entry).split(':')
    if len(parts) == 1:
        return '', parts[0], False
    return parts[0], parts[1], len(parts) > 2 and 'ro' in parts[2].split(',')


def _fleet_problems(services: dict, commands: dict, volumes: dict) -> list[str]:
    """Robots, simulators and trainer agree on namespaces and on the weights folder."""
    problems = []
    robots = {n: _launch_values(c, 'robot.launch.py') for n, c in commands.items()}
    robots = {n: v for n, v in robots.items() if v is not None}
    sims = {n: _launch_values(c, 'sim.launch.py') for n, c in commands.items()}
    sims = {n: v for n, v in sims.items() if v is not None}
    trainers = {n: _params(c, 'trainer_node') for n, c in commands.items()}
    trainers = {n: v for n, v in trainers.items() if v is not None}
    namespaces = sorted(v.get('namespace', 'robot_1') for v in robots.values())
    if sims and sorted(v.get('namespace', 'robot_1') for v in sims.values()) != namespaces:
        problems.append(f'simulated arms {sorted(sims)} do not match the robots {namespaces}')
    for name, params in trainers.items():
        listed = sorted(yaml.safe_load(params.get('robots', '[robot_1]')) or [])
        if listed != namespaces:
            problems.append(f'{name}: robots:={listed} but the robot namespaces launched are '
                            f'{namespaces}')
        folder = params.get('learner.weights_dir', '')
        written = volumes[name].get(folder)
        for robot, values in robots.items():
            read = values.get('weights_dir', '')
            if read != folder or volumes[robot].get(read) != written or written is None:
                problems.append(f'{robot}: reads weights from {read!r} '
                                f'(volume {volumes[robot].get(read)}), {name} writes them to '
                                f'{folder!r} (volume {written}): mount one volume at one path')
    return problems


def _discovery_problems(data: dict, services: dict, commands: dict) -> list[str]:
    """Every ROS_DISCOVERY_SERVER names a ``fastdds discovery`` service of the file."""
    problems, servers = [], set()
    subnets = [ipaddress.ip_network(c['subnet'])
               for network in (data.get('networks') or {}).values()
               for c in ((network or {}).get('ipam') or {}).get('config', [])]
    for name, command in commands.items():
        if command[:2] == ['fastdds', 'discovery']:
            port = next((v for o, v in itertools.pairwise(command) if o in ('-p', '--port')),
                        '11811')
            for network in (services[name].get('networks') or {}).values():
                address = (network or {}).get('ipv4_address')
                if address and subnets and not any(ipaddress.ip_address(address) in s
                                                   for s in subnets):
                    problems.append(f'{name}: {address} outside the subnets {subnets}')
                if address:
                    servers.add(f'{address}:{port}')
    for name, service in services.items():
        environment = service.get('environment') or {}
        if isinstance(environment, list):
            environment = dict(e.split('=', 1) for e in environment if '=' in e)
        for server in str(environment.get('ROS_DISCOVERY_SERVER', '')).split(';'):
            server = server if ':' in server or not server else f'{server}:11811'
            if server and server not in servers:
                problems.append(f'{name}: ROS_DISCOVERY_SERVER {server} is no discovery '
                                f'service of this file ({sorted(servers)})')
    return problems


def check_compose(compose: pathlib.Path, root: pathlib.Path) -> list[str]:
    """Every problem of a compose file whose repository is ``root``."""
    data = yaml.safe_load(compose.read_text())
    services, named = data.get('services') or {}, set(data.get('volumes') or {})
    problems, commands, volumes = [], {}, {}
    for name, service in services.items():
        image = None
        build = service.get('build')
        if build is None:
            tag = str(service.get('image', '')).rsplit('/', 1)[-1].partition(':')[2]
            if not tag or tag == 'latest':
                problems.append(f'{name}: image {service.get("image")} is not pinned to a tag')
        else:
            build = {'context': build} if isinstance(build, str) else build
            context = (compose.parent / build.get('context', '.')).resolve()
            dockerfile = context / build.get('dockerfile', 'Dockerfile')
            if not dockerfile.is_file():
                problems.append(f'{name}: build.dockerfile {dockerfile} does not exist')
            else:
                image = read_dockerfile(dockerfile, context)
        mounts, volumes[name] = [], {}
        for entry in service.get('volumes') or []:
            source, target, _ = _volume(entry)
            volumes[name][target] = source
            if source.startswith(('.', '/', '~')):
                host = (compose.parent / source).resolve()
                if host.is_relative_to(root):
                    if not host.exists():
                        problems.append(f'{name}: volume {source}: no '
                                        f'{host.relative_to(root)} in the repository')
                    mounts.append((target, host))
            elif source and source not in named:
                problems.append(f'{name}: volume {source!r} is not declared under volumes:')
        depends = service.get('depends_on') or []
        problems += [f'{name}: depends on {d!r}, no such service' for d in depends
                     if d not in services]
        commands[name] = _argv_of(service.get('command')) or (image.cmd if image else [])
        entrypoint = _argv_of(service['entrypoint']) if 'entrypoint' in service \
            else (image.entrypoint if image else [])
        if 'entrypoint' in service and 'command' not in service:
            commands[name] = []
        problems += command_problems(entrypoint + commands[name], image, tuple(mounts),
                                     name, root)
    problems += _discovery_problems(data, services, commands)
    return problems + _fleet_problems(services, commands, volumes)


@pytest.mark.parametrize('dockerfile', DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_every_dockerfile_matches_the_repository(dockerfile):
    assert check_dockerfile(dockerfile, ROOT) == []


def test_robot_and_trainer_images_start_their_side_of_the_loop():
    robot = read_dockerfile(ROOT / 'docker' / 'robot.Dockerfile', ROOT)
    trainer = read_dockerfile(ROOT / 'docker' / 'trainer.Dockerfile', ROOT)
    assert robot.cmd[:4] == ['ros2', 'launch', 'vlac_bringup', 'robot.launch.py']
    assert trainer.cmd[:4] == ['ros2', 'run', 'rl_trainer', 'trainer_node']
    assert 'learner.device:=cuda' in trainer.cmd


def test_compose_matches_the_repository():
    assert check_compose(COMPOSE, ROOT) == []


def test_compose_runs_robots_a_discovery_server_and_a_gpu_trainer():
    services = yaml.safe_load(COMPOSE.read_text())['services']
    assert {'discovery', 'sim_1', 'robot_1', 'sim_2', 'robot_2', 'trainer'} <= set(services)
    devices = services['trainer']['deploy']['resources']['reservations']['devices']
    assert devices[0]['capabilities'] == ['gpu']
    for robot in ('robot_1', 'robot_2'):  # robots never write the trainer's weights
        assert ('weights', '/data/weights', True) in map(_volume, services[robot]['volumes'])


BROKEN_DOCKERFILE = """\
FROM ubuntu:latest
FROM python
WORKDIR /ws
COPY package.xml no_such_folder/ src/vlac/
COPY src/ src/vlac/src/
RUN pip3 install -r src/vlac/requirements/ros-machine.txt \\
    && rosdep install --from-paths src --ignore-src -y \\
    && colcon build --base-paths src/vlac
CMD ["bash", "-c", "source /opt/ws/install/setup.bash && ros2 launch vlac_bringup nope.launch.py \
&& ros2 launch vlac_bringup robot.launch.py namespce:=robot_1 teleop:=joystick \
&& ros2 run rl_trainer no_such_node && ros2 run rl_trainer trainer_node --ros-args \
--params-file /ws/install/vlac_bringup/share/vlac_bringup/config/loop.yaml \
-p learner.modelpath:=/models/policy"]
"""


def test_a_broken_dockerfile_is_reported(tmp_path):
    dockerfile = tmp_path / 'broken.Dockerfile'
    dockerfile.write_text(BROKEN_DOCKERFILE)
    report = '\n'.join(check_dockerfile(dockerfile, ROOT))
    for expected in ('FROM ubuntu:latest is not pinned', 'FROM python is not pinned',
                     'COPY no_such_folder/: no such path',
                     '-r src/vlac/requirements/ros-machine.txt was not copied',
                     'rosdep from src misses packages hitl_teleop',
                     'colcon from src/vlac misses packages hitl_teleop',
                     'sources /opt/ws/install/setup.bash, but colcon installs into',
                     'nope.launch.py: no such launch file',
                     "robot.launch.py declares no launch argument 'namespce'",
                     'teleop:=joystick is not one of',
                     'robot.launch.py needs policy_model:=', 'needs critic_model:=',
                     'no_such_node is no console script of rl_trainer',
                     'config/loop.yaml is not in the image',
                     "trainer_node declares no parameter 'learner.modelpath'"):
        assert expected in report, f'{expected!r} not in:\n{report}'


def test_a_broken_compose_file_is_reported(tmp_path):
    services = {
        'discovery': {'image': 'ros:jazzy-ros-base-noble',
                      'command': ['fastdds', 'discovery', '--server-id', '0'],
                      'networks': {'default': {'ipv4_address': '10.9.0.2'}}},
        'robot_1': {'build': {'context': str(ROOT), 'dockerfile': 'docker/robot.Dockerfile'},
                    'environment': {'ROS_DISCOVERY_SERVER': '172.28.5.2:11811'},
                    'depends_on': ['discovry'],
                    'volumes': [f'{ROOT}/models/no_such_task:/models:ro',
                                'wieghts:/data/weights:ro'],
                    'command': ['ros2', 'launch', 'vlac_bringup', 'robot.launch.py',
                                'namespace:=robot_1', 'policy_model:=/models/policy',
                                'critic_model:=/models/critic', 'weights_dir:=/data/weights',
                                'episodes:=/data/episodes']},
        'sim_1': {'image': 'vlac/robot', 'command': 'ros2 launch vlac_bringup sim.launch.py '
                  'namespace:=robot_2'},
        'trainer': {'build': {'context': str(ROOT), 'dockerfile': 'docker/gpu.Dockerfile'},
                    'image': 'vlac/trainer:jazzy', 'volumes': ['weights:/data/weights'],
                    'command': ['ros2', 'run', 'rl_trainer', 'trainer_node', '--ros-args',
                                '-p', 'robots:=[robot_1, robot_2]',
                                '-p', 'learner.weights_dir:=/data/weights']},
        'driver': {'image': 'vlac/robot:jazzy', 'command': ['python3', 'drive.py']},
    }
    compose = tmp_path / 'compose.yaml'
    compose.write_text(yaml.safe_dump({
        'services': services, 'volumes': {'weights': None},
        'networks': {'default': {'ipam': {'config': [{'subnet': '172.28.5.0/24'}]}}}}))
    report = '\n'.join(check_compose(compose, ROOT))
    for expected in ('discovery: 10.9.0.2 outside the subnets',
                     'ROS_DISCOVERY_SERVER 172.28.5.2:11811 is no discovery service',
                     "robot_1: depends on 'discovry', no such service",
                     'no models/no_such_task in the repository',
                     "volume 'wieghts' is not declared", 'sim_1: image vlac/robot is not pinned',
                     "declares no launch argument 'episodes'",
                     'docker/gpu.Dockerfile does not exist',
                     "driver: runs 'python3', neither ros2 nor a known tool",
                     'simulated arms',
                     "trainer: robots:=['robot_1', 'robot_2'] but the robot namespaces",
                     "robot_1: reads weights from '/data/weights' (volume wieghts)"):
        assert expected in report, f'{expected!r} not in:\n{report}'


def test_the_deployment_page_covers_the_checklist():
    page = (ROOT / 'docs' / 'deployment.md').read_text()
    for topic in ('docker/robot.Dockerfile', 'docker/trainer.Dockerfile', 'compose.yaml',
                  'franka_ros2', 'ur_robot_driver', 'dry_run', 'estop', 'release_estop',
                  'ROS_DISCOVERY_SERVER', 'chrony', '(deploy.md)', 'cannot be built'):
        assert topic in page, topic
