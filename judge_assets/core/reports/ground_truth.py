"""Ground truth: every judge measured against gold, and consensus calibrated by a few gold labels.

Teams often hold gold labels (``ground_truth``) for part of their items. This module answers two
questions with them:

1. **How accurate is each judge?** :func:`annotator_accuracy`: every annotator (human or LLM)
   against the gold of the items it voted on, overall and per category.
2. **What is the best label for the items without gold?** :func:`gold_mixture` weighs every
   judge, the unsupervised consensus methods and a gold-weighted vote by how probable its gold
   record makes it;
   :func:`gold_aware_consensus` keeps the gold where there is gold (``source = 'ground_truth'``)
   and uses that calibrated consensus elsewhere (``source = 'consensus'``).

Consensus methods are compared on gold by **cross-fitting** (:func:`cross_fit`): the gold items
are split into K folds and every method predicts each fold from the gold of the other folds only,
so an item's own gold never informs its own prediction. :func:`methods_below_baseline` lists the
methods that score below majority vote or below chance on gold (for an asset check).

Conventions (cleanlab multiannotator style): ``N`` items, ``M`` annotators, ``K`` classes; votes
are a sparse :class:`~judge_assets.core.consensus.votes.Votes`; **gold codes** are an int array of
shape (N,) aligned with ``votes.item_ids``, holding the gold class code of an item or ``-1`` where
the item has no gold (:func:`gold_codes`). A **method** is a callable ``method(votes, gold) ->
labels`` returning class codes of shape (N,); unsupervised methods ignore ``gold``.

Score tables (:data:`SCORE_COLUMNS`, one row per judge or method and category, ``category =
'all'`` for all items): ``name``; ``kind`` (``'annotator'`` or ``'method'``); ``category``; ``n``
(gold items scored); ``accuracy`` (share equal to gold); ``ci_low``, ``ci_high`` (95% Wilson score
interval of the accuracy); ``kappa`` (Cohen's kappa against gold; NaN where it is undefined, as in
scikit-learn, e.g. when gold and prediction hold one and the same class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd
from scipy.special import betaln

from judge_assets.core.consensus.majority import majority_vote
from judge_assets.core.consensus.methods import dawid_skene, robust_crowdlab
from judge_assets.core.consensus.votes import Votes

Method = Callable[[Votes, np.ndarray], np.ndarray]

SCORE_COLUMNS = ["name", "kind", "category", "n", "accuracy", "ci_low", "ci_high", "kappa"]
ALL_CATEGORIES = "all"
GOLD_SOURCE = "ground_truth"
CONSENSUS_SOURCE = "consensus"
#: Name of the default gold-aware method in :func:`standard_methods` and score tables.
DEFAULT_METHOD = "gold_mixture"
BASELINE_METHOD = "majority_vote"

#: z of a two-sided 95% normal interval (scipy.stats.norm.ppf(0.975)).
_Z95 = 1.959963984540054
#: Beta prior on an expert's gold accuracy in :func:`gold_mixture`: mean 2/3, i.e. a judge is
#: assumed better than a coin before its gold record is seen (a uniform prior would give a
#: judge right on the one gold item the same evidence as one wrong on it).
_ACCURACY_PRIOR = (2.0, 1.0)
#: Learning rate of the tempered posterior over experts in :func:`gold_mixture` (safe-Bayes
#: style): the judges' errors are correlated, so the model is misspecified and full Bayes
#: concentrates on a lucky expert too fast.
_LEARNING_RATE = 0.5
#: Gold items' worth of the unsupervised accuracy estimate in :func:`gold_weighted_vote`.
_SHRINKAGE = 2.0
#: The experts :func:`gold_mixture` adds after the annotators.
CROWD_EXPERTS = ("majority_vote", "dawid_skene", "gold_weighted_vote")


# --------------------------------------------------------------------------- gold labels


def gold_per_item(frame: pd.DataFrame, *, item_col: str = "item_id", gold_col: str = "ground_truth") -> pd.Series:
    """One gold label per item from long rows that carry a ``ground_truth`` column.

    ``frame``: one row per vote (or per item); ``gold_col`` may be empty (NaN/None) on some rows
    or items. Gold must be constant per item: two different values for one item raise
    ``ValueError`` naming the item and both values.

    Returns a string Series indexed by ``item_id`` (sorted), named ``ground_truth``, holding only
    the items with gold.
    """
    rows = frame.loc[frame[gold_col].notna(), [item_col, gold_col]]
    rows = rows.assign(**{gold_col: rows[gold_col].astype(str)}).drop_duplicates()
    conflicting = rows[rows.duplicated(item_col, keep=False)]
    if len(conflicting):
        item = conflicting[item_col].iloc[0]
        first, second = conflicting.loc[conflicting[item_col] == item, gold_col].iloc[:2]
        raise ValueError(f"item {item!r} has conflicting {gold_col} values {first!r} and {second!r}")
    gold = rows.set_index(item_col)[gold_col].sort_index()
    gold.index.name, gold.name = "item_id", "ground_truth"
    return gold


def gold_codes(gold: pd.Series, votes: Votes) -> np.ndarray:
    """Gold class codes aligned with ``votes.item_ids``: shape (N,), int64, ``-1`` = no gold.

    ``gold``: labels by item id (:func:`gold_per_item`); items that are not in ``votes`` are
    ignored (they have no vote to judge). A gold label outside ``votes.classes`` raises
    ``ValueError`` naming the item.
    """
    codes = pd.Index(list(votes.classes)).get_indexer(gold.to_numpy())
    if (codes < 0).any():
        bad = int(np.flatnonzero(codes < 0)[0])
        raise ValueError(
            f"item {gold.index[bad]!r}: ground_truth {gold.iloc[bad]!r} is not one of the labels {list(votes.classes)}"
        )
    out = np.full(votes.n_items, -1, dtype=np.int64)
    position = pd.Index(votes.item_ids).get_indexer(gold.index)
    out[position[position >= 0]] = codes[position >= 0]
    return out


# --------------------------------------------------------------------------- scores


def wilson_interval(correct: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of ``correct / n``: (low, high), each of the input's shape; NaN where n = 0."""
    correct, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = correct / n
        z2n = _Z95**2 / n
        center = (p + z2n / 2) / (1 + z2n)
        half = _Z95 / (1 + z2n) * np.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return center - half, center + half


def _scores(group: np.ndarray, truth: np.ndarray, predicted: np.ndarray, n_groups: int, n_classes: int) -> pd.DataFrame:
    """Accuracy, Wilson interval and Cohen's kappa per group, from one pass over the pairs.

    ``group``, ``truth``, ``predicted``: shape (n_pairs,), group index in ``[0, n_groups)`` and
    class codes. Returns ``n_groups`` rows: ``n``, ``accuracy``, ``ci_low``, ``ci_high``, ``kappa``.
    Kappa is (p_o - p_e) / (1 - p_e) from each group's K × K confusion counts, equal to
    scikit-learn's ``cohen_kappa_score`` (NaN when p_e = 1).
    """
    confusion = np.bincount(
        (group * n_classes + truth) * n_classes + predicted, minlength=n_groups * n_classes * n_classes
    ).reshape(n_groups, n_classes, n_classes).astype(float)
    n = confusion.sum(axis=(1, 2))
    correct = np.trace(confusion, axis1=1, axis2=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = correct / n
        expected = (confusion.sum(axis=2) * confusion.sum(axis=1)).sum(axis=1) / n**2
        kappa = np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)
    low, high = wilson_interval(correct, n)
    return pd.DataFrame({"n": n.astype(np.int64), "accuracy": observed, "ci_low": low, "ci_high": high, "kappa": kappa})


def _score_table(
    name: np.ndarray, category: np.ndarray | None, truth: np.ndarray, predicted: np.ndarray, kind: str, n_classes: int
) -> pd.DataFrame:
    """:data:`SCORE_COLUMNS` rows for pairs (shape (n_pairs,) each) grouped by name, overall and by category.

    ``category``: shape (n_pairs,) or None; pairs with a missing category count in ``'all'`` only.
    Rows are sorted by name, ``'all'`` first, then the categories in sorted order.
    """
    frames = []
    scopes = [np.full(len(name), ALL_CATEGORIES, dtype=object)]
    if category is not None:
        scopes.append(np.asarray(category, dtype=object))
    for scope in scopes:
        keep = pd.notna(scope)
        name_codes, names = pd.factorize(name[keep], sort=True)
        scope_codes, scope_values = pd.factorize(scope[keep], sort=True)
        width = max(len(scope_values), 1)
        groups, group = np.unique(name_codes * width + scope_codes, return_inverse=True)
        scores = _scores(group, truth[keep], predicted[keep], len(groups), n_classes)
        scores.insert(0, "category", np.asarray(scope_values, dtype=object)[groups % width].astype(str))
        scores.insert(0, "kind", kind)
        scores.insert(0, "name", np.asarray(names, dtype=object)[groups // width].astype(str))
        frames.append(scores)
    out = pd.concat(frames, ignore_index=True)
    out["_order"] = (out["category"] != ALL_CATEGORIES).astype(int)
    out = out.sort_values(["name", "_order", "category"], ignore_index=True)
    return out[SCORE_COLUMNS]


def annotator_accuracy(
    votes_frame: pd.DataFrame, gold: pd.Series, classes: tuple[str, ...], by_category: bool = True
) -> pd.DataFrame:
    """Every annotator (judge) against gold: :data:`SCORE_COLUMNS` rows, ``kind = 'annotator'``.

    ``votes_frame``: one row per vote, columns ``item_id``, ``annotator``, ``label`` (a class of
    ``classes``) and, for per-category rows, ``category``. ``gold``: labels by item id
    (:func:`gold_per_item`). Only votes on items with gold count: ``n`` is the annotator's number
    of such votes, ``accuracy`` the share equal to gold. One row per annotator with ``category =
    'all'``, plus one per (annotator, category) when ``by_category`` and the frame has a
    ``category`` column. An annotator without a vote on a gold item has no row.
    """
    class_index = pd.Index(list(classes))
    scored = votes_frame.assign(_gold=votes_frame["item_id"].map(gold))
    scored = scored[scored["_gold"].notna()]
    truth, predicted = class_index.get_indexer(scored["_gold"]), class_index.get_indexer(scored["label"])
    for column, codes in (("ground_truth", truth), ("label", predicted)):
        if (codes < 0).any():
            row = scored.iloc[int(np.flatnonzero(codes < 0)[0])]
            value = row["_gold"] if column == "ground_truth" else row["label"]
            raise ValueError(f"item {row['item_id']!r}: {column} {value!r} is not one of the labels {list(classes)}")
    category = scored["category"].to_numpy() if by_category and "category" in scored.columns else None
    return _score_table(scored["annotator"].to_numpy(dtype=object), category, truth, predicted, "annotator", len(classes))


# --------------------------------------------------------------------------- cross-fitting


def _folds(gold: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """The gold items (indices where ``gold >= 0``) in ``min(k, n_gold)`` seeded random folds.

    Which fold an item falls in depends on the set of gold items and the seed only, not on the
    gold values.
    """
    gold_items = np.flatnonzero(gold >= 0)
    if len(gold_items) == 0:
        raise ValueError("cross-fitting needs at least one item with gold; found none")
    if k < 2:
        raise ValueError(f"k must be at least 2; got {k}")
    order = np.random.default_rng(seed).permutation(gold_items)
    return [np.sort(fold) for fold in np.array_split(order, min(k, len(gold_items)))]


def _out_of_fold(votes: Votes, gold: np.ndarray, method: Method, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, fold), each shape (N,): every gold item's label from ``method`` called with the gold
    of its fold hidden (``-1``), and its fold number; ``-1`` in both for items without gold."""
    labels = np.full(votes.n_items, -1, dtype=np.int64)
    fold_of = np.full(votes.n_items, -1, dtype=np.int64)
    for number, fold in enumerate(_folds(gold, k, seed)):
        train = gold.copy()
        train[fold] = -1
        predicted = np.asarray(method(votes, train))
        if predicted.shape != (votes.n_items,):
            raise ValueError(f"a method returned shape {predicted.shape}, expected ({votes.n_items},)")
        labels[fold], fold_of[fold] = predicted[fold], number
    return labels, fold_of


def _check_gold(votes: Votes, gold: np.ndarray) -> np.ndarray:
    gold = np.asarray(gold, dtype=np.int64)
    if gold.shape != (votes.n_items,):
        raise ValueError(f"gold has shape {gold.shape}, expected (n_items,) = ({votes.n_items},)")
    return gold


def cross_fit_predictions(
    votes: Votes, gold: np.ndarray, methods: Mapping[str, Method], k: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Out-of-fold predictions of every method for every gold item.

    ``gold``: gold codes, shape (N,), ``-1`` = no gold (:func:`gold_codes`). The gold items are
    split into ``k`` seeded folds (the same folds for every method); for each fold every method
    gets ``gold`` with that fold's entries set to ``-1`` and predicts all N items; its labels for
    the fold's items are kept. So no item's gold reaches the call that predicts it.

    Returns one row per (method, gold item): ``method``, ``item_id``, ``item`` (index into
    ``votes.item_ids``), ``fold``, ``gold``, ``predicted`` (class codes). Each method is called
    ``min(k, n_gold)`` times.
    """
    gold = _check_gold(votes, gold)
    known = np.flatnonzero(gold >= 0)
    frames = []
    for name, method in methods.items():
        labels, fold = _out_of_fold(votes, gold, method, k, seed)
        frames.append(pd.DataFrame({
            "method": name, "item_id": votes.item_ids[known], "item": known, "fold": fold[known],
            "gold": gold[known], "predicted": labels[known],
        }))
    return pd.concat(frames, ignore_index=True)


def cross_fit(
    votes: Votes,
    gold: np.ndarray,
    methods: Mapping[str, Method],
    k: int = 5,
    seed: int = 0,
    categories: np.ndarray | None = None,
) -> pd.DataFrame:
    """Cross-fitted accuracy of every method on gold: :data:`SCORE_COLUMNS` rows, ``kind = 'method'``.

    ``gold``: gold codes, shape (N,) (:func:`gold_codes`); ``methods``: name → method (e.g.
    :func:`standard_methods`); ``categories``: optional shape (N,) category of each item, for
    per-category rows beside ``'all'``. Scores are those of :func:`cross_fit_predictions`:
    every gold item is predicted once, by a call that did not see its gold; ``n`` is the number of
    gold items.
    """
    predictions = cross_fit_predictions(votes, gold, methods, k=k, seed=seed)
    category = None if categories is None else np.asarray(categories, dtype=object)[predictions["item"].to_numpy()]
    return _score_table(
        predictions["method"].to_numpy(dtype=object), category, predictions["gold"].to_numpy(),
        predictions["predicted"].to_numpy(), "method", votes.n_classes,
    )


# --------------------------------------------------------------------------- gold-aware consensus


def judge_labels(votes: Votes, annotator: int, fallback: np.ndarray) -> np.ndarray:
    """Annotator ``annotator``'s labels as a predictor of every item: its vote where it voted,
    ``fallback`` (shape (N,), e.g. the majority vote) elsewhere. Shape (N,), int64."""
    out = np.asarray(fallback, dtype=np.int64).copy()
    mine = votes.annotator == annotator
    out[votes.item[mine]] = votes.label[mine]
    return out


def _judge_gold_correct(votes: Votes, gold: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Gold items each annotator gets right as a predictor (:func:`judge_labels`): shape (M,).

    Every annotator is scored on all gold items (its vote where it voted, ``fallback`` elsewhere),
    so the counts are comparable across annotators with different coverage. O(n_votes).
    """
    known = gold >= 0
    fallback_right = known & (fallback == gold)
    on_gold = known[votes.item]
    item, annotator, label = votes.item[on_gold], votes.annotator[on_gold], votes.label[on_gold]
    own_right = np.bincount(annotator, weights=label == gold[item], minlength=votes.n_annotators)
    replaced = np.bincount(annotator, weights=fallback_right[item], minlength=votes.n_annotators)
    return own_right + (fallback_right.sum() - replaced)


def best_judges_on_gold(votes: Votes, gold: np.ndarray) -> np.ndarray:
    """Indices (into ``votes.annotators``) of the annotators tied for the most gold items right.

    ``gold``: gold codes, shape (N,). An annotator is scored as :func:`judge_labels` with the
    majority vote where it did not vote, so every annotator is scored on the same gold items. This
    is the judge that "looks best on gold" — the baseline a gold-aware consensus must beat.
    """
    correct = _judge_gold_correct(votes, gold, majority_vote(votes))
    return np.flatnonzero(correct == correct.max())


def best_judge_on_gold(votes: Votes, gold: np.ndarray, seed: int = 0) -> np.ndarray:
    """Labels (shape (N,)) of one judge among :func:`best_judges_on_gold`, drawn with ``seed``
    (a user picking one of the judges that tie on gold), majority vote where it did not vote."""
    tied = best_judges_on_gold(votes, gold)
    chosen = tied[np.random.default_rng(seed).integers(len(tied))]
    return judge_labels(votes, int(chosen), majority_vote(votes))


def gold_weighted_vote(votes: Votes, gold: np.ndarray) -> np.ndarray:
    """A vote weighted by each annotator's log-odds accuracy on gold: class codes, shape (N,).

    ``gold``: gold codes, shape (N,). Annotator j voted on ``n_j`` gold items and got ``c_j``
    right; ``u_j`` is its agreement with the majority vote on the items without gold (add-one
    smoothed), the unsupervised estimate. Its accuracy estimate ``a_j = (c_j + s·u_j) / (n_j + s)``
    shrinks the gold record toward ``u_j`` with the weight of ``s = 2`` gold items, so an annotator
    with few gold items keeps mostly its unsupervised estimate. Vote weight:
    ``log(a_j (K - 1) / (1 - a_j))`` (Bayes-optimal for independent annotators with symmetric
    errors; negative below chance). Ties go to the lower class code. O(n_votes).
    """
    gold = _check_gold(votes, gold)
    n_annotators, n_classes = votes.n_annotators, votes.n_classes
    majority = majority_vote(votes)
    on_gold = (gold >= 0)[votes.item]
    annotator, item, label = votes.annotator, votes.item, votes.label
    correct = np.bincount(annotator[on_gold], weights=label[on_gold] == gold[item[on_gold]], minlength=n_annotators)
    n = np.bincount(annotator[on_gold], minlength=n_annotators)
    off = ~on_gold
    agree = np.bincount(annotator[off], weights=label[off] == majority[item[off]], minlength=n_annotators)
    unsupervised = (agree + 1) / (np.bincount(annotator[off], minlength=n_annotators) + 2)
    accuracy = (correct + _SHRINKAGE * unsupervised) / (n + _SHRINKAGE)
    weight = np.log(accuracy * (n_classes - 1) / (1 - accuracy))
    scores = np.zeros((votes.n_items, n_classes))
    np.add.at(scores, (item, label), weight[annotator])
    return scores.argmax(axis=1).astype(np.int64)


@dataclass
class GoldMixture:
    """What :func:`gold_mixture` computes.

    Per item, shape (N,): ``label`` (class code). ``probs``: shape (N, K), the mixture's class
    probabilities (rows sum to 1). Per expert, shape (E,) with E = M + 3 (the annotators in
    ``votes.annotators`` order, then :data:`CROWD_EXPERTS`): ``expert`` (name), ``correct``
    (gold items right: as a predictor for a judge, out of fold for ``gold_weighted_vote``),
    ``accuracy`` (posterior mean accuracy on gold), ``weight`` (posterior weight, summing to 1).
    ``n_gold``: gold items used.
    """

    label: np.ndarray
    probs: np.ndarray
    expert: np.ndarray
    correct: np.ndarray
    accuracy: np.ndarray
    weight: np.ndarray
    n_gold: int


def gold_mixture(votes: Votes, gold: np.ndarray, *, k: int = 5, seed: int = 0) -> GoldMixture:
    """Gold-calibrated consensus: a mixture of experts weighted by their gold records (the default).

    ``votes``: every item needs at least one vote. ``gold``: gold codes, shape (N,), ``-1`` =
    no gold (:func:`gold_codes`).

    Experts, each predicting every item:

    - every annotator: its vote where it voted, the majority vote elsewhere (so all experts are
      scored on the same gold items);
    - the unsupervised majority vote and Dawid-Skene;
    - :func:`gold_weighted_vote`, whose gold record is counted out of fold (``k`` seeded folds of
      the gold items, as in :func:`cross_fit`), so its own training does not flatter it.

    Expert e has ``c_e`` of the ``n`` gold items right; with a Beta(2, 1) prior on its accuracy:

    - posterior mean accuracy ``a_e = (c_e + 2) / (n + 3)``;
    - weight ``w_e ∝ (B(c_e + 2, n - c_e + 1) / B(2, 1)) ** 0.5``: the Beta-binomial evidence of its
      gold record, tempered (learning rate 1/2), normalised to sum to 1;
    - class probabilities of an item: ``Σ_e w_e · p_e(k)`` with ``p_e(k) = a_e`` for the class e
      predicts and ``(1 - a_e) / (K - 1)`` for the others (a linear opinion pool).

    A linear pool does not multiply the votes of judges that err together (several prompts of one
    LLM), which a log-odds vote or Dawid-Skene do: it concentrates on the experts whose gold record
    is best — a few judges when their errors are shared, the weighted vote when the judges err
    independently. Without gold every expert has the same weight. Cost: O(n_votes + N·K) per
    weighted vote (``k + 1`` of them) plus one Dawid-Skene fit.
    """
    gold = _check_gold(votes, gold)
    n_items, n_classes = votes.n_items, votes.n_classes
    known = gold >= 0
    n_gold = int(known.sum())
    majority = majority_vote(votes).astype(np.int64)
    crowd = np.vstack([majority, dawid_skene(votes)[0], gold_weighted_vote(votes, gold)])
    crowd_record = crowd.copy()
    if n_gold:
        crowd_record[2] = _out_of_fold(votes, gold, gold_weighted_vote, k, seed)[0]
    correct = np.concatenate([
        _judge_gold_correct(votes, gold, majority),
        (crowd_record[:, known] == gold[known]).sum(axis=1),
    ]).astype(float)
    alpha, beta = _ACCURACY_PRIOR
    accuracy = (correct + alpha) / (n_gold + alpha + beta)
    log_evidence = betaln(correct + alpha, n_gold - correct + beta) - betaln(alpha, beta)
    weight = np.exp(_LEARNING_RATE * (log_evidence - log_evidence.max()))
    weight /= weight.sum()
    # Each expert puts `rest` on every class and `lift` more on the class it predicts.
    rest = weight * (1 - accuracy) / (n_classes - 1)
    lift = weight * accuracy - rest
    n_judges = votes.n_annotators
    probs = np.full((n_items, n_classes), rest.sum())
    rows = np.arange(n_items)
    probs[rows, majority] += lift[:n_judges].sum()  # every judge, as if it had voted the majority label
    np.add.at(probs, (votes.item, votes.label), lift[votes.annotator])  # ... corrected where it voted
    np.add.at(probs, (votes.item, majority[votes.item]), -lift[votes.annotator])
    for e, labels in enumerate(crowd):
        probs[rows, labels] += lift[n_judges + e]
    probs /= probs.sum(axis=1, keepdims=True)  # the weights sum to 1; this removes rounding
    return GoldMixture(
        label=probs.argmax(axis=1).astype(np.int64),
        probs=probs,
        expert=np.concatenate([np.asarray(votes.annotators, dtype=object), np.array(CROWD_EXPERTS, dtype=object)]),
        correct=correct.astype(np.int64),
        accuracy=accuracy,
        weight=weight,
        n_gold=n_gold,
    )


def gold_aware_consensus(votes: Votes, gold: np.ndarray) -> pd.DataFrame:
    """One label per item: the gold where there is gold, the :func:`gold_mixture` consensus elsewhere.

    ``gold``: gold codes, shape (N,) (:func:`gold_codes`). Returns N rows in ``votes.item_ids``
    order: ``item_id``; ``consensus_label`` (class name); ``source`` (``'ground_truth'`` for items
    with gold, ``'consensus'`` otherwise); ``consensus_probability`` (1.0 for gold, else the
    mixture's probability of the label).
    """
    mixture = gold_mixture(votes, gold)
    has_gold = np.asarray(gold) >= 0
    label = np.where(has_gold, gold, mixture.label)
    return pd.DataFrame({
        "item_id": votes.item_ids,
        "consensus_label": np.asarray(votes.classes, dtype=object)[label],
        "source": np.where(has_gold, GOLD_SOURCE, CONSENSUS_SOURCE),
        "consensus_probability": np.where(has_gold, 1.0, mixture.probs[np.arange(votes.n_items), label]),
    })


def standard_methods(pred_probs: np.ndarray | None = None, seed: int = 0) -> dict[str, Method]:
    """The methods compared on gold, by name: the gold-aware ``gold_mixture`` (the default) and
    ``gold_weighted_vote``; ``best_judge_on_gold`` (the judge best on the training gold, ties drawn
    with ``seed``: the baseline a gold-aware method must beat); and the unsupervised
    ``majority_vote``, ``dawid_skene`` and ``crowdlab``.

    ``pred_probs``: CROWDLAB's model prior, shape (N, K); uniform when None. Every item needs a vote.
    """

    def crowdlab(votes: Votes, gold: np.ndarray) -> np.ndarray:
        prior = np.full((votes.n_items, votes.n_classes), 1 / votes.n_classes) if pred_probs is None else pred_probs
        run = robust_crowdlab(votes, prior, seed=seed)
        if len(run.dropped_items):
            raise ValueError(f"crowdlab: {len(run.dropped_items)} item(s) have no vote")
        return run.result.consensus_label

    return {
        DEFAULT_METHOD: lambda votes, gold: gold_mixture(votes, gold, seed=seed).label,
        "gold_weighted_vote": gold_weighted_vote,
        "best_judge_on_gold": lambda votes, gold: best_judge_on_gold(votes, gold, seed=seed),
        BASELINE_METHOD: lambda votes, gold: majority_vote(votes, seed=seed),
        "dawid_skene": lambda votes, gold: dawid_skene(votes)[0],
        "crowdlab": crowdlab,
    }


# --------------------------------------------------------------------------- check


def methods_below_baseline(scores: pd.DataFrame, n_classes: int, baseline: str = BASELINE_METHOD) -> pd.DataFrame:
    """The consensus methods that score below ``baseline`` or below chance (1/K) on gold.

    ``scores``: :func:`cross_fit` rows. Each method is compared with the baseline in the same
    category. Returns one row per failing (method, category): ``name``, ``category``, ``n``,
    ``accuracy``, ``baseline_accuracy``, ``chance``, ``below_baseline``, ``below_chance``; empty
    when every method is at least as accurate as both (the check passes).
    """
    methods = scores[scores["kind"] == "method"]
    reference = methods.loc[methods["name"] == baseline].set_index("category")["accuracy"]
    if reference.empty:
        raise ValueError(f"the scores hold no row of the baseline method {baseline!r}")
    out = methods.loc[methods["name"] != baseline, ["name", "category", "n", "accuracy"]].copy()
    out["baseline_accuracy"] = out["category"].map(reference)
    out["chance"] = 1.0 / n_classes
    out["below_baseline"] = out["accuracy"] < out["baseline_accuracy"]
    out["below_chance"] = out["accuracy"] < out["chance"]
    return out[out["below_baseline"] | out["below_chance"]].reset_index(drop=True)


# --------------------------------------------------------------------------- the ground_truth_accuracy table


def empty_scores() -> pd.DataFrame:
    """A :data:`SCORE_COLUMNS` frame with no rows and the table's column types."""
    return pd.DataFrame({
        "name": pd.Series(dtype="object"), "kind": pd.Series(dtype="object"), "category": pd.Series(dtype="object"),
        "n": pd.Series(dtype="int64"), "accuracy": pd.Series(dtype="float64"), "ci_low": pd.Series(dtype="float64"),
        "ci_high": pd.Series(dtype="float64"), "kappa": pd.Series(dtype="float64"),
    })


def fixed_labels(labels: pd.Series) -> Method:
    """A method that ignores gold and returns ``labels`` (class names by item id; e.g. a column of
    ``consensus_labels`` computed without gold) for every item; the majority vote where an item
    has no label. Cross-fitting it is scoring it on every gold item: it never sees gold."""

    def method(votes: Votes, gold: np.ndarray) -> np.ndarray:
        codes = pd.Index(list(votes.classes)).get_indexer(labels.reindex(pd.Index(votes.item_ids)).to_numpy())
        return np.where(codes >= 0, codes, majority_vote(votes)).astype(np.int64)

    return method


def ground_truth_accuracy(
    judgments: pd.DataFrame,
    gold: pd.Series,
    classes: tuple[str, ...],
    method_labels: Mapping[str, pd.Series] | None = None,
    *,
    k: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Every judge and every consensus method against gold: :data:`SCORE_COLUMNS` rows.

    ``judgments``: one row per vote, ``item_id``, ``annotator``, ``label`` (optional
    ``category``); ``gold``: labels by item id (``gold_labels``; gold annotators are not in
    ``judgments``). Rows, ``kind = 'annotator'``: :func:`annotator_accuracy` of every annotator;
    ``kind = 'method'``: :func:`cross_fit` (``k`` folds, ``seed``) of the gold-aware
    ``gold_mixture`` (the default), ``gold_weighted_vote`` and ``best_judge_on_gold``, and of the
    unsupervised methods: ``method_labels`` (name → labels by item id computed without gold, e.g.
    the majority vote, Dawid-Skene, GLAD and CROWDLAB columns of ``consensus_labels``; see
    :func:`fixed_labels`), else the unsupervised methods of :func:`standard_methods`. No rows
    when no voted item has gold.
    """
    classes = tuple(classes)
    gold = gold[gold.index.isin(judgments["item_id"])]
    if gold.empty:
        return empty_scores()
    annotators = annotator_accuracy(judgments, gold, classes)
    votes = Votes.from_frame(judgments, classes)
    codes = gold_codes(gold, votes)
    standard = standard_methods(seed=seed)
    methods: dict[str, Method] = {name: standard[name] for name in (DEFAULT_METHOD, "gold_weighted_vote", "best_judge_on_gold")}
    if method_labels is None:
        methods.update({name: standard[name] for name in (BASELINE_METHOD, "dawid_skene", "crowdlab")})
    else:
        methods.update({name: fixed_labels(labels) for name, labels in method_labels.items()})
    categories = None
    if "category" in judgments.columns and judgments["category"].notna().any():
        categories = judgments.groupby("item_id")["category"].first().reindex(pd.Index(votes.item_ids)).to_numpy(dtype=object)
    scored = cross_fit(votes, codes, methods, k=k, seed=seed, categories=categories)
    return pd.concat([annotators, scored], ignore_index=True)[SCORE_COLUMNS]
