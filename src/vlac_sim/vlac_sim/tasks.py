"""Language-conditioned tasks on the shared scene, mirroring the VLAC paper's categories.

Every task uses the same scene (two cubes, a green pad, a yellow button); tasks differ in their
instruction and in how the initial state is randomised. ``pick_place_red`` and
``pick_place_blue`` differ *only* in the instruction, so a model must read the language.

Ground-truth progress in [0, 1] and success are evaluation-only (see GroundTruth.msg).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vlac_sim.scene import (
    BUTTON_HALF,
    CUBE_HALF,
    MAX_GRIPPER_WIDTH,
    NEUTRAL_ARM,
    OBJECTS,
    PAD_HALF,
    PandaScene,
)

# Region of the table where objects are placed, base frame, metres.
TABLE_X = (0.38, 0.62)
TABLE_Y = (-0.22, 0.22)
MIN_SEPARATION = 0.11  # m between object centres


@dataclass(frozen=True)
class Task:
    """A task: name, instruction, category, time budget and its progress measure."""

    name: str
    instruction: str
    category: str
    max_duration: float  # s
    layout: Callable[[np.random.Generator], dict[str, np.ndarray]]
    progress_fn: Callable[[PandaScene, dict], float]
    success_fn: Callable[[PandaScene, dict], bool]

    def progress(self, scene: PandaScene, start: dict) -> float:
        """Return true progress in [0, 1] (1 when successful)."""
        if self.success(scene, start):
            return 1.0
        return float(np.clip(self.progress_fn(scene, start), 0.0, 0.99))

    def success(self, scene: PandaScene, start: dict) -> bool:
        """Return True when the task is achieved."""
        return bool(self.success_fn(scene, start))


def _sample_positions(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Sample ``count`` table positions at least MIN_SEPARATION apart (rejection sampling)."""
    while True:
        xy = np.column_stack([rng.uniform(*TABLE_X, count), rng.uniform(*TABLE_Y, count)])
        gaps = [np.linalg.norm(xy[i] - xy[j]) for i in range(count) for j in range(i)]
        if not gaps or min(gaps) >= MIN_SEPARATION:
            return list(xy)


def _layout_free(rng: np.random.Generator) -> dict[str, np.ndarray]:
    red, blue, pad, button = _sample_positions(rng, 4)
    return {'red_cube': red, 'blue_cube': blue, 'green_pad': pad, 'yellow_button': button}


def _layout_push(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Pad 12-18 cm from the red cube, the other objects out of the pushing lane."""
    while True:
        layout = _layout_free(rng)
        angle = rng.uniform(-np.pi, np.pi)
        pad = layout['red_cube'] + rng.uniform(0.12, 0.18) * np.array([np.cos(angle),
                                                                       np.sin(angle)])
        if not (TABLE_X[0] <= pad[0] <= TABLE_X[1] and TABLE_Y[0] <= pad[1] <= TABLE_Y[1]):
            continue
        lane_ok = all(
            _distance_to_segment(layout[o], layout['red_cube'] - 0.1 * (pad - layout['red_cube']),
                                 pad) > MIN_SEPARATION
            for o in ('blue_cube', 'yellow_button'))
        if lane_ok:
            layout['green_pad'] = pad
            return layout


def _distance_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    t = np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-9), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * (b - a))))


def _xy(scene: PandaScene, name: str) -> np.ndarray:
    return scene.object_pose(name)[0][:2]


def _on_pad(scene: PandaScene, cube: str) -> bool:
    pos = scene.object_pose(cube)[0]
    offset = np.abs(pos[:2] - _xy(scene, 'green_pad'))
    return bool(np.all(offset <= PAD_HALF - 0.005) and pos[2] < CUBE_HALF + 0.01)


def _ratio(now: float, start: float) -> float:
    return 1.0 - now / max(start, 1e-6)


def _place_progress(cube: str) -> Callable[[PandaScene, dict], float]:
    def progress(scene: PandaScene, start: dict) -> float:
        ee = scene.ee_pose()[0]
        cube_pos = scene.object_pose(cube)[0]
        reach = _ratio(np.linalg.norm(ee - cube_pos), start[f'ee_to_{cube}'])
        carry = _ratio(np.linalg.norm(cube_pos[:2] - _xy(scene, 'green_pad')),
                       start[f'{cube}_to_pad'])
        return 0.3 * np.clip(reach, 0, 1) + 0.7 * np.clip(carry, 0, 1)
    return progress


def _stack_progress(scene: PandaScene, start: dict) -> float:
    ee = scene.ee_pose()[0]
    red, blue = scene.object_pose('red_cube')[0], scene.object_pose('blue_cube')[0]
    reach = _ratio(np.linalg.norm(ee - red), start['ee_to_red_cube'])
    above_blue = blue + np.array([0.0, 0.0, 2 * CUBE_HALF])
    carry = _ratio(np.linalg.norm(red - above_blue), start['red_to_blue_top'])
    return 0.3 * np.clip(reach, 0, 1) + 0.7 * np.clip(carry, 0, 1)


def _stacked(scene: PandaScene, start: dict) -> bool:
    red, blue = scene.object_pose('red_cube')[0], scene.object_pose('blue_cube')[0]
    return bool(np.linalg.norm(red[:2] - blue[:2]) < 0.02
                and abs(red[2] - blue[2] - 2 * CUBE_HALF) < 0.008
                and scene.gripper_width() > 0.045)  # released, not held in place


def _button_top(scene: PandaScene) -> np.ndarray:
    return scene.object_pose('yellow_button')[0] + np.array([0.0, 0.0, BUTTON_HALF[2]])


def _press_progress(scene: PandaScene, start: dict) -> float:
    return _ratio(np.linalg.norm(scene.ee_pose()[0] - _button_top(scene)), start['ee_to_button'])


def _pressed(scene: PandaScene, start: dict) -> bool:
    offset = scene.ee_pose()[0] - _button_top(scene)
    return bool(np.linalg.norm(offset[:2]) < BUTTON_HALF[0] - 0.005 and offset[2] < 0.012)


def start_measures(scene: PandaScene) -> dict:
    """Distances at the start of an episode that progress is normalised by."""
    ee = scene.ee_pose()[0]
    pad = _xy(scene, 'green_pad')
    red, blue = scene.object_pose('red_cube')[0], scene.object_pose('blue_cube')[0]
    return {
        'ee_to_red_cube': float(np.linalg.norm(ee - red)),
        'ee_to_blue_cube': float(np.linalg.norm(ee - blue)),
        'red_cube_to_pad': float(np.linalg.norm(red[:2] - pad)),
        'blue_cube_to_pad': float(np.linalg.norm(blue[:2] - pad)),
        'red_to_blue_top': float(np.linalg.norm(red - blue - np.array([0, 0, 2 * CUBE_HALF]))),
        'ee_to_button': float(np.linalg.norm(ee - _button_top(scene))),
    }


TASKS: dict[str, Task] = {task.name: task for task in (
    Task('pick_place_red', 'pick up the red cube and put it on the green pad', 'pick_and_place',
         20.0, _layout_free, _place_progress('red_cube'),
         lambda scene, start: _on_pad(scene, 'red_cube')),
    Task('pick_place_blue', 'pick up the blue cube and put it on the green pad',
         'pick_and_place', 20.0, _layout_free, _place_progress('blue_cube'),
         lambda scene, start: _on_pad(scene, 'blue_cube')),
    Task('push_red', 'push the red cube onto the green pad', 'push', 20.0, _layout_push,
         _place_progress('red_cube'), lambda scene, start: _on_pad(scene, 'red_cube')),
    Task('stack_red_on_blue', 'stack the red cube on top of the blue cube', 'stack', 20.0,
         _layout_free, _stack_progress, _stacked),
    Task('press_button', 'press the yellow button', 'reach_press', 12.0, _layout_free,
         _press_progress, _pressed),
)}


def get_task(name: str) -> Task:
    """Return a task by name; ValueError listing the known ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f'unknown task {name!r}; known: {", ".join(TASKS)}') from None


def forget_contacts(scene: PandaScene) -> None:
    """Drop the contact caches the last episode left, so a reset depends only on its seed.

    Bullet keeps contact manifolds (and their warm-start impulses) for every pair of bodies
    whose bounding boxes overlap, and a teleport keeps the pair. Without this, an episode run
    on a used scene differs slightly from the same episode on a fresh one. Moving the loose
    objects far away and the arm to neutral, then running collision detection (no time
    passes), removes the pairs; ``reset_scene`` then places everything anew.
    """
    for i, name in enumerate(OBJECTS):
        if name in ('red_cube', 'blue_cube'):
            scene.place_object(name, np.array([10.0 + 2.0 * i, 10.0, 10.0]))
    scene.set_arm(NEUTRAL_ARM, MAX_GRIPPER_WIDTH)
    scene.client.performCollisionDetection()


def reset_scene(scene: PandaScene, task: Task, seed: int) -> dict:
    """Put the scene in the task's initial state for ``seed``; return the start measures.

    The result depends only on task and seed, not on what the scene did before.
    """
    forget_contacts(scene)
    rng = np.random.default_rng(seed)
    layout = task.layout(rng)
    arm = NEUTRAL_ARM + rng.uniform(-0.08, 0.08, size=7) * np.array([1, 0.5, 1, 0.5, 1, 0.5, 1])
    scene.set_arm(arm, 0.08)
    for name, xy in layout.items():
        z = {'red_cube': CUBE_HALF, 'blue_cube': CUBE_HALF, 'green_pad': 0.001,
             'yellow_button': BUTTON_HALF[2]}[name]
        yaw = rng.uniform(-0.4, 0.4) if name.endswith('cube') else 0.0
        scene.place_object(name, np.array([xy[0], xy[1], z]), yaw)
    scene.time = 0.0
    scene.step(0.1)  # let contacts settle
    scene.time = 0.0
    return start_measures(scene)
