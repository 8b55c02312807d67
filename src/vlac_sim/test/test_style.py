"""Style gate for vlac_sim (ruff, ROS profile from the repository's ruff.toml)."""

import pathlib

from vlac_testing.lint import check_style


def test_style() -> None:
    """The package passes the one linter of the project."""
    check_style(pathlib.Path(__file__).resolve().parents[1])
