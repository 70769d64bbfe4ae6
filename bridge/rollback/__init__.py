"""Emergency rollback: export the auth state to Baileys folders, check them in Baileys, import them back."""

from __future__ import annotations

from bridge.rollback.export import InvalidRowsError, export_database, export_from_cache
from bridge.rollback.folder import FolderInvalidError, validate_company_id
from bridge.rollback.importer import ImportResult, import_company_folder, import_export_dir
from bridge.rollback.manifest import CompanyManifest, CompanySnapshot, RunManifest
from bridge.rollback.writer import ExportVerificationError

__all__ = [
    "CompanyManifest",
    "CompanySnapshot",
    "ExportVerificationError",
    "FolderInvalidError",
    "ImportResult",
    "InvalidRowsError",
    "RunManifest",
    "export_database",
    "export_from_cache",
    "import_company_folder",
    "import_export_dir",
    "validate_company_id",
]
