#!/usr/bin/env python3
"""Rewrite the build-host paths hard-coded in the ROS 2 PyPI wheels' CMake exports.

The ros-* wheels are built on a manylinux image whose Python lives in /opt/python/cp311-cp311;
their exported ``*.cmake`` files name that interpreter's include directory and its numpy
include directory. Generating interfaces against them fails unless those paths point at this
venv's interpreter. Idempotent: files already rewritten contain no build-host path.

Usage: fix_wheel_cmake.py PREFIX   (the venv root that holds share/**.cmake)
"""

import pathlib
import sys
import sysconfig

import numpy

BUILD_HOST = '/opt/python/cp311-cp311'


def replacements() -> list[tuple[str, str]]:
    """Return (old, new) pairs, most specific first."""
    return [
        (f'{BUILD_HOST}/lib/python3.11/site-packages/numpy/_core/include', numpy.get_include()),
        (f'{BUILD_HOST}/include/python3.11', sysconfig.get_paths()['include']),
    ]


def main() -> int:
    """Rewrite every matching file under PREFIX/share and print how many changed."""
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    share = pathlib.Path(sys.argv[1]) / 'share'
    if not share.is_dir():
        print(f'fix_wheel_cmake: no share/ directory under {sys.argv[1]!r}', file=sys.stderr)
        return 1
    changed = 0
    for path in share.rglob('*.cmake'):
        text = path.read_text()
        if BUILD_HOST not in text:
            continue
        new = text
        for old, repl in replacements():
            new = new.replace(old, repl)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f'fix_wheel_cmake: rewrote {changed} CMake file(s) under {share}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
