"""The strict gate for annotation files added after the first build.

A new file must load, be in the input schema of the stored batches (a database holds one), hold
one vote per (item, annotator), use labels of the stored class set and values castable to the
types already stored in ``raw_judgments`` (:func:`check_file`). A refused file is moved aside by :func:`quarantine` (with a ``.error.txt``
naming file, row and column), recorded in ``rejected_files`` (:func:`record_rejection`) and nothing
else stored changes; the record is resolved once a file of that name passes the gate or the
refused file leaves the rejected folder (:func:`resolve_rejections`). An accepted file is copied by
:func:`stage_file` to ``<batches_dir>/<batch_id><suffix>`` and registered under that path, so the
inbox can be cleaned and the batch re-materialized later.

Nothing here imports Dagster.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from judge_assets.core.db import quote_ident, table_columns, table_exists
from judge_assets.core.sources.batches import (
    BATCH_TABLE,
    RAW_TABLE,
    Batch,
    JudgmentInputError,
    check_schema_fits,
    detect_schema,
    file_batch,
    load_batch,
    record_batch,
    registered_batch,
    stored_schemas,
    validate_batch,
)
from judge_assets.core.labels import PAIRWISE_LABELS, declared_label_set, stored_label_set

REJECTED_DIR = "rejected"
REJECTED_TABLE = "rejected_files"
#: columns of the generated ``raw_judgments`` rows, never part of an input file
GENERATED_COLUMNS = ("batch_id", "source", "source_row", "ingested_at")


def stored_column_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """``raw_judgments`` column → DuckDB type (empty before the first batch), generated columns excluded."""
    if not table_exists(con, RAW_TABLE):
        return {}
    return {
        name: dtype
        for name, dtype in table_columns(con, RAW_TABLE).items()
        if name not in GENERATED_COLUMNS
    }


def check_file(
    path: str | Path,
    classes: tuple[str, ...] | None = None,
    column_types: dict[str, str] | None = None,
    schemas: frozenset[str] = frozenset(),
) -> tuple[Batch, str]:
    """Validate one annotation file strictly; returns its batch (id from the content hash) and schema.

    Parameters
    ----------
    path : a ``.parquet``, ``.jsonl``, ``.json`` or ``.csv`` file in either input schema.
    classes : the stored class set (``label_set``), or None before the first build. Generic labels
        must lie in it; a pairwise file needs it to be ``A, B, tie``.
    column_types : ``raw_judgments`` column → DuckDB type already stored (:func:`stored_column_types`);
        every non-NULL value of such a column must cast to that type.
    schemas : the schemas of the stored batches (:func:`stored_schemas`); the file must be in one
        of them (checked first: a file of the other schema gets one line saying so).

    Raises :class:`JudgmentInputError` (file, row, column) for: unsupported or missing file, empty
    file, text that is not UTF-8, unparseable content, no rows, missing required column, a schema
    other than the stored one, empty value, wrong type, unknown winner or label, duplicate votes
    inside the file.
    """
    batch = file_batch(path)
    table = load_batch(batch)
    check_schema_fits(detect_schema(table.column_names, batch.label), schemas, batch.label)
    schema = validate_batch(table, batch.label, classes, allow_duplicates=False)
    if schema == "pairwise" and classes and tuple(classes) != PAIRWISE_LABELS:
        raise JudgmentInputError(
            batch.label,
            f"pairwise votes (A, B, tie) do not fit the stored class set {', '.join(classes)}",
            row=1,
            column="winner",
        )
    if column_types:
        _check_types(table, batch.label, column_types)
    return batch, schema


def _check_types(table, source: str, column_types: dict[str, str]) -> None:
    """Every non-NULL value of a column already stored must cast to the stored type."""
    con = duckdb.connect()
    try:
        con.register("batch_arrow", table)
        con.execute("CREATE TEMP TABLE b AS SELECT row_number() OVER () AS source_row, * FROM batch_arrow")
        for column in table.column_names:
            if column not in column_types:
                continue
            q, dtype = quote_ident(column), column_types[column]
            try:
                bad = con.execute(
                    f"SELECT source_row, CAST({q} AS VARCHAR) FROM b WHERE {q} IS NOT NULL "
                    f"AND TRY_CAST({q} AS {dtype}) IS NULL ORDER BY source_row LIMIT 1"
                ).fetchone()
            except duckdb.Error:
                bad = (1, None)
            if bad:
                found = table.schema.field(column).type
                shown = "" if bad[1] is None else f" (value {bad[1][:80]!r})"
                raise JudgmentInputError(
                    source, f"wrong type: stored as {dtype}, this file has {found}{shown}", row=bad[0], column=column
                )
    finally:
        con.close()


def quarantine(path: str | Path, error: BaseException | str, rejected_dir: str | Path) -> Path:
    """Move a refused file into ``rejected_dir`` with ``<name>.error.txt`` beside it; returns the new path.

    A file of the same name already there is kept: the new one gets a timestamp suffix.
    """
    path, rejected_dir = Path(path), Path(rejected_dir)
    rejected_dir.mkdir(parents=True, exist_ok=True)
    target = rejected_dir / path.name
    if target.exists():
        target = rejected_dir / f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns() % 10**6}{path.suffix}"
    shutil.move(str(path), target)
    Path(f"{target}.error.txt").write_text(f"{error}\n", encoding="utf-8")
    return target


@dataclass(frozen=True)
class Rejection:
    """A refused file still waiting in the rejected folder (a row of ``rejected_files``)."""

    file: str
    reason: str
    rejected_at: datetime
    moved_to: str


def record_rejection(con: duckdb.DuckDBPyConnection, path: Path, moved_to: Path, reason: str) -> None:
    """Add a refused file to ``rejected_files``: its name and path, where it was moved, why, when; unresolved."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {REJECTED_TABLE} (file VARCHAR, original_path VARCHAR, moved_to VARCHAR, "
        "reason VARCHAR, rejected_at TIMESTAMP, resolved BOOLEAN, resolved_at TIMESTAMP, resolution VARCHAR)"
    )
    con.execute(
        f"INSERT INTO {REJECTED_TABLE} VALUES (?, ?, ?, ?, now()::TIMESTAMP, false, NULL, NULL)",
        [path.name, str(path), str(moved_to), reason],
    )


def resolve_rejections(con: duckdb.DuckDBPyConnection, passed: Mapping[str, str] | None = None) -> None:
    """Mark rejections resolved: those whose file name is in ``passed`` (file name → what the gate did
    with a file of that name since, e.g. ``accepted as batch b1``) and those whose refused file is
    no longer in the rejected folder (fixed and moved back, or deleted)."""
    if not table_exists(con, REJECTED_TABLE):
        return
    open_rows = con.execute(f"SELECT rowid, file, moved_to FROM {REJECTED_TABLE} WHERE NOT resolved").fetchall()
    for rowid, name, moved_to in open_rows:
        if passed and name in passed:
            resolution = passed[name]
        elif not Path(moved_to).exists():
            resolution = f"removed from {REJECTED_DIR}/"
        else:
            continue
        con.execute(
            f"UPDATE {REJECTED_TABLE} SET resolved = true, resolved_at = now()::TIMESTAMP, resolution = ? WHERE rowid = ?",
            [resolution, rowid],
        )


def unresolved_rejections(con: duckdb.DuckDBPyConnection) -> list[Rejection]:
    """The refused files not resolved yet (after :func:`resolve_rejections`), oldest first."""
    resolve_rejections(con)
    if not table_exists(con, REJECTED_TABLE):
        return []
    rows = con.execute(
        f"SELECT file, reason, rejected_at, moved_to FROM {REJECTED_TABLE} WHERE NOT resolved ORDER BY rejected_at, rowid"
    ).fetchall()
    return [Rejection(*row) for row in rows]


def batches_dir(db_path: str | Path) -> Path:
    """Where accepted files are kept: ``batches/`` beside the database file (default ``data/batches``)."""
    return Path(db_path).resolve().parent / "batches"


def stage_file(path: str | Path, batches_dir: str | Path) -> Batch:
    """Copy an accepted file to ``<batches_dir>/<batch_id><suffix>`` and return the batch at that path.

    The batch id is the original file's (its stem + content hash), so the same bytes under any name
    map to one batch. The copy is atomic (temp file + rename); an existing copy is reused.
    """
    original = file_batch(path)
    batches_dir = Path(batches_dir)
    batches_dir.mkdir(parents=True, exist_ok=True)
    target = batches_dir / f"{original.batch_id}{Path(original.location).suffix.lower()}"
    if not target.exists():
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.copyfile(original.location, partial)
        os.replace(partial, target)
    return Batch(original.batch_id, "file", str(target.resolve()))


def content_key(batch_id: str) -> str:
    """The part of a file batch id (:func:`file_batch`: ``<stem>-<12 hex>``) that comes from the bytes."""
    return batch_id.rsplit("-", 1)[-1]


def _batch_with_content(con: duckdb.DuckDBPyConnection, batch_id: str, loaded: bool) -> str | None:
    if not table_exists(con, BATCH_TABLE):
        return None
    row = con.execute(
        f"SELECT min(batch_id) FROM {BATCH_TABLE} WHERE kind = 'file' AND (loaded_at IS NOT NULL) = ? AND batch_id LIKE ?",
        [loaded, f"%-{content_key(batch_id)}"],
    ).fetchone()
    return row[0]


def ingested_batch(con: duckdb.DuckDBPyConnection, batch_id: str) -> str | None:
    """The id of a loaded file batch with the same content as ``batch_id`` (any file name), else None."""
    return _batch_with_content(con, batch_id, loaded=True)


def registered_unloaded_batch(con: duckdb.DuckDBPyConnection, batch_id: str) -> str | None:
    """The id of a registered but never loaded file batch with the same content as ``batch_id``, else None."""
    return _batch_with_content(con, batch_id, loaded=False)


@dataclass(frozen=True)
class Admission:
    """What :func:`admit_files` did with one file.

    ``status``: ``accepted`` (staged and registered as ``batch``), ``duplicate`` (the same bytes are
    already a loaded batch, ``batch`` names it, or came earlier in this call), ``pending`` (the same
    bytes are registered but not loaded yet: re-run that batch) or ``refused`` (moved to
    ``moved_to`` with the reason beside it). ``message`` is one line for a person.
    """

    path: Path
    status: str
    message: str
    batch: Batch | None = None
    schema: str | None = None
    moved_to: Path | None = None


def admit_files(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    batches_dir: str | Path,
    rejected_dir: str | Path,
    *,
    declared_labels: tuple[str, ...] = (),
) -> list[Admission]:
    """The ingest workflow for new annotation files, shared by ``judge-assets ingest`` and the inbox sensor.

    For each file in order: the same bytes already loaded (any name) → ``duplicate``; registered
    but never loaded → ``pending``; otherwise :func:`check_file` against the stored schema (that of
    the batches loaded or accepted before, this call's included), class set (``declared_labels``
    before the first build) and column types, then :func:`stage_file` and a row in
    ``annotation_batches`` → ``accepted``. A refused file is moved to ``rejected_dir`` by
    :func:`quarantine` and recorded in ``rejected_files``; nothing else stored changes for it. A
    file that passes (accepted, duplicate or pending) resolves earlier rejections of its name
    (:func:`resolve_rejections`). Registering partitions and materializing is the caller's
    (Dagster's) part.
    """
    stored = stored_label_set(con, missing_ok=True)
    classes = stored.labels if stored else (declared_label_set(tuple(declared_labels)).labels if declared_labels else None)  # 1..8 → 1, …, 8
    types = stored_column_types(con)
    schemas = stored_schemas(con)
    seen: dict[str, str] = {}

    def admit(path: Path) -> Admission:
        nonlocal schemas
        try:
            batch_id = file_batch(path).batch_id
            key = content_key(batch_id)
            if key in seen:
                return Admission(path, "duplicate", f"{path}: same content as {seen[key]} in this call; nothing to do")
            done = ingested_batch(con, batch_id)
            if done:
                return Admission(path, "duplicate", f"{path}: already ingested as batch {done} (same content); nothing to do",
                                 batch=registered_batch(con, done))
            waiting = registered_unloaded_batch(con, batch_id)
            if waiting:
                return Admission(path, "pending", f"{path}: registered as batch {waiting} but not loaded yet; loading it",
                                 batch=registered_batch(con, waiting))
            _, schema = check_file(path, classes, types, schemas)
        except JudgmentInputError as exc:
            moved = quarantine(path, exc, rejected_dir) if path.is_file() else None
            if moved:
                record_rejection(con, path, moved, str(exc))
            where = f"; moved to {moved} (reason in {moved.name}.error.txt)" if moved else ""
            return Admission(path, "refused", f"refused: {exc}{where}; none of its votes were stored", moved_to=moved)
        batch = stage_file(path, batches_dir)
        record_batch(con, batch, schema)
        schemas |= {schema}
        seen[key] = path.name
        return Admission(path, "accepted", f"{path}: accepted as batch {batch.batch_id} ({schema} schema), kept at {batch.location}",
                         batch=batch, schema=schema)

    out: list[Admission] = []
    for path in map(Path, paths):
        admission = admit(path)
        if admission.batch is not None:
            resolve_rejections(con, {path.name: f"a file of that name passed the gate: {admission.status}, batch {admission.batch.batch_id}"})
        out.append(admission)
    return out
