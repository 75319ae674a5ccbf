"""A 1–8 pairwise scale end to end through the real assets: the generic schema with ``JUDGE_LABELS=1..8``,
annotators of known noise, an LLM annotator with a bias, the built-in Likert judge on the loopback server."""

from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import cohen_kappa_score

from judge_assets.core.sources.batches import load_batch, source_batches, validate_batch, write_batch
from judge_assets.defs.consensus import consensus, ordinal_agreement, ordinal_consensus
from judge_assets.defs.reports import model_leaderboard
from judge_assets.defs.resources import project_resources
from judge_assets.defs.scoring import llm_judge_scores, model_probs
from judge_assets.defs.votes import items, judgments

QUALITY = {"m1": 0.9, "m2": 0.65, "m3": 0.4, "m4": 0.15}  # m1 best
NOISE = {"h0": 0.5, "h1": 0.8, "h2": 1.2, "h3": 2.0, "h4": 3.0}
LIKERT_SYSTEM = "Reply with exactly one digit from 1 to 8"
DIGITS = tuple(str(d) for d in range(1, 9))


def synthetic_scale_csv(path, n_items: int = 160, seed: int = 3) -> pd.Series:
    """Writes the votes; returns the true rating per item (1..8, low = model_a better)."""
    rng = np.random.default_rng(seed)
    models = sorted(QUALITY)
    rows, truth = [], {}
    for i in range(n_items):
        a, b = rng.choice(models, 2, replace=False)
        center = 4.5 + (QUALITY[b] - QUALITY[a]) * 3.5 + rng.normal(0, 0.7)
        t = int(np.clip(np.rint(center), 1, 8))
        item = f"i{i:03d}"
        truth[item] = t
        d = (t - 4.5) / 3.5  # the fake judge's centre is 4.5 + (quality(B) − quality(A)) · 3.5
        texts = dict(prompt=f"question {i}", response_a=f"answer of {a} quality={0.5 - d / 2:.4f}",
                     response_b=f"answer of {b} quality={0.5 + d / 2:.4f}", model_a=a, model_b=b,
                     category="writing" if i % 2 else "coding")
        for ann in rng.choice(sorted(NOISE), rng.integers(3, 6), replace=False):
            rows.append(dict(item_id=item, annotator=ann, label=str(int(np.clip(np.rint(t + rng.normal(0, NOISE[ann])), 1, 8))), **texts))
        rows.append(dict(item_id=item, annotator="raw_llm", label=str(int(np.clip(np.rint(t + 1 + rng.normal(0, 1.0)), 1, 8))), **texts))
    pd.DataFrame(rows).to_csv(path, index=False)
    return pd.Series(truth)


@pytest.fixture
def scale_run(tmp_path, monkeypatch, fake_openai):
    csv = tmp_path / "likert.csv"
    truth = synthetic_scale_csv(csv)
    db = tmp_path / "judge.duckdb"
    for name, value in {
        "JUDGE_DB": str(db), "JUDGE_SOURCE": str(csv), "JUDGE_LABELS": "1..8", "JUDGE_SCALE_ENDS": "A,B",
        "JUDGE_LLM_ANNOTATORS": "raw_llm", "JUDGE_LLM_BASE_URL": fake_openai.base_url, "JUDGE_LLM_MODEL": "judge-model",
        "JUDGE_JUDGES": "pairwise-likert-8", "DAGSTER_HOME": str(tmp_path / "dh"),
    }.items():
        monkeypatch.setenv(name, value)
    fake_openai.settings.scale_tokens = {LIKERT_SYSTEM: DIGITS}
    fake_openai.settings.scale_position_bias = 0.6  # pulls ratings towards the answer shown first
    con = duckdb.connect(str(db))
    for batch in source_batches(str(csv)):
        table = load_batch(batch)
        write_batch(con, batch, table, validate_batch(table, batch.label, allow_duplicates=True))
    con.close()
    result = dg.materialize(
        [items, llm_judge_scores, judgments, model_probs, consensus, ordinal_consensus, ordinal_agreement, model_leaderboard],
        resources=project_resources(),
        run_config={"ops": {"ordinal_agreement": {"config": {"n_boot": 200}}}},
    )
    assert result.success
    con = duckdb.connect(str(db), read_only=True)
    yield result, con, truth
    con.close()


def test_a_1_to_8_scale_end_to_end(scale_run):
    result, con, truth = scale_run
    # 1. the scale is stored with its values and its ends
    assert con.execute("SELECT count(*), bool_and(ordinal), min(value), max(value), any_value(low_favours) FROM label_set").fetchone() == (
        8, True, 1.0, 8.0, "A")

    # 2. the ordinal consensus is closer to the truth than CROWDLAB's class consensus
    ordinal = con.execute("SELECT item_id, ordinal_consensus, human_ordinal_consensus FROM ordinal_consensus_labels").df().set_index("item_id")
    classes = con.execute("SELECT item_id, CAST(consensus_label AS DOUBLE) AS v FROM consensus_labels").df().set_index("item_id")["v"]
    mae_ordinal = (ordinal["ordinal_consensus"] - truth.loc[ordinal.index]).abs().mean()
    mae_class = (classes - truth.loc[classes.index]).abs().mean()
    assert mae_ordinal < mae_class, (mae_ordinal, mae_class)
    stats = con.execute("SELECT annotator, ordinal_quality FROM ordinal_annotator_stats WHERE annotator LIKE 'h%' "
                        "ORDER BY ordinal_quality DESC").fetchall()
    assert [a for a, _ in stats] == sorted(NOISE, key=NOISE.get)  # quality ranks the annotators by their noise

    # 3. agreement rows equal scikit-learn / scipy on the same vectors
    agreement = con.execute("SELECT * FROM ordinal_agreement").df()
    assert {"raw_llm", "pairwise-likert-8:judge-model", "human"} <= set(agreement["judge"])
    assert set(agreement["scope"]) == {"all", "category"} and set(agreement.dropna(subset=["category"])["category"]) == {"coding", "writing"}
    row = lambda judge, metric, scope="all": agreement[(agreement["judge"] == judge) & (agreement["metric"] == metric)  # noqa: E731
                                                      & (agreement["scope"] == scope)].iloc[0]
    votes = con.execute("SELECT j.item_id, CAST(j.label AS DOUBLE) AS y_pred, o.human_ordinal_consensus AS y_true FROM judgments j "
                        "JOIN ordinal_consensus_labels o USING (item_id) WHERE j.annotator = 'raw_llm' ORDER BY 1").df()
    assert row("raw_llm", "weighted_kappa").value == pytest.approx(
        cohen_kappa_score(votes["y_true"].astype(int), votes["y_pred"].astype(int), weights="quadratic"), abs=1e-12)
    assert row("raw_llm", "spearman").value == pytest.approx(spearmanr(votes["y_true"], votes["y_pred"]).statistic, abs=1e-12)
    assert row("raw_llm", "pearson").value == pytest.approx(pearsonr(votes["y_true"], votes["y_pred"]).statistic, abs=1e-12)
    assert row("raw_llm", "mae").value == pytest.approx((votes["y_true"] - votes["y_pred"]).abs().mean())
    assert row("raw_llm", "mae").n == len(truth)
    scored = con.execute("SELECT s.expected_score AS y_pred, o.human_ordinal_consensus AS y_true FROM llm_judge_scores s "
                         "JOIN ordinal_consensus_labels o USING (item_id) WHERE s.status = 'ok'").df()
    judge = "pairwise-likert-8:judge-model"
    assert row(judge, "spearman").value == pytest.approx(spearmanr(scored["y_true"], scored["y_pred"]).statistic, abs=1e-12)
    assert row(judge, "pearson").value == pytest.approx(pearsonr(scored["y_true"], scored["y_pred"]).statistic, abs=1e-12)
    assert row(judge, "weighted_kappa").value == pytest.approx(cohen_kappa_score(
        scored["y_true"].astype(int), np.clip(np.rint(scored["y_pred"]), 1, 8).astype(int), weights="quadratic"), abs=1e-12)
    assert row(judge, "spearman").score == "expected_score" and row("raw_llm", "spearman").score == "vote"
    pairs = con.execute("SELECT count(*) FROM judgments a JOIN judgments b ON a.item_id = b.item_id AND a.annotator < b.annotator "
                        "WHERE a.annotator_kind = 'human' AND b.annotator_kind = 'human'").fetchone()[0]
    assert row("human", "weighted_kappa").n == pairs and row("human", "weighted_kappa").reference == "human_votes"
    ok = agreement.dropna(subset=["ci_low"])
    assert ((ok["ci_low"] <= ok["value"] + 1e-9) & (ok["value"] <= ok["ci_high"] + 1e-9)).all()

    # 5. the swap shift: the fake judge leans to the answer shown first
    shift = row(judge, "mean_shift")
    assert shift.reference == "swapped_order" and shift.value == pytest.approx(1.2, abs=0.3) and shift.n == len(truth)

    # 4. leaderboards with and without ties, best model first in every one
    board = con.execute("SELECT * FROM model_leaderboard").df()
    assert set(zip(board["source"], board["ties"])) == {(s, t) for s in ("consensus", "human", "llm") for t in (False, True)}
    for (_, _), part in board.groupby(["source", "ties"]):
        assert part.sort_values("rank")["model"].iloc[0] == "m1" and part.sort_values("rank")["model"].iloc[-1] == "m4"
    assert ((board["ci_low"] <= board["median"]) & (board["median"] <= board["ci_high"])).all()
    llm = board[(board["source"] == "llm") & board["ties"]]
    assert llm["n_comparisons"].sum() == 2 * 2 * len(truth)  # raw_llm's vote and the Likert judge's expected score per item

    # 5. the histogram of ratings per judge is in the materialization's metadata
    metadata = result.asset_materializations_for_node("ordinal_agreement")[0].metadata
    assert metadata["rating_histogram"].value.startswith("![plot](data:image/png;base64,")
    means = metadata["mean_rating"].value
    assert means["raw_llm"] > means["human"] + 0.5  # the biased LLM annotator rates towards B
