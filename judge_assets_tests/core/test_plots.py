"""Every plot renders names from the data literally: TeX-like model, annotator, method and batch
names (``$x^2$``, ``\\frac``, ``_``, ``%``) once made matplotlib's mathtext raise while saving."""

from __future__ import annotations

import inspect
import io

import matplotlib.pyplot as plt
from matplotlib.text import Text
import numpy as np
import pandas as pd
import pytest

from judge_assets.core import plots

#: valid and broken mathtext (``$\\frac$``, ``$a_$``, ``$50%$`` make mathtext raise), and plain ``_``/``%``
NAMES = ["model $x^2$", "$\\frac$-7b", "$a_$", "win $50%$", "snake_case_model", "100% better"]


def _leaderboard():
    rows = [(source, name, 1000 + 40 * k, 960 + 40 * k, 1040 + 40 * k) for source in ("consensus", "human", "llm") for k, name in enumerate(NAMES)]
    return plots.plot_leaderboard(pd.DataFrame(rows, columns=["source", "model", "rating", "ci_low", "ci_high"]))


def _benchmark():
    summary = pd.DataFrame(
        {"method": NAMES, "mean_accuracy": np.linspace(0.5, 0.7, len(NAMES)), "std_accuracy": 0.01, "is_default": [True] + [False] * (len(NAMES) - 1)}
    )
    return plots.plot_benchmark(summary)


def _quality_by_group():
    stats = pd.DataFrame({"annotator": NAMES, "annotator_group": ["group $1$", "$50%$_experts"] * 3, "annotator_quality": np.linspace(0.2, 0.9, len(NAMES))})
    return plots.plot_quality_by_group(stats)


def _reliability():
    rng = np.random.default_rng(0)
    prior = rng.dirichlet(np.ones(3), size=50)
    return plots.plot_reliability(prior, rng.integers(0, 3, size=50))


def _annotator_drift():
    history = pd.DataFrame(
        [(snap, f"batch_${snap}$", name, 0.5 + 0.05 * k, 10 + k) for snap in (1, 2) for k, name in enumerate(NAMES)],
        columns=["snapshot", "latest_batch_id", "annotator", "annotator_quality", "num_examples_labeled"],
    )
    return plots.plot_annotator_drift(history)


#: plot function → how to draw it on hostile data, and a name that must appear as written
def _alignment_history():
    history = pd.DataFrame({
        "batch_number": [1, 2, 1, 2], "batch_id": ["b1", "b2", "b1", "b2"], "criterion": ["crit $x$"] * 4,
        "assertion": ["a_1", "a_1", "b_2", "b_2"], "coverage": [0.5, 0.6, 0.4, 0.3], "false_failure_rate": [0.1, 0.2, 0.1, 0.1],
        "alignment": [0.6, 0.7, 0.5, 0.4], "drift": [False, False, False, True],
    })
    return plots.plot_alignment_history(history)


def _rating_histogram():
    ratings = pd.DataFrame({"judge": ["human"] * 4 + ["judge $\\frac$"] * 3, "rating": [1, 2, 2, 8, 4.4, 5.0, 7.0]})
    return plots.plot_rating_histogram(ratings, tuple(float(v) for v in range(1, 9)))


CASES = {
    "plot_alignment_history": (_alignment_history, "crit $x$/a_1"),
    "plot_rating_histogram": (_rating_histogram, "judge $\\frac$"),
    "plot_leaderboard": (_leaderboard, "model $x^2$"),
    "plot_benchmark": (_benchmark, "$\\frac$-7b"),
    "plot_quality_by_group": (_quality_by_group, "group $1$"),
    "plot_reliability": (_reliability, None),  # fixed labels only
    "plot_annotator_drift": (_annotator_drift, "win $50%$"),
}


def test_every_plot_function_has_a_case():
    defined = {name for name, f in inspect.getmembers(plots, inspect.isfunction) if name.startswith("plot_") and f.__module__ == plots.__name__}
    assert defined == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_plot_renders_tex_like_names_literally(name):
    draw, literal = CASES[name]
    fig = draw()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # rendering is where mathtext used to raise
    assert buffer.getvalue().startswith(b"\x89PNG")
    if literal:
        assert any(literal in t.get_text() for t in fig.findobj(Text))
    plt.close(fig)
