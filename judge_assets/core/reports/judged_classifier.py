"""The classification-with-judge flow: a classifier labels inputs, an LLM judge grades each
prediction correct or incorrect, and gold labels exist for some inputs.

:func:`judged_classifier_report` answers, per judge:

- how accurate is the classifier on gold (``classifier_accuracy_on_gold``: share of gold items whose
  prediction equals the gold label);
- how accurate the judge says it is (``judged_accuracy``: share of the judged predictions graded
  correct, over every judged item; ``judged_accuracy_on_gold_items``: the same on the gold items
  only, to compare with the line above);
- how far to trust the judge: its confusion matrix against gold (``confusion``: actual =
  whether the prediction equals gold, judged = the judge's grade), ``judge_accuracy_on_gold``,
  ``judge_sensitivity`` (share of truly correct predictions graded correct), ``judge_specificity``
  (share of wrong predictions graded incorrect), and ``corrected_accuracy``: the judged accuracy
  over all items corrected for the judge's errors measured on gold (Rogan-Gladen:
  ``(judged + specificity - 1) / (sensitivity + specificity - 1)``, clipped to [0, 1]; NaN when
  the judge is no better than chance on gold).

Rows (:data:`REPORT_COLUMNS`): ``judge`` (NULL for the classifier's own accuracy), ``metric``,
``actual`` and ``judged`` (``correct``/``incorrect``, confusion cells only), ``value``, ``n`` (items
behind the value), ``ci_low``, ``ci_high`` (95% Wilson interval of a share; NULL otherwise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from judge_assets.core.reports.ground_truth import wilson_interval

REPORT_COLUMNS = ["judge", "metric", "actual", "judged", "value", "n", "ci_low", "ci_high"]
CORRECT, INCORRECT = "correct", "incorrect"


def _share(judge, metric: str, hits: np.ndarray) -> dict:
    hits = np.asarray(hits, dtype=bool)
    n = len(hits)
    low, high = wilson_interval(np.array([hits.sum()]), np.array([n]))
    return {"judge": judge, "metric": metric, "actual": None, "judged": None, "value": hits.mean() if n else np.nan,
            "n": n, "ci_low": float(low[0]), "ci_high": float(high[0])}


def judged_classifier_report(
    predictions: pd.Series, verdicts: pd.DataFrame, gold: pd.Series, correct_labels: tuple[str, ...] = (CORRECT,)
) -> pd.DataFrame:
    """The report (see the module docstring).

    ``predictions``: the classifier's label by item id (what the judge graded). ``verdicts``: one
    row per (item, judge): ``item_id``, ``judge``, ``verdict``; a verdict in ``correct_labels`` is a
    grade of correct, any other of incorrect. ``gold``: gold labels by item id (some items).
    """
    predictions = predictions.dropna().astype(str)
    gold = gold.dropna().astype(str)
    on_gold = predictions.index.intersection(gold.index)
    rows = [_share(None, "classifier_accuracy_on_gold", predictions[on_gold].to_numpy() == gold[on_gold].to_numpy())]
    verdicts = verdicts[verdicts["item_id"].isin(predictions.index)]
    for judge, graded in verdicts.groupby("judge", sort=True):
        graded = graded.drop_duplicates("item_id").set_index("item_id")
        says_correct = graded["verdict"].isin(correct_labels)
        judged = float(says_correct.mean())
        rows.append(_share(judge, "judged_accuracy", says_correct.to_numpy()))
        both = graded.index.intersection(gold.index)
        said = says_correct[both].to_numpy()
        actual = predictions[both].to_numpy() == gold[both].to_numpy()
        rows.append(_share(judge, "judged_accuracy_on_gold_items", said))
        rows.append(_share(judge, "judge_accuracy_on_gold", said == actual))
        rows.append(_share(judge, "judge_sensitivity", said[actual]))
        rows.append(_share(judge, "judge_specificity", ~said[~actual]))
        for truth in (True, False):
            for grade in (True, False):
                rows.append({"judge": judge, "metric": "confusion", "actual": CORRECT if truth else INCORRECT,
                             "judged": CORRECT if grade else INCORRECT, "value": float(((actual == truth) & (said == grade)).sum()),
                             "n": len(both), "ci_low": np.nan, "ci_high": np.nan})
        sensitivity = said[actual].mean() if actual.any() else np.nan
        specificity = (~said[~actual]).mean() if (~actual).any() else np.nan
        youden = sensitivity + specificity - 1
        corrected = float(np.clip((judged + specificity - 1) / youden, 0, 1)) if youden > 0 else np.nan
        rows.append({"judge": judge, "metric": "corrected_accuracy", "actual": None, "judged": None, "value": corrected,
                     "n": len(graded), "ci_low": np.nan, "ci_high": np.nan})
    out = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    return out.astype({"judge": "string", "metric": "string", "actual": "string", "judged": "string", "value": "float64",
                       "n": "int64", "ci_low": "float64", "ci_high": "float64"})
