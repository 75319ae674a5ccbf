"""CROWDLAB consensus computed on sparse votes, with the same results as cleanlab.

:func:`crowdlab` returns what ``cleanlab.multiannotator.get_label_quality_multiannotator``
returns with its defaults (``consensus_method="best_quality"``, ``quality_method="crowdlab"``,
``calibrate_probs=False``, ``self_confidence`` label quality scores). It works on the long
(item, annotator, label) form of :class:`~judge_assets.core.consensus.votes.Votes` and never builds
the dense n_items × n_annotators matrix. Memory is O(n_votes + n_items·K + n_annotators·K),
and time is a few sorts plus bincounts over the votes.

It matches cleanlab value for value, and bit for bit wherever cleanlab compares floats
with ``==`` (the ``best_quality`` argmax ties, the majority-vote tiebreaks and the
``worst_class`` tiebreaks). To do that it repeats cleanlab's floating-point operation order:

* posterior probabilities and total weights add the annotator terms of an item in
  annotator order ("rounds": the r-th vote of every item in one vectorised step);
* per-annotator averages that cleanlab gets from ``np.sum``/``np.mean`` over an array use
  :func:`_segment_sums`, which reproduces numpy's pairwise summation for each segment;
* the ``worst_class`` mean-quality tiebreak uses the same pandas groupby mean.

:func:`crowdlab_reference` runs cleanlab itself on the dense matrix. Tests and benchmarks
use it as the reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from judge_assets.core.consensus.votes import CrowdlabResult, Votes

#: cleanlab.internal.constants.CLIPPING_LOWER_BOUND, the floor of cleanlab's error-ratio clips.
CLIPPING_LOWER_BOUND = 1e-6


@dataclass(frozen=True)
class _Layout:
    """Orderings of the votes. Every array has length n_votes unless noted.

    by_item : votes sorted by (item, annotator).
    by_annotator : votes sorted by (annotator, item).
    rounds : votes sorted by (rank of the vote within its item, item), where rank counts
        the item's earlier annotators. Votes of one round touch distinct items.
    round_bounds : shape (n_rounds + 1,), offsets of the rounds in ``rounds``.
    """

    by_item: np.ndarray
    by_annotator: np.ndarray
    rounds: np.ndarray
    round_bounds: np.ndarray


def _layout(votes: Votes, num_annotations: np.ndarray) -> _Layout:
    n_annotators = max(votes.n_annotators, 1)
    by_item = np.argsort(votes.item.astype(np.int64) * n_annotators + votes.annotator)
    annotator_sorted = votes.annotator[by_item]
    by_annotator = by_item[np.argsort(_small_ints(annotator_sorted), kind="stable")]
    starts = np.cumsum(num_annotations) - num_annotations
    rank = np.arange(len(by_item)) - starts[votes.item[by_item]]
    rounds = by_item[np.argsort(_small_ints(rank), kind="stable")]
    round_bounds = np.concatenate(([0], np.cumsum(np.bincount(rank))))
    return _Layout(by_item=by_item, by_annotator=by_annotator, rounds=rounds, round_bounds=round_bounds)


def _small_ints(values: np.ndarray) -> np.ndarray:
    """``values`` (non-negative ints) as uint16 when they fit, so a stable argsort uses radix sort."""
    if len(values) and values.max() < 2**16:
        return values.astype(np.uint16)
    return values


def _segment_sums(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``np.sum`` of each contiguous segment of ``values``, bit-identical to numpy.

    values : shape (n,), float64, segments stored back to back.
    lengths : shape (n_segments,), int, segment lengths (zero allowed), summing to n.
    Returns shape (n_segments,): the sums, 0.0 for empty segments.

    Segments of equal length are gathered into a C-contiguous matrix and summed along
    axis 1. numpy then runs its pairwise summation on every row, the same way it does for
    a 1-D array of that length.
    """
    out = np.zeros(len(lengths))
    starts = np.cumsum(lengths) - lengths
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    bounds = np.flatnonzero(np.diff(sorted_lengths)) + 1
    for group in np.split(order, bounds):
        length = lengths[group[0]] if len(group) else 0
        if length:
            out[group] = values[starts[group, None] + np.arange(length)].sum(axis=1)
    return out


def _check_votes(votes: Votes, num_annotations: np.ndarray) -> None:
    """Reject the inputs cleanlab's ``assert_valid_inputs_multiannotator`` rejects, in its order.

    num_annotations : shape (n_items,), votes per item. Warns, as cleanlab does, when no two
    annotators agree on any item.
    """
    empty_items = np.flatnonzero(num_annotations == 0)
    if len(empty_items):
        raise ValueError(
            f"every item needs at least one vote; {len(empty_items)} item(s) have none: "
            f"{list(votes.item_ids[empty_items[:10]])}"
        )
    per_annotator = np.bincount(votes.annotator, minlength=votes.n_annotators)
    idle = np.flatnonzero(per_annotator == 0)
    if len(idle):
        raise ValueError(
            f"every annotator needs at least one vote; {len(idle)} annotator(s) have none: "
            f"{list(votes.annotators[idle[:10]])}"
        )
    if votes.n_annotators <= 1:
        raise ValueError(
            f"CROWDLAB needs at least two annotators, got {votes.n_annotators}; "
            "score a single annotator's labels with cleanlab.rank.get_label_quality_scores"
        )
    if (num_annotations == 1).all():
        raise ValueError(
            "every item has exactly one vote; CROWDLAB needs some items labeled by two or more "
            "annotators (score single labels with cleanlab.rank.get_label_quality_scores)"
        )
    if not (_label_count(votes, votes.n_classes) > 1).any():
        warnings.warn("Annotators do not agree on any example. Check input data.")


def _check_pred_probs(votes: Votes, pred_probs: np.ndarray) -> np.ndarray:
    """Validate ``pred_probs`` shape (n_items, K >= highest label + 1); return it as float64.

    Raises the same errors as cleanlab. Also rejects NaN, infinite and negative
    probabilities, which cleanlab would pass on as garbage.
    """
    if not isinstance(pred_probs, np.ndarray):
        raise TypeError(f"pred_probs must be a numpy array, got {type(pred_probs).__name__}")
    if pred_probs.ndim != 2:
        raise ValueError(f"pred_probs must be a 2d array of shape (n_items, K), got shape {pred_probs.shape}")
    if len(pred_probs) != votes.n_items:
        raise ValueError(f"pred_probs has {len(pred_probs)} rows but there are {votes.n_items} items")
    highest = int(votes.label.max()) + 1 if len(votes.label) else 0
    if pred_probs.shape[1] < highest:
        raise ValueError(
            f"pred_probs must have at least {highest} columns (largest label code + 1), "
            f"got {pred_probs.shape[1]}"
        )
    probs = pred_probs.astype(np.float64, copy=False)
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("pred_probs must be finite and non-negative")
    return probs


def _label_count(votes: Votes, n_classes: int) -> np.ndarray:
    """Votes per (item, class), shape (n_items, n_classes), int64."""
    flat = np.bincount(votes.item.astype(np.int64) * n_classes + votes.label, minlength=votes.n_items * n_classes)
    return flat.reshape(votes.n_items, n_classes)


def _keep_best(candidates: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Candidates (bool, shape (n, K)) whose ``score`` (float, shape (n, K)) equals the row max over candidates."""
    masked = np.where(candidates, score, -np.inf)
    return candidates & (masked == masked.max(axis=1, keepdims=True))


def _majority_vote(
    votes: Votes, label_count: np.ndarray, pred_probs: np.ndarray | None, layout: _Layout
) -> np.ndarray:
    """cleanlab's ``get_majority_vote_label`` on sparse votes; shape (n_items,) int64 codes.

    label_count : shape (n_items, K) votes per class. pred_probs : shape (n_items, K) or None.
    """
    candidates = label_count == label_count.max(axis=1, keepdims=True)
    untied = candidates.sum(axis=1) == 1
    labels = candidates.argmax(axis=1)
    tied = np.flatnonzero(~untied)
    cand = candidates[tied]
    steps = []
    if pred_probs is not None:
        steps.append(lambda c, rows: _keep_best(c, pred_probs[rows]))
    class_frequency = label_count.sum(axis=0).astype(np.float64)
    steps.append(lambda c, rows: _keep_best(c, np.broadcast_to(-class_frequency, c.shape)))
    steps.append(lambda c, rows: _keep_best(c, _tied_label_agreement(votes, labels, untied, rows, c, layout)))
    for step in steps:
        if not len(tied):
            break
        cand = step(cand, tied)
        done = cand.sum(axis=1) == 1
        labels[tied[done]] = cand[done].argmax(axis=1)
        tied, cand = tied[~done], cand[~done]
    if len(tied):
        warnings.warn(
            f"breaking ties of examples {tied.tolist()} by random selection, "
            "you may want to set seed for reproducability"
        )
        for row, candidate_row in zip(tied, cand):
            labels[row] = np.random.choice(np.flatnonzero(candidate_row))
    return labels


def _tied_label_agreement(
    votes: Votes,
    labels: np.ndarray,
    untied: np.ndarray,
    rows: np.ndarray,
    candidates: np.ndarray,
    layout: _Layout,
) -> np.ndarray:
    """Majority-vote tiebreak 3: for each still-tied item and candidate class, the mean agreement
    (with the untied majority labels) of the annotators who voted that class.

    labels : shape (n_items,) current labels (valid where ``untied``). rows : shape (n,) tied
    items; candidates : shape (n, K) their candidate classes. Returns shape (n, K), NaN off
    candidates. An annotator without untied items gets the mean agreement of the others,
    as in cleanlab. If no item is untied there is nothing to impute from (cleanlab fails in
    ``np.random.choice`` there): every candidate gets the same score, so tiebreak 4 (the
    seeded draw) decides.
    """
    n_annotators = votes.n_annotators
    on_untied = untied[votes.item]
    seen = np.bincount(votes.annotator[on_untied], minlength=n_annotators)
    agreed = np.bincount(
        votes.annotator[on_untied & (votes.label == labels[votes.item])], minlength=n_annotators
    )
    if not seen.any():  # nothing to estimate agreement from: every candidate scores alike, the seeded draw decides
        return np.where(candidates, 1.0, np.nan)
    agreement = np.full(n_annotators, np.nan)
    np.divide(agreed, seen, out=agreement, where=seen > 0)
    missing = seen == 0
    if missing.any():
        agreement[missing] = np.mean(agreement[~missing])
    n_classes = candidates.shape[1]
    position = np.full(votes.n_items, -1)
    position[rows] = np.arange(len(rows))
    order = layout.by_item
    pos = position[votes.item[order]]
    keep = pos >= 0
    order, pos = order[keep], pos[keep]
    keep = candidates[pos, votes.label[order]]
    order, pos = order[keep], pos[keep]
    group = pos * n_classes + votes.label[order]
    regroup = np.argsort(group, kind="stable")
    lengths = np.bincount(group, minlength=len(rows) * n_classes)
    sums = _segment_sums(agreement[votes.annotator[order[regroup]]], lengths)
    means = np.full(len(lengths), np.nan)
    np.divide(sums, lengths, out=means, where=lengths > 0)
    return means.reshape(len(rows), n_classes)


def majority_vote(votes: Votes, pred_probs: np.ndarray | None = None, *, validate: bool = True) -> np.ndarray:
    """Majority-vote class code per item, shape (n_items,), int64.

    Identical to ``cleanlab.multiannotator.get_majority_vote_label(votes.to_matrix(), pred_probs,
    verbose=validate)``. Ties between the most-voted classes are broken in cleanlab's order:
    (1) highest ``pred_probs`` (shape (n_items, K), optional), (2) the class rarer among all
    votes, (3) the class whose voters agree more with the untied majority labels elsewhere,
    (4) ``np.random.choice`` over the remaining classes, one call per item in ascending item
    order. That is the call order cleanlab uses, so with the same global ``np.random`` seed
    both pick the same labels.

    With ``validate=True`` (cleanlab's default ``verbose=True``) the inputs must pass
    cleanlab's multi-annotator checks: every item and annotator has a vote, there are at least
    two annotators, and some item has two or more votes. ``validate=False`` skips those checks
    like cleanlab's ``verbose=False``; an item without votes then ties over all classes.
    """
    num_annotations = votes.num_annotations()
    if validate:
        _check_votes(votes, num_annotations)
    probs = None if pred_probs is None else _check_pred_probs(votes, pred_probs)
    if probs is not None:
        n_classes = probs.shape[1]
    else:
        n_classes = int(votes.label.max()) + 1 if len(votes.label) else 1
    label_count = _label_count(votes, n_classes)
    return _majority_vote(votes, label_count, probs, _layout(votes, num_annotations))


def _agreement_with_annotators(
    votes: Votes, label_count: np.ndarray, num_annotations: np.ndarray, layout: _Layout
) -> np.ndarray:
    """cleanlab's ``_get_annotator_agreement_with_annotators``; shape (n_annotators,).

    For each annotator: over the items they labeled, the share of the item's other annotators
    who chose the same label, weighted by the number of those other annotators. An annotator
    who shares no item with anyone gets the mean of the other annotators' values.
    """
    same = label_count[votes.item, votes.label] - 1
    others = num_annotations[votes.item] - 1
    share = np.zeros(len(same))
    np.divide(same, others, out=share, where=others > 0)
    weighted = share * others
    lengths = np.bincount(votes.annotator, minlength=votes.n_annotators)
    sums = _segment_sums(weighted[layout.by_annotator], lengths)
    weight = np.bincount(votes.annotator, weights=others, minlength=votes.n_annotators)
    agreement = np.full(votes.n_annotators, np.nan)
    np.divide(sums, weight, out=agreement, where=weight != 0)
    missing = weight == 0
    if missing.any():
        agreement[missing] = np.mean(agreement[~missing])
    return agreement


@dataclass(frozen=True)
class _ConsensusStats:
    """cleanlab's ``_get_consensus_stats`` for one consensus labelling.

    annotator_agreement, consensus_quality_score : shape (n_items,).
    post_pred_probs : shape (n_items, K). annotator_weight : shape (n_annotators,).
    """

    annotator_agreement: np.ndarray
    consensus_quality_score: np.ndarray
    post_pred_probs: np.ndarray
    model_weight: float
    annotator_weight: np.ndarray


def _consensus_stats(
    votes: Votes,
    consensus: np.ndarray,
    prior: np.ndarray,
    num_annotations: np.ndarray,
    agreement_with_annotators: np.ndarray,
    layout: _Layout,
) -> _ConsensusStats:
    n_items, n_classes = prior.shape
    agreeing = np.bincount(votes.item[votes.label == consensus[votes.item]], minlength=n_items)
    annotator_agreement = agreeing / num_annotations
    multi = num_annotations != 1
    consensus_likelihood = np.mean(annotator_agreement[multi])
    non_consensus_likelihood = (1 - consensus_likelihood) / (n_classes - 1)
    consensus_multi = consensus[multi]
    most_common = np.argmax(np.bincount(consensus_multi, minlength=n_classes))
    most_likely_class_error = np.clip(
        np.mean(consensus_multi != most_common), a_min=CLIPPING_LOWER_BOUND, a_max=None
    )
    annotator_error = 1 - agreement_with_annotators
    annotator_weight = np.clip(
        1 - (annotator_error / most_likely_class_error), a_min=CLIPPING_LOWER_BOUND, a_max=None
    )
    model_error = np.mean(np.argmax(prior[multi], axis=1) != consensus_multi)
    model_weight = np.max([(1 - (model_error / most_likely_class_error)), CLIPPING_LOWER_BOUND]) * np.sqrt(
        np.mean(num_annotations)
    )
    post = _posterior(
        votes, prior, model_weight, annotator_weight, consensus_likelihood, non_consensus_likelihood, layout
    )
    return _ConsensusStats(
        annotator_agreement=annotator_agreement,
        consensus_quality_score=post[np.arange(n_items), consensus],
        post_pred_probs=post,
        model_weight=float(model_weight),
        annotator_weight=annotator_weight,
    )


def _posterior(
    votes: Votes,
    prior: np.ndarray,
    model_weight: float,
    annotator_weight: np.ndarray,
    consensus_likelihood: float,
    non_consensus_likelihood: float,
    layout: _Layout,
) -> np.ndarray:
    """CROWDLAB posterior, shape (n_items, K): weighted average of the prior (weight
    ``model_weight``) and each vote's likelihood vector (weight = its annotator's weight;
    ``consensus_likelihood`` on the voted class, ``non_consensus_likelihood`` elsewhere).

    Terms are added per item in annotator order, as cleanlab adds them.
    """
    n_items, n_classes = prior.shape
    post = prior * model_weight
    total = np.zeros(n_items)
    order = layout.rounds
    items = votes.item[order]
    weights = annotator_weight[votes.annotator[order]]
    voted = votes.label[order][:, None] == np.arange(n_classes)
    for start, stop in zip(layout.round_bounds[:-1], layout.round_bounds[1:]):
        rows = items[start:stop]
        w = weights[start:stop, None]
        total[rows] += weights[start:stop]
        post[rows] += np.where(voted[start:stop], w * consensus_likelihood, w * non_consensus_likelihood)
    total += model_weight
    post /= total[:, None]
    return post


def _worst_class(
    votes: Votes,
    agrees: np.ndarray,
    consensus_quality_score: np.ndarray,
    n_classes: int,
    layout: _Layout,
) -> np.ndarray:
    """cleanlab's ``_get_annotator_worst_class``; shape (n_annotators,) int64 codes.

    agrees : shape (n_votes,), vote equals the consensus label. Per annotator, the class
    (among those they used) with the lowest agreement with consensus; ties go to the class
    they used most often, then to the class whose items have the highest mean consensus
    quality score, then to the lowest class code.
    """
    n_annotators = votes.n_annotators
    group = votes.annotator * n_classes + votes.label
    used = np.bincount(group, minlength=n_annotators * n_classes).reshape(n_annotators, n_classes)
    agreed = np.bincount(group[agrees], minlength=n_annotators * n_classes).reshape(n_annotators, n_classes)
    present = used > 0
    accuracy = np.full(used.shape, np.nan)
    np.divide(agreed, used, out=accuracy, where=present)
    cand = _keep_best(present, -accuracy)
    tied = cand.sum(axis=1) > 1
    cand[tied] = _keep_best(cand[tied], used[tied].astype(np.float64))
    tied = cand.sum(axis=1) > 1
    if tied.any():
        order = layout.by_annotator
        keep = tied[votes.annotator[order]]
        keep[keep] = cand[votes.annotator[order[keep]], votes.label[order[keep]]]
        chosen = order[keep]
        means = pd.Series(consensus_quality_score[votes.item[chosen]]).groupby(group[chosen]).mean()
        quality = np.full(n_annotators * n_classes, -np.inf)
        quality[means.index.to_numpy()] = means.to_numpy()
        cand[tied] = _keep_best(cand[tied], quality.reshape(n_annotators, n_classes)[tied])
    return cand.argmax(axis=1)


def annotator_worst_class(votes: Votes, consensus_label: np.ndarray, consensus_quality_score: np.ndarray) -> np.ndarray:
    """cleanlab's ``_get_annotator_worst_class`` on sparse votes; shape (n_annotators,) int64 codes.

    consensus_label, consensus_quality_score : shape (n_items,). See :func:`_worst_class`; costs
    O(n_votes), where cleanlab walks the dense n_items × n_annotators matrix.
    """
    agrees = votes.label == np.asarray(consensus_label)[votes.item]
    quality = np.asarray(consensus_quality_score, dtype=np.float64)
    return _worst_class(votes, agrees, quality, votes.n_classes, _layout(votes, votes.num_annotations()))


def crowdlab(votes: Votes, pred_probs: np.ndarray) -> CrowdlabResult:
    """CROWDLAB consensus labels, label quality and annotator quality from sparse votes.

    votes : the (item, annotator, label) votes; every item and annotator needs a vote.
    pred_probs : shape (n_items, K), a model's class probabilities per item (rows sum to 1),
        K >= highest label code + 1.

    Returns the :class:`CrowdlabResult` of
    ``get_label_quality_multiannotator(votes.to_matrix(), pred_probs, return_weights=True)``
    with cleanlab's defaults: majority vote (ties broken as in :func:`majority_vote`), then per
    item the class with the highest CROWDLAB posterior (majority vote when it is tied), and
    every statistic recomputed for that consensus. ``post_pred_probs`` is the posterior of
    that final pass, and every quality score reads from it: ``consensus_quality_score`` at
    the consensus class, ``label_quality`` at each vote's class (aligned with the input vote
    order). ``annotator_quality`` is NaN for an annotator whose items all have a single vote,
    as in cleanlab.

    Raises ValueError for the inputs cleanlab rejects (items or annotators without votes,
    fewer than two annotators, every item with only one vote, malformed ``pred_probs``).
    """
    num_annotations = votes.num_annotations()
    _check_votes(votes, num_annotations)
    prior = _check_pred_probs(votes, pred_probs)
    n_classes = prior.shape[1]
    label_count = _label_count(votes, n_classes)
    layout = _layout(votes, num_annotations)

    agreement_with_annotators = _agreement_with_annotators(votes, label_count, num_annotations, layout)
    majority = _majority_vote(votes, label_count, prior, layout)
    first = _consensus_stats(votes, majority, prior, num_annotations, agreement_with_annotators, layout)
    top = first.post_pred_probs == first.post_pred_probs.max(axis=1, keepdims=True)
    consensus = np.where(top.sum(axis=1) == 1, top.argmax(axis=1), majority)
    final = _consensus_stats(votes, consensus, prior, num_annotations, agreement_with_annotators, layout)
    post = final.post_pred_probs

    label_quality = post[votes.item, votes.label]
    agrees = votes.label == consensus[votes.item]
    n_annotators = votes.n_annotators
    labeled = np.bincount(votes.annotator, minlength=n_annotators)
    mean_label_quality = np.bincount(votes.annotator, weights=label_quality, minlength=n_annotators) / labeled
    multi_vote = num_annotations[votes.item] != 1
    multi_seen = np.bincount(votes.annotator[multi_vote], minlength=n_annotators)
    multi_agreed = np.bincount(votes.annotator[multi_vote & agrees], minlength=n_annotators)
    multi_agreement = np.full(n_annotators, np.nan)
    np.divide(multi_agreed, multi_seen, out=multi_agreement, where=multi_seen > 0)
    annotator_weight_total = np.sum(final.annotator_weight) * (np.mean(num_annotations) / n_annotators)
    w = final.model_weight / (final.model_weight + annotator_weight_total)
    annotator_quality = w * mean_label_quality + (1 - w) * multi_agreement

    return CrowdlabResult(
        consensus_label=consensus,
        consensus_quality_score=final.consensus_quality_score,
        annotator_agreement=final.annotator_agreement,
        num_annotations=num_annotations,
        post_pred_probs=post,
        label_quality=label_quality,
        annotator_quality=annotator_quality,
        agreement_with_consensus=np.bincount(votes.annotator[agrees], minlength=n_annotators) / labeled,
        worst_class=_worst_class(votes, agrees, final.consensus_quality_score, n_classes, layout),
        num_examples_labeled=labeled,
        annotator_weight=final.annotator_weight,
        model_weight=final.model_weight,
    )


def crowdlab_reference(votes: Votes, pred_probs: np.ndarray) -> CrowdlabResult:
    """The same :class:`CrowdlabResult` as :func:`crowdlab`, computed by cleanlab itself.

    Runs ``get_label_quality_multiannotator`` on the dense ``votes.to_matrix()``. Time and
    memory grow with n_items × n_annotators. ``post_pred_probs`` comes from cleanlab's
    ``_get_consensus_stats`` for the returned consensus labels, which is the call cleanlab
    makes internally. The annotator statistics, which cleanlab sorts by quality, are put back
    in ``votes.annotators`` order.
    """
    from cleanlab.multiannotator import _get_consensus_stats, get_label_quality_multiannotator

    matrix = votes.to_matrix()
    out = get_label_quality_multiannotator(
        matrix,
        pred_probs,
        return_detailed_quality=True,
        return_annotator_stats=True,
        return_weights=True,
        verbose=False,
    )
    per_item = out["label_quality"]
    consensus = per_item["consensus_label"].to_numpy().astype(np.int64)
    num_annotations = per_item["num_annotations"].to_numpy().astype(np.int64)
    _, _, post, _, _ = _get_consensus_stats(
        labels_multiannotator=matrix.to_numpy(),
        pred_probs=pred_probs,
        num_annotations=num_annotations,
        consensus_label=consensus,
        quality_method="crowdlab",
        verbose=False,
    )
    detailed = out["detailed_label_quality"].to_numpy()
    stats = out["annotator_stats"].reindex(list(votes.annotators))
    return CrowdlabResult(
        consensus_label=consensus,
        consensus_quality_score=per_item["consensus_quality_score"].to_numpy(),
        annotator_agreement=per_item["annotator_agreement"].to_numpy(),
        num_annotations=num_annotations,
        post_pred_probs=post,
        label_quality=detailed[votes.item, votes.annotator],
        annotator_quality=stats["annotator_quality"].to_numpy(),
        agreement_with_consensus=stats["agreement_with_consensus"].to_numpy(),
        worst_class=stats["worst_class"].to_numpy().astype(np.int64),
        num_examples_labeled=stats["num_examples_labeled"].to_numpy().astype(np.int64),
        annotator_weight=np.asarray(out["annotator_weight"]),
        model_weight=float(out["model_weight"]),
    )


# --------------------------------------------------------------------------- ActiveLab


def _packed_label_distribution(label_count: np.ndarray, num_annotations: np.ndarray) -> np.ndarray:
    """The per-item "empirical label distribution" cleanlab 2.9 feeds its temperature search, shape (n_items, K).

    label_count : shape (n_items, K) votes per class. num_annotations : shape (n_items,).

    ``compute_soft_cross_entropy`` counts an item's labels with ``value_counts(labels,
    num_classes=K)`` on float codes; when the item lacks some class, that helper packs the counts
    of the classes present (ascending) into the first positions instead of at their class codes.
    This reproduces it, so the temperature, and with it every ActiveLab score, equals cleanlab's.
    """
    present = label_count > 0
    position = np.cumsum(present, axis=1) - 1
    rows, cols = np.nonzero(present)
    packed = np.zeros_like(label_count)
    packed[rows, position[rows, cols]] = label_count[rows, cols]
    return packed / num_annotations[:, None]


def _best_temperature(label_count: np.ndarray, num_annotations: np.ndarray, pred_probs: np.ndarray) -> float:
    """cleanlab's ``find_best_temp_scaler`` from sparse counts: the temperature (coarse grid, then a
    fine grid around the best) minimising the mean soft cross-entropy between the items' label
    distributions and the temperature-scaled ``pred_probs`` (shape (n_items, K))."""
    from cleanlab.internal.multiannotator_utils import SMALL_CONST, _set_fine_search_range
    from cleanlab.internal.numerics import softmax

    n_classes = pred_probs.shape[1]
    empirical = _packed_label_distribution(label_count, num_annotations)
    log_pred_probs = np.log(pred_probs, where=pred_probs > 0, out=np.full(pred_probs.shape, -np.inf))

    def mean_cross_entropy(temperature: float) -> float:
        scaled = softmax(log_pred_probs, temperature=temperature, axis=1, shift=False)
        clipped = np.clip(scaled, a_min=SMALL_CONST, a_max=None)
        return np.mean(-np.sum(empirical * np.log(clipped), axis=1) / np.log(n_classes))

    coarse = [0.1, 0.2, 0.5, 0.8, 1, 2, 3, 5, 8]
    best = np.argmin([mean_cross_entropy(t) for t in coarse])
    fine = _set_fine_search_range(coarse, 4, best)
    return fine[np.argmin([mean_cross_entropy(t) for t in fine])]


def active_learning_scores(
    votes: Votes, pred_probs: np.ndarray, pred_probs_unlabeled: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """ActiveLab scores from sparse votes, equal to cleanlab's.

    votes : the votes on the labelled items; every item and annotator needs a vote.
    pred_probs : shape (n_items, K), model class probabilities of the labelled items.
    pred_probs_unlabeled : shape (n_unlabeled, K) or None, the items nobody labelled yet.

    Returns ``(scores, scores_unlabeled)``, shapes (n_items,) and (n_unlabeled,) (empty without
    unlabelled items), in [0, 1]: low = the item whose next label helps most. The same as
    ``cleanlab.multiannotator.get_active_learning_scores(votes.to_matrix(), pred_probs,
    pred_probs_unlabeled)``, from the same quantities as :func:`crowdlab`:

    * some item has two or more votes: ``pred_probs`` are temperature-scaled to the votes
      (:func:`_best_temperature`), CROWDLAB runs on them, and an item's score is its consensus
      quality averaged with ``1/K``, weighted by (model weight + the weights of the item's
      annotators) against the mean annotator weight;
    * every item has one vote: no scaling, the consensus is that vote, its quality is the prior's
      probability of it, and every weight is 1;
    * unlabelled items: the scaled prior's top probability averaged with ``1/K``, weighted by the
      model weight against the mean annotator weight.

    Memory and time grow with n_votes + n_items·K, never n_items × n_annotators.
    """
    from cleanlab.internal.multiannotator_utils import temp_scale_pred_probs

    num_annotations = votes.num_annotations()
    if (num_annotations == 0).any() or (np.bincount(votes.annotator, minlength=votes.n_annotators) == 0).any():
        raise ValueError("every labelled item and every annotator needs a vote (leave unlabelled items to pred_probs_unlabeled)")
    prior = _check_pred_probs(votes, pred_probs)
    n_classes = prior.shape[1]
    layout = _layout(votes, num_annotations)
    if (num_annotations == 1).all():
        temperature = 1.0
        consensus = np.empty(votes.n_items, dtype=np.int64)
        consensus[votes.item] = votes.label
        quality = prior[np.arange(votes.n_items), consensus]
        model_weight = 1
        annotator_weight = np.full(votes.n_annotators, 1)
    else:
        temperature = _best_temperature(_label_count(votes, n_classes), num_annotations, prior)
        result = crowdlab(votes, temp_scale_pred_probs(prior, temperature))
        quality, model_weight, annotator_weight = result.consensus_quality_score, result.model_weight, result.annotator_weight
    mean_annotator_weight = np.mean(annotator_weight)
    item_weight = _segment_sums(annotator_weight[votes.annotator[layout.by_item]].astype(np.float64), num_annotations)
    scores = _weighted_mean(quality, 1 / n_classes, item_weight + model_weight, mean_annotator_weight)
    if pred_probs_unlabeled is None:
        return scores, np.array([])
    unlabeled = temp_scale_pred_probs(np.asarray(pred_probs_unlabeled, dtype=np.float64), temperature)
    return scores, _weighted_mean(np.max(unlabeled, axis=1), 1 / n_classes, model_weight, mean_annotator_weight)


def _weighted_mean(value: np.ndarray, other: float, weight, other_weight) -> np.ndarray:
    """``np.average((value, other), weights=(weight, other_weight))`` elementwise, in numpy's operation order."""
    weight = np.broadcast_to(np.asarray(weight, dtype=np.float64), np.shape(value))
    return (value * weight + other * np.float64(other_weight)) / (weight + np.float64(other_weight))
