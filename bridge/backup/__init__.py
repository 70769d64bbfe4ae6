"""Encrypted two-region backups of the auth store: full dumps, PITR, validation, reconcile, retention.

Entry points: create.create_backup; validate.validate_backup and restore_backup;
basebackup.create_base_backup; pitr.restore_to_time; wal.ship_wal and push_wal_file;
replicate.reconcile; retention.apply_retention; and the CLI in cli.py (`python -m bridge.backup`,
or `python -m bridge backup` through cli.add_backup_commands).
"""

from __future__ import annotations
