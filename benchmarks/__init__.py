"""Benchmarks: how fast each DR path is, against its physical limit and the obvious alternative, in one run.

`python -m benchmarks [--quick] [--out DIR] [--rows 1,3] [--profile]` prints one table and writes JSON
(see docs/BENCHMARKS.md). Every figure is a ratio to a baseline measured in the same run; nothing here
asserts a speed.
"""
