"""Gold-calibrated consensus on LLMBar Natural: gold on a few items, accuracy on the rest.

LLMBar Natural (MIT; 100 pairwise items, 6,484 votes of 65 LLM judges, gold on every item; see
``judge_assets_tests/core/test_ground_truth.py: llmbar_natural_dir`` for where it is read from).
Per seed, gold is kept on a seeded random 10% of the items (``numpy.random.default_rng(seed)``)
and every method labels the other 90%, which are scored against their gold:

- ``gold_mixture`` (the default gold-aware consensus) and ``gold_weighted_vote``, given the kept gold;
- majority vote, Dawid-Skene and CROWDLAB (uniform prior), which ignore gold;
- the judge best on the kept gold: the mean accuracy of the judges tied for best there (what
  picking one of them gives on average), majority vote where a judge did not vote.

Prints a Markdown table (mean and min over the seeds, ratio of the mean to majority vote's), whether
the default beats the best-on-gold judge in the mean, and the reproduction check of the 65 judges'
accuracy against ``expected.csv``.

    python benchmarks/ground_truth.py [--seeds 20] [--gold-share 0.1]
"""

from __future__ import annotations

import argparse

import numpy as np

from judge_assets.core.consensus.majority import majority_vote
from judge_assets.core.consensus.methods import dawid_skene, robust_crowdlab
from judge_assets.core.consensus.votes import Votes
from judge_assets.core.reports.ground_truth import (
    annotator_accuracy,
    best_judges_on_gold,
    gold_aware_consensus,
    gold_codes,
    gold_per_item,
    gold_weighted_vote,
    judge_labels,
)
from judge_assets_tests.core.test_ground_truth import LLMBAR_CLASSES, gold_on, llmbar_natural_dir, load_llmbar


def reproduction_check() -> bool:
    """Every judge's ``n`` and accuracy (4 decimals) equal ``expected.csv``'s ``votes`` and ``accuracy``."""
    judgments, expected = load_llmbar()
    scores = annotator_accuracy(judgments, gold_per_item(judgments), LLMBAR_CLASSES, by_category=False).set_index("name")
    expected = expected.set_index("annotator")
    same_judges = set(scores.index) == set(expected.index)
    scores = scores.reindex(expected.index)
    return bool(
        same_judges
        and (scores["n"] == expected["votes"]).all()
        and (scores["accuracy"].round(4) == expected["accuracy"].round(4)).all()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--gold-share", type=float, default=0.1)
    args = parser.parse_args()
    judgments, _ = load_llmbar()
    votes = Votes.from_frame(judgments, LLMBAR_CLASSES)
    truth = gold_codes(gold_per_item(judgments), votes)
    uniform = np.full((votes.n_items, votes.n_classes), 1 / votes.n_classes)
    unsupervised = {
        "majority vote": majority_vote(votes),
        "Dawid-Skene": dawid_skene(votes)[0],
        "CROWDLAB (uniform prior)": robust_crowdlab(votes, uniform).result.consensus_label,
    }
    names = ["gold_mixture (default)", "gold_weighted_vote", "judge best on the kept gold", *unsupervised]
    accuracy = {name: [] for name in names}
    tied = []
    for seed in range(args.seeds):
        gold = gold_on(truth, args.gold_share, seed)
        rest = gold < 0

        def score(labels: np.ndarray) -> float:
            return float((labels[rest] == truth[rest]).mean())

        consensus = gold_aware_consensus(votes, gold)
        accuracy["gold_mixture (default)"].append(score(np.asarray(consensus["consensus_label"].map(LLMBAR_CLASSES.index))))
        accuracy["gold_weighted_vote"].append(score(gold_weighted_vote(votes, gold)))
        best = best_judges_on_gold(votes, gold)
        tied.append(len(best))
        fallback = unsupervised["majority vote"]
        accuracy["judge best on the kept gold"].append(float(np.mean([score(judge_labels(votes, j, fallback)) for j in best])))
        for name, labels in unsupervised.items():
            accuracy[name].append(score(labels))

    n_gold = int(round(args.gold_share * votes.n_items))
    print(f"LLMBar Natural ({llmbar_natural_dir()}): {votes.n_items} items, {len(votes.item)} votes, "
          f"{votes.n_annotators} judges; gold kept on {n_gold} items, accuracy on the other "
          f"{votes.n_items - n_gold}; {args.seeds} seeds\n")
    baseline = np.mean(accuracy["majority vote"])
    print("| method | mean accuracy | min | × majority vote |\n|---|---:|---:|---:|")
    for name in names:
        values = np.asarray(accuracy[name])
        print(f"| {name} | {values.mean():.4f} | {values.min():.4f} | {values.mean() / baseline:.3f} |")
    default, best = np.asarray(accuracy["gold_mixture (default)"]), np.asarray(accuracy["judge best on the kept gold"])
    gap = default.mean() - best.mean()
    print(f"\njudges tied for best on the kept gold: {np.mean(tied):.1f} on average (min {min(tied)}, max {max(tied)})")
    verdict = "beats" if gap > 0 else "does NOT beat"
    print(f"default {verdict} the best-on-gold judge in the mean: {100 * gap:+.2f} points "
          f"(at least as accurate on {int((default >= best).sum())} of {args.seeds} seeds)")
    print(f"65-judge reproduction of expected.csv (n = votes, accuracy to 4 decimals), all equal: "
          f"{'yes' if reproduction_check() else 'no'}")


if __name__ == "__main__":
    main()
