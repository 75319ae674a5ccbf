"""Shared inputs for the consensus-stage tests: MT-Bench judgments built from the bundled parquet files."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.labels import FLIPPED, PAIRWISE_LABELS, WINNER_TO_LABEL


@lru_cache(maxsize=1)
def mt_bench_judgments() -> pd.DataFrame:
    """The bundled MT-Bench votes in the ``judgments`` table schema (canonical model order, one vote per item and judge)."""
    human = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet", columns=["question_id", "model_a", "model_b", "winner", "judge", "turn"])
    gpt4 = pd.read_parquet(BUNDLED_DATA_DIR / "gpt4_pair.parquet", columns=["question_id", "model_a", "model_b", "winner", "judge", "turn"])
    raw = pd.concat([human, gpt4], ignore_index=True)
    label = raw["winner"].map(WINNER_TO_LABEL)
    swap = raw["model_a"] > raw["model_b"]
    label = label.where(~swap, label.map(FLIPPED))
    model_a = raw["model_a"].where(~swap, raw["model_b"])
    model_b = raw["model_b"].where(~swap, raw["model_a"])
    with open(BUNDLED_DATA_DIR / "question.jsonl") as f:
        category = {q["question_id"]: q["category"] for q in map(json.loads, f)}
    out = pd.DataFrame(
        {
            "item_id": raw["question_id"].astype(str) + ":" + raw["turn"].astype(str) + ":" + model_a + "|" + model_b,
            "annotator": raw["judge"],
            "annotator_kind": np.where(raw["judge"] == "gpt4_pair", "llm", "human"),
            "label": label,
            "label_code": label.map({c: i for i, c in enumerate(PAIRWISE_LABELS)}),
            "question_id": raw["question_id"],
            "turn": raw["turn"].astype("int32"),
            "model_a": model_a,
            "model_b": model_b,
            "category": raw["question_id"].map(category),
        }
    )
    # the same judge voting on both orders of a pair: the later vote wins, as in judgments.py
    return out.drop_duplicates(["item_id", "annotator"], keep="last", ignore_index=True)


def items_of(judgments: pd.DataFrame) -> pd.DataFrame:
    """One row per item with the item metadata columns."""
    cols = [c for c in ("item_id", "question_id", "turn", "model_a", "model_b", "category") if c in judgments.columns]
    return judgments[cols].drop_duplicates("item_id").sort_values("item_id", ignore_index=True)


def dirichlet_probs(item_ids, classes: tuple[str, ...], seed: int = 0, scorer: str = "oof_classifier") -> pd.DataFrame:
    """A ``model_probs`` frame with random Dirichlet rows."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(classes)), size=len(item_ids))
    frame = pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])
    frame.insert(0, "item_id", list(item_ids))
    frame["scorer"] = scorer
    return frame


def synthetic_judgments(
    n_items: int = 60, accuracies: dict[str, float] | None = None, votes_per_item: int = 3, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Votes on ``n_items`` items by annotators of known accuracy; returns (judgments, true labels).

    Each item gets ``votes_per_item`` distinct annotators drawn at random; an annotator gives the
    true label with their accuracy, else a uniformly random other class. ``llm_*`` names are LLMs.
    """
    rng = np.random.default_rng(seed)
    accuracies = accuracies or {"ann_good": 0.95, "ann_ok": 0.8, "ann_bad": 0.4, "llm_judge": 0.85}
    names = list(accuracies)
    truth = rng.integers(0, 3, n_items)
    rows = []
    for i in range(n_items):
        for name in rng.choice(names, size=min(votes_per_item, len(names)), replace=False):
            label = truth[i] if rng.random() < accuracies[name] else rng.choice([c for c in range(3) if c != truth[i]])
            rows.append((f"item{i:03d}", name, "llm" if name.startswith("llm") else "human", PAIRWISE_LABELS[label], 1 + i % 2))
    frame = pd.DataFrame(rows, columns=["item_id", "annotator", "annotator_kind", "label", "turn"])
    return frame, truth
