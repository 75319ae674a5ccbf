"""Killed and interrupted commands: the next command recovers, and ends where a clean run ends.

Real subprocesses, as a user runs them: `judge-assets run` builds a small database, an ingest is
killed with SIGKILL (or interrupted with Ctrl-C) in the middle of consensus, and the next command
must complete — freeing the DuckDB write slot the dead run held and rebuilding what it left stale.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from judge_assets.config import BUNDLED_DATA_DIR

pytestmark = pytest.mark.slow

#: the CLI prints this line when the model prior's blocking check passed: consensus runs next
BEFORE_CONSENSUS = "✓ check model_probs_are_probabilities on model_probs"
#: tables derived from the votes (no timestamps or paths): equal after recovery and after a clean run
DERIVED = (
    "judgments", "items", "label_set", "annotator_matrix", "majority_vote_labels", "model_probs", "consensus_labels",
    "human_consensus_labels", "annotator_stats", "label_quality_detail", "aggregator_comparison", "judge_report_card",
    "model_leaderboard", "label_next", "judge_human_agreement", "annotator_leaderboard", "disputed_items", "model_win_rates",
)


def _votes(lo: int, hi: int) -> pd.DataFrame:
    votes = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet")
    votes = votes[votes.question_id.between(lo, hi)]
    pair = votes[["model_a", "model_b"]].apply(sorted, axis=1, result_type="expand")
    return votes[~pd.concat([votes[["question_id", "turn", "judge"]], pair], axis=1).duplicated(keep="last")]


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "DAGSTER_", "OPENAI_"))}
    env.update(DAGSTER_DISABLE_TELEMETRY="1", GX_ANALYTICS_ENABLED="false", JUDGE_DB=str(state / "judge.duckdb"),
               DAGSTER_HOME=str(state / "dagster_home"), JUDGE_INBOX_DIR=str(state / "inbox"), **extra)
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "judge_assets.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def _stop_before_consensus(env: dict[str, str], args: list[str], sig: signal.Signals) -> tuple[int, str]:
    """Start the CLI in its own session, send ``sig`` once consensus starts; returns (exit code, output)."""
    proc = subprocess.Popen([sys.executable, "-m", "judge_assets.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if BEFORE_CONSENSUS in line:
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, sig)  # the command dies at once (kill -9); its worker goes with it
            else:
                os.kill(proc.pid, sig)  # what the terminal's Ctrl-C delivers to the command
            break
        assert time.monotonic() < deadline
    lines += proc.stdout.readlines()
    return proc.wait(timeout=120), "".join(lines)


def _rows(state: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(state / "judge.duckdb"), read_only=True)
    try:
        return {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"').fetchall())) for t in DERIVED}
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """``files/`` (base.parquet: MT-Bench questions 81-88; new.parquet: 101-104) and ``state/`` built by `run`."""
    root = tmp_path_factory.mktemp("recovery")
    (root / "files").mkdir()
    _votes(81, 88).to_parquet(root / "files" / "base.parquet", index=False)
    _votes(101, 104).to_parquet(root / "files" / "new.parquet", index=False)
    done = _cli(_env(root / "state", JUDGE_SOURCE=str(root / "files" / "base.parquet")), "run")
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def _copy(built: Path, tmp_path: Path, name: str) -> Path:
    shutil.copytree(built / "state", tmp_path / name)
    return tmp_path / name


def test_an_ingest_killed_mid_consensus_is_resumed_by_the_next_one_and_ends_like_a_clean_ingest(built, tmp_path):
    new = str(built / "files" / "new.parquet")
    killed, clean = _copy(built, tmp_path, "killed"), _copy(built, tmp_path, "clean")

    code, output = _stop_before_consensus(_env(killed), ["ingest", new], signal.SIGKILL)
    assert code == -signal.SIGKILL, output
    con = duckdb.connect(str(killed / "judge.duckdb"), read_only=True)
    voted, labelled = con.execute("SELECT (SELECT count(DISTINCT item_id) FROM judgments), (SELECT count(*) FROM consensus_labels)").fetchone()
    con.close()
    assert voted > labelled  # the new votes are stored, the consensus still describes the old ones

    again = _cli(_env(killed), "ingest", new)  # what the user does next: the same command
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already ingested" in again.stdout and "resuming:" in again.stdout
    assert "recovered: run" in again.stdout and "freed the DuckDB write slot" in again.stdout
    assert "Traceback" not in again.stdout + again.stderr

    reference = _cli(_env(clean), "ingest", new)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    assert _rows(killed) == _rows(clean)


def test_ctrl_c_mid_run_stops_cleanly_without_a_traceback_and_the_next_run_completes(built, tmp_path):
    state = _copy(built, tmp_path, "state")
    env = _env(state, JUDGE_SOURCE=str(built / "files" / "base.parquet"))

    code, output = _stop_before_consensus(env, ["run"], signal.SIGINT)

    assert code == 1, output
    assert "Traceback" not in output
    assert re.search(r"✗ \w+: interrupted", output)  # the step that was running when Ctrl-C came
    assert "The run was interrupted;" in output and "run the same command again to finish" in output
    after = _cli(env, "run")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "waiting:" not in after.stdout  # the interrupted run released its slot itself
