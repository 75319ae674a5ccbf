"""Judges as files: :class:`JudgeSpec`, read from one YAML file per judge.

A judge file (AlpacaEval / promptfoo style) says what the judge is shown and how its one-token
answer maps to labels::

    name: pass-fail                 # defaults to the file's stem
    shape: single                   # pairwise | single | reference | classify
    system: "You grade one answer against a criterion. Reply Y (pass) or N (fail)."
    user: "[Criterion]\\n{criterion}\\n\\n[Question]\\n{prompt}\\n\\n[Answer]\\n{response}"
    labels: {Y: pass, N: fail}      # first-token answer -> label; label order = first appearance
    defaults: {criterion: "The answer is correct and helpful."}   # used when an item has none
    optional: {reference: "[Reference]\\n{reference}\\n\\n"}       # placeholder shown only when set
    ordinal: false                  # true: labels are ordered (expected score 1..K is stored)
    ends: [A, B]                    # ordinal pairwise: what the low and high ends prefer
    keep_ties: true                 # ordinal pairwise: the middle labels count as a tie
    swap: true                      # pairwise: also score with the outputs swapped
    top_logprobs: 5
    temperature: 0
    max_tokens: 1

Placeholders (``{name}``, Python format syntax, ``{{``/``}}`` for literal braces) are filled
from an ``items`` row: ``prompt`` (the judged user turn), ``conversation`` (the dialogue up to
it: earlier turns with both outputs for pairwise, one output for single/reference, user turns
only for classify), ``response_a``/``response_b`` (pairwise: the two final outputs, in shown
order), ``response`` (single/reference: the output), ``reference`` (the judged turn's
reference), ``criterion``, ``category``, and any other column of ``items`` (a column the
source file carries beyond the schema). ``response`` in a pairwise judge or
``response_a``/``response_b`` in another shape is refused. Every placeholder an item lacks
(empty) keeps the judge from being sent for that item, unless the placeholder is in
``optional`` (rendered as its wrapper text when set, as "" when not) or ``defaults``.

Label tokens are matched stripped and case-insensitively. A pairwise judge either has the
labels ``A`` and ``B`` (A = the output shown first; a ``tie`` label is optional), swapped back by
exchanging A and B, or is ``ordinal`` with ``ends: [A, B]`` (label 1 prefers A most, label K
prefers B most), swapped back by reversing the label order. Its verdict (``A``, ``B``, ``tie``)
maps an ordinal scale of K labels as: the lowest ⌊K/2⌋ labels → A, the highest ⌊K/2⌋ → B, and
the middle label (odd K) → tie; with ``keep_ties`` and even K the two middle labels are the tie
instead (K = 8: 1–3 → A, 4–5 → tie, 6–8 → B; without ties 1–4 → A, 5–8 → B).

:func:`load_judges` finds judges by name: first in the project's judges folder
(``JUDGE_JUDGES_DIR``, default ``judges/``), then among the built-in ones shipped in
``judge_assets/judges/``. A malformed file is refused with :class:`JudgeSpecError` naming the
file and the field, before any call.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import yaml

BUILTIN_DIR = Path(__file__).resolve().parents[3] / "judges"
"""The built-in judge files shipped in the package (``judge_assets/judges/*.yaml``)."""
DEFAULT_JUDGE = "mt-bench-pairwise"
"""The judge that runs when ``JUDGE_JUDGES`` is not set."""
SHAPES = ("pairwise", "single", "reference", "classify")
TIE_LABEL = "tie"
COMMON_FIELDS = ("prompt", "conversation", "reference", "criterion", "category")
SHAPE_FIELDS = {
    "pairwise": ("response_a", "response_b"),
    "single": ("response",),
    "reference": ("response",),
    "classify": (),
}
"""Placeholders each shape may use besides ``COMMON_FIELDS`` and extra item columns."""
OUTPUT_FIELDS = ("response", "response_a", "response_b")
REQUIRED_BY_SHAPE = {"pairwise": ("response_a", "response_b"), "single": ("response",), "reference": ("response", "reference"), "classify": ()}
"""Values an item must have for the shape to fit it, whatever the templates say."""
KEYS = {
    "name", "shape", "system", "user", "labels", "ordinal", "ends", "keep_ties", "swap", "top_logprobs",
    "temperature", "max_tokens", "defaults", "optional", "description",
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class JudgeSpecError(ValueError):
    """A judge file that cannot be used; the message names the file and the field."""

    def __init__(self, source: str, field_name: str | None, problem: str) -> None:
        where = f"{source}, field {field_name!r}" if field_name else source
        super().__init__(f"{where}: {problem}")
        self.source, self.field, self.problem = source, field_name, problem


@dataclass(frozen=True)
class JudgeSpec:
    """One judge. ``tokens``: first-token answer (upper-cased) → label; ``labels``: the labels in
    order. ``source``: the file it was read from (for messages). See the module docstring."""

    name: str
    shape: str
    system: str
    user: str
    tokens: Mapping[str, str]
    labels: tuple[str, ...]
    ordinal: bool = False
    ends: tuple[str, str] | None = None
    keep_ties: bool = True
    swap: bool = True
    top_logprobs: int = 5
    temperature: float = 0.0
    max_tokens: int = 1
    defaults: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def placeholders(self) -> tuple[str, ...]:
        """Every placeholder of the templates and optional wrappers, in first-use order."""
        names: list[str] = []
        for text in (self.system, self.user, *self.optional.values()):
            for name in template_fields(text):
                if name not in names:
                    names.append(name)
        return tuple(names)

    @property
    def required_fields(self) -> tuple[str, ...]:
        """Values an item must have: the shape's own plus every placeholder without an
        ``optional`` wrapper or a ``defaults`` value."""
        needed = list(REQUIRED_BY_SHAPE[self.shape])
        for name in self.placeholders:
            if name not in self.optional and name not in self.defaults and name not in needed:
                needed.append(name)
        return tuple(needed)

    @property
    def extra_columns(self) -> tuple[str, ...]:
        """Placeholders that are no standard field: item columns the data must carry."""
        standard = set(COMMON_FIELDS) | set(OUTPUT_FIELDS)
        return tuple(n for n in self.placeholders if n not in standard)

    @property
    def verdict_labels(self) -> tuple[str, ...]:
        """The labels a verdict can take: pairwise ``A, B[, tie]``, otherwise ``labels``."""
        if self.shape != "pairwise":
            return self.labels
        if self.ordinal:
            k = len(self.labels)
            return ("A", "B", TIE_LABEL) if k % 2 or self.keep_ties else ("A", "B")
        return tuple(label for label in ("A", "B", TIE_LABEL) if label in self.labels)

    def verdict_of_label(self) -> dict[str, str]:
        """Pairwise: label → verdict (``A``, ``B`` or ``tie``), see the module docstring."""
        if not self.ordinal:
            return {label: label for label in self.labels}
        k, half = len(self.labels), len(self.labels) // 2
        tie_band = set(range(half - 1, half + 1)) if k % 2 == 0 and self.keep_ties else ({half} if k % 2 else set())
        out = {}
        for i, label in enumerate(self.labels):
            out[label] = TIE_LABEL if i in tie_band else "A" if i < half else "B"
        return out

    def swapped_label(self) -> dict[str, str]:
        """Pairwise: the label an answer given with the outputs swapped means in canonical order."""
        if self.ordinal:
            return dict(zip(self.labels, reversed(self.labels)))
        return {label: {"A": "B", "B": "A"}.get(label, label) for label in self.labels}


def template_fields(text: str) -> list[str]:
    """The field names of a format template; raises ValueError for a malformed template."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def _check_template(source: str, key: str, text, shape: str) -> None:
    if not isinstance(text, str):
        raise JudgeSpecError(source, key, f"must be a text, got {type(text).__name__}")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise JudgeSpecError(source, key, f"malformed template ({exc}); write literal braces as {{{{ and }}}}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not FIELD.match(name) or spec or conversion:
            raise JudgeSpecError(source, key, f"placeholder {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} is not a plain {{name}}")
        wrong = name in OUTPUT_FIELDS and name not in SHAPE_FIELDS[shape]
        if wrong:
            allowed = ", ".join("{" + f + "}" for f in (*COMMON_FIELDS, *SHAPE_FIELDS[shape]))
            raise JudgeSpecError(source, key, f"unknown placeholder {{{name}}} for a {shape} judge (use {allowed} or an item column)")


def _int(source: str, raw: Mapping, key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise JudgeSpecError(source, key, f"must be an integer in [{low}, {high}], got {value!r}")
    return value


def _bool(source: str, raw: Mapping, key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise JudgeSpecError(source, key, f"must be true or false, got {value!r}")
    return value


def _texts(source: str, raw: Mapping, key: str) -> dict[str, str]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise JudgeSpecError(source, key, "must map placeholder names to texts")
    return dict(value)


def parse_spec(raw, source: str, default_name: str) -> JudgeSpec:
    """A :class:`JudgeSpec` from a parsed YAML mapping; raises :class:`JudgeSpecError`."""
    if not isinstance(raw, Mapping):
        raise JudgeSpecError(source, None, f"a judge file holds a mapping of fields, got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - KEYS)
    if unknown:
        raise JudgeSpecError(source, unknown[0], f"unknown field (fields: {', '.join(sorted(KEYS))})")
    name = str(raw.get("name") or default_name)
    if not NAME.match(name) or ":" in name:
        raise JudgeSpecError(source, "name", f"{name!r}: use letters, digits, '.', '_' and '-'")
    shape = raw.get("shape")
    if shape not in SHAPES:
        raise JudgeSpecError(source, "shape", f"must be one of {', '.join(SHAPES)}, got {shape!r}")
    for key in ("system", "user"):
        if key not in raw:
            raise JudgeSpecError(source, key, "is required")
        _check_template(source, key, raw[key], shape)
    optional, defaults = _texts(source, raw, "optional"), _texts(source, raw, "defaults")
    for key, text in optional.items():
        _check_template(source, f"optional.{key}", text, shape)
    labels_raw = raw.get("labels")
    if not isinstance(labels_raw, Mapping) or len(labels_raw) < 2:
        raise JudgeSpecError(source, "labels", "must map each answer token to its label, with at least two labels")
    tokens: dict[str, str] = {}
    labels: list[str] = []
    for token, label in labels_raw.items():
        token, label = str(token).strip(), str(label).strip()
        if not token or not label:
            raise JudgeSpecError(source, "labels", "tokens and labels must not be empty")
        if token.upper() in tokens:
            raise JudgeSpecError(source, "labels", f"token {token!r} appears twice (tokens are matched case-insensitively)")
        tokens[token.upper()] = label
        if label not in labels:
            labels.append(label)
    if len(labels) < 2:
        raise JudgeSpecError(source, "labels", "needs at least two distinct labels")
    ordinal = _bool(source, raw, "ordinal", False)
    ends = raw.get("ends")
    if shape == "pairwise":
        if ordinal:
            if list(ends or []) != ["A", "B"]:
                raise JudgeSpecError(source, "ends", "an ordinal pairwise judge needs ends: [A, B] (label 1 prefers A, the last B)")
        elif not {"A", "B"} <= set(labels) or not set(labels) <= {"A", "B", TIE_LABEL}:
            raise JudgeSpecError(source, "labels", f"a pairwise judge's labels are A, B and optionally tie (got {labels}), or set ordinal: true")
    elif ends is not None and (not ordinal or not isinstance(ends, list) or len(ends) != 2):
        raise JudgeSpecError(source, "ends", "names the low and high end of an ordinal scale: [low, high]")
    return JudgeSpec(
        name=name,
        shape=shape,
        system=raw["system"],
        user=raw["user"],
        tokens=tokens,
        labels=tuple(labels),
        ordinal=ordinal,
        ends=tuple(str(e) for e in ends) if ends else None,
        keep_ties=_bool(source, raw, "keep_ties", True),
        swap=_bool(source, raw, "swap", True) if shape == "pairwise" else False,
        top_logprobs=_int(source, raw, "top_logprobs", 5, 1, 20),
        temperature=float(_number(source, raw, "temperature", 0.0)),
        max_tokens=_int(source, raw, "max_tokens", 1, 1, 64),
        defaults=defaults,
        optional=optional,
        source=source,
    )


def _number(source: str, raw: Mapping, key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise JudgeSpecError(source, key, f"must be a number in [0, 2], got {value!r}")
    return float(value)


def load_judge(path: str | Path) -> JudgeSpec:
    """Read one judge file; raises :class:`JudgeSpecError` naming the file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise JudgeSpecError(str(path), None, f"cannot read the file ({exc})") from None
    except yaml.YAMLError as exc:
        raise JudgeSpecError(str(path), None, f"is not valid YAML ({' '.join(str(exc).split())})") from None
    return parse_spec(raw, str(path), path.stem)


def available_judges(judges_dir: Path | None) -> dict[str, Path]:
    """Judge name → file: the built-in judges, overridden by same-named files in ``judges_dir``."""
    found: dict[str, Path] = {}
    for folder in (BUILTIN_DIR, judges_dir):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            found[load_judge(path).name] = path
    return found


def load_judges(names: tuple[str, ...], judges_dir: Path | None) -> list[JudgeSpec]:
    """The judges named (``JUDGE_JUDGES``), each read from its file; an unknown name raises
    :class:`JudgeSpecError` listing the judges there are."""
    found = available_judges(judges_dir)
    out = []
    for name in names or (DEFAULT_JUDGE,):
        if name not in found:
            raise JudgeSpecError(
                f"JUDGE_JUDGES={','.join(names)}", None,
                f"no judge named {name!r} in {judges_dir} or the built-in judges (there are: {', '.join(sorted(found))})",
            )
        out.append(load_judge(found[name]))
    return out
