"""CROWDLAB at scale: cleanlab's dense implementation vs the sparse engine.

    python benchmarks/consensus_scale.py                 # 6K, 60K, 500K, 1M, 10M annotations
    python benchmarks/consensus_scale.py --quick         # 6K and 60K only
    python benchmarks/consensus_scale.py --sizes 500K 10M

Each size is a seeded synthetic crowd: annotator accuracies drawn from Beta(6, 2), votes per
item around the target (±1), K = 3 classes, and noisy model ``pred_probs`` (softmax of
1.5·onehot(truth) + N(0, 1) logits). Every measurement runs in a fresh Python process, so
each time and peak RSS (``ru_maxrss``, which includes generating the data) belongs to one
run. cleanlab time is ``get_label_quality_multiannotator(votes.to_matrix(), pred_probs)``,
building the dense matrix included. Sparse time is :func:`judge_assets.core.consensus.crowdlab.crowdlab`.
cleanlab runs only up to ``--cleanlab-max`` annotations (default 500K); above that the dense
matrix does not fit. "identical" means the consensus labels and worst classes are equal;
the max |Δ| column is the largest absolute difference over all scores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from judge_assets.core.consensus.votes import Votes  # noqa: E402

#: label -> (n_items, n_annotators, votes per item)
SIZES: dict[str, tuple[int, int, int]] = {
    "6K": (2_000, 20, 3),
    "60K": (20_000, 200, 3),
    "500K": (100_000, 1_000, 5),
    "1M": (200_000, 2_000, 5),
    "10M": (1_000_000, 10_000, 10),
}
N_CLASSES = 3
LABEL_FIELDS = ("consensus_label", "worst_class")
SCORE_FIELDS = (
    "consensus_quality_score",
    "annotator_agreement",
    "label_quality",
    "annotator_quality",
    "agreement_with_consensus",
    "annotator_weight",
)


def synthetic_crowd(n_items: int, n_annotators: int, votes_per_item: int, n_classes: int, seed: int) -> tuple[Votes, np.ndarray, np.ndarray]:
    """A seeded crowd: returns (votes, pred_probs shape (n_items, K), true labels shape (n_items,)).

    Item i gets votes_per_item - 1, votes_per_item or votes_per_item + 1 distinct annotators
    (an arithmetic progression from a random start, modulo n_annotators). Each vote is
    correct with its annotator's Beta(6, 2) accuracy, otherwise a uniformly random other
    class. Annotators who drew no vote are dropped.
    """
    rng = np.random.default_rng(seed)
    counts = np.clip(votes_per_item + rng.integers(-1, 2, size=n_items), 1, n_annotators)
    item = np.repeat(np.arange(n_items, dtype=np.int64), counts)
    rank = np.arange(len(item)) - np.repeat(np.cumsum(counts) - counts, counts)
    start = rng.integers(0, n_annotators, size=n_items)
    step = rng.integers(1, max(n_annotators // int(counts.max()), 1) + 1, size=n_items)
    annotator = (start[item] + rank * step[item]) % n_annotators
    del rank
    truth = rng.integers(n_classes, size=n_items)
    accuracy = rng.beta(6, 2, size=n_annotators)
    wrong = rng.random(len(item)) >= accuracy[annotator]
    label = truth[item].copy()
    label[wrong] = (label[wrong] + rng.integers(1, n_classes, size=int(wrong.sum()))) % n_classes
    del wrong
    logits = 1.5 * np.eye(n_classes)[truth] + rng.normal(size=(n_items, n_classes))
    pred_probs = np.exp(logits)
    pred_probs /= pred_probs.sum(axis=1, keepdims=True)
    votes = Votes(
        item=item,
        annotator=annotator,
        label=label,
        item_ids=np.arange(n_items).astype(object),
        annotators=np.array([f"ann{a}" for a in range(n_annotators)], dtype=object),
        classes=tuple(f"c{k}" for k in range(n_classes)),
    )
    used = np.zeros(n_annotators, dtype=bool)
    used[annotator] = True
    return (votes if used.all() else votes.subset_annotators(used)), pred_probs, truth


def run_child(engine: str, size: str, seed: int, out: Path) -> None:
    """One measurement (in its own process): build the crowd, run ``engine``, save results."""
    n_items, n_annotators, per_item = SIZES[size]
    votes, pred_probs, truth = synthetic_crowd(n_items, n_annotators, per_item, N_CLASSES, seed)
    if engine == "cleanlab":
        from cleanlab.multiannotator import get_label_quality_multiannotator

        start = time.perf_counter()
        result = get_label_quality_multiannotator(
            votes.to_matrix(), pred_probs, return_weights=True, verbose=False
        )
        seconds = time.perf_counter() - start
        stats = result["annotator_stats"].reindex(list(votes.annotators))
        arrays = {
            "consensus_label": result["label_quality"]["consensus_label"].to_numpy(),
            "consensus_quality_score": result["label_quality"]["consensus_quality_score"].to_numpy(),
            "annotator_agreement": result["label_quality"]["annotator_agreement"].to_numpy(),
            "label_quality": result["detailed_label_quality"].to_numpy()[votes.item, votes.annotator],
            "annotator_quality": stats["annotator_quality"].to_numpy(),
            "agreement_with_consensus": stats["agreement_with_consensus"].to_numpy(),
            "worst_class": stats["worst_class"].to_numpy(),
            "annotator_weight": np.asarray(result["annotator_weight"]),
        }
    else:
        from judge_assets.core.consensus.crowdlab import crowdlab

        start = time.perf_counter()
        result = crowdlab(votes, pred_probs)
        seconds = time.perf_counter() - start
        arrays = {name: getattr(result, name) for name in LABEL_FIELDS + SCORE_FIELDS}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    accuracy = float((arrays["consensus_label"] == truth).mean())
    if out.suffix == ".npz":
        np.savez(out, **arrays)
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "n_votes": len(votes.item),
                      "n_items": votes.n_items, "n_annotators": votes.n_annotators, "accuracy": accuracy}))


def measure(engine: str, size: str, seed: int, out: Path) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON report."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", engine, size, str(seed), str(out)],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{engine} at {size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(cleanlab_npz: Path, sparse_npz: Path) -> tuple[bool, float]:
    """(labels identical, max absolute score difference) between two saved results."""
    a, b = np.load(cleanlab_npz), np.load(sparse_npz)
    same = all(np.array_equal(a[name], b[name]) for name in LABEL_FIELDS)
    diff = 0.0
    for name in SCORE_FIELDS:
        x, y = a[name], b[name]
        both = ~(np.isnan(x) & np.isnan(y))
        same &= bool(np.array_equal(np.isnan(x), np.isnan(y)))
        diff = max(diff, float(np.max(np.abs(x[both] - y[both]), initial=0.0)))
    return same, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--quick", action="store_true", help="only 6K and 60K")
    parser.add_argument("--cleanlab-max", type=int, default=500_000, help="largest size (annotations) to run cleanlab on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=4, metavar=("ENGINE", "SIZE", "SEED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, size, seed, out = args.child
        run_child(engine, size, int(seed), Path(out))
        return
    sizes = ["6K", "60K"] if args.quick else args.sizes
    print("| annotations | items | annotators | cleanlab s | cleanlab peak MB | sparse s | sparse peak MB "
          "| speed-up | memory ratio | identical (max abs diff) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            n_items, _, per_item = SIZES[size]
            with_cleanlab = n_items * per_item <= args.cleanlab_max
            suffix = ".npz" if with_cleanlab else ".none"
            sparse = measure("sparse", size, args.seed, Path(tmp) / f"sparse-{size}{suffix}")
            row = [f"{sparse['n_votes']:,}", f"{sparse['n_items']:,}", f"{sparse['n_annotators']:,}"]
            if with_cleanlab:
                dense = measure("cleanlab", size, args.seed, Path(tmp) / f"cleanlab-{size}.npz")
                same, diff = compare(Path(tmp) / f"cleanlab-{size}.npz", Path(tmp) / f"sparse-{size}.npz")
                row += [f"{dense['seconds']:.2f}", f"{dense['peak_mb']:.0f}"]
            else:
                row += ["–", "–"]
            row += [f"{sparse['seconds']:.2f}", f"{sparse['peak_mb']:.0f}"]
            if with_cleanlab:
                row += [f"{dense['seconds'] / sparse['seconds']:.0f}×", f"1/{dense['peak_mb'] / sparse['peak_mb']:.1f}",
                        f"{'yes' if same else 'NO'} ({diff:.1e})"]
            else:
                row += ["–", "–", f"– (consensus accuracy {sparse['accuracy']:.3f})"]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
