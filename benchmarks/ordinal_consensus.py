"""Ordinal consensus against known truth: weighted median vs weighted mean vs CROWDLAB's class consensus.

Seeded synthetic 1–8 crowds (``judge_assets_tests.core.test_ordinal.synthetic_likert``: 400 items,
six annotators with rating noise sd 0.5–3, 3–5 votes per item). Prints the mean absolute error to
the true score per seed and the mean, and each method's ratio to CROWDLAB (the baseline).

    python benchmarks/ordinal_consensus.py [--seeds 10]
"""

from __future__ import annotations

import argparse

import numpy as np

from judge_assets.core.consensus.methods import robust_crowdlab
from judge_assets.core.consensus.ordinal import ordinal_consensus
from judge_assets_tests.core.test_ordinal import LIKERT, synthetic_likert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        votes, truth, _ = synthetic_likert(seed)
        items = ordinal_consensus(votes, LIKERT).items.set_index("item_id")
        true = truth.loc[items.index].to_numpy()
        crowdlab = robust_crowdlab(votes, np.full((votes.n_items, len(LIKERT.labels)), 1 / len(LIKERT.labels))).result
        rows.append((
            np.mean(np.abs(items["ordinal_consensus"].to_numpy() - true)),
            np.mean(np.abs(np.rint(items["ordinal_mean"].to_numpy()) - true)),
            np.mean(np.abs(LIKERT.value_array[crowdlab.consensus_label] - truth.loc[votes.item_ids].to_numpy())),
        ))
    table = np.array(rows)
    print("| seed | weighted median | weighted mean (rounded) | CROWDLAB class consensus |\n|---:|---:|---:|---:|")
    for seed, (median, mean, crowdlab) in enumerate(table):
        print(f"| {seed} | {median:.3f} | {mean:.3f} | {crowdlab:.3f} |")
    means = table.mean(axis=0)
    print(f"| **mean** | **{means[0]:.3f}** | {means[1]:.3f} | {means[2]:.3f} |")
    print(f"| × baseline | {means[0] / means[2]:.2f} | {means[1] / means[2]:.2f} | 1.00 |")


if __name__ == "__main__":
    main()
