"""Benchmarks of every node and the simulated-arm demo (they may import anything)."""
