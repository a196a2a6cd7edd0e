"""The model registry read straight from its SQLite tables, so a scorer need not import MLflow.

Only reads, on a read-only connection, at the moment of scoring: an alias resolved here is the
alias as it is in the store now, never a copy made earlier. Whatever this module cannot answer
exactly the way MLflow would (another kind of store, workspaces turned on, a model stored
elsewhere than on this machine, a name or alias the tables do not hold, a locked or older
database) it answers with None, and the caller asks MLflow instead.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipeline.tracking.store import tracking_uri

DELETED = "Deleted_Internal"  # MLflow's stage for a deleted version (kept in the table)
DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class Resolved:
    """A registered model version: where its files are, its number, the run that logged it."""

    directory: Path
    version: str
    run_id: str


def registry_database() -> Path | None:
    """The SQLite file behind the model registry, or None when the registry is not a local SQLite file."""
    if os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("1", "true", "yes"):
        return None
    uri = os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(unquote(uri.removeprefix("sqlite:///").split("?")[0]))
    return path if path.is_file() else None


def _versions(name: str, where: str = "", params: tuple = (), alias: str | None = None) -> list[tuple] | None:
    """(version, storage location, source, run id) of the live versions of `name` matching `where`."""
    database = registry_database()
    if database is None:
        return None
    try:
        with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=5) as connection:
            columns = {row[1] for row in connection.execute("PRAGMA table_info(model_versions)")}
            sql = "SELECT mv.version, mv.storage_location, mv.source, mv.run_id FROM model_versions AS mv"
            conditions, values = ["mv.name = ?", f"mv.current_stage != '{DELETED}'"], [name]
            if alias is not None:
                sql += " JOIN registered_model_aliases AS a ON a.name = mv.name AND a.version = mv.version"
                conditions.append("a.alias = ?")
                values.append(alias)
            if "workspace" in columns:  # one workspace, MLflow's default, unless workspaces are on
                conditions.append("mv.workspace = ?")
                values.append(DEFAULT_WORKSPACE)
                if alias is not None:
                    conditions.append("a.workspace = mv.workspace")
            sql += " WHERE " + " AND ".join(conditions) + where
            return connection.execute(sql, (*values, *params)).fetchall()
    except sqlite3.Error:
        return None


def _local_directory(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme not in ("file", "") or parsed.netloc not in ("", "localhost"):
        return None
    path = Path(unquote(parsed.path))
    return path if path.is_absolute() and (path / "MLmodel").is_file() else None


def resolve(uri: str) -> Resolved | None:
    """`models:/NAME@alias`, `models:/NAME/N` or `models:/NAME/latest` as a local model directory."""
    if not uri.startswith("models:/"):
        return None
    name, _, alias = uri.removeprefix("models:/").partition("@")
    if alias:
        return _newest(name) if alias.lower() == "latest" else _one(_versions(name, alias=alias))
    name, _, ref = name.partition("/")
    if ref.isdigit():
        return _one(_versions(name, " AND mv.version = ?", (int(ref),)))
    return _newest(name) if ref == "latest" else None


def _newest(name: str) -> Resolved | None:
    return _one(_versions(name, " ORDER BY mv.version DESC LIMIT 1"))


def _one(rows: list[tuple] | None) -> Resolved | None:
    if not rows or len(rows) != 1:
        return None
    version, storage, source, run_id = rows[0]
    directory = _local_directory(storage or source or "")
    return None if directory is None else Resolved(directory, str(version), str(run_id or ""))


def version_of_run(name: str, run_id: str) -> str | None:
    """The newest registered version of `name` logged by `run_id`; "" when none; None when unknown here."""
    rows = _versions(name, " AND mv.run_id = ? ORDER BY mv.version DESC LIMIT 1", (run_id,))
    if rows is None:
        return None
    return str(rows[0][0]) if rows else ""
