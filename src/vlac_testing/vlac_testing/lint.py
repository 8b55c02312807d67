"""The style gate as a test: each package's ``test/test_style.py`` calls ``check_style``.

One linter (ruff) with the ROS profile configured in the repository's ruff.toml (99 columns,
single quotes, PEP 257 docstrings). ``colcon test`` and ``make test`` both run it.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys


def check_style(package_dir: pathlib.Path) -> None:
    """Run ruff over ``package_dir``; fail with ruff's report if it finds anything."""
    cmd = [sys.executable, '-m', 'ruff', 'check', '--no-cache', str(package_dir)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f'style check failed:\n{result.stdout}{result.stderr}'
