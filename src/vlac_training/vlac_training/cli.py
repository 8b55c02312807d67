"""Command lines generated from config dataclasses (tyro), as cleanrl's scripts have them.

Each tool declares one dataclass of its arguments whose fields (and nested config dataclasses)
carry their help in docstrings or ``doc`` metadata; ``run`` parses ``argv`` into it and calls
the tool. Nested configs marked ``Flat`` give unprefixed options (``--epochs``, not
``--config.epochs``). Errors the tool raises for bad input (ValueError, FileNotFoundError)
print one line and exit with status 2, as a bad option does.
"""

from __future__ import annotations

from dataclasses import dataclass
import sys
from typing import Callable, Sequence, TypeVar

import tyro

T = TypeVar('T')
Flat = tyro.conf.OmitArgPrefixes
"""Marker for a nested config whose options carry no prefix: ``Annotated[Config, Flat]``."""
Positional = tyro.conf.Positional
"""Marker for a positional argument: ``Annotated[str, Positional]``."""


@dataclass
class BagsToModel:
    """The arguments every training tool shares: recorded bags in, a model folder out."""

    data: tuple[str, ...]
    """bag folders or folders searched recursively for bags"""
    out: str
    """model directory to write"""
    task: str | None = None
    """task sentence for every bag (overrides the recorded one)"""
    progress: bool = True
    """show a progress bar"""


def parse(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None
          ) -> T:
    """The arguments dataclass parsed from ``argv`` (default: sys.argv[1:])."""
    return tyro.cli(cls, args=argv, description=description)


def run(prog: str, cls: type[T], tool: Callable[[T], int | None],
        argv: Sequence[str] | None = None, description: str | None = None) -> int:
    """Parse ``argv`` into ``cls`` and run ``tool``; its exit status, 2 for bad input."""
    try:
        args = parse(cls, argv, description)
    except SystemExit as exit_:  # --help (0) or a bad option (2), already printed
        return int(exit_.code or 0)
    try:
        return int(tool(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f'{prog}: {err}', file=sys.stderr)
        return 2
