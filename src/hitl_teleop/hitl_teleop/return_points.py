"""Return points chosen from data: the states recorded episodes got stuck in (ROS-free).

VLAC's "return and explore" restarts episodes from hard initial states. Here they are taken
from the robot's own recordings: an episode bag (``rl_runner`` episode runner) holds the
critic's progress (``<ns>/progress``, vlac_interfaces/ProgressReward) and the simulator's
snapshots (``<ns>/sim/snapshot``, std_msgs/String whose data is the snapshot's UTF-8 JSON,
stamped with the time it was taken). The progress is replayed through the live help
detector (``hitl_teleop.help``), so a return point is exactly where the robot would have
asked for help: for each stall the last snapshot taken at or before the stall began (the
start of the stagnant window, or the time of the maximum the progress fell from) becomes a
``ReturnPoint``, ranked by how bad the stall was.

``ReturnPointStore`` keeps them as one JSON file per point (never pickle: snapshots cross
machines) and serves them round robin per task; ``return_points`` is its command line::

    return_points scan EPISODES_DIR --out STORE [--task T] [--config help.yaml]
    return_points list STORE [--task T]
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
import json
import logging
import math
import os
import pathlib
import sys
from typing import Annotated, Any, Sequence, Union

import tyro
from vlac_models.files import atomic_write_bytes
from vlac_models.stamps import NS_PER_S
from vlac_ros.bags import bag_metadata, read_messages

from hitl_teleop.help import HelpConfig, HelpDetector, HelpReason

FORMAT = 'hitl_teleop/return_point/1'
CURSOR = '.cursor'
PROGRESS_TYPE = 'vlac_interfaces/msg/ProgressReward'
STRING_TYPE = 'std_msgs/msg/String'
PROGRESS_SUFFIX = 'progress'
SNAPSHOT_SUFFIX = 'sim/snapshot'

_log = logging.getLogger(__name__)


def _has_suffix(topic: str, suffix: str) -> bool:
    """True when ``topic`` is ``suffix`` in any namespace ('/robot_1/sim/snapshot')."""
    return topic.lstrip('/') == suffix or topic.endswith('/' + suffix)


def _check_name(kind: str, name: Any) -> str:
    """``name`` if usable as one file-name component; ValueError naming it otherwise."""
    if (not isinstance(name, str) or not name or name.startswith('.') or len(name) > 200
            or any(c in name for c in '/\\\0')):
        raise ValueError(f'{kind} {name!r} cannot name a file (empty, hidden, too long or '
                         'with a path separator)')
    return name


def _check_snapshot(data: bytes) -> bytes:
    """``data`` if it is a UTF-8 JSON object; ValueError otherwise."""
    try:
        parsed = json.loads(bytes(data).decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f'snapshot is not UTF-8 JSON: {err}') from None
    if not isinstance(parsed, dict):
        raise ValueError(f'snapshot must be a JSON object, got {type(parsed).__name__}')
    return bytes(data)


@dataclass(frozen=True)
class ReturnPoint:
    """A recorded state to restart episodes from, with why it was chosen."""

    task: str
    """task of the episode, as its RunEpisode goal named it (bag custom_data 'task')"""
    episode_id: str
    robot_id: str
    stamp: float
    """s, bag time of the snapshot"""
    progress: float
    """the critic's accumulated progress (0..1) at the snapshot"""
    reason: str
    """'stagnation' or 'regression'"""
    score: float
    """how hard: the progress shortfall of the stall (see ``HelpRequestEvent.score``)"""
    snapshot: bytes
    """the simulator snapshot bytes exactly as recorded (UTF-8 JSON)"""

    @property
    def stamp_ns(self) -> int:
        """The snapshot's bag time in integer nanoseconds (the store's file names)."""
        return round(self.stamp * NS_PER_S)

    def validate(self) -> 'ReturnPoint':
        """Raise ValueError naming the bad field; return self."""
        _check_name('task', self.task)
        _check_name('episode_id', self.episode_id)
        if not isinstance(self.robot_id, str):
            raise ValueError(f'robot_id {self.robot_id!r} must be a string')
        for name in ('stamp', 'progress', 'score'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError(f'{name} {value!r} must be a finite number')
        reasons = [r.value for r in HelpReason]
        if self.reason not in reasons:
            raise ValueError(f'reason {self.reason!r} must be one of {reasons}')
        if not isinstance(self.snapshot, (bytes, bytearray)):
            raise ValueError(f'snapshot must be bytes, got {type(self.snapshot).__name__}')
        _check_snapshot(self.snapshot)
        return self

    def to_json(self) -> str:
        """JSON text of the point; the snapshot is kept as its own JSON text, byte for byte."""
        data = asdict(self)
        data['snapshot'] = bytes(self.snapshot).decode('utf-8')
        return json.dumps({'format': FORMAT, **data}, indent=2) + '\n'

    @classmethod
    def from_json(cls, text: str | bytes) -> 'ReturnPoint':
        """The point ``to_json`` wrote; ValueError saying what is wrong otherwise."""
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f'return point is not JSON: {err}') from None
        if not isinstance(data, dict) or data.pop('format', None) != FORMAT:
            raise ValueError(f'return point format must be {FORMAT!r}')
        names = set(cls.__dataclass_fields__)
        if set(data) != names:
            raise ValueError(f'return point fields {sorted(data)} differ from {sorted(names)}')
        if not isinstance(data['snapshot'], str):
            raise ValueError('return point snapshot must be the snapshot JSON text')
        data['snapshot'] = data['snapshot'].encode('utf-8')
        return cls(**data).validate()


def find_stalls(progress: Sequence[tuple[float, float]], config: HelpConfig,
                start: float | None = None) -> list[tuple[float, str, float]]:
    """Where an episode's progress stalled or regressed, as the live help requests see it.

    ``progress`` holds (stamp s, accumulated value 0..1) pairs; ``start`` is the episode start
    (s; default: the first stamp) from which the detector's grace period counts. Returns one
    (stamp, reason, score) per help request the detector raises, in time order, where stamp
    is when the stall began (s): the start of the stagnant window (stagnation) or the time
    of the running maximum the value fell from (regression); reason is 'stagnation' or
    'regression' and score the progress shortfall (larger = worse).
    """
    detector = HelpDetector(config)
    detector.reset(start)
    stalls = []
    for stamp, value in sorted(progress, key=lambda sample: sample[0]):
        event = detector.update(float(stamp), float(value))
        if event is not None:
            stalls.append((event.since, event.reason.value, event.score))
    return stalls


def _read_episode(bag_path: pathlib.Path) -> tuple[dict, list, list]:
    """(custom_data, [(ns, progress value)], [(ns, snapshot bytes)]) of one bag."""
    meta = bag_metadata(bag_path)
    wanted = {}
    for topic, (msgtype, _) in meta['topics'].items():
        if msgtype == PROGRESS_TYPE and _has_suffix(topic, PROGRESS_SUFFIX):
            wanted[topic] = 'progress'
        elif msgtype == STRING_TYPE and _has_suffix(topic, SNAPSHOT_SUFFIX):
            wanted[topic] = 'snapshot'
    progress, snapshots = [], []
    if 'snapshot' not in wanted.values():
        return meta['custom_data'], progress, snapshots
    for topic, stamp_ns, msg in read_messages(bag_path, sorted(wanted)):
        kind = wanted[topic]
        if kind == 'progress':
            # The value measures the scene in frame b: its capture time, else the score's.
            frame_ns = int(msg.stamp_b.sec) * NS_PER_S + int(msg.stamp_b.nanosec)
            progress.append((frame_ns or stamp_ns, float(msg.value)))
        else:
            snapshots.append((stamp_ns, msg.data.encode('utf-8')))
    return meta['custom_data'], progress, snapshots


def pick_from_episode(bag_path: os.PathLike | str, config: HelpConfig | None = None
                      ) -> list[ReturnPoint]:
    """Return points of one episode bag, in time order (``[]`` without snapshots).

    For each stall ``find_stalls`` finds in the recorded progress (``config``, default the
    built-in ``HelpConfig``), the last snapshot taken at or before the stall began; a snapshot
    several stalls lead to is one point, with the worst score. Snapshots that are not UTF-8
    JSON objects are skipped with a warning. A bag that cannot be read raises ValueError
    naming its path.
    """
    path = pathlib.Path(bag_path)
    config = config or HelpConfig()
    try:
        custom, progress, snapshots = _read_episode(path)
    except Exception as err:  # rosbags raises many kinds; the caller needs which bag
        raise ValueError(f'cannot read episode bag {path}: {type(err).__name__}: {err}'
                         ) from err
    return pick_points(custom, progress, snapshots, config, str(path))


def pick_points(custom: dict, progress: list[tuple[int, float]],
                snapshots: list[tuple[int, bytes]], config: HelpConfig | None = None,
                label: str = 'episode') -> list[ReturnPoint]:
    """Return points of one episode from its scores and snapshots (the core of the picker).

    ``custom`` names the episode (``task``, ``episode_id``, ``robot_id``, as a bag's
    custom_data does); ``progress`` holds (frame stamp ns, accumulated value) and
    ``snapshots`` (stamp ns, snapshot bytes). ``pick_from_episode`` reads them from a bag; the
    lock-step experiment runner passes what its simulated episode produced.
    """
    config = config or HelpConfig()
    path = label
    progress = list(progress)
    valid = []
    for stamp_ns, data in sorted(snapshots, key=lambda item: item[0]):
        try:
            valid.append((stamp_ns, _check_snapshot(data)))
        except ValueError as err:
            _log.warning('%s: snapshot at %d ns skipped: %s', path, stamp_ns, err)
    if not valid or not progress:
        return []
    progress.sort(key=lambda item: item[0])
    # Seconds since the first score (where the episode starts for the detector, as in the
    # teleop node): float seconds of bag times (~1e9 s) would lose the ns that decide
    # whether a snapshot came before a stall.
    base_ns = progress[0][0]
    relative = [((t - base_ns) / NS_PER_S, value) for t, value in progress]
    snapshot_ns = [stamp_ns for stamp_ns, _ in valid]
    chosen: dict[int, tuple[float, str]] = {}  # snapshot index -> (score, reason)
    for since, reason, score in find_stalls(relative, config):
        index = bisect.bisect_right(snapshot_ns, base_ns + round(since * NS_PER_S)) - 1
        if index < 0:
            continue  # no recorded state before the stall to return to
        if index not in chosen or score > chosen[index][0]:
            chosen[index] = (score, reason)
    points = []
    for index, (score, reason) in sorted(chosen.items()):
        stamp_ns, data = valid[index]
        before = bisect.bisect_right(progress, stamp_ns, key=lambda sample: sample[0])
        points.append(ReturnPoint(
            task=custom.get('task') or json.loads(data).get('task', ''),
            episode_id=custom.get('episode_id') or pathlib.Path(path).name,
            robot_id=custom.get('robot_id', ''), stamp=stamp_ns / NS_PER_S,
            progress=progress[before - 1][1] if before else 0.0,  # v_0 = 0 before any score
            reason=reason, score=score, snapshot=data))
    return points


def episode_bags(root: os.PathLike | str) -> list[pathlib.Path]:
    """Bag folders (holding metadata.yaml) under ``root``, skipping hidden (staging) folders."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'episodes folder {root} does not exist')
    bags = []
    for folder, subfolders, files in os.walk(root):
        if 'metadata.yaml' in files:
            bags.append(pathlib.Path(folder))
            subfolders[:] = []
        else:
            subfolders[:] = sorted(s for s in subfolders if not s.startswith('.'))
    return sorted(bags)


def _rank_key(point: ReturnPoint) -> tuple:
    return -point.score, point.task, point.episode_id, point.stamp


class ReturnPointStore:
    """A folder of return points: ``<root>/<task>/<episode_id>-<stamp_ns>.json``.

    Every file is written atomically; unreadable files are skipped with a warning. ``next``
    serves a task's points round robin in rank order and remembers where it is in
    ``<root>/<task>/.cursor``, so a restarted server goes on where it stopped. One process
    serves a store at a time.
    """

    def __init__(self, root: os.PathLike | str) -> None:
        self.root = pathlib.Path(root)

    def path_of(self, point: ReturnPoint) -> pathlib.Path:
        """The file that holds ``point``."""
        task = _check_name('task', point.task)
        episode = _check_name('episode_id', point.episode_id)
        return self.root / task / f'{episode}-{point.stamp_ns}.json'

    def add(self, point: ReturnPoint) -> pathlib.Path:
        """Store ``point`` (the same episode and stamp again replaces it); its file."""
        point.validate()
        path = self.path_of(point)
        text = point.to_json().encode('utf-8')
        if not (path.is_file() and path.read_bytes() == text):
            atomic_write_bytes(path, text)
        return path

    def _entries(self, task: str | None) -> list[tuple[pathlib.Path, ReturnPoint]]:
        if task is None:
            folders = sorted(p for p in self.root.iterdir()
                             if p.is_dir() and not p.name.startswith('.')) \
                if self.root.is_dir() else []
        else:
            try:
                folders = [self.root / _check_name('task', task)]
            except ValueError:
                return []  # no point can be stored under such a name
        entries = []
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob('*.json')):
                if path.name.startswith('.'):
                    continue  # a write in progress
                try:
                    point = ReturnPoint.from_json(path.read_bytes())
                except (OSError, ValueError) as err:
                    _log.warning('return point %s skipped: %s', path, err)
                    continue
                entries.append((path, point))
        entries.sort(key=lambda entry: _rank_key(entry[1]))
        return entries

    def points(self, task: str | None = None) -> list[ReturnPoint]:
        """The points of ``task`` (default: every task), hardest first."""
        return [point for _, point in self._entries(task)]

    def next(self, task: str) -> ReturnPoint | None:
        """The next point of ``task`` round robin in rank order; None if it has none.

        A task that cannot name a folder (empty, hidden, with a path separator) has none.
        """
        entries = self._entries(task)
        if not entries:
            return None
        cursor_path = self.root / task / CURSOR
        names = [path.name for path, _ in entries]
        index = 0
        if cursor_path.exists():
            try:
                cursor = json.loads(cursor_path.read_text())
                last, position = cursor['last'], int(cursor['index'])
                # After the last served point; if it was removed, whatever took its place.
                index = names.index(last) + 1 if last in names else position
            except (OSError, ValueError, KeyError, TypeError) as err:
                _log.warning('return point cursor %s unreadable, starting over: %s',
                             cursor_path, err)
        index %= len(entries)
        atomic_write_bytes(cursor_path, json.dumps(
            {'last': names[index], 'index': index}).encode('utf-8'))
        return entries[index][1]


# -- command line ----------------------------------------------------------------------------

def _line(point: ReturnPoint) -> str:
    return (f'{point.task}  {point.episode_id}  robot {point.robot_id or "-"}  '
            f'{point.stamp:.3f} s  {point.reason}  score {point.score:.3f}  '
            f'progress {point.progress:.2f}')


@dataclass
class ScanArgs:
    """Pick return points from every episode bag under a folder and add them to a store."""

    episodes_dir: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar='EPISODES_DIR')]
    """folder searched recursively for episode bags (folders with metadata.yaml)"""
    out: Annotated[str, tyro.conf.arg(metavar='STORE')]
    """return point store (folder) to add the points to"""
    task: Annotated[str | None, tyro.conf.arg(metavar='TASK')] = None
    """only episodes of this task"""
    config: Annotated[str | None, tyro.conf.arg(metavar='YAML')] = None
    """help thresholds YAML (config/teleop/help.yaml); default: the built-in values"""


@dataclass
class ListArgs:
    """Print the return points of a store, hardest first."""

    store: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar='STORE')]
    """return point store (folder)"""
    task: Annotated[str | None, tyro.conf.arg(metavar='TASK')] = None
    """only points of this task"""


Command = Union[Annotated[ScanArgs, tyro.conf.subcommand('scan')],
                Annotated[ListArgs, tyro.conf.subcommand('list')]]


def _scan(args: ScanArgs) -> int:
    config = HelpConfig.from_yaml(args.config) if args.config else HelpConfig()
    store = ReturnPointStore(args.out)
    bags = episode_bags(args.episodes_dir)
    added = unreadable = with_points = 0
    for bag in bags:
        try:
            points = pick_from_episode(bag, config)
        except ValueError as err:
            print(f'return_points: skipped: {err}', file=sys.stderr)
            unreadable += 1
            continue
        points = [p for p in points if args.task is None or p.task == args.task]
        with_points += bool(points)
        for point in points:
            path = store.add(point)
            print(f'{_line(point)}  {path}')
            added += 1
    print(f'{added} return points from {with_points} of {len(bags)} episodes'
          f'{f" ({unreadable} unreadable)" if unreadable else ""} in {store.root}')
    return 0


def _list(args: ListArgs) -> int:
    root = pathlib.Path(args.store)
    if not root.is_dir():
        raise FileNotFoundError(f'return point store {root} does not exist')
    points = ReturnPointStore(root).points(args.task)
    for point in points:
        print(_line(point))
    print(f'{len(points)} return points in {root}')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``return_points``: ``scan`` episodes into a store, ``list`` a store.

    Exit status 0 on success, 2 for bad arguments or input (printed as one line).
    """
    try:
        args = tyro.cli(Command, args=argv, prog='return_points',
                        description='Return points (hard initial states) from recorded '
                                    'episodes.')
    except SystemExit as exit_:  # --help (0) or a bad option (2), already printed
        return int(exit_.code or 0)
    try:
        return _scan(args) if isinstance(args, ScanArgs) else _list(args)
    except (ValueError, FileNotFoundError) as err:
        print(f'return_points: {err}', file=sys.stderr)
        return 2
