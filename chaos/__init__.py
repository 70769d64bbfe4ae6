"""Fault-injection library: Toxiproxy control, process and data faults, workloads, histories, checkers."""

from __future__ import annotations
