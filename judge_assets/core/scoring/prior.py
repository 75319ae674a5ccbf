"""The model prior CROWDLAB needs: per-item class probabilities from a model, not from the votes.

Three sources, in order of precedence (:func:`build_model_probs`):

1. ``llm_logprobs`` — the LLM judge panel's answer probabilities over the class set (the
   ``llm_judge_scores`` table: pairwise ``p_a, p_b, p_tie``; other class sets from
   ``llm_judge_probs``), where a row with ``status == 'ok'`` exists: one ``<judge>:<model>``, or
   the mean over the panel's judges whose verdicts fit the class set (:func:`llm_prior`).
2. ``oof_classifier`` — cleanlab's recipe for a model prior without a model: out-of-fold
   predicted probabilities of a scikit-learn classifier on item features, trained on the
   items' majority-vote labels (:func:`classifier_prior`). It is a text/metadata classifier,
   never an LLM.
3. ``uniform`` — ``1/K`` for every class, only when there is no label to train on.

Features (:func:`item_features`). For pairwise items (columns ``model_a``, ``model_b``,
``answers_a``, ``answers_b``): the two models' identities coded +1 (``model_a``) / -1
(``model_b``) so a linear model learns a Bradley-Terry strength per model, the same
identities coded +1/+1 (which pairs tend to tie), log answer lengths of the judged turn and
their difference, the category, the turn, and the difference of the two answers' TF-IDF
vectors. An item without answer texts (e.g. a CSV row: CSV cannot hold conversations) gets zero
text features and is predicted from its models, category and turn. For any other item table: TF-IDF of its text columns (strings or lists of strings)
and one-hot codes of its low-cardinality scalar columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

#: Probabilities are clipped to at least this before renormalising (CROWDLAB takes logs).
MIN_PROB = 1e-3

PAIRWISE_COLUMNS = ("model_a", "model_b", "answers_a", "answers_b")

#: The ``items`` columns holding an item's texts (lists of strings).
TEXT_COLUMNS = ("user_turns", "answers_a", "answers_b")

#: Columns of the ``items`` table counted from the votes: never features (the benchmark hides votes).
VOTE_COUNT_COLUMNS = ("n_human_votes", "n_llm_votes")


def _missing(value) -> bool:
    """A missing cell: None, NaN or ``pd.NA`` (DuckDB hands a NULL list to pandas as ``pd.NA``)."""
    return value is None or (pd.api.types.is_scalar(value) and pd.isna(value))


def _judged_text(value) -> str:
    """The judged turn's text: the last entry of a list column, or the string itself; "" when missing."""
    if _missing(value):
        return ""
    if isinstance(value, str):
        return value
    seq = [v for v in value if not _missing(v)]
    return str(seq[-1]) if seq else ""


def _all_text(value) -> str:
    """Every entry of a list column joined by newlines, or the string itself; "" when missing."""
    if _missing(value):
        return ""
    if isinstance(value, str):
        return value
    return "\n".join(str(v) for v in value if not _missing(v))


def _texts(values: pd.Series, text) -> pd.Series:
    """``values.map(text)`` ("" for a missing cell or an empty list or string), calling ``text`` only
    on the cells that hold something: at scale most items carry no text, and the Python call per
    cell is the cost."""
    out = pd.Series("", index=values.index, dtype=object)
    present = values.notna().to_numpy()
    try:
        present &= (values.str.len() != 0).to_numpy()  # lists and strings; NaN (kept) for anything else
    except AttributeError:  # not a column of strings or lists: map every present cell
        pass
    out[present] = values[present].map(text)
    return out


def _one_hot(values: pd.Series, uniques: pd.Index) -> sp.csr_matrix:
    """One column per value in ``uniques`` (compared as strings); other values get a zero row."""
    codes = uniques.get_indexer(values.astype(str))
    known = codes >= 0
    rows = np.arange(len(codes))[known]
    return sp.csr_matrix((np.ones(len(rows)), (rows, codes[known])), shape=(len(codes), len(uniques)))


def _uniques(values: pd.Series) -> pd.Index:
    """The distinct values as strings, in order of first appearance (``pd.factorize``)."""
    return pd.Index(pd.factorize(values.astype(str))[1])


class Tfidf:
    """TF-IDF with one vocabulary and idf fitted on several series of texts together, applied to
    any series later: ``Tfidf(**params).fit(texts).transform(series)`` is exactly
    ``TfidfVectorizer(**params).fit(concat(texts)).transform(series)``, but only non-empty texts
    are tokenised (an empty text is a zero row that still counts as a document in the idf). With
    5% of 3M items carrying text this is the difference between seconds and minutes."""

    def __init__(self, **params):
        self.params = params

    def fit(self, texts: list[pd.Series]) -> Tfidf:
        """Learn the vocabulary and idf from ``texts`` (series of strings, "" for none). Raises
        ValueError when no term remains."""
        self.counter_ = CountVectorizer(dtype=np.float64, **{k: v for k, v in self.params.items() if k != "sublinear_tf"})
        counts = self.counter_.fit_transform(pd.concat([series[series.to_numpy(dtype=object) != ""] for series in texts]))
        n_docs = sum(len(series) for series in texts)
        padded = sp.vstack([counts, sp.csr_matrix((n_docs - counts.shape[0], counts.shape[1]))], format="csr")
        self.weigh_ = TfidfTransformer(sublinear_tf=self.params.get("sublinear_tf", False)).fit(padded)
        return self

    def transform(self, series: pd.Series) -> sp.csr_matrix:
        """TF-IDF rows of ``series``, shape (len(series), n_terms); "" gives a zero row."""
        mask = series.to_numpy(dtype=object) != ""
        if not mask.any():
            return sp.csr_matrix((len(series), len(self.counter_.vocabulary_)))
        rows = self.weigh_.transform(self.counter_.transform(series[mask]))  # as TfidfVectorizer.transform: sorted
        per_row = np.zeros(len(series), dtype=np.int64)
        per_row[mask] = np.diff(rows.indptr)
        indptr = np.concatenate(([0], np.cumsum(per_row)))
        return sp.csr_matrix((rows.data, rows.indices, indptr), shape=(len(series), rows.shape[1]))


def _is_pairwise(items: pd.DataFrame) -> bool:
    return set(PAIRWISE_COLUMNS) <= set(items.columns) and items["model_a"].notna().all() and items["model_b"].notna().all()


class ItemFeatures:
    """The classifier's item features, fitted on one item table and applied to any rows of that
    table's shape later (new items of a later batch get the same columns; a model, category or
    word never seen at fit time gets a zero entry).

    Pairwise when ``items`` has the pairwise columns with both models named on every row
    (:data:`PAIRWISE_COLUMNS`), generic otherwise (e.g. the generic schema's items, whose
    ``model_a`` is NULL); see the module docstring for the columns of each. Unsupervised: fitted on
    ``items`` only, never on votes, so fitting it once on all items leaks no label.

    ``fit_transform(items)`` has shape (n_items, n_features), rows in ``items`` order;
    ``transform(rows)`` has shape (len(rows), n_features). Fitted attributes end in ``_``.
    """

    def __init__(self, tfidf_features: int = 2000):
        self.tfidf_features = tfidf_features

    def fit(self, items: pd.DataFrame) -> ItemFeatures:
        self.pairwise_ = _is_pairwise(items)
        if self.pairwise_:
            self._fit_pairwise(items)
        else:
            self._fit_generic(items)
        return self

    def fit_transform(self, items: pd.DataFrame) -> sp.csr_matrix:
        return self.fit(items).transform(items)

    def accepts(self, items: pd.DataFrame) -> bool:
        """Whether ``items`` has the shape the features were fitted on (pairwise or not, same columns);
        no rows always fit (they are not pairwise-looking by accident)."""
        return set(self.columns_) <= set(items.columns) and (items.empty or _is_pairwise(items) == self.pairwise_)

    def transform(self, items: pd.DataFrame) -> sp.csr_matrix:
        return self._transform_pairwise(items) if self.pairwise_ else self._transform_generic(items)

    # pairwise items: model identities, lengths, category, turn, answer TF-IDF difference
    def _pairwise_numeric(self, items: pd.DataFrame) -> tuple[np.ndarray, pd.Series, pd.Series]:
        text_a = _texts(items["answers_a"], _judged_text)
        text_b = _texts(items["answers_b"], _judged_text)
        len_a = np.log1p(text_a.str.len().to_numpy(dtype=float))
        len_b = np.log1p(text_b.str.len().to_numpy(dtype=float))
        numeric = np.column_stack([len_a, len_b, len_a - len_b])
        if "turn" in self.columns_:
            numeric = np.column_stack([numeric, items["turn"].fillna(1).to_numpy(dtype=float)])
        return numeric, text_a, text_b

    def _fit_pairwise(self, items: pd.DataFrame) -> None:
        self.columns_ = [c for c in ("model_a", "model_b", "answers_a", "answers_b", "turn", "category") if c in items.columns]
        self.models_ = pd.Index(np.union1d(items["model_a"].astype(str).unique(), items["model_b"].astype(str).unique()))
        numeric, text_a, text_b = self._pairwise_numeric(items)
        self.mean_ = numeric.mean(axis=0)
        sd = numeric.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        self.categories_ = _uniques(items["category"]) if "category" in items.columns else None
        try:
            self.text_ = Tfidf(max_features=self.tfidf_features, sublinear_tf=True, min_df=2).fit([text_a, text_b])
        except ValueError:  # no vocabulary (empty answers): no text block
            self.text_ = None

    def _transform_pairwise(self, items: pd.DataFrame) -> sp.csr_matrix:
        n = len(items)
        a = self.models_.get_indexer(items["model_a"].astype(str))
        b = self.models_.get_indexer(items["model_b"].astype(str))
        rows = np.r_[np.arange(n), np.arange(n)]
        cols = np.r_[a, b]
        known = cols >= 0
        shape = (n, len(self.models_))
        strength = sp.csr_matrix((np.r_[np.ones(n), -np.ones(n)][known], (rows[known], cols[known])), shape=shape)
        pair = sp.csr_matrix((np.ones(2 * n)[known], (rows[known], cols[known])), shape=shape)
        numeric, text_a, text_b = self._pairwise_numeric(items)
        blocks = [strength, pair, sp.csr_matrix((numeric - self.mean_) / self.scale_)]
        if self.categories_ is not None:
            blocks.append(_one_hot(items["category"], self.categories_))
        if self.text_ is not None:
            blocks.append(self.text_.transform(text_a) - self.text_.transform(text_b))
        return sp.hstack(blocks, format="csr")

    # any other item table: TF-IDF of text columns, one-hot of low-cardinality columns, a constant
    def _fit_generic(self, items: pd.DataFrame) -> None:
        self.blocks_: list[tuple[str, str, object]] = []  # (kind, column, fitted part)
        for col in items.columns:
            if col == "item_id" or col in VOTE_COUNT_COLUMNS:
                continue
            values = items[col]
            sample = values.dropna()
            if sample.empty:
                continue
            first = sample.iloc[0]
            is_list = not isinstance(first, str) and hasattr(first, "__len__")
            if is_list or (values.dtype == object and sample.astype(str).str.len().mean() > 30):
                try:
                    self.blocks_.append(("text", col, Tfidf(max_features=self.tfidf_features, sublinear_tf=True).fit([_texts(values, _all_text)])))
                except ValueError:
                    continue
            elif values.nunique() <= 50:
                self.blocks_.append(("one_hot", col, _uniques(values)))
        self.columns_ = [col for _, col, _ in self.blocks_]

    def _transform_generic(self, items: pd.DataFrame) -> sp.csr_matrix:
        blocks = [sp.csr_matrix(np.ones((len(items), 1)))]
        for kind, col, part in self.blocks_:
            blocks.append(part.transform(_texts(items[col], _all_text)) if kind == "text" else _one_hot(items[col], part))
        return sp.hstack(blocks, format="csr")


def item_features(items: pd.DataFrame) -> sp.csr_matrix:
    """The features of ``items``, shape (n_items, n_features): ``ItemFeatures().fit_transform(items)``."""
    return ItemFeatures().fit_transform(items)


def textless_items(items: pd.DataFrame) -> np.ndarray:
    """Which items' features hold no text, shape (n_items,) bool. Pairwise (as in
    :class:`ItemFeatures`): neither answer of the judged turn is known (e.g. CSV rows, which cannot
    hold conversations), so the prior has only the model identities, category and turn. Otherwise:
    no text in ``TEXT_COLUMNS``."""
    if _is_pairwise(items):
        columns, text = ("answers_a", "answers_b"), _judged_text
    else:
        columns, text = [c for c in TEXT_COLUMNS if c in items.columns], _all_text
    empty = np.ones(len(items), dtype=bool)
    for column in columns:
        empty &= _texts(items[column], text).eq("").to_numpy()
    return empty


class LabelClassifier:
    """The prior's classifier: an L2 logistic regression over item features, or, when training
    sees a single class, that class with certainty. ``predict_proba(x)`` has shape (n, n_classes),
    columns in class-code order; a class absent from training gets 0 (clipped later)."""

    def __init__(self, n_classes: int, *, c: float):
        self.n_classes = n_classes
        self.c = c

    def fit(self, x, y: np.ndarray) -> LabelClassifier:
        """``x``: features, shape (n, n_features); ``y``: class codes 0..n_classes-1, shape (n,)."""
        present = np.unique(y)
        self.only_class_ = int(present[0]) if len(present) == 1 else None
        self.model_ = None if self.only_class_ is not None else LogisticRegression(C=self.c, max_iter=2000).fit(x, y)
        return self

    def predict_proba(self, x) -> np.ndarray:
        out = np.zeros((x.shape[0], self.n_classes))
        if self.model_ is None:
            out[:, self.only_class_] = 1.0
        elif x.shape[0]:
            out[:, self.model_.classes_] = self.model_.predict_proba(x)
        return out


def clip_probs(probs: np.ndarray, min_prob: float = MIN_PROB) -> np.ndarray:
    """Clip every probability to at least ``min_prob`` and renormalise rows to sum to 1."""
    clipped = np.clip(probs, min_prob, None)
    return clipped / clipped.sum(axis=1, keepdims=True)


def classifier_prior(
    items: pd.DataFrame,
    train_labels: pd.Series,
    classes: tuple[str, ...],
    *,
    n_folds: int = 5,
    seed: int = 0,
    c: float = 0.1,
    features: sp.spmatrix | None = None,
) -> pd.DataFrame:
    """Out-of-fold classifier probabilities for every item (:func:`fit_prior` also keeps the model).

    Parameters
    ----------
    items : DataFrame, one row per item, column ``item_id`` plus feature columns (see the
        module docstring).
    train_labels : Series, index ``item_id`` → class label (e.g. the majority-vote label);
        items not in ``items`` are an error.
    classes : class names; column ``p_<label>`` per class, in this order.
    n_folds : cross-validation folds. Labelled items are split into ``min(n_folds, n_labelled)``
        folds by a seeded shuffle of their positions — never stratified by label, so an item's
        fold and its fold-mates do not depend on its own label, and changing one item's label
        cannot change its own row. Rare classes: a class missing from a training fold (fewer
        members than folds, or unlucky draw) gets probability 0 from that fold's model before
        clipping; a training fold with a single class predicts that class. With one labelled
        item, its own row is uniform and says so (``scorer = 'uniform'``: no model can be trained
        without it).
    seed : fold assignment seed; the same inputs and seed give the same output.
    c : inverse L2 regularisation strength of the logistic regression.
    features : optional precomputed :func:`item_features` of ``items`` (same row order).

    Returns
    -------
    DataFrame with ``item_id``, ``p_<label>`` per class (each row ≥ ``MIN_PROB`` and summing to 1)
    and ``scorer = 'oof_classifier'`` (``'uniform'`` for a lone labelled item), one row per item in
    ``items`` order. A labelled item's row
    comes from the fold model that did not see its label; unlabelled items get the model trained
    on all labelled items.
    """
    x = item_features(items) if features is None else features
    return _out_of_fold(items["item_id"].to_numpy(), x, train_labels, tuple(classes), n_folds=n_folds, seed=seed, c=c)[0]


def _out_of_fold(
    item_ids: np.ndarray, x, train_labels: pd.Series, classes: tuple[str, ...], *, n_folds: int, seed: int, c: float, keep: bool = False
) -> tuple[pd.DataFrame, LabelClassifier | None]:
    """:func:`classifier_prior`'s rows for features ``x`` (one row per id in ``item_ids``), and the
    classifier trained on all labelled items (fitted when there are unlabelled items or ``keep``)."""
    unknown = ~train_labels.index.isin(item_ids)
    if unknown.any():
        raise ValueError(f"train_labels has item {train_labels.index[unknown][0]!r} that is not in items")
    bad = ~train_labels.isin(classes)
    if bad.any():
        raise ValueError(f"train label {train_labels[bad].iloc[0]!r} is not one of the classes {list(classes)}")
    if len(train_labels) == 0:
        raise ValueError("classifier_prior needs at least one labelled item (use a uniform prior otherwise)")
    position = pd.Index(item_ids).get_indexer(train_labels.index)
    y = pd.Index(classes).get_indexer(train_labels.to_numpy())
    k = len(classes)
    probs = np.zeros((len(item_ids), k))
    unlabelled = np.setdiff1d(np.arange(len(item_ids)), position)
    full = LabelClassifier(k, c=c).fit(x[position], y) if len(unlabelled) or keep else None
    if len(unlabelled):
        probs[unlabelled] = full.predict_proba(x[unlabelled])
    n_splits = min(n_folds, len(position))
    scorer = np.full(len(item_ids), "oof_classifier", dtype=object)
    if n_splits < 2:
        probs[position] = 1.0 / k
        scorer[position] = "uniform"
    else:
        splitter = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
        for train, test in splitter.split(position):
            probs[position[test]] = LabelClassifier(k, c=c).fit(x[position[train]], y[train]).predict_proba(x[position[test]])
    out = pd.DataFrame(clip_probs(probs), columns=[f"p_{c_}" for c_ in classes])
    out.insert(0, "item_id", item_ids)
    out["scorer"] = scorer
    return out, full


class PriorModel:
    """The classifier prior as fitted once on all items, kept to score items that arrive later.

    ``features``: the fitted :class:`ItemFeatures`; ``classifier``: the :class:`LabelClassifier`
    trained on every labelled item of the fit. A later item was never part of that training, so
    its prediction is out-of-sample exactly like an out-of-fold row, and a stored row stays
    out-of-fold when its item's label changes later (the fold that scored it did not see it)."""

    def __init__(self, features: ItemFeatures, classifier: LabelClassifier, classes: tuple[str, ...]):
        self.features = features
        self.classifier = classifier
        self.classes = tuple(classes)

    def accepts(self, items: pd.DataFrame) -> bool:
        """Whether ``items`` has the shape the model was fitted on (see :meth:`ItemFeatures.accepts`)."""
        return self.features.accepts(items)

    def predict(self, items: pd.DataFrame) -> pd.DataFrame:
        """Rows as :func:`classifier_prior`'s (``scorer = 'oof_classifier'``) for ``items``, in order."""
        probs = self.classifier.predict_proba(self.features.transform(items))
        out = pd.DataFrame(clip_probs(probs), columns=[f"p_{c}" for c in self.classes])
        out.insert(0, "item_id", items["item_id"].to_numpy())
        out["scorer"] = "oof_classifier"
        return out


def fit_prior(
    items: pd.DataFrame, train_labels: pd.Series, classes: tuple[str, ...], *, n_folds: int = 5, seed: int = 0, c: float = 0.1
) -> tuple[pd.DataFrame, PriorModel]:
    """:func:`classifier_prior`'s rows for ``items`` (same parameters, same output) and the
    :class:`PriorModel` that scores items added later."""
    features = ItemFeatures().fit(items)
    rows, full = _out_of_fold(
        items["item_id"].to_numpy(), features.transform(items), train_labels, tuple(classes), n_folds=n_folds, seed=seed, c=c, keep=True
    )
    return rows, PriorModel(features, full, classes)


def prior_training_labels(judgments: pd.DataFrame, classes: tuple[str, ...], *, seed: int = 0) -> pd.Series:
    """The classifier's training labels: item_id → majority label of the item's **human** votes.

    ``judgments``: vote rows ``item_id, annotator, label`` (+ ``annotator_kind``). Items with only
    LLM votes get no training label (the classifier predicts them like any unlabelled item), so
    the prior stays independent of the LLM judge that CROWDLAB also weighs as an annotator.
    Without an ``annotator_kind`` column (generic schema) or without human votes every vote
    counts. Ties between classes follow :func:`judge_assets.core.consensus.majority.majority_vote`.
    """
    from judge_assets.core.consensus.majority import majority_vote
    from judge_assets.core.consensus.votes import Votes

    frame = judgments
    if "annotator_kind" in judgments.columns and (judgments["annotator_kind"] == "human").any():
        frame = judgments[judgments["annotator_kind"] == "human"]
    if frame.empty:
        return pd.Series([], index=pd.Index([], name="item_id"), dtype=object, name="label")
    votes = Votes.from_frame(frame, tuple(classes))
    codes = majority_vote(votes, seed=seed)
    return pd.Series(np.asarray(classes, dtype=object)[codes], index=pd.Index(votes.item_ids, name="item_id"), name="label")


def uniform_prior(item_ids, classes: tuple[str, ...]) -> pd.DataFrame:
    """``1/K`` for every class, ``scorer = 'uniform'``."""
    out = pd.DataFrame(np.full((len(item_ids), len(classes)), 1.0 / len(classes)), columns=[f"p_{c}" for c in classes])
    out.insert(0, "item_id", np.asarray(item_ids, dtype=object))
    out["scorer"] = "uniform"
    return out


PRIOR_MEAN = "mean"
"""``prior_judge`` value: average the panel (every ``<judge>:<model>`` whose verdicts fit the class set)."""
PAIRWISE_PROB_COLUMNS = {"A": "p_a", "B": "p_b", "tie": "p_tie"}


def llm_prior(
    llm_scores: pd.DataFrame | None,
    classes: tuple[str, ...],
    *,
    llm_probs: pd.DataFrame | None = None,
    prior_judge: str = PRIOR_MEAN,
) -> pd.DataFrame:
    """The LLM panel's class probabilities per item, clipped and renormalised:
    ``item_id, p_<class>…, scorer='llm_logprobs'``; empty when there are none.

    ``llm_scores``: ``llm_judge_scores`` rows (``item_id, status`` and, for the pairwise class
    set A/B[/tie], ``p_a, p_b, p_tie``; with several judges also ``annotator`` and
    ``verdict_labels``). Other class sets read ``llm_probs`` (``llm_judge_probs``: ``item_id,
    annotator, label, p``), a label the judge lacks counting 0. Only rows with ``status == 'ok'``
    of judges whose verdict labels all lie in ``classes`` count. ``prior_judge``: one annotator
    name (``<judge>:<model>``) or ``"mean"`` (the mean over those judges, per item); an unknown
    name raises ValueError listing the ones there are.
    """
    classes = tuple(classes)
    cols = [f"p_{c}" for c in classes]
    empty = pd.DataFrame(columns=["item_id", *cols, "scorer"])
    if llm_scores is None or llm_scores.empty:
        return empty
    missing = {"item_id", "status"} - set(llm_scores.columns)
    if missing:
        raise ValueError(f"llm_scores lacks columns {sorted(missing)}")
    ok = llm_scores[llm_scores["status"] == "ok"]
    if "annotator" not in ok.columns:
        ok = ok.assign(annotator="llm")
    if "verdict_labels" in ok.columns:
        ok = ok[[set(v) <= set(classes) for v in ok["verdict_labels"]]]
    if prior_judge != PRIOR_MEAN:
        known = sorted(llm_scores["annotator"].unique()) if "annotator" in llm_scores.columns else []
        if prior_judge not in known:
            raise ValueError(f"prior judge {prior_judge!r} did not score these items; judges: {', '.join(known) or 'none'} (or 'mean')")
        ok = ok[ok["annotator"] == prior_judge]
    if set(classes) <= set(PAIRWISE_PROB_COLUMNS) and {"p_a", "p_b", "p_tie"} <= set(ok.columns):
        frame = ok[["item_id", "annotator"]].copy()
        for c in classes:
            frame[f"p_{c}"] = ok[PAIRWISE_PROB_COLUMNS[c]].to_numpy(dtype=float)
    elif llm_probs is not None and not llm_probs.empty:
        chosen = llm_probs.merge(ok[["item_id", "annotator"]], on=["item_id", "annotator"])
        frame = chosen.pivot_table(index=["item_id", "annotator"], columns="label", values="p", aggfunc="sum")
        frame = frame.reindex(columns=list(classes), fill_value=0.0).fillna(0.0)
        frame.columns = cols
        frame = frame.reset_index()
    else:
        return empty
    raw = frame[cols].to_numpy(dtype=float)
    valid = np.isfinite(raw).all(axis=1) & (raw.sum(axis=1) > 0)
    frame = frame[valid].copy()
    frame[cols] = raw[valid] / raw[valid].sum(axis=1, keepdims=True)
    mean = frame.groupby("item_id", sort=False)[cols].mean()
    if mean.empty:
        return empty
    out = pd.DataFrame(clip_probs(mean.to_numpy()), columns=cols)
    out.insert(0, "item_id", mean.index.to_numpy())
    out["scorer"] = "llm_logprobs"
    return out


def build_model_probs(
    items: pd.DataFrame,
    majority_labels: pd.DataFrame | pd.Series,
    llm_scores: pd.DataFrame | None,
    classes: tuple[str, ...],
    *,
    seed: int = 0,
    features: sp.spmatrix | None = None,
    llm_probs: pd.DataFrame | None = None,
    prior_judge: str = PRIOR_MEAN,
) -> pd.DataFrame:
    """The ``model_probs`` table: ``item_id``, ``p_<label>`` per class, ``scorer``; one row per item.

    ``majority_labels``: the ``majority_vote_labels`` frame (``item_id``, ``majority_label``) or
    a Series item_id → label; the classifier's training labels. Recommended:
    :func:`prior_training_labels` (the human-only majority; best on the held-out benchmark). ``llm_scores``: the
    ``llm_judge_scores`` frame or None, ``llm_probs`` the ``llm_judge_probs`` frame, ``prior_judge``
    which judge feeds the prior (see :func:`llm_prior`). LLM rows take precedence item by item;
    the classifier covers the rest; ``uniform`` only when there is no training label at all.
    """
    classes = tuple(classes)
    if isinstance(majority_labels, pd.DataFrame):
        labels = majority_labels.set_index("item_id")["majority_label"]
    else:
        labels = majority_labels
    labels = labels[labels.index.isin(items["item_id"])]
    if len(labels):
        base = classifier_prior(items, labels, classes, seed=seed, features=features)
    else:
        base = uniform_prior(items["item_id"].to_numpy(), classes)
    llm = llm_prior(llm_scores, classes, llm_probs=llm_probs, prior_judge=prior_judge)
    llm = llm[llm["item_id"].isin(base["item_id"])]
    if llm.empty:
        return base
    out = pd.concat([llm, base[~base["item_id"].isin(llm["item_id"])]], ignore_index=True)
    order = pd.Index(out["item_id"]).get_indexer(items["item_id"])
    return out.iloc[order].reset_index(drop=True)
