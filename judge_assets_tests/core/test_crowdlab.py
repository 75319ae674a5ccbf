"""The sparse CROWDLAB engine gives cleanlab's results: labels equal, scores within 1e-6."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cleanlab.multiannotator import get_active_learning_scores, get_label_quality_multiannotator, get_majority_vote_label

from judge_assets.core.consensus.crowdlab import (
    _packed_label_distribution,
    _segment_sums,
    active_learning_scores,
    annotator_worst_class,
    crowdlab,
    crowdlab_reference,
    majority_vote,
)
from judge_assets.core.consensus.votes import CrowdlabResult, Votes

EXACT_FIELDS = ("consensus_label", "worst_class", "num_annotations", "num_examples_labeled")
SCORE_FIELDS = (
    "consensus_quality_score",
    "annotator_agreement",
    "post_pred_probs",
    "label_quality",
    "annotator_quality",
    "agreement_with_consensus",
    "annotator_weight",
)


def make_votes(item, annotator, label, n_items: int, n_annotators: int, n_classes: int) -> Votes:
    return Votes(
        item=np.asarray(item, dtype=np.int64),
        annotator=np.asarray(annotator, dtype=np.int64),
        label=np.asarray(label, dtype=np.int64),
        item_ids=np.array([f"item{i}" for i in range(n_items)], dtype=object),
        annotators=np.array([f"ann{a}" for a in range(n_annotators)], dtype=object),
        classes=tuple(f"c{k}" for k in range(n_classes)),
    )


def random_problem(seed: int) -> tuple[Votes, np.ndarray]:
    """A small random multi-annotator problem that stresses cleanlab's edge cases.

    K cycles through 2..5. Annotators have random accuracies and sparsity. Some items get a
    single vote, some get forced split votes, one annotator may label only items nobody else
    labels, one may cast a single vote. pred_probs are continuous, on a coarse grid (ties
    between classes) or uniform (every class tied).
    """
    rng = np.random.default_rng(seed)
    n_classes = 2 + seed % 4
    n_items = int(rng.integers(6, 50))
    n_annotators = int(rng.integers(2, 10))
    labeled = rng.random((n_items, n_annotators)) < rng.uniform(0.15, 0.8)
    labeled[0, :2] = True  # at least one item with two votes
    for a in np.flatnonzero(~labeled.any(axis=0)):
        labeled[rng.integers(n_items), a] = True
    for i in np.flatnonzero(~labeled.any(axis=1)):
        labeled[i, rng.integers(n_annotators)] = True
    truth = rng.integers(n_classes, size=n_items)
    accuracy = rng.uniform(0.3, 0.95, size=n_annotators)
    item, annotator = np.nonzero(labeled)
    label = np.where(rng.random(len(item)) < accuracy[annotator], truth[item], rng.integers(n_classes, size=len(item)))

    extra_items = []
    if rng.random() < 0.4:  # an annotator who shares no item with anyone
        lonely = n_annotators
        n_annotators += 1
        for _ in range(int(rng.integers(1, 4))):
            extra_items.append((n_items, lonely, int(rng.integers(n_classes))))
            n_items += 1
    if rng.random() < 0.4:  # an annotator with a single vote on a shared item
        extra_items.append((0, n_annotators, int(rng.integers(n_classes))))
        n_annotators += 1
    if rng.random() < 0.5:  # a forced tie: two annotators split an item
        extra_items.append((n_items, 0, 0))
        extra_items.append((n_items, 1, 1))
        n_items += 1
    if extra_items:
        ei, ea, el = zip(*extra_items)
        item = np.concatenate([item, ei])
        annotator = np.concatenate([annotator, ea])
        label = np.concatenate([label, el])

    kind = seed % 3
    if kind == 0:
        pred_probs = rng.dirichlet(np.ones(n_classes), size=n_items)
    elif kind == 1:
        grid = rng.integers(1, 4, size=(n_items, n_classes)).astype(float)
        pred_probs = grid / grid.sum(axis=1, keepdims=True)
    else:
        pred_probs = np.full((n_items, n_classes), 1.0 / n_classes)
    shuffle = rng.permutation(len(item))
    votes = make_votes(item[shuffle], annotator[shuffle], label[shuffle], n_items, n_annotators, n_classes)
    return votes, pred_probs


def assert_same_result(got: CrowdlabResult, ref: CrowdlabResult) -> None:
    for field in EXACT_FIELDS:
        np.testing.assert_array_equal(getattr(got, field), getattr(ref, field), err_msg=field)
    for field in SCORE_FIELDS:
        np.testing.assert_allclose(getattr(got, field), getattr(ref, field), rtol=0, atol=1e-6, err_msg=field)
    assert got.model_weight == pytest.approx(ref.model_weight, abs=1e-6)


def run_seeded(fn, *args, seed: int):
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


@pytest.mark.parametrize("seed", range(48))
def test_crowdlab_equals_cleanlab_on_random_problems(seed):
    votes, pred_probs = random_problem(seed)
    ref = run_seeded(crowdlab_reference, votes, pred_probs, seed=seed)
    got = run_seeded(crowdlab, votes, pred_probs, seed=seed)
    assert_same_result(got, ref)


def test_segment_sums_are_bit_identical_to_numpy_sum():
    # numpy sums arrays pairwise; a sequential group-by sum (bincount, reduceat) differs in the
    # last bits for segments of 8+ values, which would flip cleanlab's exact-equality tiebreaks.
    rng = np.random.default_rng(0)
    lengths = np.concatenate([np.arange(0, 300), [0, 513, 1000, 4099], rng.integers(0, 50, size=200)])
    values = rng.random(lengths.sum()) * rng.random(lengths.sum()) * 1e3
    starts = np.cumsum(lengths) - lengths
    expected = np.array([values[s : s + n].sum() for s, n in zip(starts, lengths)])
    got = _segment_sums(values, lengths)
    assert np.array_equal(got, expected)
    sequential = np.bincount(np.repeat(np.arange(len(lengths)), lengths), weights=values, minlength=len(lengths))
    assert not np.array_equal(sequential, expected)


def test_reference_unpacks_cleanlab_frames_in_annotator_order():
    votes, pred_probs = random_problem(7)
    ref = crowdlab_reference(votes, pred_probs)
    out = get_label_quality_multiannotator(votes.to_matrix(), pred_probs, verbose=False)
    stats = out["annotator_stats"].loc[list(votes.annotators)]
    assert np.isnan(ref.annotator_quality).any()  # an annotator sharing no item: NaN, as in cleanlab
    np.testing.assert_array_equal(ref.annotator_quality, stats["annotator_quality"].to_numpy())
    np.testing.assert_array_equal(ref.worst_class, stats["worst_class"].to_numpy())
    detailed = out["detailed_label_quality"]
    v = 3
    column = f"quality_annotator_{votes.annotators[votes.annotator[v]]}"
    assert ref.label_quality[v] == detailed.iloc[votes.item[v]][column]


def test_posterior_ties_fall_back_to_majority_vote_like_cleanlab():
    # Two equally reliable annotators split every contested item and the model is uniform,
    # so the CROWDLAB posterior ties and the majority-vote tiebreaks decide.
    item = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    annotator = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    label = [0, 1, 1, 0, 0, 0, 1, 1, 0, 1]
    votes = make_votes(item, annotator, label, 5, 2, 2)
    pred_probs = np.full((5, 2), 0.5)
    ref = run_seeded(crowdlab_reference, votes, pred_probs, seed=3)
    got = run_seeded(crowdlab, votes, pred_probs, seed=3)
    assert_same_result(got, ref)
    assert got.consensus_label[2] == 0 and got.consensus_label[3] == 1


def test_unanimous_items_outscore_contested_ones():
    item = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    annotator = [0, 1, 2, 0, 1, 2, 0, 1, 2]
    label = [2, 2, 2, 0, 1, 0, 1, 1, 1]
    votes = make_votes(item, annotator, label, 3, 3, 3)
    pred_probs = np.array([[0.2, 0.2, 0.6], [0.4, 0.4, 0.2], [0.1, 0.8, 0.1]])
    got = crowdlab(votes, pred_probs)
    np.testing.assert_array_equal(got.consensus_label, [2, 0, 1])
    np.testing.assert_allclose(got.annotator_agreement, [1.0, 2 / 3, 1.0])
    assert got.consensus_quality_score[1] < min(got.consensus_quality_score[0], got.consensus_quality_score[2])
    np.testing.assert_allclose(got.post_pred_probs.sum(axis=1), 1.0)
    # annotator 1 is the only dissenter (voted B where the consensus is A)
    assert got.agreement_with_consensus[1] == pytest.approx(2 / 3)
    assert got.worst_class[1] == 1
    assert_same_result(got, crowdlab_reference(votes, pred_probs))


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("with_probs", [True, False])
def test_majority_vote_equals_cleanlab(seed, with_probs):
    votes, pred_probs = random_problem(seed)
    probs = pred_probs if with_probs else None
    ref = run_seeded(get_majority_vote_label, votes.to_matrix(), probs, seed=seed)
    got = run_seeded(majority_vote, votes, probs, seed=seed)
    np.testing.assert_array_equal(got, ref)


def all_ties_votes() -> Votes:
    """Items 0-2 untied; items 3-5 split 1:1 between classes with equal total frequency."""
    item = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    annotator = [0, 1, 2, 3, 0, 2, 1, 3, 0, 1, 2, 3]
    label = [0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1]
    return make_votes(item, annotator, label, 6, 4, 2)


def test_majority_vote_tiebreaks_by_annotator_agreement_then_random_like_cleanlab():
    votes = all_ties_votes()
    pred_probs = np.full((6, 2), 0.5)
    for seed in range(6):
        ref = run_seeded(get_majority_vote_label, votes.to_matrix(), pred_probs, seed=seed)
        got = run_seeded(majority_vote, votes, pred_probs, seed=seed)
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got[:3], [0, 1, 0])


def test_majority_vote_random_tiebreak_warns_and_follows_the_global_seed():
    # Item 0 is split by two equally reliable annotators, both classes are equally frequent
    # and the model is uniform: only chance can decide.
    votes = make_votes([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [0, 1, 0, 0, 1, 1], 3, 2, 2)
    pred_probs = np.full((3, 2), 0.5)
    picks = set()
    for seed in range(12):
        np.random.seed(seed)
        with pytest.warns(UserWarning, match="by random selection"):
            got = majority_vote(votes, pred_probs)
        np.random.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = get_majority_vote_label(votes.to_matrix(), pred_probs, verbose=False)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(got[1:], [0, 1])
        picks.add(int(got[0]))
    assert picks == {0, 1}


def test_majority_vote_without_validation_accepts_unlabeled_items_like_cleanlab():
    votes = make_votes([0, 0, 1], [0, 1, 0], [2, 2, 1], 3, 2, 3)
    pred_probs = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7]])
    ref = run_seeded(get_majority_vote_label, votes.to_matrix(), pred_probs, False, seed=0)
    got = majority_vote(votes, pred_probs, validate=False)
    np.testing.assert_array_equal(got, ref)
    assert got[2] == 2  # the unlabeled item takes the model's top class
    with pytest.raises(ValueError, match="at least one vote"):
        majority_vote(votes, pred_probs)


def test_majority_vote_breaks_ties_by_the_seeded_draw_where_cleanlab_fails_because_no_item_is_untied():
    votes = make_votes([0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 0], 2, 2, 2)
    pred_probs = np.full((2, 2), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            get_majority_vote_label(votes.to_matrix(), pred_probs, verbose=False)
        np.random.seed(3)
        first = majority_vote(votes, pred_probs)
        np.random.seed(3)
        again = majority_vote(votes, pred_probs)
    assert set(first) <= {0, 1} and len(first) == 2
    np.testing.assert_array_equal(first, again)  # seeded: the same labels every run


def invalid_inputs():
    ok_probs = np.full((3, 2), 0.5)
    valid = make_votes([0, 0, 1, 2], [0, 1, 0, 1], [0, 1, 0, 1], 3, 2, 2)
    cases = {
        "item-without-votes": (make_votes([0, 0, 1], [0, 1, 0], [0, 1, 0], 3, 2, 2), ok_probs, "item2"),
        "annotator-without-votes": (make_votes([0, 0, 1, 2], [0, 1, 0, 1], [0, 1, 0, 1], 3, 3, 2), ok_probs, "ann2"),
        "one-annotator": (make_votes([0, 1, 2], [0, 0, 0], [0, 1, 0], 3, 1, 2), ok_probs, "at least two annotators"),
        "all-single-votes": (make_votes([0, 1, 2], [0, 1, 0], [0, 1, 0], 3, 2, 2), ok_probs, "exactly one vote"),
        "pred-probs-rows": (valid, np.full((2, 2), 0.5), "2 rows but there are 3 items"),
        "pred-probs-1d": (valid, np.full(3, 0.5), "2d array"),
        "pred-probs-too-few-classes": (
            make_votes([0, 0, 1, 2], [0, 1, 0, 2], [0, 1, 0, 2], 3, 3, 3),
            ok_probs,
            "at least 3 columns",
        ),
    }
    return [pytest.param(*case, id=name) for name, case in cases.items()]


@pytest.mark.parametrize("votes, pred_probs, message", invalid_inputs())
def test_invalid_inputs_raise_where_cleanlab_raises(votes, pred_probs, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            get_label_quality_multiannotator(votes.to_matrix(), pred_probs, verbose=False)
        with pytest.raises(ValueError, match=message):
            crowdlab(votes, pred_probs)


def test_pred_probs_must_be_an_array_like_cleanlab():
    votes = make_votes([0, 0, 1], [0, 1, 0], [0, 0, 1], 2, 2, 2)
    with pytest.raises(TypeError, match="numpy array"):
        crowdlab(votes, [[0.5, 0.5], [0.5, 0.5]])


def test_nan_pred_probs_are_rejected():
    votes = make_votes([0, 0, 1], [0, 1, 0], [0, 0, 1], 2, 2, 2)
    with pytest.raises(ValueError, match="finite and non-negative"):
        crowdlab(votes, np.array([[0.5, np.nan], [0.5, 0.5]]))


def test_disagreeing_annotators_warn_like_cleanlab():
    votes = make_votes([0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 0], 2, 2, 2)
    pred_probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.warns(UserWarning, match="do not agree on any example"):
        crowdlab(votes, pred_probs)


def test_scales_to_shapes_whose_dense_matrix_would_not_fit():
    # 200,000 items x 100,000 annotators: the dense float matrix would need 160 GB.
    rng = np.random.default_rng(0)
    n_items, n_annotators, per_item = 200_000, 100_000, 3
    item = np.repeat(np.arange(n_items), per_item)
    start = rng.integers(0, n_annotators, size=n_items)
    annotator = (start[:, None] + np.arange(per_item) * 7) % n_annotators
    truth = rng.integers(3, size=n_items)
    label = np.where(rng.random(len(item)) < 0.8, truth[item], rng.integers(3, size=len(item)))
    votes = Votes(
        item=item,
        annotator=annotator.ravel(),
        label=label,
        item_ids=np.arange(n_items).astype(object),
        annotators=np.arange(n_annotators).astype(object),
        classes=("A", "B", "tie"),
    )
    pred_probs = rng.dirichlet(np.ones(3), size=n_items)
    used = np.zeros(n_annotators, dtype=bool)
    used[votes.annotator] = True
    votes = votes.subset_annotators(used)
    result = crowdlab(votes, pred_probs)
    assert result.consensus_label.shape == (n_items,)
    assert (result.consensus_label == truth).mean() > 0.85
    assert result.num_examples_labeled.sum() == len(item)


@pytest.mark.parametrize("seed", range(48))
def test_activelab_equals_cleanlab_on_random_problems_with_unlabelled_items(seed):
    votes, pred_probs = random_problem(seed)
    unlabelled = np.random.default_rng(seed + 1000).dirichlet(np.ones(pred_probs.shape[1]), size=1 + seed % 4)
    ref = run_seeded(get_active_learning_scores, votes.to_matrix(), pred_probs, unlabelled, seed=seed)
    got = run_seeded(active_learning_scores, votes, pred_probs, unlabelled, seed=seed)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("seed", range(6))
def test_activelab_with_one_vote_per_item_equals_cleanlab(seed):
    """cleanlab's other branch: no temperature scaling, the vote is the consensus, weights 1."""
    rng = np.random.default_rng(seed)
    n_items, n_annotators, n_classes = 25, 4, 2 + seed % 3
    annotator = np.concatenate([np.arange(n_annotators), rng.integers(0, n_annotators, n_items - n_annotators)])
    votes = make_votes(np.arange(n_items), annotator, rng.integers(0, n_classes, n_items), n_items, n_annotators, n_classes)
    pred_probs = rng.dirichlet(np.ones(n_classes), size=n_items)
    unlabelled = rng.dirichlet(np.ones(n_classes), size=3)
    ref = get_active_learning_scores(votes.to_matrix(), pred_probs, unlabelled)
    got = active_learning_scores(votes, pred_probs, unlabelled)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    assert active_learning_scores(votes, pred_probs)[1].size == 0


def test_activelab_label_distribution_packs_counts_like_cleanlab():
    """cleanlab's temperature search counts an item's float labels with ``value_counts``, which puts
    the counts of the classes present first; the engine follows it (else the temperature differs)."""
    counts = np.array([[0, 0, 2], [1, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(
        _packed_label_distribution(counts, counts.sum(axis=1)), [[1.0, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]
    )


def test_activelab_never_builds_the_dense_matrix(monkeypatch):
    votes, pred_probs = random_problem(5)
    monkeypatch.setattr(Votes, "to_matrix", lambda self: pytest.fail("ActiveLab built the dense matrix"))
    scores, _ = active_learning_scores(votes, pred_probs)
    assert scores.shape == (votes.n_items,) and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("seed", range(24))
def test_annotator_worst_class_equals_cleanlab_for_any_consensus(seed):
    """The sparse worst-class rule against cleanlab's dense one, for an arbitrary consensus (the
    majority-vote fallback passes its own)."""
    from cleanlab.multiannotator import _get_annotator_worst_class

    votes, _ = random_problem(seed)
    rng = np.random.default_rng(seed)
    consensus = rng.integers(votes.n_classes, size=votes.n_items)
    quality = np.round(rng.random(votes.n_items), 1)  # coarse: ties reach the last tiebreak
    expected = _get_annotator_worst_class(votes.to_matrix().to_numpy(), consensus, quality)
    np.testing.assert_array_equal(annotator_worst_class(votes, consensus, quality), expected)
