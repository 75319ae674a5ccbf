"""Consensus methods on sparse votes: CROWDLAB with defined edge cases, Dawid-Skene and GLAD (crowd-kit).

Conventions (cleanlab multiannotator style): ``N`` items, ``M`` annotators, ``K`` classes.
``pred_probs`` is the model prior, shape (N, K), rows summing to 1, column k = class code k.

Edge cases, each with a defined outcome instead of a cleanlab stack trace
(:func:`robust_crowdlab`):

- items without any vote are dropped (their count goes into ``notes``);
- annotators without any vote are dropped (named in ``notes``);
- when no item has two or more votes (this includes a single annotator) CROWDLAB is undefined:
  the consensus falls back to majority vote with the model prior as tiebreak, the consensus
  quality is cleanlab's label quality of the consensus label under the prior alone, and the
  method is reported as ``majority_vote_fallback``;
- an annotator whose items carry no other vote keeps cleanlab's imputed weight (the mean
  agreement of the others), but has no ``annotator_quality`` (NaN -> NULL): there is nobody
  to compare them with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from judge_assets.core.consensus.majority import majority_vote
from judge_assets.core.consensus.crowdlab import annotator_worst_class
from judge_assets.core.consensus.crowdlab import crowdlab as sparse_crowdlab
from judge_assets.core.consensus.votes import CrowdlabResult, Votes

FALLBACK_METHOD = "majority_vote_fallback"
#: Above this many votes the consensus step leaves GLAD out (and says so in its notes): crowd-kit's
#: GLAD costs 1.5–2.5 ms of CPU per vote (100 EM iterations; ~8 s on MT-Bench's 5.8K votes, ~25 s
#: at 10K, over 10 minutes at 1M on 2 cores), and it is a comparison column, so it must never stall
#: the graph. ``ConsensusConfig.glad_max_votes`` raises the limit for a run that wants it.
GLAD_MAX_VOTES = 10_000
#: Item metadata copied into ``consensus_labels`` and its dtypes (NULL columns keep a SQL type).
ITEM_META_TYPES = {"question_id": "Int64", "turn": "Int32", "model_a": "string", "model_b": "string", "category": "string"}
CROWDLAB_METHOD = "crowdlab"


# --------------------------------------------------------------------------- CROWDLAB

_ENGINE = sparse_crowdlab
"""The CROWDLAB implementation :func:`crowdlab` dispatches to: the sparse engine, identical to
cleanlab (:func:`judge_assets.core.consensus.crowdlab.crowdlab_reference`, which the tests compare it with)."""


def _check_pred_probs(votes: Votes, pred_probs: np.ndarray) -> np.ndarray:
    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.shape != (votes.n_items, votes.n_classes):
        raise ValueError(
            f"pred_probs has shape {pred_probs.shape}, expected (n_items, n_classes) = "
            f"({votes.n_items}, {votes.n_classes})"
        )
    if not np.isfinite(pred_probs).all():
        raise ValueError("pred_probs contains NaN or infinite values")
    return pred_probs


def crowdlab(votes: Votes, pred_probs: np.ndarray) -> CrowdlabResult:
    """CROWDLAB consensus labels, consensus quality and annotator quality.

    ``votes``: every item and every annotator must carry at least one vote, and at least one
    item two or more (use :func:`robust_crowdlab` to get those guarantees and fallbacks).
    ``pred_probs``: shape (N, K) model prior.
    """
    pred_probs = _check_pred_probs(votes, pred_probs)
    counts = votes.num_annotations()
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} item(s) have no vote; drop them first (robust_crowdlab does)")
    per_annotator = np.bincount(votes.annotator, minlength=votes.n_annotators)
    if (per_annotator == 0).any():
        names = list(votes.annotators[per_annotator == 0][:5])
        raise ValueError(f"annotator(s) without any vote: {names}; drop them first (robust_crowdlab does)")
    if not (counts >= 2).any():
        raise ValueError("no item has two or more votes; CROWDLAB needs overlap (robust_crowdlab falls back)")
    return _ENGINE(votes, pred_probs)


def _prior_only_result(votes: Votes, pred_probs: np.ndarray, seed: int) -> CrowdlabResult:
    """The fallback when no item has two votes: majority vote + the prior's label quality.

    ``annotator_weight`` and ``model_weight`` are NaN: no weighting happens.
    """
    from cleanlab.rank import get_label_quality_scores

    consensus = majority_vote(votes, pred_probs, seed=seed).astype(np.int64)
    consensus_quality = get_label_quality_scores(consensus, pred_probs)
    label_quality = get_label_quality_scores(votes.label, pred_probs[votes.item])
    agrees = (votes.label == consensus[votes.item]).astype(float)
    counts = votes.num_annotations()
    per_annotator = np.bincount(votes.annotator, minlength=votes.n_annotators)

    def mean_by_annotator(values: np.ndarray) -> np.ndarray:
        return np.bincount(votes.annotator, weights=values, minlength=votes.n_annotators) / per_annotator

    worst = annotator_worst_class(votes, consensus, consensus_quality)
    return CrowdlabResult(
        consensus_label=consensus,
        consensus_quality_score=np.asarray(consensus_quality, dtype=float),
        annotator_agreement=np.bincount(votes.item, weights=agrees, minlength=votes.n_items) / counts,
        num_annotations=counts.astype(np.int64),
        post_pred_probs=pred_probs.copy(),
        label_quality=np.asarray(label_quality, dtype=float),
        annotator_quality=mean_by_annotator(label_quality),
        agreement_with_consensus=mean_by_annotator(agrees),
        worst_class=np.asarray(worst, dtype=np.int64),
        num_examples_labeled=per_annotator.astype(np.int64),
        annotator_weight=np.full(votes.n_annotators, np.nan),
        model_weight=float("nan"),
    )


@dataclass
class ConsensusRun:
    """What :func:`robust_crowdlab` did.

    ``votes`` / ``pred_probs``: the cleaned inputs (items and annotators without votes removed)
    that ``result`` is aligned with. ``method``: ``"crowdlab"`` or ``"majority_vote_fallback"``.
    ``dropped_items`` / ``dropped_annotators``: ids removed for having no vote. ``notes``:
    human-readable sentences for materialization metadata.
    """

    votes: Votes
    pred_probs: np.ndarray
    result: CrowdlabResult
    method: str
    dropped_items: np.ndarray
    dropped_annotators: np.ndarray
    notes: list[str] = field(default_factory=list)


def _drop_empty(votes: Votes, pred_probs: np.ndarray) -> tuple[Votes, np.ndarray, np.ndarray, np.ndarray]:
    per_annotator = np.bincount(votes.annotator, minlength=votes.n_annotators)
    keep_annotators = per_annotator > 0
    dropped_annotators = votes.annotators[~keep_annotators]
    if not keep_annotators.all():
        votes = votes.subset_annotators(keep_annotators)
    keep_items = votes.num_annotations() > 0
    dropped_items = votes.item_ids[~keep_items]
    if not keep_items.all():
        new_index = np.cumsum(keep_items) - 1
        votes = Votes(
            item=new_index[votes.item],
            annotator=votes.annotator,
            label=votes.label,
            item_ids=votes.item_ids[keep_items],
            annotators=votes.annotators,
            classes=votes.classes,
        )
        pred_probs = pred_probs[keep_items]
    return votes, pred_probs, dropped_items, dropped_annotators


def robust_crowdlab(votes: Votes, pred_probs: np.ndarray, *, seed: int = 0) -> ConsensusRun:
    """CROWDLAB that never fails on degenerate inputs (see the module docstring for the rules).

    ``pred_probs``: shape (N, K), aligned with ``votes.item_ids``. Raises ``ValueError`` only
    when no vote is left at all or ``pred_probs`` has the wrong shape / non-finite values.
    """
    pred_probs = _check_pred_probs(votes, pred_probs)
    clean, clean_probs, dropped_items, dropped_annotators = _drop_empty(votes, pred_probs)
    if len(clean.item) == 0:
        raise ValueError("no votes to aggregate: every item and annotator is empty")
    notes: list[str] = []
    if len(dropped_items):
        notes.append(f"dropped {len(dropped_items)} item(s) without any vote")
    if len(dropped_annotators):
        shown = ", ".join(repr(a) for a in dropped_annotators[:10])
        notes.append(f"dropped {len(dropped_annotators)} annotator(s) without any vote: {shown}")
    if (clean.num_annotations() >= 2).any():
        result, method = crowdlab(clean, clean_probs), CROWDLAB_METHOD
        isolated = np.isnan(result.annotator_quality)
        if isolated.any():
            shown = ", ".join(repr(a) for a in clean.annotators[isolated][:10])
            notes.append(
                f"{int(isolated.sum())} annotator(s) share no item with another annotator, so they have "
                f"no annotator_quality: {shown}"
            )
    else:
        result, method = _prior_only_result(clean, clean_probs, seed), FALLBACK_METHOD
        notes.append(
            "no item has two or more votes, so CROWDLAB is undefined: consensus = majority vote "
            "(model prior as tiebreak), consensus_quality_score = model prior's label quality"
        )
    return ConsensusRun(clean, clean_probs, result, method, dropped_items, dropped_annotators, notes)


# --------------------------------------------------------------------------- other aggregators


def _crowdkit_frame(votes: Votes) -> pd.DataFrame:
    return pd.DataFrame({"task": votes.item, "worker": votes.annotator, "label": votes.label})


def _crowdkit_output(votes: Votes, probas: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    probs = probas.reindex(index=np.arange(votes.n_items), columns=np.arange(votes.n_classes)).fillna(0.0).to_numpy()
    return probs.argmax(axis=1).astype(np.int64), probs


#: crowd-kit's floor for probabilities and error rates (``crowdkit.aggregation.classification.dawid_skene._EPS``).
DS_EPS = 1e-10


def dawid_skene(votes: Votes, n_iter: int = 100, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Dawid-Skene on sparse votes: class codes shape (N,), posteriors shape (N, K).

    The EM of crowd-kit's ``DawidSkene(n_iter, tol)`` (the reference in the tests: equal posteriors
    to 1e-6), step for step — start from majority-vote shares, per-annotator error matrices over
    the labels each annotator used (floored at 1e-10, normalized per true class), log-space E-step,
    stop when the evidence lower bound per vote gains less than ``tol`` — but with bincounts over
    the votes instead of pandas joins, so an iteration costs O(n_votes · K) (crowd-kit took 16 s
    at 1M votes). Every item needs at least one vote; classes nobody voted for get probability 0.
    """
    num = votes.num_annotations()
    if (num == 0).any():
        raise ValueError("dawid_skene: every item needs at least one vote")
    present = np.flatnonzero(np.bincount(votes.label, minlength=votes.n_classes))  # crowd-kit's label columns
    m = len(present)
    code = np.full(votes.n_classes, -1)
    code[present] = np.arange(m)
    label = code[votes.label]
    item, worker = votes.item, votes.annotator
    cell = worker * m + label  # (annotator, observed label)
    n_cells = votes.n_annotators * m
    used = np.bincount(cell, minlength=n_cells) > 0

    def m_step(probas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Error rates, shape (n_annotators * m, m): row (annotator, observed), column true label;
        and the expected counts they came from on the used rows, shape (n_used, m)."""
        errors = np.column_stack([np.bincount(cell, weights=probas[item, k], minlength=n_cells) for k in range(m)])
        counts = errors[used]
        errors[used] = np.maximum(counts, DS_EPS)
        totals = errors.reshape(votes.n_annotators, m, m).sum(axis=1)
        return errors / np.repeat(totals, m, axis=0), counts

    def e_step(priors: np.ndarray, log2_errors: np.ndarray) -> np.ndarray:
        gathered = log2_errors[cell]
        loglik = np.log2(np.maximum(priors, DS_EPS)) + np.column_stack(
            [np.bincount(item, weights=gathered[:, k], minlength=votes.n_items) for k in range(m)]
        )
        scaled = np.exp2(loglik - loglik.max(axis=1, keepdims=True))
        return scaled / scaled.sum(axis=1, keepdims=True)

    def lower_bound(probas: np.ndarray, priors: np.ndarray, errors: np.ndarray, counts: np.ndarray) -> float:
        """crowd-kit's bound, sum over votes of probas[item] · (log errors[cell] + log priors), summed
        per (annotator, observed label) cell from the M-step's expected counts: O(cells), not O(votes)."""
        joint = (counts * np.log(errors[used])).sum() + counts.sum(axis=0) @ np.log(np.maximum(priors, DS_EPS))
        clipped = np.maximum(probas, DS_EPS)
        return float(joint - (np.log(clipped) * clipped).sum())

    probas = np.column_stack([np.bincount(item, weights=label == k, minlength=votes.n_items) for k in range(m)]) / num[:, None]
    priors = probas.mean(axis=0)
    errors, _ = m_step(probas)
    loss = -np.inf
    for _ in range(n_iter):
        with np.errstate(divide="ignore"):
            probas = e_step(priors, np.log2(errors))
        priors = probas.mean(axis=0)
        errors, counts = m_step(probas)
        new_loss = lower_bound(probas, priors, errors, counts) / len(item)
        probas = np.maximum(probas, DS_EPS)
        if new_loss - loss < tol:
            break
        loss = new_loss
    out = np.zeros((votes.n_items, votes.n_classes))
    out[:, present] = probas
    return out.argmax(axis=1).astype(np.int64), out


def dawid_skene_reference(votes: Votes, n_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """crowd-kit's ``DawidSkene`` itself on the same votes, (codes, posteriors) as :func:`dawid_skene`
    (the reference the tests compare it with)."""
    from crowdkit.aggregation import DawidSkene

    if (votes.num_annotations() == 0).any():
        raise ValueError("dawid_skene: every item needs at least one vote")
    model = DawidSkene(n_iter=n_iter)
    model.fit(_crowdkit_frame(votes))
    return _crowdkit_output(votes, model.probas_)


def glad(votes: Votes, n_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """GLAD (crowd-kit ``GLAD``: annotator skill × item difficulty): codes (N,), posteriors (N, K).

    Slow: about 8 s on MT-Bench (5.8K votes, 2 cores) and linear in the votes, hence run only up to
    :data:`GLAD_MAX_VOTES` votes by :func:`judge_assets.core.consensus.tables.build_consensus_tables`.
    """
    from crowdkit.aggregation import GLAD

    if (votes.num_annotations() == 0).any():
        raise ValueError("glad: every item needs at least one vote")
    model = GLAD(n_iter=n_iter)
    model.fit(_crowdkit_frame(votes))
    return _crowdkit_output(votes, model.probas_)
