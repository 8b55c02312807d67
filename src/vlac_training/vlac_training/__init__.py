"""Offline tools on recorded episodes: datasets, training, evaluation, export (no robot needed).

Each tool is a console script whose options come from its config dataclass. They run for
minutes, so no node imports this package.
"""
