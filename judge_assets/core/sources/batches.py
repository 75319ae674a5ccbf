"""Sources of judgments: where annotation batches come from, how they load, how they are checked.

Every source is read through ``datasets.load_dataset``:

- ``bundled:mt_bench`` — the MT-Bench human judgments shipped in ``judge_assets/data``
  (two batches: ``mt_bench-human`` and ``mt_bench-gpt4_pair``);
- a local file (``.parquet``, ``.jsonl``, ``.json``, ``.csv``) — one batch, loaded with the
  ``parquet`` / ``json`` / ``csv`` builder, its batch id derived from the file's content hash;
- a local folder — one such file batch per supported file directly in it, in name order (so the
  files may have different columns; sub-folders and hidden files are not read);
- a Hugging Face dataset id (``owner/name``) — one batch per split.

Two input schemas are recognised from the columns (see :data:`SCHEMAS`). A batch that does not
fit raises :class:`JudgmentInputError` naming the file, the row (1-based, as ``source_row``) and
the column; nothing is written before a batch has passed :func:`validate_batch`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from judge_assets.config import BUNDLED_DATA_DIR, BUNDLED_SOURCE
from judge_assets.core.db import quote_ident, quote_literal, table_columns, table_exists, transaction
from judge_assets.core.keys import pairwise_vote_key_sql
from judge_assets.core.labels import WINNER_TO_LABEL

FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}

#: required and optional columns of each input schema
SCHEMAS: dict[str, dict[str, tuple[str, ...]]] = {
    "pairwise": {
        "required": ("question_id", "model_a", "model_b", "winner", "judge"),
        "optional": ("turn", "conversation_a", "conversation_b", "category"),
    },
    "generic": {
        "required": ("item_id", "annotator", "label"),
        "optional": ("category", "prompt", "response", "response_a", "response_b", "reference", "criterion"),
    },
}

RAW_TABLE = "raw_judgments"
BATCH_TABLE = "annotation_batches"
MAX_REPORTED_ROWS = 5

#: What a batch of each schema holds, as refusals name it.
SCHEMA_CONTENTS = {
    "pairwise": "pairwise votes (A/B/tie)",
    "generic": "labels in the generic schema (item_id, annotator, label)",
}


class JudgmentInputError(ValueError):
    """Input that cannot become judgments; the message names file, row and column."""

    def __init__(self, source: str, problem: str, *, row: int | None = None, column: str | None = None):
        self.source, self.problem, self.row, self.column = source, problem, row, column
        where = [source]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {problem}")


@dataclass(frozen=True)
class Batch:
    """One annotation batch: a dynamic partition of ``raw_judgments``.

    ``kind`` is ``bundled`` | ``file`` | ``hf``; ``location`` the file path (bundled: the file name
    inside the package's data folder) or Hugging Face dataset id;
    ``split`` the dataset split (HF, bundled) or empty.
    """

    batch_id: str
    kind: str
    location: str
    split: str = ""

    @property
    def label(self) -> str:
        """How error messages and the ``source`` column name this batch."""
        if self.kind == "bundled":
            return f"{BUNDLED_SOURCE}/{self.location}"
        return f"{self.location}[{self.split}]" if self.kind == "hf" else self.location

    @property
    def path(self) -> Path:
        """The file of a ``bundled`` or ``file`` batch."""
        return BUNDLED_DATA_DIR / self.location if self.kind == "bundled" else Path(self.location)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_batch(path: str | Path) -> Batch:
    """The batch of one local file; its id is the file stem plus 12 hex of its content hash.

    The hash part identifies the content: the ingest gate compares it, so the same bytes under
    another name are recognised as already ingested."""
    path = Path(path).resolve()
    if not path.is_file():
        raise JudgmentInputError(str(path), "no such file")
    if path.suffix.lower() not in FILE_BUILDERS:
        raise JudgmentInputError(str(path), f"unsupported file type {path.suffix!r}; use one of {sorted(FILE_BUILDERS)}")
    return Batch(batch_id=f"{path.stem}-{file_sha256(path)[:12]}", kind="file", location=str(path))


def source_batches(source: str, splits: tuple[str, ...] = ()) -> list[Batch]:
    """The batches a configured source (``JUDGE_SOURCE``) consists of; ``splits`` select splits of
    a Hugging Face dataset (all when empty)."""
    if source == BUNDLED_SOURCE:
        return [
            Batch(f"mt_bench-{name}", "bundled", f"{name}.parquet", name)
            for name in ("human", "gpt4_pair")
        ]
    path = Path(source).expanduser()
    if path.is_file():
        return [file_batch(path)]
    if path.is_dir():
        return folder_batches(path, splits)
    if source.startswith((".", "/", "~")) or Path(source).suffix.lower() in FILE_BUILDERS:
        raise JudgmentInputError(source, "no such file or folder")
    if not splits:
        import datasets

        try:
            splits = tuple(datasets.get_dataset_split_names(source))
        except Exception as exc:  # noqa: BLE001 - any loader failure is an input problem here
            raise JudgmentInputError(source, f"cannot list the dataset's splits: {exc}") from exc
    name = source.rstrip("/").split("/")[-1]
    return [Batch(f"{name}-{split}", "hf", source, split) for split in splits]


def folder_batches(folder: Path, splits: tuple[str, ...] = ()) -> list[Batch]:
    """One :func:`file_batch` per supported, non-hidden file directly in ``folder``, in name order.

    Each file loads on its own, so the files may have different columns. A folder without such
    files, or ``splits`` (a Hugging Face notion), is a :class:`JudgmentInputError`."""
    folder = folder.resolve()
    if splits:
        raise JudgmentInputError(
            str(folder), f"splits ({', '.join(splits)}) apply to Hugging Face dataset ids; a folder gives one batch per file: unset JUDGE_SOURCE_SPLIT"
        )
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in FILE_BUILDERS
    )
    if not files:
        raise JudgmentInputError(
            str(folder), f"no {', '.join(sorted(FILE_BUILDERS))} files in this folder (sub-folders are not read)"
        )
    return [file_batch(p) for p in files]


def load_batch(batch: Batch) -> pa.Table:
    """Read a batch through ``datasets.load_dataset`` as an Arrow table, rows in file order."""
    import datasets

    datasets.disable_progress_bars()
    if batch.kind == "file":
        _check_text_file(Path(batch.location))
    try:
        if batch.kind in ("bundled", "file"):
            builder = FILE_BUILDERS[batch.path.suffix.lower()]
            ds = datasets.load_dataset(builder, data_files={"data": str(batch.path)}, split="data")
        else:
            ds = datasets.load_dataset(batch.location, split=batch.split)
    except Exception as exc:  # noqa: BLE001 - surface any parser error with the file's name
        if "corresponds to no data" in str(exc):  # datasets' words for a CSV holding only a header
            raise JudgmentInputError(batch.label, "contains no rows (only a header?)") from exc
        raise JudgmentInputError(batch.label, f"cannot be read: {type(exc).__name__}: {_first_line(exc)}") from exc
    table = ds.data.table
    if table.num_rows == 0:
        raise JudgmentInputError(batch.label, "contains no rows")
    return table


def _first_line(exc: BaseException) -> str:
    cause = exc
    while cause.__cause__ is not None and not str(cause).strip():
        cause = cause.__cause__
    text = str(cause).strip().splitlines()
    return text[0] if text else repr(cause)


def _check_text_file(path: Path) -> None:
    """Text formats must be UTF-8 and non-empty; name the first bad line."""
    if path.stat().st_size == 0:
        raise JudgmentInputError(str(path), "the file is empty")
    if FILE_BUILDERS[path.suffix.lower()] == "parquet":
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise JudgmentInputError(
                    str(path), f"line {number} is not valid UTF-8 (byte {exc.start}): save the file as UTF-8"
                ) from exc


def detect_schema(columns: list[str], source: str) -> str:
    """``pairwise`` or ``generic`` from the column names, else an error listing what is missing."""
    present = set(columns)
    missing = {name: [c for c in spec["required"] if c not in present] for name, spec in SCHEMAS.items()}
    for name, gaps in missing.items():
        if not gaps:
            return name
    closest = min(missing, key=lambda n: len(missing[n]))
    return _raise_missing(source, closest, missing[closest], columns)


def _raise_missing(source: str, schema: str, gaps: list[str], columns: list[str]) -> str:
    raise JudgmentInputError(
        source,
        f"missing required column(s) {', '.join(map(repr, gaps))} for the {schema} schema "
        f"(required: {', '.join(SCHEMAS[schema]['required'])}; found: {', '.join(columns)})",
        column=gaps[0],
    )


def stored_schemas(con: duckdb.DuckDBPyConnection, *, except_batch: str | None = None) -> frozenset[str]:
    """The schemas of the batches in ``annotation_batches`` (loaded, or accepted by the gate), other
    than ``except_batch``; empty before the first one."""
    if not table_exists(con, BATCH_TABLE):
        return frozenset()
    rows = con.execute(
        f"SELECT DISTINCT schema FROM {BATCH_TABLE} WHERE schema IS NOT NULL AND batch_id IS DISTINCT FROM ?", [except_batch]
    ).fetchall()
    return frozenset(r[0] for r in rows)


def check_schema_fits(schema: str, stored: frozenset[str], source: str) -> None:
    """A database holds one input schema: refuse a batch of another one (one line, no row)."""
    if stored and schema not in stored:
        held = " and ".join(SCHEMA_CONTENTS[s] for s in sorted(stored))
        raise JudgmentInputError(
            source, f"the database holds {held}; this file holds {SCHEMA_CONTENTS[schema]}: use a separate JUDGE_DB for it"
        )


def validate_batch(
    table: pa.Table, source: str, classes: tuple[str, ...] | None = None, *, allow_duplicates: bool = False
) -> str:
    """Check a loaded batch; returns its schema name or raises :class:`JudgmentInputError`.

    Checks, each reported with the first offending row (1-based) and the count of others:
    required columns present; no NULL/empty required value; integer ``question_id``/``turn``
    (turn ≥ 1); ``winner`` among the MT-Bench values; ``model_a`` ≠ ``model_b``; generic labels in the
    declared class set (when ``classes`` is given); one vote per (item, annotator) inside the batch,
    unless ``allow_duplicates`` (the configured source, e.g. MT-Bench itself, which holds one repeated
    vote: ``judgments`` then keeps the last one and counts the others).
    """
    schema = detect_schema(table.column_names, source)
    con = duckdb.connect()
    con.register("batch_arrow", table)
    con.execute("CREATE TEMP TABLE b AS SELECT row_number() OVER () AS source_row, * FROM batch_arrow")
    checks: list[tuple[str, str, str]] = []  # (column, problem, SQL predicate of a bad row)
    for column in SCHEMAS[schema]["required"]:
        q = quote_ident(column)
        checks.append((column, "is empty", f"{q} IS NULL OR trim(CAST({q} AS VARCHAR)) = ''"))
    if schema == "pairwise":
        winners = ", ".join(map(quote_literal, WINNER_TO_LABEL))
        checks += [
            ("question_id", "is not an integer", "TRY_CAST(question_id AS BIGINT) IS NULL OR TRY_CAST(question_id AS DOUBLE) <> TRY_CAST(question_id AS BIGINT)"),
            ("winner", f"is not one of {', '.join(WINNER_TO_LABEL)}", f"CAST(winner AS VARCHAR) NOT IN ({winners})"),
            ("model_b", "names the same model as model_a", "model_a = model_b"),
        ]
        if "turn" in table.column_names:
            checks.append(("turn", "is not an integer ≥ 1", "turn IS NOT NULL AND (TRY_CAST(turn AS BIGINT) IS NULL OR TRY_CAST(turn AS BIGINT) < 1 OR TRY_CAST(turn AS DOUBLE) <> TRY_CAST(turn AS BIGINT))"))
        for column in ("conversation_a", "conversation_b"):
            if column in table.column_names and not _is_message_list(table.schema.field(column).type):
                raise JudgmentInputError(source, "must be a list of {role, content} messages", column=column, row=1)
        key = pairwise_vote_key_sql("turn" in table.column_names)
    else:
        if classes:
            labels = ", ".join(map(quote_literal, classes))
            checks.append(("label", f"is not in the class set {', '.join(classes)}", f"CAST(label AS VARCHAR) NOT IN ({labels})"))
        key = "item_id, annotator"
    for column, problem, predicate in checks:
        bad = con.execute(f"SELECT source_row, CAST({quote_ident(column)} AS VARCHAR) FROM b WHERE {predicate} ORDER BY source_row").fetchall()
        if bad:
            row, value = bad[0]
            more = f" ({len(bad) - 1} more row(s) like it: {', '.join(str(r) for r, _ in bad[1:MAX_REPORTED_ROWS + 1])}{'…' if len(bad) > MAX_REPORTED_ROWS + 1 else ''})" if len(bad) > 1 else ""
            shown = "" if value is None else f" (value {value!r})"
            raise JudgmentInputError(source, f"{problem}{shown}{more}", row=row, column=column)
    dup = None if allow_duplicates else con.execute(
        f"SELECT min(source_row), max(source_row), count(*) FROM b GROUP BY {key} HAVING count(*) > 1 ORDER BY 1 LIMIT 1"
    ).fetchone()
    if dup:
        raise JudgmentInputError(
            source,
            f"duplicate vote: the same annotator judges the same item again (first at row {dup[0]}); a file must hold one vote per annotator and item",
            row=dup[1],
            column="judge" if schema == "pairwise" else "annotator",
        )
    return schema


def _is_message_list(arrow_type: pa.DataType) -> bool:
    if not (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)):
        return False
    value = arrow_type.value_type
    return pa.types.is_struct(value) and {"role", "content"} <= {value.field(i).name for i in range(value.num_fields)}


def write_batch(con: duckdb.DuckDBPyConnection, batch: Batch, table: pa.Table, schema: str) -> int:
    """Replace partition ``batch.batch_id`` of ``raw_judgments`` with ``table``, atomically.

    Rows are stored exactly as read plus ``batch_id``, ``source``, ``source_row`` (1-based row in
    the batch) and ``ingested_at``. Columns new to the table are added; a type clash fails the
    whole write with the column named, as does a schema other than the stored batches'
    (:func:`check_schema_fits`). The batch is recorded in ``annotation_batches``.
    """
    con.register("batch_arrow", table)
    try:
        with transaction(con):
            check_schema_fits(schema, stored_schemas(con, except_batch=batch.batch_id), batch.label)
            con.execute(
                "CREATE OR REPLACE TEMP TABLE batch_rows AS SELECT *, ? AS batch_id, ? AS source, "
                "row_number() OVER () AS source_row, now()::TIMESTAMP AS ingested_at FROM batch_arrow",
                [batch.batch_id, batch.label],
            )
            new_columns = table_columns(con, "batch_rows")
            con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} AS SELECT * FROM batch_rows LIMIT 0")
            existing = table_columns(con, RAW_TABLE)
            for name, dtype in new_columns.items():
                if name not in existing:
                    con.execute(f"ALTER TABLE {RAW_TABLE} ADD COLUMN {quote_ident(name)} {dtype}")
            con.execute(f"DELETE FROM {RAW_TABLE} WHERE batch_id = ?", [batch.batch_id])
            try:
                con.execute(f"INSERT INTO {RAW_TABLE} BY NAME SELECT * FROM batch_rows")
            except duckdb.Error as exc:
                clash = [n for n, d in new_columns.items() if n in existing and existing[n] != d]
                raise JudgmentInputError(
                    batch.label,
                    f"column type does not match the stored data ({_first_line(exc)})",
                    column=clash[0] if clash else None,
                ) from exc
            con.execute("DROP TABLE batch_rows")
            record_batch(con, batch, schema, table.num_rows)
    finally:
        con.unregister("batch_arrow")
    return table.num_rows


def record_batch(con: duckdb.DuckDBPyConnection, batch: Batch, schema: str | None = None, n_rows: int | None = None) -> None:
    """Upsert a batch into ``annotation_batches`` (the registry the partitions are built from)."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {BATCH_TABLE} (batch_id VARCHAR PRIMARY KEY, kind VARCHAR, location VARCHAR, "
        "split VARCHAR, schema VARCHAR, n_rows BIGINT, registered_at TIMESTAMP, loaded_at TIMESTAMP)"
    )
    con.execute(
        f"INSERT INTO {BATCH_TABLE} VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP, CASE WHEN ? IS NULL THEN NULL ELSE now()::TIMESTAMP END) "
        "ON CONFLICT (batch_id) DO UPDATE SET kind = excluded.kind, location = excluded.location, split = excluded.split, "
        "schema = coalesce(excluded.schema, schema), n_rows = coalesce(excluded.n_rows, n_rows), "
        "loaded_at = coalesce(excluded.loaded_at, loaded_at)",
        [batch.batch_id, batch.kind, batch.location, batch.split, schema, n_rows, n_rows],
    )


def registered_batch(con: duckdb.DuckDBPyConnection, batch_id: str) -> Batch:
    """The batch registered under ``batch_id``; a :class:`JudgmentInputError` saying how batches
    are added if it never was (e.g. a partition key typed by hand, with no file behind it)."""
    row = None
    if table_exists(con, BATCH_TABLE):
        row = con.execute(f"SELECT kind, location, split FROM {BATCH_TABLE} WHERE batch_id = ?", [batch_id]).fetchone()
    if row is None:
        raise JudgmentInputError(
            f"annotation batch {batch_id!r}",
            f"no such batch in {BATCH_TABLE}, so there is no file to load; batches are added by "
            "`judge-assets run` (the configured JUDGE_SOURCE), `judge-assets ingest FILE` or a file in the inbox",
        )
    return Batch(batch_id, row[0], row[1], row[2] or "")
