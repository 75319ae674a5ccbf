"""Every plot attached to a materialization, in one place.

Each function takes plain frames or arrays and returns a matplotlib figure drawn with the Agg
backend. Text from the data (model names, annotators, batch ids) is drawn literally: mathtext is
off, so a name like ``$x$`` never breaks a plot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from judge_assets.core.consensus.tables import reliability_table
from judge_assets.core.reports.leaderboard import ELO_BASE_RATING, SOURCES


def _pyplot():
    """``matplotlib.pyplot`` on the Agg backend with mathtext parsing off."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def plot_quality_by_group(stats: pd.DataFrame):
    """Box plot with the individual annotators overlaid: ``annotator_quality`` per ``annotator_group``."""
    plt = _pyplot()
    data = stats.dropna(subset=["annotator_quality"])
    groups = sorted(data["annotator_group"].unique())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = [data.loc[data["annotator_group"] == g, "annotator_quality"].to_numpy() for g in groups]
    if groups:
        ax.boxplot(values, showfliers=False)
        ax.set_xticks(range(1, len(groups) + 1), [f"{g}\n(n={len(v)})" for g, v in zip(groups, values)])
        rng = np.random.default_rng(0)
        for i, v in enumerate(values, start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=12, alpha=0.6)
    ax.set_ylabel("annotator quality (CROWDLAB)")
    ax.set_title("Annotator quality by group")
    return fig


def plot_reliability(prior: np.ndarray, consensus: np.ndarray, n_bins: int = 10):
    """Reliability diagram of the model prior (top-class confidence vs accuracy against consensus)."""
    plt = _pyplot()
    table = reliability_table(prior, consensus, n_bins)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.plot(table["mean_confidence"], table["accuracy"], marker="o", label="model prior")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("prior confidence (top class)")
    ax.set_ylabel("agreement with consensus")
    ax.set_title("Model prior reliability")
    ax.legend(loc="upper left")
    return fig


def plot_leaderboard(leaderboard: pd.DataFrame):
    """Ratings with their intervals, one marker per source, models ordered by the first
    source's rating (best at the top). Returns a matplotlib Figure (Agg backend)."""
    plt = _pyplot()
    sources = [s for s in SOURCES if s in set(leaderboard["source"])] + sorted(
        set(leaderboard["source"]) - set(SOURCES)
    )
    order = (
        leaderboard[leaderboard["source"] == sources[0]].sort_values("rating")["model"].tolist()
    )
    order += sorted(set(leaderboard["model"]) - set(order))
    position = {m: k for k, m in enumerate(order)}
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(order) + 1.5))
    offsets = np.linspace(-0.2, 0.2, len(sources)) if len(sources) > 1 else [0.0]
    for source, offset in zip(sources, offsets):
        part = leaderboard[leaderboard["source"] == source]
        y = part["model"].map(position).to_numpy() + offset
        err = np.vstack([part["rating"] - part["ci_low"], part["ci_high"] - part["rating"]])
        ax.errorbar(part["rating"], y, xerr=np.clip(err, 0, None), fmt="o", capsize=3, label=source)
    ax.set_yticks(range(len(order)), order)
    ax.axvline(ELO_BASE_RATING, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("Bradley-Terry rating (Elo scale, mean 1000) with 95% bootstrap interval")
    ax.legend(title="source", loc="lower right")
    fig.tight_layout()
    return fig


def plot_benchmark(summary: pd.DataFrame):
    """Horizontal bar chart of mean held-out vote accuracy with ±1 std error bars; default in
    a different colour. Returns the matplotlib figure (Agg backend)."""
    plt = _pyplot()
    ordered = summary.sort_values("mean_accuracy")
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(ordered) + 1.2))
    colors = ["tab:orange" if d else "tab:blue" for d in ordered["is_default"]]
    ax.barh(
        ordered["method"], 100 * ordered["mean_accuracy"], xerr=100 * ordered["std_accuracy"].fillna(0.0), color=colors, capsize=3
    )
    low = 100 * (ordered["mean_accuracy"] - ordered["std_accuracy"].fillna(0.0)).min()
    ax.set_xlim(max(0.0, low - 5), min(100.0, 100 * ordered["mean_accuracy"].max() + 5))
    ax.set_xlabel("held-out vote accuracy (%), mean ± std over seeds")
    ax.set_title("Agreement with a hidden human vote")
    fig.tight_layout()
    return fig


def plot_annotator_drift(history: pd.DataFrame, top: int = 8):
    """Line plot of annotator quality per snapshot for the ``top`` annotators with the most labels.

    ``history``: rows of ``annotator_stats_history``. Returns a matplotlib figure (Agg backend).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    if history.empty:
        ax.set_title("no annotator history yet")
        return fig
    last = history[history["snapshot"] == history["snapshot"].max()]
    chosen = last.nlargest(top, "num_examples_labeled")["annotator"]
    snaps = history[["snapshot", "latest_batch_id"]].drop_duplicates().sort_values("snapshot")
    for name in chosen:
        rows = history[history["annotator"] == name].sort_values("snapshot")
        ax.plot(rows["snapshot"], rows["annotator_quality"], marker="o", label=name)
    ax.set_xticks(snaps["snapshot"], [f"{s}\n{str(b)[:18]}" for s, b in zip(snaps["snapshot"], snaps["latest_batch_id"])], fontsize=7)
    ax.set_xlabel("snapshot (latest batch)")
    ax.set_ylabel("annotator quality (CROWDLAB)")
    ax.set_title(f"Annotator quality across batches (top {len(chosen)} by labels)")
    ax.legend(fontsize=7, loc="best")
    return fig


def plot_alignment_history(history: pd.DataFrame):
    """Coverage, false failure rate and alignment of every assertion per grading batch (rows of
    ``assertion_report_history``): one line per ``criterion/assertion``; batches below the first
    milestone have no numbers and leave a gap; a red ring marks a criterion's drift."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True)
    if history.empty or history["alignment"].notna().sum() == 0 and history["coverage"].notna().sum() == 0:
        axes[1].set_title("no numbers yet: fewer graded outputs than the first milestone")
        return fig
    batches = history[["batch_number", "batch_id"]].drop_duplicates().sort_values("batch_number")
    for (criterion, assertion), rows in history.groupby(["criterion", "assertion"], sort=True):
        rows = rows.sort_values("batch_number")
        for ax, column in zip(axes, ("coverage", "false_failure_rate", "alignment")):
            ax.plot(rows["batch_number"], rows[column], marker="o", markersize=3, label=f"{criterion}/{assertion}")
        drift = rows[rows["drift"].fillna(False).astype(bool)]
        axes[2].scatter(drift["batch_number"], drift["alignment"], s=80, facecolors="none", edgecolors="red")
    for ax, title in zip(axes, ("coverage (bad outputs caught)", "false failure rate (good outputs failed)", "alignment")):
        ax.set_title(title, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(batches["batch_number"], [str(n) for n in batches["batch_number"]], fontsize=7)
        ax.set_xlabel("grading batch")
    axes[0].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def plot_rating_histogram(ratings: pd.DataFrame, values: tuple[float, ...]):
    """Share of ratings at each scale value, one bar series per judge (``human`` = every human vote
    pooled; an LLM judge's expected scores fall in the bin of the nearest value).

    ``ratings``: ``judge, rating`` rows; ``values``: the scale's values in order. A judge whose
    bars lean to one side next to the humans' shows its bias on the scale."""
    plt = _pyplot()
    centers = np.asarray(values, dtype=float)
    edges = np.concatenate([[-np.inf], (centers[1:] + centers[:-1]) / 2, [np.inf]])
    judges = ["human"] * ("human" in set(ratings["judge"])) + sorted(set(ratings["judge"]) - {"human"})
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(centers) + 2), 3.8))
    width = 0.8 / max(len(judges), 1)
    step = float(np.min(np.diff(centers))) if len(centers) > 1 else 1.0
    for k, judge in enumerate(judges):
        r = ratings.loc[ratings["judge"] == judge, "rating"].dropna().to_numpy(dtype=float)
        counts, _ = np.histogram(r, bins=edges)
        share = counts / max(len(r), 1)
        ax.bar(centers + step * (k - (len(judges) - 1) / 2) * width, share, width=step * width,
               label=f"{judge} (n={len(r)}, mean {r.mean():.2f})" if len(r) else f"{judge} (n=0)")
    ax.set_xticks(centers, [f"{v:g}" for v in centers])
    ax.set_xlabel("rating")
    ax.set_ylabel("share of the judge's ratings")
    ax.set_title("Ratings per judge on the scale")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
