"""The suite's environment, free of pytest: PostgreSQL clusters, Toxiproxy and two S3 regions (native, docker
or external), the run registry that purges what a crashed run left, and the suite's configuration."""

from __future__ import annotations
