"""Evidence layer: Allure wiring, redaction, plots, DR summary, HTML report and evidence packs."""

from __future__ import annotations
