"""The sparse vote container every consensus method consumes, and the CROWDLAB result.

Votes are kept in long form (one entry per (item, annotator) label), never as a dense
item × annotator matrix, so memory grows with the number of votes. :meth:`Votes.to_matrix`
builds cleanlab's dense ``labels_multiannotator`` frame for the reference implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Votes:
    """Sparse multi-annotator labels.

    Attributes
    ----------
    item : np.ndarray, shape (n_votes,), int64
        Row index of each vote's item in ``item_ids``.
    annotator : np.ndarray, shape (n_votes,), int64
        Index of each vote's annotator in ``annotators``.
    label : np.ndarray, shape (n_votes,), int64
        Class code of each vote, in ``[0, len(classes))``.
    item_ids : np.ndarray, shape (n_items,), object
        Item keys; position = item index. Items may carry zero votes.
    annotators : np.ndarray, shape (n_annotators,), object
        Annotator names; position = annotator index.
    classes : tuple[str, ...]
        Class names; position = class code.

    An (item, annotator) pair appears at most once.
    """

    item: np.ndarray
    annotator: np.ndarray
    label: np.ndarray
    item_ids: np.ndarray
    annotators: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.item)
        if len(self.annotator) != n or len(self.label) != n:
            raise ValueError("item, annotator and label must have the same length")
        if n and (self.label.min() < 0 or self.label.max() >= len(self.classes)):
            raise ValueError(f"label codes must lie in [0, {len(self.classes)})")
        if n and (self.item.max() >= len(self.item_ids) or self.annotator.max() >= len(self.annotators)):
            raise ValueError("item/annotator index out of range")
        key = np.sort(self.item.astype(np.int64) * max(len(self.annotators), 1) + self.annotator)
        if (key[1:] == key[:-1]).any():  # a sort, not np.unique: numpy 2.4's hash-based unique is ~100× slower here
            raise ValueError("an (item, annotator) pair appears more than once")

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_annotators(self) -> int:
        return len(self.annotators)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        classes: tuple[str, ...],
        *,
        item_col: str = "item_id",
        annotator_col: str = "annotator",
        label_col: str = "label",
        item_ids: np.ndarray | list | None = None,
        annotators: np.ndarray | list | None = None,
    ) -> "Votes":
        """Build from a long frame of string labels.

        ``item_ids`` / ``annotators`` fix the index order (and may include entries with no
        votes); by default they are the sorted distinct values of the frame.
        """
        if item_ids is None:
            item_ids = np.sort(frame[item_col].unique())
        if annotators is None:
            annotators = np.sort(frame[annotator_col].unique())
        item_ids = np.asarray(item_ids, dtype=object)
        annotators = np.asarray(annotators, dtype=object)
        item_index = pd.Index(item_ids)
        annotator_index = pd.Index(annotators)
        class_index = pd.Index(list(classes))
        item = item_index.get_indexer(frame[item_col])
        annotator = annotator_index.get_indexer(frame[annotator_col])
        label = class_index.get_indexer(frame[label_col])
        for name, codes, col in (("item", item, item_col), ("annotator", annotator, annotator_col), ("label", label, label_col)):
            if (codes < 0).any():
                bad = frame[col].to_numpy()[codes < 0][0]
                raise ValueError(f"{name} {bad!r} in column {col!r} is not in the given {name} set")
        return cls(
            item=item.astype(np.int64),
            annotator=annotator.astype(np.int64),
            label=label.astype(np.int64),
            item_ids=item_ids,
            annotators=annotators,
            classes=tuple(classes),
        )

    def to_matrix(self) -> pd.DataFrame:
        """Dense cleanlab ``labels_multiannotator``: shape (n_items, n_annotators), float codes, NaN = no label."""
        dense = np.full((self.n_items, self.n_annotators), np.nan)
        dense[self.item, self.annotator] = self.label
        return pd.DataFrame(dense, index=pd.Index(self.item_ids, name="item_id"), columns=list(self.annotators))

    def subset_annotators(self, keep: np.ndarray) -> "Votes":
        """Votes of the annotators where boolean ``keep`` (shape (n_annotators,)) is true; items are kept."""
        mask = keep[self.annotator]
        new_index = np.cumsum(keep) - 1
        return Votes(
            item=self.item[mask],
            annotator=new_index[self.annotator[mask]],
            label=self.label[mask],
            item_ids=self.item_ids,
            annotators=self.annotators[keep],
            classes=self.classes,
        )

    def num_annotations(self) -> np.ndarray:
        """Votes per item, shape (n_items,)."""
        return np.bincount(self.item, minlength=self.n_items)


@dataclass
class CrowdlabResult:
    """What CROWDLAB (``cleanlab.multiannotator.get_label_quality_multiannotator``) computes.

    Per item, shape (n_items,): ``consensus_label`` (int code), ``consensus_quality_score``,
    ``annotator_agreement``, ``num_annotations``; ``post_pred_probs`` shape (n_items, K).
    Per vote, shape (n_votes,), aligned with the input ``Votes``: ``label_quality``.
    Per annotator, shape (n_annotators,): ``annotator_quality``, ``agreement_with_consensus``,
    ``worst_class`` (int code), ``num_examples_labeled``, ``annotator_weight``.
    Scalar: ``model_weight``.
    """

    consensus_label: np.ndarray
    consensus_quality_score: np.ndarray
    annotator_agreement: np.ndarray
    num_annotations: np.ndarray
    post_pred_probs: np.ndarray
    label_quality: np.ndarray
    annotator_quality: np.ndarray
    agreement_with_consensus: np.ndarray
    worst_class: np.ndarray
    num_examples_labeled: np.ndarray
    annotator_weight: np.ndarray
    model_weight: float
