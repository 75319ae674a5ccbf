"""Every table of the consensus stage, built from plain frames (``build_consensus_tables``).

The Dagster assets in ``judge_assets.defs.consensus`` only read the inputs with SQL and write
what :func:`build_consensus_tables` returns.

Tie option: ``drop_ties=True`` removes every vote for the tie class before aggregation, the
class set shrinks to the remaining classes and the model prior is renormalized over them,
which reproduces the published binary (without-tie) setup. Items left without votes drop out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from judge_assets.core.consensus.methods import CROWDLAB_METHOD, GLAD_MAX_VOTES, ITEM_META_TYPES, dawid_skene, glad, robust_crowdlab
from judge_assets.core.consensus.majority import majority_vote
from judge_assets.core.consensus.votes import Votes
from judge_assets.core.reports.ground_truth import CONSENSUS_SOURCE, gold_aware_consensus, gold_codes
from judge_assets.core.reports.ground_truth import DEFAULT_METHOD as GOLD_METHOD


def annotator_group(annotator: str, kind: str) -> str:
    """MT-Bench grouping: ``author_*`` → author, ``expert_*`` → expert, LLM judges → llm, else human."""
    if kind == "llm":
        return "llm"
    if annotator.startswith("author_"):
        return "author"
    if annotator.startswith("expert_"):
        return "expert"
    return "human"


def select_annotators(judgments: pd.DataFrame, llm_annotators: tuple[str, ...] | list[str], annotators: list[str] | None = None) -> list[str]:
    """The annotators that count for the consensus, sorted.

    Default: every ``annotator_kind == 'human'`` annotator plus the names in ``llm_annotators``
    (``settings().llm_annotators``) and every ``annotator_kind == 'llm'`` one (the LLM judge
    panel's ``<judge>:<model>`` votes). An explicit ``annotators`` list overrides; names not in
    ``judgments`` are an error.
    """
    present = set(judgments["annotator"].unique())
    if annotators is not None:
        unknown = sorted(set(annotators) - present)
        if unknown:
            raise ValueError(f"annotators not found in judgments: {unknown[:10]}")
        return sorted(set(annotators))
    humans = set(judgments.loc[judgments["annotator_kind"] == "human", "annotator"])
    panel = set(judgments.loc[judgments["annotator_kind"] == "llm", "annotator"])  # incl. the LLM judge panel's <judge>:<model>
    return sorted(humans | (set(llm_annotators) & present) | panel)


def apply_tie_option(
    judgments: pd.DataFrame, model_probs: pd.DataFrame, classes: tuple[str, ...], *, drop_ties: bool, tie_label: str = "tie"
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """Drop tie votes and renormalize the prior over the other classes (when ``drop_ties``).

    Returns ``(judgments, model_probs, classes)``; unchanged when ``drop_ties`` is false.
    """
    if not drop_ties:
        return judgments, model_probs, classes
    if tie_label not in classes:
        raise ValueError(f"drop_ties: tie label {tie_label!r} is not in the class set {list(classes)}")
    kept = tuple(c for c in classes if c != tie_label)
    if len(kept) < 2:
        raise ValueError(f"drop_ties would leave fewer than two classes: {list(kept)}")
    judgments = judgments[judgments["label"] != tie_label]
    cols = [f"p_{c}" for c in kept]
    probs = model_probs.drop(columns=[f"p_{tie_label}"]).copy()
    total = probs[cols].sum(axis=1)
    zero = total <= 0
    probs.loc[~zero, cols] = probs.loc[~zero, cols].div(total[~zero], axis=0)
    probs.loc[zero, cols] = 1.0 / len(kept)
    return judgments, probs, kept


def prior_matrix(model_probs: pd.DataFrame, item_ids: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """``model_probs`` (``item_id``, ``p_<label>``…) as shape (len(item_ids), K), rows aligned to ``item_ids``."""
    cols = [f"p_{c}" for c in classes]
    missing_cols = [c for c in cols if c not in model_probs.columns]
    if missing_cols:
        raise ValueError(f"model_probs lacks column(s) {missing_cols}")
    frame = model_probs.drop_duplicates("item_id").set_index("item_id").reindex(pd.Index(item_ids))
    missing = frame[cols].isna().any(axis=1)
    if missing.any():
        shown = list(frame.index[missing][:5])
        raise ValueError(f"model_probs has no probabilities for {int(missing.sum())} voted item(s), e.g. {shown}")
    return frame[cols].to_numpy(dtype=float)


@dataclass
class ConsensusTables:
    """Output of :func:`build_consensus_tables`: ``tables`` (name → frame), ``method``
    (``crowdlab`` / ``majority_vote_fallback``), ``notes`` (edge cases met, for metadata),
    ``classes`` (after the tie option), ``prior``: the model prior used, shape
    (len(consensus_labels), K), rows aligned with ``tables["consensus_labels"]``, and ``glad``:
    whether GLAD ran (``ran``, ``off``, or ``skipped: <why>``)."""

    tables: dict[str, pd.DataFrame]
    method: str
    notes: list[str]
    classes: tuple[str, ...]
    prior: np.ndarray
    glad: str


def build_consensus_tables(
    judgments: pd.DataFrame,
    model_probs: pd.DataFrame,
    items: pd.DataFrame,
    classes: tuple[str, ...],
    llm_annotators: tuple[str, ...] | list[str],
    *,
    annotators: list[str] | None = None,
    drop_ties: bool = False,
    tie_label: str = "tie",
    include_glad: bool = False,
    glad_max_votes: int = GLAD_MAX_VOTES,
    llm_judge_scores: pd.DataFrame | None = None,
    seed: int = 0,
    gold: pd.Series | None = None,
) -> ConsensusTables:
    """Every table of the consensus stage from the ``judgments``, ``model_probs`` and ``items`` tables.

    ``judgments``: ``item_id, annotator, annotator_kind, label`` (+ ``question_id, turn`` for the
    FastChat agreement). ``model_probs``: ``item_id, p_<label>…, scorer``. ``items``: ``item_id``
    plus optional ``question_id, turn, model_a, model_b, category``. ``classes``: the label set.
    ``llm_annotators`` / ``annotators``: see :func:`select_annotators`. ``drop_ties``: see the
    module docstring. ``include_glad`` adds crowd-kit GLAD labels (``glad_label``; NULL otherwise)
    when there are at most ``glad_max_votes`` votes (GLAD's cost grows ~2 ms per vote; above the
    limit it is skipped and a note says so).
    ``llm_judge_scores``: optional ``llm_judge_scores`` rows for the judge report card's leaderboard.
    ``gold``: optional gold labels by item id (``gold_labels``). With gold on a voted item, the
    consensus label is gold-aware (:func:`judge_assets.core.reports.ground_truth.gold_aware_consensus`):
    items with gold keep it (``source = 'ground_truth'``), the others get the ``gold_mixture``
    label (``source = 'consensus'``), ``consensus_method = 'gold_mixture'``; CROWDLAB's label stays
    in ``crowdlab_label`` and its quality, agreement, annotator and vote tables are unchanged.
    Without gold every column is CROWDLAB's as before (``source = 'consensus'``,
    ``consensus_probability`` = CROWDLAB's posterior probability of its label).

    Tables: ``consensus_labels``, ``human_consensus_labels``, ``annotator_stats``,
    ``label_quality_detail``, ``annotator_group_summary``, ``aggregator_comparison``,
    ``judge_report_card`` (columns documented at each builder and in the README).
    """
    from judge_assets.core.reports.report_card import judge_report_card

    required = {"item_id", "annotator", "annotator_kind", "label"}
    if not required <= set(judgments.columns):
        raise ValueError(f"judgments lacks column(s) {sorted(required - set(judgments.columns))}")
    bad = sorted(set(judgments["label"]) - set(classes))
    if bad:
        raise ValueError(f"judgments has labels outside the class set {list(classes)}: {bad[:10]}")
    judgments, model_probs, classes = apply_tie_option(judgments, model_probs, tuple(classes), drop_ties=drop_ties, tie_label=tie_label)
    notes: list[str] = []
    if drop_ties:
        notes.append(f"drop_ties: tie votes removed, classes {list(classes)}, model prior renormalized")
    chosen = select_annotators(judgments, llm_annotators, annotators)
    if not chosen:
        raise ValueError("no annotators selected: judgments has no human votes and none of the LLM annotators")
    kinds = judgments.drop_duplicates("annotator").set_index("annotator")["annotator_kind"]

    chosen_votes = judgments[judgments["annotator"].isin(chosen)]
    # sorted distinct ids, as np.union1d, but hashed first so only the distinct ids are sorted
    item_ids = np.sort(pd.unique(np.concatenate([chosen_votes["item_id"].to_numpy(dtype=object), items["item_id"].to_numpy(dtype=object)])))
    votes = Votes.from_frame(chosen_votes, classes, item_ids=item_ids, annotators=chosen)
    voted = votes.num_annotations() > 0
    prior = np.full((votes.n_items, len(classes)), 1.0 / len(classes))
    prior[voted] = prior_matrix(model_probs, votes.item_ids[voted], classes)
    run = robust_crowdlab(votes, prior, seed=seed)
    notes += run.notes
    v, r = run.votes, run.result
    labels = np.asarray(classes, dtype=object)

    mv = majority_vote(v, run.pred_probs, seed=seed)
    ds, _ = dawid_skene(v)
    glad_status = "off"
    if include_glad and len(v.item) > glad_max_votes:
        glad_status = (f"skipped: {len(v.item):,} votes > glad_max_votes {glad_max_votes:,} (crowd-kit GLAD takes about "
                       f"2 ms per vote; raise glad_max_votes in the consensus run config to run it anyway)")
        notes.append(f"GLAD {glad_status}")
    elif include_glad:
        glad_status = "ran"
    gl = glad(v)[0] if glad_status == "ran" else None

    meta = items.drop_duplicates("item_id").set_index("item_id").reindex(pd.Index(v.item_ids, name="item_id"))
    scorer = model_probs.drop_duplicates("item_id").set_index("item_id").reindex(pd.Index(v.item_ids))
    consensus = pd.DataFrame({"item_id": v.item_ids.astype(str)})
    for col, dtype in ITEM_META_TYPES.items():
        values = meta[col].to_numpy() if col in meta.columns else [None] * len(consensus)
        consensus[col] = pd.array(values, dtype=dtype)
    consensus["consensus_label"] = labels[r.consensus_label]
    consensus["consensus_quality_score"] = r.consensus_quality_score
    consensus["annotator_agreement"] = r.annotator_agreement
    consensus["num_annotations"] = r.num_annotations
    consensus["majority_vote_label"] = labels[mv]
    consensus["dawid_skene_label"] = labels[ds]
    consensus["glad_label"] = pd.array(labels[gl] if gl is not None else [None] * len(consensus), dtype="string")
    consensus["model_prior_scorer"] = pd.array(scorer["scorer"].to_numpy() if "scorer" in scorer.columns else [None] * len(consensus), dtype="string")
    consensus["consensus_method"] = run.method
    method = run.method
    rows = np.arange(len(consensus))
    consensus["source"] = CONSENSUS_SOURCE
    consensus["consensus_probability"] = r.post_pred_probs[rows, r.consensus_label]
    consensus["crowdlab_label"] = labels[r.consensus_label]
    usable = _usable_gold(gold, classes, v.item_ids, notes)
    if len(usable):
        aware = gold_aware_consensus(v, gold_codes(usable, v))
        consensus["consensus_label"] = aware["consensus_label"].to_numpy()
        consensus["source"] = aware["source"].to_numpy()
        consensus["consensus_probability"] = aware["consensus_probability"].to_numpy()
        consensus["consensus_method"] = method = GOLD_METHOD
        notes.append(
            f"gold on {len(usable)} of {len(consensus)} items: they keep their gold (source ground_truth); the others "
            f"get the gold-calibrated {GOLD_METHOD} label (CROWDLAB's is in crowdlab_label)"
        )

    human_names = [a for a in chosen if kinds.get(a) == "human"]
    human = _human_consensus(judgments, classes, human_names, model_probs, seed, notes)

    stats = pd.DataFrame({"annotator": v.annotators.astype(str)})
    stats["annotator_kind"] = [kinds.get(a) for a in v.annotators]
    stats["annotator_group"] = [annotator_group(a, k) for a, k in zip(stats["annotator"], stats["annotator_kind"])]
    stats["annotator_quality"] = r.annotator_quality
    stats["agreement_with_consensus"] = r.agreement_with_consensus
    stats["worst_class"] = labels[r.worst_class]
    stats["num_examples_labeled"] = r.num_examples_labeled
    stats["annotator_weight"] = r.annotator_weight

    # item_ids and annotators are sorted, so ordering by their indices is ordering by (item_id, annotator),
    # without sorting or copying 10M strings
    by_pair = np.lexsort((v.annotator, v.item))
    detail = pd.DataFrame(
        {
            "item_id": v.item_ids[v.item[by_pair]],
            "annotator": v.annotators[v.annotator[by_pair]],
            "label": labels[v.label[by_pair]],
            "label_quality_score": r.label_quality[by_pair],
        }
    )

    report = judge_report_card(
        judgments=judgments,
        human_consensus=human,
        classes=classes,
        llm_annotators=[a for a in judgments["annotator"].unique() if kinds.get(a) == "llm"],
        llm_judge_scores=llm_judge_scores,
    )
    tables = {
        "consensus_labels": consensus,
        "human_consensus_labels": human,
        "annotator_stats": stats,
        "label_quality_detail": detail,
        "annotator_group_summary": annotator_group_summary(stats),
        "aggregator_comparison": aggregator_comparison(consensus.assign(consensus_label=consensus["crowdlab_label"])),
        "judge_report_card": report,
    }
    return ConsensusTables(tables=tables, method=method, notes=notes, classes=classes, prior=run.pred_probs, glad=glad_status)


def _usable_gold(gold: pd.Series | None, classes: tuple[str, ...], item_ids: np.ndarray, notes: list[str]) -> pd.Series:
    """The gold labels (by item id) on voted items whose label is a class (after the tie option)."""
    if gold is None or gold.empty:
        return pd.Series(dtype=object)
    gold = gold[gold.index.isin(item_ids)]
    outside = ~gold.isin(classes)
    if outside.any():
        notes.append(f"{int(outside.sum())} gold label(s) outside the classes {list(classes)} ignored (e.g. drop_ties)")
    return gold[~outside]


def _human_consensus(
    judgments: pd.DataFrame, classes: tuple[str, ...], humans: list[str], model_probs: pd.DataFrame, seed: int, notes: list[str]
) -> pd.DataFrame:
    """CROWDLAB over the human annotators only (so LLM judges can be scored without circularity).

    Columns: ``item_id, human_consensus_label, human_consensus_quality_score,
    num_human_annotations``; one row per item with at least one human vote.
    """
    columns = ["item_id", "human_consensus_label", "human_consensus_quality_score", "num_human_annotations"]
    frame = judgments[judgments["annotator"].isin(humans)]
    if frame.empty:
        notes.append("no human votes: human_consensus_labels is empty and judges cannot be scored")
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(columns, ("object", "object", "float64", "int64"))})
    votes = Votes.from_frame(frame, classes, annotators=sorted(humans))
    run = robust_crowdlab(votes, prior_matrix(model_probs, votes.item_ids, classes), seed=seed)
    notes += [f"human-only consensus: {n}" for n in run.notes]
    return pd.DataFrame(
        {
            "item_id": run.votes.item_ids.astype(str),
            "human_consensus_label": np.asarray(classes, dtype=object)[run.result.consensus_label],
            "human_consensus_quality_score": run.result.consensus_quality_score,
            "num_human_annotations": run.result.num_annotations,
        }
    )


def annotator_group_summary(stats: pd.DataFrame) -> pd.DataFrame:
    """Quality per annotator group and per kind, from ``annotator_stats``.

    Columns: ``level`` ('annotator_group' — author / expert / llm / human — or
    'annotator_kind' — human / llm), ``group``, ``n_annotators``, ``n_labels``,
    ``mean_quality``, ``median_quality`` (NaN qualities skipped), ``mean_agreement_with_consensus``.
    """
    parts = []
    for level in ("annotator_group", "annotator_kind"):
        g = stats.groupby(level, dropna=False)
        part = pd.DataFrame(
            {
                "n_annotators": g["annotator"].count(),
                "n_labels": g["num_examples_labeled"].sum(),
                "mean_quality": g["annotator_quality"].mean(),
                "median_quality": g["annotator_quality"].median(),
                "mean_agreement_with_consensus": g["agreement_with_consensus"].mean(),
            }
        ).reset_index(names="group")
        part.insert(0, "level", level)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def aggregator_comparison(consensus: pd.DataFrame) -> pd.DataFrame:
    """How often the aggregators agree, overall (``category`` NULL) and per category.

    Columns: ``scope`` ('overall' | 'category'), ``category``, ``n_items``,
    ``crowdlab_vs_majority``, ``crowdlab_vs_dawid_skene``, ``majority_vs_dawid_skene``,
    ``all_agree`` (shares of items in [0, 1]); ``crowdlab_vs_glad`` when GLAD ran.
    """
    frame = consensus.assign(
        crowdlab_vs_majority=consensus["consensus_label"] == consensus["majority_vote_label"],
        crowdlab_vs_dawid_skene=consensus["consensus_label"] == consensus["dawid_skene_label"],
        majority_vs_dawid_skene=consensus["majority_vote_label"] == consensus["dawid_skene_label"],
    )
    metrics = ["crowdlab_vs_majority", "crowdlab_vs_dawid_skene", "majority_vs_dawid_skene"]
    frame["all_agree"] = frame[metrics].all(axis=1)
    metrics.append("all_agree")
    if consensus["glad_label"].notna().any():
        frame["crowdlab_vs_glad"] = consensus["consensus_label"] == consensus["glad_label"]
        metrics.append("crowdlab_vs_glad")
    overall = frame[metrics].mean().to_frame().T
    overall.insert(0, "n_items", len(frame))
    overall.insert(0, "category", pd.array([None], dtype="string"))
    overall.insert(0, "scope", "overall")
    rows = [overall]
    if frame["category"].notna().any():
        g = frame.groupby("category")
        per = g[metrics].mean()
        per.insert(0, "n_items", g.size())
        per = per.reset_index()
        per["category"] = per["category"].astype("string")
        per.insert(0, "scope", "category")
        rows.append(per)
    out = pd.concat(rows, ignore_index=True)
    out["n_items"] = out["n_items"].astype("int64")
    return out




def reliability_table(prior: np.ndarray, consensus: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Calibration of the model prior against the consensus labels.

    ``prior``: shape (N, K); ``consensus``: shape (N,) int codes. Bins the prior's top-class
    confidence; columns ``bin_lower, bin_upper, n_items, mean_confidence, accuracy``
    (accuracy = share of items whose prior argmax equals the consensus label).
    """
    confidence = prior.max(axis=1)
    correct = prior.argmax(axis=1) == consensus
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            rows.append((edges[b], edges[b + 1], int(mask.sum()), float(confidence[mask].mean()), float(correct[mask].mean())))
    return pd.DataFrame(rows, columns=["bin_lower", "bin_upper", "n_items", "mean_confidence", "accuracy"])
