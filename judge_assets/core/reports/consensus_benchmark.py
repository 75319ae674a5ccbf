"""Held-out vote benchmark: which consensus method best predicts a vote it has not seen?

There is no ground truth for preference data, so consensus methods are compared on a proxy
every dataset has: hide one real human vote per item, compute the consensus from everything
else, and count how often the consensus label equals the hidden vote.

Protocol (:func:`held_out_splits`, :func:`run_benchmark`):

1. Items with at least ``min_human_votes`` human votes are evaluated (``annotator_kind ==
   'human'``; a table without ``annotator_kind`` counts every annotator as human).
2. Per seed, one human vote of each evaluated item is drawn uniformly (``numpy`` generator
   seeded with the seed, over votes sorted by item and annotator, so the draw does not depend
   on row order) and removed. :class:`HeldOutSplit` holds the remaining ``visible`` judgments
   and the ``hidden`` votes as two separate frames.
3. Every method gets only a :class:`BenchmarkInput` built from ``visible`` (its votes, the
   item table, the classes, the seed, optional LLM logprob scores) and returns a class code
   per voted item. Trained model priors are fit on labels derived from ``visible`` only.
   The ``items`` table carries no votes; its unsupervised features are computed once.
4. Accuracy = share of evaluated items whose consensus equals the hidden vote; repeated for
   every seed, summarised as mean and standard deviation (:func:`summarize`).

**On gold** (:func:`gold_scores`): when some items have gold labels, every method is also
scored against them (``gold_accuracy``, its 95% Wilson interval and ``gold_n``), next to the
held-out-vote score, and the gold-aware methods of :mod:`judge_assets.core.reports.ground_truth`
(``gold_mixture``, the default with gold, ``gold_weighted_vote``, ``best_judge_on_gold``) join the
ranking, cross-fitted (each gold item predicted from the other folds' gold only). The
unsupervised methods never see gold, so each is run once on all votes and scored on the gold items.

A method may abstain on an item (code ``-1``; e.g. an LLM judge that did not vote on it);
its ``n_items`` then counts the items it answered. Without any item of ``min_human_votes`` human
votes there is nothing to hold out: the result is empty and :func:`skip_reason` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from judge_assets.core.consensus.methods import dawid_skene, glad, robust_crowdlab
from judge_assets.core.consensus.tables import prior_matrix
from judge_assets.core.consensus.majority import majority_vote
from judge_assets.core.scoring.prior import (
    build_model_probs,
    classifier_prior,
    clip_probs,
    item_features,
    prior_training_labels,
    uniform_prior,
)
from judge_assets.core.consensus.votes import Votes

DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)

#: The method the project uses for ``consensus_labels`` (best on MT-Bench, see the README).
DEFAULT_METHOD = "CROWDLAB, OOF classifier prior"


@dataclass(frozen=True)
class HeldOutSplit:
    """One seed's split. ``visible``: the judgments rows that stay (all input columns);
    ``hidden``: ``item_id, annotator, label`` — one removed human vote per evaluated item."""

    seed: int
    visible: pd.DataFrame
    hidden: pd.DataFrame


@dataclass(frozen=True)
class BenchmarkInput:
    """Everything a method may look at; built from a split's ``visible`` frame only.

    ``votes``: the visible votes of all annotators (items = items with a visible vote).
    ``visible``: the same votes as a frame (``item_id, annotator, label`` [+ ``annotator_kind``]).
    ``items``: the item table (no votes in it). ``features``: :func:`item_features` of ``items``,
    row-aligned. ``llm_annotators``: names whose ``annotator_kind`` is ``'llm'``.
    ``llm_scores``: optional ``llm_judge_scores`` rows.
    """

    votes: Votes
    visible: pd.DataFrame
    items: pd.DataFrame
    features: sp.spmatrix
    classes: tuple[str, ...]
    seed: int
    llm_annotators: tuple[str, ...]
    llm_scores: pd.DataFrame | None


#: A consensus method: class codes shape (n_items,) aligned with ``inp.votes.item_ids``; -1 = abstain.
Method = Callable[[BenchmarkInput], np.ndarray]


def _is_human(judgments: pd.DataFrame) -> np.ndarray:
    if "annotator_kind" not in judgments.columns:
        return np.ones(len(judgments), dtype=bool)
    return (judgments["annotator_kind"] == "human").to_numpy()


def _human_votes_per_item(judgments: pd.DataFrame) -> pd.Series:
    return judgments[_is_human(judgments)].groupby("item_id").size()


def skip_reason(judgments: pd.DataFrame, min_human_votes: int = 3) -> str | None:
    """Why the benchmark has nothing to evaluate in ``judgments`` (no item with ``min_human_votes``
    human votes), as one line for a person; None when it has."""
    counts = _human_votes_per_item(judgments)
    if (counts >= min_human_votes).any():
        return None
    most = int(counts.max()) if len(counts) else 0
    return f"needs items with ≥{min_human_votes} human votes; found 0 (the most human votes on one item: {most})"


def held_out_splits(
    judgments: pd.DataFrame, min_human_votes: int = 3, seeds: tuple[int, ...] = DEFAULT_SEEDS
) -> list[HeldOutSplit]:
    """One :class:`HeldOutSplit` per seed (see the module docstring, steps 1-2); none when no item
    has ``min_human_votes`` human votes (:func:`skip_reason`).

    ``judgments``: one row per (item, annotator) vote with ``item_id, annotator, label``
    (optional ``annotator_kind``). Raises ``ValueError`` when columns are missing or a pair votes
    twice.
    """
    missing = {"item_id", "annotator", "label"} - set(judgments.columns)
    if missing:
        raise ValueError(f"judgments lacks column(s) {sorted(missing)}")
    if min_human_votes < 2:
        raise ValueError(f"min_human_votes must be at least 2 (one vote is hidden), got {min_human_votes}")
    if judgments.duplicated(["item_id", "annotator"]).any():
        raise ValueError("judgments has an (item_id, annotator) pair more than once")
    frame = judgments.reset_index(drop=True)
    counts = _human_votes_per_item(frame)
    eligible = counts.index[counts >= min_human_votes]
    if len(eligible) == 0:
        return []
    human = frame[_is_human(frame)]
    candidates = human[human["item_id"].isin(eligible)].sort_values(["item_id", "annotator"])
    splits = []
    for seed in seeds:
        draw = pd.Series(np.random.default_rng(seed).random(len(candidates)), index=candidates.index)
        hidden_rows = draw.groupby(candidates["item_id"]).idxmin().to_numpy()
        hidden = frame.loc[hidden_rows, ["item_id", "annotator", "label"]].reset_index(drop=True)
        visible = frame.drop(index=hidden_rows).reset_index(drop=True)
        splits.append(HeldOutSplit(seed=seed, visible=visible, hidden=hidden))
    return splits


# --------------------------------------------------------------------------- methods


def _crowdlab_codes(votes: Votes, pred_probs: np.ndarray, seed: int) -> np.ndarray:
    """CROWDLAB consensus codes aligned with ``votes.item_ids``; -1 for items without a vote."""
    run = robust_crowdlab(votes, pred_probs, seed=seed)
    codes = np.full(votes.n_items, -1, dtype=np.int64)
    codes[pd.Index(votes.item_ids).get_indexer(run.votes.item_ids)] = run.result.consensus_label
    return codes


def _prior_for(inp: BenchmarkInput, model_probs: pd.DataFrame) -> np.ndarray:
    return prior_matrix(model_probs, inp.votes.item_ids, inp.classes)


def method_majority_vote(inp: BenchmarkInput) -> np.ndarray:
    """Majority vote (cleanlab's tie-break rule), all visible votes."""
    return majority_vote(inp.votes, seed=inp.seed)


def method_dawid_skene(inp: BenchmarkInput) -> np.ndarray:
    """Dawid-Skene (crowd-kit, 100 iterations)."""
    return dawid_skene(inp.votes)[0]


def method_glad(inp: BenchmarkInput) -> np.ndarray:
    """GLAD (crowd-kit)."""
    return glad(inp.votes)[0]


def method_crowdlab_uniform(inp: BenchmarkInput) -> np.ndarray:
    """CROWDLAB with a uniform model prior."""
    probs = uniform_prior(inp.votes.item_ids, inp.classes)
    return _crowdlab_codes(inp.votes, _prior_for(inp, probs), inp.seed)


def method_crowdlab_oof(inp: BenchmarkInput) -> np.ndarray:
    """CROWDLAB with the out-of-fold classifier prior trained on the visible human majority
    labels (:func:`prior_training_labels`) — the project default."""
    labels = prior_training_labels(inp.visible, inp.classes, seed=inp.seed)
    probs = classifier_prior(inp.items, labels, inp.classes, seed=inp.seed, features=inp.features)
    return _crowdlab_codes(inp.votes, _prior_for(inp, probs), inp.seed)


def method_crowdlab_oof_all_votes(inp: BenchmarkInput) -> np.ndarray:
    """CROWDLAB with the out-of-fold classifier prior trained on the majority of all visible
    votes (LLM judges included) — the variant the default improves on."""
    codes = majority_vote(inp.votes, seed=inp.seed)
    labels = pd.Series(np.asarray(inp.classes, dtype=object)[codes], index=inp.votes.item_ids)
    probs = classifier_prior(inp.items, labels, inp.classes, seed=inp.seed, features=inp.features)
    return _crowdlab_codes(inp.votes, _prior_for(inp, probs), inp.seed)


def method_crowdlab_llm_logprobs(inp: BenchmarkInput) -> np.ndarray:
    """CROWDLAB with the ``model_probs`` prior: LLM logprob rows where present, the
    out-of-fold classifier elsewhere."""
    labels = prior_training_labels(inp.visible, inp.classes, seed=inp.seed)
    probs = build_model_probs(inp.items, labels, inp.llm_scores, inp.classes, seed=inp.seed, features=inp.features)
    return _crowdlab_codes(inp.votes, _prior_for(inp, probs), inp.seed)


def _llm_vote_probs(inp: BenchmarkInput) -> tuple[np.ndarray, np.ndarray]:
    """Per item of ``inp.votes``: the mean one-hot vote of the LLM annotators, shape (N, K),
    and whether any LLM voted, shape (N,)."""
    is_llm = np.isin(inp.votes.annotators, list(inp.llm_annotators))[inp.votes.annotator]
    counts = np.zeros((inp.votes.n_items, len(inp.classes)))
    np.add.at(counts, (inp.votes.item[is_llm], inp.votes.label[is_llm]), 1.0)
    voted = counts.sum(axis=1) > 0
    return counts, voted


def method_llm_judge_alone(inp: BenchmarkInput) -> np.ndarray:
    """The LLM judges' own (majority) vote; abstains where no LLM judge voted."""
    counts, voted = _llm_vote_probs(inp)
    return np.where(voted, counts.argmax(axis=1), -1)


def method_crowdlab_llm_as_prior(inp: BenchmarkInput) -> np.ndarray:
    """CROWDLAB over the human votes with the LLM judges' vote (clipped one-hot) as the model
    prior instead of as an annotator; uniform where no LLM judge voted."""
    counts, voted = _llm_vote_probs(inp)
    prior = np.full(counts.shape, 1.0 / len(inp.classes))
    prior[voted] = clip_probs(counts[voted] / counts[voted].sum(axis=1, keepdims=True))
    human_votes = inp.votes.subset_annotators(~np.isin(inp.votes.annotators, list(inp.llm_annotators)))
    return _crowdlab_codes(human_votes, prior, inp.seed)  # items without a human vote: -1


def default_methods(judgments: pd.DataFrame, llm_scores: pd.DataFrame | None = None, *, include_glad: bool = True) -> dict[str, Method]:
    """The methods that apply to this dataset: the LLM-judge ones only when ``judgments`` has
    ``annotator_kind == 'llm'`` votes, the logprob prior only with usable ``llm_scores``,
    GLAD unless ``include_glad`` is false (it is the slowest)."""
    methods: dict[str, Method] = {}
    has_llm = "annotator_kind" in judgments.columns and (judgments["annotator_kind"] == "llm").any()
    if has_llm:
        methods["LLM judge alone"] = method_llm_judge_alone
    methods["majority vote"] = method_majority_vote
    methods["Dawid-Skene"] = method_dawid_skene
    if include_glad:
        methods["GLAD"] = method_glad
    methods["CROWDLAB, uniform prior"] = method_crowdlab_uniform
    if has_llm:
        methods["CROWDLAB, LLM judge as prior"] = method_crowdlab_llm_as_prior
        methods["CROWDLAB, OOF classifier prior (all-vote majority)"] = method_crowdlab_oof_all_votes
    if llm_scores is not None and (llm_scores.get("status") == "ok").any():
        methods["CROWDLAB, LLM logprob prior"] = method_crowdlab_llm_logprobs
    methods[DEFAULT_METHOD] = method_crowdlab_oof
    return methods


# --------------------------------------------------------------------------- running


def benchmark_input(
    split: HeldOutSplit,
    items: pd.DataFrame,
    classes: tuple[str, ...],
    features: sp.spmatrix,
    llm_scores: pd.DataFrame | None = None,
) -> BenchmarkInput:
    """The :class:`BenchmarkInput` of a split: built from ``split.visible`` and never from
    ``split.hidden``."""
    visible = split.visible
    llm = ()
    if "annotator_kind" in visible.columns:
        llm = tuple(sorted(visible.loc[visible["annotator_kind"] == "llm", "annotator"].unique()))
    return BenchmarkInput(
        votes=Votes.from_frame(visible, tuple(classes)),
        visible=visible,
        items=items,
        features=features,
        classes=tuple(classes),
        seed=split.seed,
        llm_annotators=llm,
        llm_scores=llm_scores,
    )


def _items_frame(judgments: pd.DataFrame, items: pd.DataFrame | None) -> pd.DataFrame:
    """``items`` covering every judged item (judged items missing from ``items`` get a bare row)."""
    judged = pd.Index(judgments["item_id"].unique())
    if items is None or items.empty:
        return pd.DataFrame({"item_id": np.sort(judged.to_numpy())})
    absent = judged.difference(pd.Index(items["item_id"]))
    if len(absent):
        items = pd.concat([items, pd.DataFrame({"item_id": absent.to_numpy()})], ignore_index=True)
    return items.drop_duplicates("item_id").reset_index(drop=True)


def run_benchmark(
    judgments: pd.DataFrame,
    items: pd.DataFrame | None,
    classes: tuple[str, ...],
    methods: Mapping[str, Method] | None = None,
    seeds: tuple[int, ...] = DEFAULT_SEEDS,
    *,
    min_human_votes: int = 3,
    llm_scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Run every method on every seed's split.

    ``judgments``: vote rows (see :func:`held_out_splits`); ``items``: the item table (None or
    empty: bare item ids, the classifier then learns only the class balance); ``classes``: the
    label set; ``methods``: name → :data:`Method` (default :func:`default_methods`).

    Returns one row per (method, seed): ``method, seed, n_items`` (evaluated items the method
    answered), ``n_correct``, ``accuracy`` (= n_correct / n_items); no rows when no item has
    ``min_human_votes`` human votes (:func:`skip_reason`).
    """
    classes = tuple(classes)
    bad = sorted(set(judgments["label"]) - set(classes))
    if bad:
        raise ValueError(f"judgments has labels outside the class set {list(classes)}: {bad[:10]}")
    splits = held_out_splits(judgments, min_human_votes, seeds)
    rows = []
    if not splits:
        return _runs_frame(rows)
    methods = default_methods(judgments, llm_scores) if methods is None else dict(methods)
    items = _items_frame(judgments, items)
    features = item_features(items)
    for split in splits:
        inp = benchmark_input(split, items, classes, features, llm_scores)
        position = pd.Index(inp.votes.item_ids).get_indexer(split.hidden["item_id"])
        truth = pd.Index(classes).get_indexer(split.hidden["label"])
        for name, method in methods.items():
            codes = np.asarray(method(inp))
            if codes.shape != (inp.votes.n_items,):
                raise ValueError(f"method {name!r} returned shape {codes.shape}, expected ({inp.votes.n_items},)")
            predicted = codes[position]
            answered = predicted >= 0
            n_items = int(answered.sum())
            n_correct = int((predicted[answered] == truth[answered]).sum())
            rows.append((name, split.seed, n_items, n_correct, n_correct / n_items if n_items else float("nan")))
    return _runs_frame(rows)


GOLD_COLUMNS = ["method", "gold_n", "gold_accuracy", "gold_ci_low", "gold_ci_high"]
#: the gold-aware methods :func:`gold_scores` adds (names of ``ground_truth.standard_methods``)
GOLD_AWARE_METHODS = ("gold_mixture", "gold_weighted_vote", "best_judge_on_gold")


def gold_scores(
    judgments: pd.DataFrame,
    items: pd.DataFrame | None,
    classes: tuple[str, ...],
    gold: pd.Series,
    methods: Mapping[str, Method] | None = None,
    *,
    llm_scores: pd.DataFrame | None = None,
    k: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Every method's accuracy on the gold items: one row per method, :data:`GOLD_COLUMNS`.

    ``gold``: gold labels by item id (``gold_labels``). ``methods`` (default
    :func:`default_methods`) run once on all of ``judgments`` (they ignore gold) and are scored on
    the gold items they answer; the :data:`GOLD_AWARE_METHODS` are cross-fitted
    (:func:`judge_assets.core.reports.ground_truth.cross_fit_predictions`, ``k`` folds, ``seed``).
    Empty when no voted item has gold.
    """
    from judge_assets.core.reports.ground_truth import cross_fit_predictions, gold_codes, standard_methods, wilson_interval

    classes = tuple(classes)
    gold = gold[gold.index.isin(judgments["item_id"])]
    if gold.empty:
        return pd.DataFrame({c: pd.Series(dtype="string" if c == "method" else "float64") for c in GOLD_COLUMNS})
    methods = default_methods(judgments, llm_scores) if methods is None else dict(methods)
    items = _items_frame(judgments, items)
    split = HeldOutSplit(seed=seed, visible=judgments.reset_index(drop=True), hidden=judgments.iloc[:0][["item_id", "annotator", "label"]])
    inp = benchmark_input(split, items, classes, item_features(items), llm_scores)
    truth = gold_codes(gold, inp.votes)
    known = np.flatnonzero(truth >= 0)
    pairs = [pd.DataFrame({"method": name, "gold": truth[known], "predicted": np.asarray(method(inp))[known]}) for name, method in methods.items()]
    standard = standard_methods(seed=seed)
    aware = cross_fit_predictions(inp.votes, truth, {name: standard[name] for name in GOLD_AWARE_METHODS}, k=k, seed=seed)
    pairs.append(aware[["method", "gold", "predicted"]])
    frame = pd.concat(pairs, ignore_index=True)
    frame = frame[frame["predicted"] >= 0]
    grouped = frame.assign(correct=frame["gold"] == frame["predicted"]).groupby("method", sort=False)["correct"]
    n, correct = grouped.size(), grouped.sum()
    low, high = wilson_interval(correct.to_numpy(), n.to_numpy())
    out = pd.DataFrame({"method": n.index.astype(str), "gold_n": n.to_numpy(dtype=float), "gold_accuracy": (correct / n).to_numpy(),
                        "gold_ci_low": low, "gold_ci_high": high})
    return out.astype({"method": "string"})


def _runs_frame(rows: list[tuple]) -> pd.DataFrame:
    """The per-seed runs with fixed column types (also when there are none)."""
    frame = pd.DataFrame(rows, columns=["method", "seed", "n_items", "n_correct", "accuracy"])
    return frame.astype({"method": "string", "seed": "int64", "n_items": "int64", "n_correct": "int64", "accuracy": "float64"})


def summarize(runs: pd.DataFrame, default_method: str = DEFAULT_METHOD, gold: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method: ``method, mean_accuracy, std_accuracy`` (sample std over seeds; NaN with one
    seed), ``n_items`` (mean evaluated items per seed), ``n_seeds``, ``is_default``; best first.

    With ``gold`` (:func:`gold_scores`, not empty): its columns are joined on ``method`` (the
    gold-aware methods have no held-out-vote score: NaN), the default is ``gold_mixture`` (what
    ``consensus_labels`` uses with gold), and rows are ranked by ``gold_accuracy``."""
    grouped = runs.groupby("method", sort=False)
    out = pd.DataFrame(
        {
            "mean_accuracy": grouped["accuracy"].mean(),
            "std_accuracy": grouped["accuracy"].std(ddof=1),
            "n_items": grouped["n_items"].mean(),
            "n_seeds": grouped["seed"].nunique(),
        }
    ).reset_index()
    if gold is not None and len(gold):
        out = out.astype({"method": "string"}).merge(gold, on="method", how="outer")
        out["n_seeds"] = out["n_seeds"].fillna(0).astype("int64")
        out["is_default"] = out["method"] == GOLD_AWARE_METHODS[0]
        return out.sort_values(["gold_accuracy", "mean_accuracy"], ascending=False, ignore_index=True, na_position="last")
    out["is_default"] = out["method"] == default_method
    return out.sort_values("mean_accuracy", ascending=False, ignore_index=True)


def markdown_table(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table (accuracy in percent, mean ± std), default marked."""
    on_gold = "gold_accuracy" in summary.columns
    lines = ["| method | held-out vote accuracy | n items |" + (" accuracy on gold | n gold |" if on_gold else ""),
             "|---|---|---|" + ("---|---|" if on_gold else "")]
    for row in summary.itertuples(index=False):
        std = "" if pd.isna(row.std_accuracy) else f" ± {100 * row.std_accuracy:.1f}"
        name = f"**{row.method}** (default)" if row.is_default else row.method
        held = "—" if pd.isna(row.mean_accuracy) else f"{100 * row.mean_accuracy:.1f}%{std}"
        n_items = "—" if pd.isna(row.n_items) else f"{row.n_items:.0f}"
        line = f"| {name} | {held} | {n_items} |"
        if on_gold:
            line += " — | — |" if pd.isna(row.gold_accuracy) else f" {100 * row.gold_accuracy:.1f}% | {row.gold_n:.0f} |"
        lines.append(line)
    return "\n".join(lines)
