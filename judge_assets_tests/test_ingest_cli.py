"""`judge-assets ingest` end to end: new batches, what changed, idempotence, the strict gate, concurrency.

The CLI runs in subprocesses (as a user runs it): each gets its own environment, so the DuckDB file,
Dagster instance and LLM endpoint (a loopback OpenAI server) are the test's own. One module-scoped
base database is built once with `judge-assets run` over MT-Bench questions 81-95; tests copy it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.keys import item_key
from judge_assets.core.sources.batches import file_batch
from judge_assets_tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.slow

FOUNDATION_DOWNSTREAM = "key:judgments or key:items or key:majority_vote_labels"


def _human_votes() -> pd.DataFrame:
    """MT-Bench human votes, one per (question, turn, pair, judge): the gate refuses repeats in a file."""
    votes = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet")
    pair = votes[["model_a", "model_b"]].apply(sorted, axis=1, result_type="expand")
    return votes[~pd.concat([votes[["question_id", "turn", "judge"]], pair], axis=1).duplicated(keep="last")]


@pytest.fixture(scope="module")
def fake_llm():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def base(tmp_path_factory, fake_llm) -> Path:
    """``files/`` (round1 = base source, round2, round3a, round3b) and ``state/`` built by `judge-assets run`."""
    root = tmp_path_factory.mktemp("ingest")
    files = root / "files"
    files.mkdir()
    votes = _human_votes()
    round1 = votes[votes.question_id <= 95]
    revotes = round1.iloc[::15].assign(judge=lambda f: f["judge"] + "_round2")
    round2 = pd.concat([revotes, votes[votes.question_id.between(96, 100)]])
    for name, frame in (
        ("round1", round1),
        ("round2", round2),
        ("round3a", votes[votes.question_id.between(101, 103)]),
        ("round3b", votes[votes.question_id.between(104, 106)]),
    ):
        frame.to_parquet(files / f"{name}.parquet", index=False)
    result = _cli(_env(root / "state", fake_llm, JUDGE_SOURCE=str(files / "round1.parquet")), "run")
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture
def state(base, tmp_path) -> Path:
    """A private copy of the base database, Dagster instance and staged batches."""
    shutil.copytree(base / "state", tmp_path / "state")
    return tmp_path / "state"


def _env(state: Path, llm: FakeOpenAI, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "DAGSTER_", "OPENAI_"))}
    env.update(
        DAGSTER_DISABLE_TELEMETRY="1",
        GX_ANALYTICS_ENABLED="false",
        JUDGE_DB=str(state / "judge.duckdb"),
        DAGSTER_HOME=str(state / "dagster_home"),
        JUDGE_INBOX_DIR=str(state / "inbox"),
        JUDGE_LLM_BASE_URL=llm.base_url,
        JUDGE_LLM_MODEL="fake-judge",
        JUDGE_LLM_API_KEY="sk-test",
        **extra,
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "judge_assets.cli", *args], check=False, env=env, capture_output=True, text=True, timeout=300)


def _query(state: Path, sql: str, params=()) -> list[tuple]:
    con = duckdb.connect(str(state / "judge.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def _fingerprint(state: Path) -> dict[str, tuple]:
    """Row count and an MD5 over the sorted rows of every table."""
    con = duckdb.connect(str(state / "judge.duckdb"), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()]
        return {
            t: con.execute(f"SELECT count(*), md5(coalesce(string_agg(x::VARCHAR, '' ORDER BY x::VARCHAR), '')) FROM \"{t}\" x").fetchone()
            for t in tables
        }
    finally:
        con.close()


def test_ingest_adds_a_batch_reports_changes_and_only_new_items_cost_llm_calls(base, state, fake_llm, tmp_path):
    env = _env(state, fake_llm)
    upload = tmp_path / "round2.parquet"
    shutil.copy(base / "files" / "round2.parquet", upload)
    round2 = pd.read_parquet(upload)
    round1 = pd.read_parquet(base / "files" / "round1.parquet")
    new_annotators = set(round2.judge) - set(round1.judge)
    new_items = {item_key(r.question_id, r.turn, r.model_a, r.model_b) for r in round2.itertuples() if r.question_id > 95}
    round1_batch = file_batch(base / "files" / "round1.parquet").batch_id
    first_batch_rows = "SELECT count(*), md5(string_agg(r::VARCHAR, '' ORDER BY source_row)) FROM raw_judgments r WHERE batch_id = ?"
    round1_before = _query(state, first_batch_rows, [round1_batch])
    votes_before = _query(state, "SELECT count(*) FROM judgments")[0][0]
    panel_before = _query(state, "SELECT count(*) FROM judgments WHERE annotator = 'mt-bench-pairwise:fake-judge'")[0][0]
    calls_before = fake_llm.count("chat")

    result = _cli(env, "ingest", str(upload))

    assert result.returncode == 0, result.stdout + result.stderr
    batch_id = file_batch(upload).batch_id
    assert f"accepted as batch {batch_id} (pairwise schema)" in result.stdout
    panel_new = _query(state, "SELECT count(*) FROM judgments WHERE annotator = 'mt-bench-pairwise:fake-judge'")[0][0] - panel_before
    assert panel_new == len(new_items)  # the LLM judge's verdict on each new item is a vote too
    assert f"new votes: {len(round2) + panel_new}, new items: {len(new_items)}, new annotators: {len(new_annotators)}" in result.stdout
    assert "items whose label changed (consensus_labels):" in result.stdout
    # everything a batch changes is rebuilt; the evaluation assets wait for their own cadence
    assert "  ✓ consensus\n" in result.stdout and "  ✓ label_next" in result.stdout
    assert "consensus_benchmark" not in result.stdout and "annotator_stats_history" not in result.stdout
    llm_calls = fake_llm.count("chat") - calls_before
    assert llm_calls == 2 * len(new_items)  # both answer orders of each new item; cached items cost nothing
    assert f"LLM requests sent: {llm_calls}" in result.stdout
    assert _query(state, "SELECT count(*) FROM judgments")[0][0] == votes_before + len(round2) + panel_new
    assert _query(state, first_batch_rows, [round1_batch]) == round1_before
    staged = state / "batches" / f"{batch_id}.parquet"
    assert _query(state, "SELECT location FROM annotation_batches WHERE batch_id = ?", [batch_id]) == [(str(staged),)]

    # The same bytes again under another name: nothing happens, nothing is called. Then, with the
    # uploaded file gone, its batch re-materializes from the staged copy.
    upload.unlink()
    renamed = tmp_path / "round2_again.parquet"
    shutil.copy(base / "files" / "round2.parquet", renamed)
    before = _fingerprint(state)
    script = (
        "import sys; from judge_assets.cli import main, materialize; "
        f"code = main(['ingest', {str(renamed)!r}]); print('FINGERPRINT-NOW', flush=True); input(); "
        f"sys.exit(code or (0 if materialize('key:raw_judgments', [{batch_id!r}]) else 3))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    noop = []
    for line in proc.stdout:
        noop.append(line)
        if line.startswith("FINGERPRINT-NOW"):
            break
    assert f"{renamed}: already ingested as batch {batch_id} (same content); nothing to do\n" in noop, noop
    assert _fingerprint(state) == before and fake_llm.count("chat") - calls_before == llm_calls
    rest, err = proc.communicate("\n", timeout=300)
    assert proc.returncode == 0, rest + err
    assert _query(state, "SELECT count(*) FROM raw_judgments WHERE batch_id = ?", [batch_id]) == [(len(round2),)]


def _malformed_corpus(folder: Path) -> dict[str, tuple[str, ...]]:
    """One file per failure kind → fragments its refusal message must contain."""
    folder.mkdir(parents=True)
    good = _human_votes().iloc[:4].drop(columns=["conversation_a", "conversation_b"]).reset_index(drop=True)

    def jsonl(name: str, frame: pd.DataFrame) -> None:
        frame.to_json(folder / name, orient="records", lines=True)

    good.drop(columns=["judge"]).to_csv(folder / "missing_column.csv", index=False)
    jsonl("unknown_winner.jsonl", good.assign(winner=["model_a", "model_b", "model_c", "tie"]))
    jsonl("bad_question_id.jsonl", good.astype({"question_id": object}).assign(question_id=[81, "eighty-one", 81, 81]))
    jsonl("bad_turn.jsonl", good.astype({"turn": object}).assign(turn=[1, 1, 1, "first"]))
    jsonl("same_model.jsonl", good.assign(model_b=[good.model_b[0], good.model_a[1], good.model_b[2], good.model_b[3]]))
    jsonl("duplicate_vote.jsonl", pd.concat([good.iloc[:2], good.iloc[[0]]]))
    jsonl("bad_conversation.jsonl", good.assign(conversation_a="just text"))
    good.assign(judge=["expert_1", "", "expert_2", "expert_3"]).to_csv(folder / "empty_judge.csv", index=False)
    pd.DataFrame({"item_id": ["x1", "x2"], "annotator": ["a", "b"], "label": ["A", "maybe"]}).to_csv(folder / "generic_label.csv", index=False)
    (folder / "empty.csv").write_bytes(b"")
    (folder / "header_only.csv").write_text("question_id,model_a,model_b,winner,judge\n")
    (folder / "latin1.csv").write_bytes("question_id,model_a,model_b,winner,judge\n81,a,b,tie,Jos\xe9\n".encode("latin-1"))
    (folder / "unparseable.json").write_text('{"question_id": 81, "model_a": ')
    (folder / "votes.xlsx").write_bytes(b"PK\x03\x04")
    return {
        "missing_column.csv": ("column 'judge'", "missing required column(s) 'judge'"),
        "unknown_winner.jsonl": ("row 3, column 'winner'", "'model_c'"),
        "bad_question_id.jsonl": ("row 2, column 'question_id'", "is not an integer"),
        "bad_turn.jsonl": ("row 4, column 'turn'", "is not an integer ≥ 1"),
        "same_model.jsonl": ("row 2, column 'model_b'", "names the same model as model_a"),
        "duplicate_vote.jsonl": ("row 3, column 'judge'", "duplicate vote"),
        "bad_conversation.jsonl": ("column 'conversation_a'", "list of {role, content} messages"),
        "empty_judge.csv": ("row 2, column 'judge'", "is empty"),
        "generic_label.csv": ("this file holds labels in the generic schema", "use a separate JUDGE_DB"),
        "empty.csv": ("the file is empty",),
        "header_only.csv": ("contains no rows",),
        "latin1.csv": ("line 2 is not valid UTF-8",),
        "unparseable.json": ("cannot be read",),
        "votes.xlsx": ("unsupported file type '.xlsx'",),
    }


def test_malformed_files_are_refused_quarantined_and_change_nothing(state, fake_llm, tmp_path):
    uploads = tmp_path / "uploads"
    expected = _malformed_corpus(uploads)
    before = _fingerprint(state)
    calls_before = fake_llm.count()

    result = _cli(_env(state, fake_llm), "ingest", *sorted(str(p) for p in uploads.iterdir()))

    assert result.returncode == 1
    refusals = [line for line in result.stderr.splitlines() if line.startswith("refused: ")]
    assert len(refusals) == len(expected), result.stderr
    rejected = state / "inbox" / "rejected"
    for name, fragments in expected.items():
        line = next((r for r in refusals if f"{name}," in r or f"{name}:" in r), None)
        assert line is not None, f"{name} not refused: {result.stderr}"
        for fragment in fragments:
            assert fragment in line, f"{name}: {fragment!r} not in {line!r}"
        assert not (uploads / name).exists() and (rejected / name).exists()
        assert fragments[0] in (rejected / f"{name}.error.txt").read_text()
    assert "accepted" not in result.stdout
    after = _fingerprint(state)
    assert after.pop("rejected_files")[0] == len(expected)  # each refusal is listed, nothing else changed
    before.pop("rejected_files", None)
    assert after == before
    assert fake_llm.count() == calls_before
    assert not (state / "batches").exists() or not any((state / "batches").iterdir())


def test_two_ingests_at_once_both_land_completely(base, state, fake_llm):
    env = _env(state, fake_llm)
    votes_before = _query(state, "SELECT count(*) FROM judgments")[0][0]
    files = [base / "files" / "round3a.parquet", base / "files" / "round3b.parquet"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "judge_assets.cli", "ingest", str(f), "--select", FOUNDATION_DOWNSTREAM],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for f in files
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    sizes = [len(pd.read_parquet(f)) for f in files]
    for f, n in zip(files, sizes):
        batch_id = file_batch(f).batch_id
        assert _query(state, "SELECT count(*) FROM raw_judgments WHERE batch_id = ?", [batch_id]) == [(n,)]
        assert _query(state, "SELECT count(*) FROM judgments WHERE batch_id = ?", [batch_id]) == [(n,)]
        assert _query(state, "SELECT loaded_at IS NOT NULL FROM annotation_batches WHERE batch_id = ?", [batch_id]) == [(True,)]
    assert _query(state, "SELECT count(*) FROM judgments")[0][0] == votes_before + sum(sizes)
