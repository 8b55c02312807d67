"""make bench: run every benchmark of the stack and write docs/benchmarks.md with its figures.

  vlac_bench_report [--out docs/benchmarks.md] [--work artifacts/bench] [--quick]

Each benchmark runs as its own process, exactly as a user would type it (the command is
printed above its figures), on models the demo's recipe trains under ``--work`` when they
are not there yet (12 expert demonstrations of press_button, the compact critic and the
behaviour-cloned compact policy). The page records when, on which commit and on which
machine the figures were measured; nothing in it is written by hand.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import subprocess
import sys
import time


def machine() -> str:
    """One line: CPU model, cores, memory, OS, Python, torch."""
    cpu = 'unknown CPU'
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
        if line.startswith('model name'):
            cpu = line.split(':', 1)[1].strip()
            break
    memory = 0.0
    for line in pathlib.Path('/proc/meminfo').read_text().splitlines():
        if line.startswith('MemTotal'):
            memory = int(line.split()[1]) / 2**20
    import torch

    return (f'{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} '
            f'{platform.release()}, Python {platform.python_version()}, torch '
            f'{torch.__version__}, no GPU' if not torch.cuda.is_available() else
            f'{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, GPU '
            f'{torch.cuda.get_device_name(0)}, Python {platform.python_version()}')


def commit() -> str:
    """The checked-out commit, marked dirty when the tree has changes."""
    def git(*args: str) -> str:
        result = subprocess.run(['git', *args], capture_output=True, text=True, check=False)
        return result.stdout.strip()

    head = git('rev-parse', '--short=12', 'HEAD') or 'unknown'
    return head + (' (with uncommitted changes)' if git('status', '--porcelain') else '')


def benchmarks(policy: pathlib.Path, critic: pathlib.Path, quick: bool) -> list[list[str]]:
    """The command lines, one per benchmark script."""
    seconds = '5' if quick else '15'
    return [
        ['benchmark_sim', '--seconds', '3' if quick else '10', '--episodes',
         '3' if quick else '10'],
        ['benchmark_policy', '--model', str(policy), '--seconds', seconds, '--vlac-tiny'],
        ['benchmark_reward', '--model', str(critic), '--seconds', '6' if quick else '12',
         '--vlac-tiny'],
        ['benchmark_trainer', '--policy', str(policy), '--critic', str(critic),
         '--episodes', '4' if quick else '6'],
        ['benchmark_teleop', '--takeovers', '10' if quick else '30'],
        ['benchmark_fleet', '--robots', '1', '2', '4', '--seconds', '40' if quick else '120'],
    ]


def main(argv: list[str] | None = None) -> int:
    """Prepare models, run the benchmarks, write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='docs/benchmarks.md', help='page to write')
    parser.add_argument('--work', default='artifacts/bench', help='models and scratch files')
    parser.add_argument('--quick', action='store_true', help='shorter windows (a smoke run)')
    args = parser.parse_args(argv)
    work = pathlib.Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    from vlac_bench.demo import shipped_models

    shipped = shipped_models('press_button')
    critic, policy = shipped / 'critic', shipped / 'policy'
    started = time.monotonic()

    def say(text: str) -> None:
        print(f'[bench {time.monotonic() - started:6.1f} s] {text}', flush=True)

    if not (critic / 'config.json').is_file() or not (policy / 'config.json').is_file():
        # In a child process: torch's idle worker threads would otherwise keep a core busy
        # while the benchmarks run.
        models = work / 'demo' / 'models'  # where prepare_models puts them
        critic, policy = models / 'critic', models / 'policy_press_button_50demos_s0'
        code = ('import pathlib; from vlac_bench.demo import prepare_models; '
                f'prepare_models(pathlib.Path({str(work)!r}), "press_button", 50, print)')
        say('training the models the benchmarks use (the demo recipe)')
        if subprocess.run([sys.executable, '-c', code], check=False).returncode != 0:
            return 1
    bin_dir = pathlib.Path(sys.executable).parent
    when = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    sections, failed = [], 0
    for command in benchmarks(policy, critic, args.quick):
        say('running ' + ' '.join(command))
        begin = time.monotonic()
        result = subprocess.run([str(bin_dir / command[0]), *command[1:]], capture_output=True,
                                text=True, check=False, timeout=1800)
        took = time.monotonic() - begin
        output = result.stdout.strip()
        if result.returncode != 0:
            failed += 1
            output += f'\n\n(exit status {result.returncode})\n{result.stderr.strip()[-3000:]}'
        printed = ' '.join(c if not c.startswith(str(work)) else
                           c.replace(str(work), args.work) for c in command)
        sections.append(f'## {command[0]}\n\n`{printed}` ({took:.0f} s)\n\n```text\n'
                        f'{output}\n```\n')
        say(f'{command[0]}: {took:.0f} s, exit status {result.returncode}')
    page = (f'# Benchmarks\n\nWritten by `make bench` (`vlac_bench_report'
            f'{" --quick" if args.quick else ""}`); do not edit by hand.\n\n'
            f'- measured: {when}\n- commit: {commit()}\n- machine: {machine()}\n'
            f"- models: `{critic}` and `{policy}` (the demo's: 50 expert demonstrations of "
            'press_button, 96 px camera; models/README.md)\n\nEach benchmark prints what it '
            'measures and how; the figures below are its output, unedited.\n\n'
            + '\n'.join(sections))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    say(f'wrote {out} ({failed} benchmark(s) failed)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
