"""Record scripted demonstrations and deliberate failures as rosbag2 folders (MCAP).

  record_dataset --out DATA --episodes 20 --failures 20 [--tasks pick_place_red,...]

For each task: N expert episodes and N failing ones (behaviours 'random', 'stalled', 'reversed'
and 'missed', a near miss, in turn), each in ``DATA/<task>/<behaviour>_<seed>/``. A bag holds
what a ``ros2 bag record`` of the live stack would: the camera (``/camera/image_raw`` rgb8 and
``/camera/camera_info``), ``/joint_states``, ``/ee_pose``, the operator's commands
(``/servo_node/delta_twist_cmds``, ``/gripper_controller/commands``), the task sentence
(``/task``, std_msgs/String) and the evaluation-only ``/eval_only/ground_truth``. Messages are
built by the same code the live node uses (``ros_msgs``), stamped with simulated time from the
episode's wall-clock start; episodes run faster than real time (no DDS in the loop).

metadata.yaml custom_data says task, instruction, behaviour, seed, success and final
progress. ``DATA/index.jsonl`` gets one line per finished episode. Bags are written atomically
and existing episodes are skipped, so an interrupted recording resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

from geometry_msgs.msg import TwistStamped
from std_msgs.msg import Float64MultiArray, Header, String
from vlac_models.stamps import to_time
from vlac_ros.bags import BagWriter

from vlac_sim import ros_msgs
from vlac_sim.control import ArmController
from vlac_sim.experts import BEHAVIOURS, ExpertCommand, ScriptedExpert, run_offline_episode
from vlac_sim.scene import BASE_FRAME, CameraSpec, PandaScene
from vlac_sim.tasks import TASKS, Task, get_task

FAILING = tuple(b for b in BEHAVIOURS if b != 'expert')
TOPICS = {
    'image': '/camera/image_raw', 'camera_info': '/camera/camera_info',
    'joints': '/joint_states', 'pose': '/ee_pose', 'servo': '/servo_node/delta_twist_cmds',
    'gripper': '/gripper_controller/commands', 'task': '/task',
    'ground_truth': '/eval_only/ground_truth',
}


def record_episode(scene: PandaScene, controller: ArmController, task: Task, behaviour: str,
                   seed: int, path: pathlib.Path, camera: CameraSpec,
                   control_dt: float = 0.05) -> dict:
    """Run one episode and write its bag at ``path``; return the index entry."""
    expert = ScriptedExpert(task.name, behaviour, seed)
    camera_every = max(1, int(round(1.0 / (camera.rate_hz * control_dt))))
    base = time.time()
    with BagWriter(path, {'task': task.name, 'instruction': task.instruction,
                          'behaviour': behaviour, 'seed': seed}) as bag:

        def stamp_of(sim_time: float):
            return to_time(base + sim_time)

        def ns(sim_time: float) -> int:
            return int(round((base + sim_time) * 1e9))

        def write_state(sim_time: float, with_image: bool) -> None:
            stamp = stamp_of(sim_time)
            bag.write(TOPICS['joints'], ns(sim_time), ros_msgs.joint_state_msg(scene, stamp))
            bag.write(TOPICS['pose'], ns(sim_time), ros_msgs.ee_pose_msg(scene, stamp))
            bag.write(TOPICS['ground_truth'], ns(sim_time),
                      ros_msgs.ground_truth_msg(scene, task, start_measures[0], stamp))
            if with_image:
                image, info = ros_msgs.image_msgs(scene, camera, stamp)
                bag.write(TOPICS['image'], ns(sim_time), image)
                bag.write(TOPICS['camera_info'], ns(sim_time), info)

        start_measures = [None]

        def on_start(start: dict) -> None:
            start_measures[0] = start
            bag.write(TOPICS['task'], ns(0.0), String(data=task.instruction))
            write_state(0.0, with_image=True)

        def on_step(step: int, _scene, command: ExpertCommand, _progress: float) -> None:
            issued = step * control_dt  # the command was issued at the start of this period
            header = Header(stamp=stamp_of(issued), frame_id=BASE_FRAME)
            twist = TwistStamped(header=header)
            (twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z) = \
                (float(v) for v in command.linear)
            (twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z) = \
                (float(v) for v in command.angular)
            bag.write(TOPICS['servo'], ns(issued), twist)
            bag.write(TOPICS['gripper'], ns(issued),
                      Float64MultiArray(data=[float(command.gripper_width)]))
            write_state((step + 1) * control_dt, (step + 1) % camera_every == 0)

        outcome = run_offline_episode(scene, controller, task, expert, seed,
                                      control_dt=control_dt, on_step=on_step,
                                      on_start=on_start)
        bag.set_custom_data('success', str(outcome.success).lower())
        bag.set_custom_data('final_progress', f'{outcome.final_progress:.4f}')
        bag.set_custom_data('duration', f'{outcome.duration:.2f}')
    return {'task': task.name, 'behaviour': behaviour, 'seed': seed,
            'success': outcome.success, 'final_progress': round(outcome.final_progress, 4),
            'steps': outcome.steps, 'bag': str(path)}


def record_dataset(out: pathlib.Path, tasks: list[str], episodes: int, failures: int,
                   first_seed: int = 0, camera: CameraSpec | None = None,
                   control_dt: float = 0.05, log=print) -> list[dict]:
    """Record ``episodes`` expert and ``failures`` failing episodes per task under ``out``."""
    camera = (camera or CameraSpec(rate_hz=10.0)).validate()
    out.mkdir(parents=True, exist_ok=True)
    scene = PandaScene()
    controller = ArmController(scene)
    entries = []
    try:
        for name in tasks:
            task = get_task(name)
            plan = [('expert', first_seed + i) for i in range(episodes)]
            plan += [(FAILING[i % len(FAILING)], first_seed + i) for i in range(failures)]
            for behaviour, seed in plan:
                path = out / task.name / f'{behaviour}_{seed:04d}'
                if path.exists():
                    log(f'skip {path} (recorded earlier)')
                    continue
                started = time.perf_counter()
                entry = record_episode(scene, controller, task, behaviour, seed, path, camera,
                                       control_dt)
                with open(out / 'index.jsonl', 'a') as index:
                    index.write(json.dumps(entry) + '\n')
                    index.flush()
                    os.fsync(index.fileno())
                entries.append(entry)
                log(f'{task.name:18s} {behaviour:8s} seed {seed:4d}: '
                    f'{"success" if entry["success"] else "failure"} '
                    f'(progress {entry["final_progress"]:.2f}, {entry["steps"]} steps, '
                    f'{time.perf_counter() - started:.1f} s)')
    finally:
        scene.close()
    return entries


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=pathlib.Path, required=True, help='dataset folder')
    parser.add_argument('--episodes', type=int, default=20, help='expert episodes per task')
    parser.add_argument('--failures', type=int, default=20, help='failing episodes per task')
    parser.add_argument('--tasks', default=','.join(TASKS),
                        help=f'comma-separated task names (default: all: {",".join(TASKS)})')
    parser.add_argument('--seed', type=int, default=0, help='first seed')
    parser.add_argument('--width', type=int, default=224, help='camera width, px')
    parser.add_argument('--height', type=int, default=224, help='camera height, px')
    parser.add_argument('--camera-rate', type=float, default=10.0, help='camera rate, Hz')
    parser.add_argument('--control-rate', type=float, default=20.0, help='control rate, Hz')
    args = parser.parse_args(argv)
    try:
        tasks = [get_task(t.strip()).name for t in args.tasks.split(',') if t.strip()]
        if args.episodes < 0 or args.failures < 0:
            raise ValueError('--episodes and --failures must be >= 0')
        if not 1.0 <= args.control_rate <= 100.0:
            raise ValueError(f'--control-rate {args.control_rate} outside 1..100 Hz')
        camera = CameraSpec(width=args.width, height=args.height,
                            rate_hz=args.camera_rate).validate()
    except ValueError as err:
        print(f'record_dataset: {err}', file=sys.stderr)
        return 2
    entries = record_dataset(args.out, tasks, args.episodes, args.failures, args.seed, camera,
                             1.0 / args.control_rate)
    for name in tasks:
        mine = [e for e in entries if e['task'] == name]
        experts = [e for e in mine if e['behaviour'] == 'expert']
        fails = [e for e in mine if e['behaviour'] != 'expert']
        if mine:
            print(f'{name:18s}: expert success {sum(e["success"] for e in experts)}/'
                  f'{len(experts)}, failing episodes that succeeded '
                  f'{sum(e["success"] for e in fails)}/{len(fails)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
