"""Sources of judgments: where annotation batches come from, how they load, how they are checked.

Sources:

- ``bundled:mt_bench`` — the MT-Bench human judgments shipped in ``judge_assets/data``
  (two batches: ``mt_bench-human`` and ``mt_bench-gpt4_pair``);
- a local file (``.parquet``, ``.jsonl``, ``.json``, ``.csv``) — one batch, its batch id derived
  from the file's content hash;
- a local folder — one such file batch per supported file directly in it, in name order (so the
  files may have different columns; sub-folders and hidden files are not read);
- a Hugging Face dataset id (``owner/name``) — one batch per split, read with
  ``datasets.load_dataset`` into an Arrow table.

Local files (bundled ones included) are never copied into Python: :func:`load_batch` returns a
:class:`FileScan`, DuckDB's own reader (``read_parquet`` / ``read_json`` / ``read_csv``) over the
file where it lies. Validation runs as DuckDB queries over that reader, and :func:`write_batch`
streams it straight into ``raw_judgments``, so loading costs a few passes over the file and
memory stays flat at any size.

Two input schemas are recognised from the columns (see :data:`SCHEMAS`). A batch that does not
fit raises :class:`JudgmentInputError` naming the file, the row (1-based, as ``source_row``) and
the column; nothing is written before a batch has passed :func:`validate_batch`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
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
        "optional": ("category", "prompt", "response", "response_a", "response_b", "reference", "criterion", "ground_truth"),
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


#: DuckDB's CSV sniffer may pick only these types (no dates or times: text stays text); it reads the
#: whole file to decide (``sample_size = -1``), so a late odd value makes the column text and
#: validation names its row instead of the reader failing on it.
CSV_TYPES = ("BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR")


def _reader_sql(path: Path) -> str:
    """The DuckDB table function reading ``path`` by its suffix."""
    builder = FILE_BUILDERS[path.suffix.lower()]
    where = quote_literal(str(path))
    if builder == "parquet":
        return f"read_parquet({where})"
    if builder == "csv":
        types = ", ".join(map(quote_literal, CSV_TYPES))
        return f"read_csv({where}, header = true, sample_size = -1, auto_type_candidates = [{types}])"
    return f"read_json({where}, format = 'auto', sample_size = -1)"


@dataclass(frozen=True)
class FileScan:
    """A local file batch as DuckDB reads it, where it lies: nothing of it is held in Python.

    ``label`` names the batch in messages; ``sql`` is the table function reading the file
    (``read_parquet(…)``, ``read_json(…)``, ``read_csv(…)``), usable in any DuckDB connection;
    ``schema`` its columns as Arrow types. It offers what callers of a loaded batch use of a
    ``pyarrow.Table``: ``column_names``, ``schema``, ``num_rows`` (counted by DuckDB on first use),
    ``slice`` (a small Arrow table, for previews) and the Arrow stream protocol, so
    ``con.register(name, scan)`` streams the file in batches.
    """

    label: str
    sql: str
    schema: pa.Schema

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)

    @cached_property
    def num_rows(self) -> int:
        return _scalar(f"SELECT count(*) FROM {self.sql}")

    def slice(self, offset: int = 0, length: int | None = None) -> pa.Table:
        """Rows ``offset …`` (``length`` of them, default all) as an Arrow table, in file order."""
        limit = f" LIMIT {int(length)}" if length is not None else ""
        con = duckdb.connect()
        try:
            return con.sql(f"SELECT * FROM {self.sql}{limit} OFFSET {int(offset)}").to_arrow_table()
        finally:
            con.close()

    def __arrow_c_stream__(self, requested_schema=None):
        return duckdb.connect().sql(f"SELECT * FROM {self.sql}").fetch_arrow_reader().__arrow_c_stream__(requested_schema)


#: What :func:`load_batch` returns: a :class:`FileScan` for local files, an Arrow table for Hub splits.
BatchData = FileScan | pa.Table


def _scalar(sql: str):
    con = duckdb.connect()
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def load_batch(batch: Batch) -> BatchData:
    """Open a batch, rows in file order: a :class:`FileScan` for a bundled or local file (DuckDB
    reads it where it lies), an Arrow table from ``datasets.load_dataset`` for a Hugging Face split.

    Raises :class:`JudgmentInputError` for an empty, non-UTF-8, unparseable or row-less file."""
    if batch.kind in ("bundled", "file"):
        return _scan_file(batch)
    import datasets

    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(batch.location, split=batch.split)
    except Exception as exc:  # noqa: BLE001 - surface any loader error with the dataset's name
        raise JudgmentInputError(batch.label, f"cannot be read: {type(exc).__name__}: {_first_line(exc)}") from exc
    table = ds.data.table
    if table.num_rows == 0:
        raise JudgmentInputError(batch.label, "contains no rows")
    return table


def _scan_file(batch: Batch) -> FileScan:
    path = batch.path
    if batch.kind == "file":
        _check_text_file(path)
    sql = _reader_sql(path)
    con = duckdb.connect()
    try:
        mixed = [name for name, dtype, *_ in con.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall() if dtype == "JSON"]
        if mixed:  # read_json keeps a column of mixed value types as JSON: its values as text (81, 'eighty')
            as_text = ", ".join(f"json_extract_string({quote_ident(c)}, '$') AS {quote_ident(c)}" for c in mixed)
            sql = f"(SELECT * REPLACE ({as_text}) FROM {sql})"
        schema = con.sql(f"SELECT * FROM {sql}").limit(0).to_arrow_table().schema
        empty = con.execute(f"SELECT count(*) = 0 FROM (SELECT 1 FROM {sql} LIMIT 1)").fetchone()[0]
    except duckdb.Error as exc:
        raise JudgmentInputError(batch.label, f"cannot be read: {type(exc).__name__}: {_first_line(exc)}") from exc
    finally:
        con.close()
    if empty:
        only_header = FILE_BUILDERS[path.suffix.lower()] == "csv"
        raise JudgmentInputError(batch.label, "contains no rows (only a header?)" if only_header else "contains no rows")
    return FileScan(batch.label, sql, schema)


def _first_line(exc: BaseException) -> str:
    cause = exc
    while cause.__cause__ is not None and not str(cause).strip():
        cause = cause.__cause__
    text = str(cause).strip().splitlines()
    return text[0] if text else repr(cause)


def _check_text_file(path: Path) -> None:
    """Text formats must be UTF-8 and non-empty; name the first bad line (read in 1 MiB chunks)."""
    if path.stat().st_size == 0:
        raise JudgmentInputError(str(path), "the file is empty")
    if FILE_BUILDERS[path.suffix.lower()] == "parquet":
        return
    line, column, carry = 1, 0, b""  # line and byte offset where ``buf`` starts; an unfinished character
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            buf = carry + chunk
            carry = b""
            try:
                buf.decode("utf-8")
            except UnicodeDecodeError as exc:
                if chunk and exc.end == len(buf) and exc.reason == "unexpected end of data":
                    buf, carry = buf[: exc.start], buf[exc.start :]  # a character split by the chunk boundary
                else:
                    newline = buf.rfind(b"\n", 0, exc.start)
                    byte = exc.start - newline - 1 if newline >= 0 else column + exc.start
                    bad_line = line + buf.count(b"\n", 0, exc.start)
                    raise JudgmentInputError(str(path), f"line {bad_line} is not valid UTF-8 (byte {byte}): save the file as UTF-8") from exc
            if not chunk:
                return
            newlines = buf.count(b"\n")
            line += newlines
            column = len(buf) - buf.rfind(b"\n") - 1 if newlines else column + len(buf)


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


def _rows_sql(con: duckdb.DuckDBPyConnection, table: BatchData) -> str:
    """A FROM item of the batch's rows with their 1-based ``source_row``, in file order. An Arrow
    table is registered in ``con`` as ``batch_arrow``; a :class:`FileScan` is read where it lies."""
    if isinstance(table, FileScan):
        return f"(SELECT row_number() OVER () AS source_row, * FROM {table.sql})"
    con.register("batch_arrow", table)
    return "(SELECT row_number() OVER () AS source_row, * FROM batch_arrow)"


def validate_batch(
    table: BatchData, source: str, classes: tuple[str, ...] | None = None, *, allow_duplicates: bool = False
) -> str:
    """Check a loaded batch; returns its schema name or raises :class:`JudgmentInputError`.

    Checks, each reported with the first offending row (1-based) and the count of others:
    required columns present; no NULL/empty required value; integer ``question_id``/``turn``
    (turn ≥ 1); ``winner`` among the MT-Bench values; ``model_a`` ≠ ``model_b``; generic labels in the
    declared class set (when ``classes`` is given); one vote per (item, annotator) inside the batch,
    unless ``allow_duplicates`` (the configured source, e.g. MT-Bench itself, which holds one repeated
    vote: ``judgments`` then keeps the last one and counts the others).

    The checks are DuckDB queries over the batch (one pass for all value checks, one for duplicates,
    one more to name the rows of a failing check), so a file is never copied into memory.
    """
    schema = detect_schema(table.column_names, source)
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
        # grades per criterion: one grader may grade several criteria of one output
        key = "item_id, annotator" + (", criterion" if "criterion" in table.column_names else "")
    con = duckdb.connect()
    try:
        rows = _rows_sql(con, table)
        counts = con.execute(
            "SELECT " + ", ".join(f"count(*) FILTER (WHERE {predicate})" for _, _, predicate in checks) + f" FROM {rows}"
        ).fetchone()
        for (column, problem, predicate), n_bad in zip(checks, counts):
            if not n_bad:
                continue
            bad = con.execute(
                f"SELECT source_row, CAST({quote_ident(column)} AS VARCHAR) FROM {rows} WHERE {predicate} "
                f"ORDER BY source_row LIMIT {MAX_REPORTED_ROWS + 1}"
            ).fetchall()
            row, value = bad[0]
            more = f" ({n_bad - 1} more row(s) like it: {', '.join(str(r) for r, _ in bad[1:])}{'…' if n_bad > MAX_REPORTED_ROWS + 1 else ''})" if n_bad > 1 else ""
            shown = "" if value is None else f" (value {value!r})"
            raise JudgmentInputError(source, f"{problem}{shown}{more}", row=row, column=column)
        if schema == "generic" and "ground_truth" in table.column_names:
            _check_gold_constant(con, rows, source)
        dup = None if allow_duplicates else con.execute(
            f"SELECT min(source_row), max(source_row), count(*) FROM {rows} GROUP BY {key} HAVING count(*) > 1 ORDER BY 1 LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    if dup:
        raise JudgmentInputError(
            source,
            f"duplicate vote: the same annotator judges the same item again (first at row {dup[0]}); a file must hold one vote per annotator and item",
            row=dup[1],
            column="judge" if schema == "pairwise" else "annotator",
        )
    return schema


def _check_gold_constant(con: duckdb.DuckDBPyConnection, rows: str, source: str) -> None:
    """``ground_truth`` is constant per item (empty = no gold): the first row giving an item a
    second gold value is refused, naming the row where the first value was given."""
    conflict = con.execute(
        f"""
        WITH gold AS (
            SELECT CAST(item_id AS VARCHAR) AS item, CAST(ground_truth AS VARCHAR) AS gold, min(source_row) AS first_row
            FROM {rows} WHERE ground_truth IS NOT NULL AND trim(CAST(ground_truth AS VARCHAR)) <> ''
            GROUP BY ALL),
        ranked AS (SELECT *, row_number() OVER (PARTITION BY item ORDER BY first_row) AS rank FROM gold)
        SELECT b.first_row, b.item, b.gold, a.first_row, a.gold, count(*) OVER () FROM ranked a JOIN ranked b
        ON a.item = b.item AND a.rank = 1 AND b.rank = 2 ORDER BY b.first_row LIMIT 1"""
    ).fetchone()
    if conflict:
        row, item, value, first_row, first_value, n_items = conflict
        more = f" ({n_items - 1} more item(s) like it)" if n_items > 1 else ""
        raise JudgmentInputError(
            source,
            f"conflicting ground truth for item {item!r}: {value!r} here, {first_value!r} at row {first_row} "
            f"(gold must be the same on every row of an item){more}",
            row=row,
            column="ground_truth",
        )


def _is_message_list(arrow_type: pa.DataType) -> bool:
    if not (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)):
        return False
    value = arrow_type.value_type
    return pa.types.is_struct(value) and {"role", "content"} <= {value.field(i).name for i in range(value.num_fields)}


def write_batch(con: duckdb.DuckDBPyConnection, batch: Batch, table: BatchData, schema: str) -> int:
    """Replace partition ``batch.batch_id`` of ``raw_judgments`` with ``table``, atomically; returns its rows.

    Rows are stored exactly as read plus ``batch_id``, ``source``, ``source_row`` (1-based row in
    the batch) and ``ingested_at``. A :class:`FileScan` streams from the file into the table (one
    ``INSERT … SELECT`` over DuckDB's reader: no copy in Python or in a temporary table). Columns
    new to the table are added; a type clash fails the whole write with the column named, as does a
    schema other than the stored batches' (:func:`check_schema_fits`). The batch is recorded in
    ``annotation_batches``.
    """
    rows = _rows_sql(con, table)
    select = (
        f"SELECT * EXCLUDE (source_row), {quote_literal(batch.batch_id)} AS batch_id, {quote_literal(batch.label)} AS source, "
        f"source_row, now()::TIMESTAMP AS ingested_at FROM {rows}"
    )
    try:
        with transaction(con):
            check_schema_fits(schema, stored_schemas(con, except_batch=batch.batch_id), batch.label)
            new_columns = {row[0]: row[1] for row in con.execute(f"DESCRIBE {select}").fetchall()}
            con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} AS {select} LIMIT 0")
            existing = table_columns(con, RAW_TABLE)
            for name, dtype in new_columns.items():
                if name not in existing:
                    con.execute(f"ALTER TABLE {RAW_TABLE} ADD COLUMN {quote_ident(name)} {dtype}")
            con.execute(f"DELETE FROM {RAW_TABLE} WHERE batch_id = ?", [batch.batch_id])
            try:
                n_rows = con.execute(f"INSERT INTO {RAW_TABLE} BY NAME {select}").fetchone()[0]
            except duckdb.Error as exc:
                clash = [n for n, d in new_columns.items() if n in existing and existing[n] != d]
                raise JudgmentInputError(
                    batch.label,
                    f"column type does not match the stored data ({_first_line(exc)})",
                    column=clash[0] if clash else None,
                ) from exc
            record_batch(con, batch, schema, n_rows)
    finally:
        if not isinstance(table, FileScan):
            con.unregister("batch_arrow")
    return n_rows


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
