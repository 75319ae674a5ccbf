"""Judge files: reading and refusing them, rendering every shape, label mapping, ties, the Likert scale."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from judge_assets.core.scoring.llm_judge import (
    BUILTIN_DIR,
    JudgeSpecError,
    MissingColumnError,
    check_columns,
    combine_orders,
    load_judge,
    load_judges,
    map_top_logprobs,
    pick_label,
    render_messages,
)
from judge_assets.core.scoring.llm_judge.panel import load_panel

BUILTINS = ("mt-bench-pairwise", "pairwise-likert-8", "pass-fail", "reference-correct", "task-type")


def write(tmp_path, text: str, name: str = "j.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def top(*pairs):
    return [{"token": t, "logprob": math.log(p)} for t, p in pairs]


def test_the_built_in_judges_load_and_the_default_is_mt_bench(tmp_path):
    judges = {j.name: j for j in load_judges(BUILTINS, None)}
    assert [(judges[n].shape, judges[n].labels[:3]) for n in BUILTINS] == [
        ("pairwise", ("A", "B", "tie")), ("pairwise", ("1", "2", "3")), ("single", ("pass", "fail")),
        ("reference", ("correct", "incorrect")), ("classify", ("rewrite", "write", "answer")),
    ]
    assert [j.name for j in load_judges((), tmp_path)] == ["mt-bench-pairwise"]
    with pytest.raises(JudgeSpecError, match=r"no judge named 'nope' .* \(there are: mt-bench-pairwise, pairwise-likert-8"):
        load_judges(("nope",), tmp_path)


@pytest.mark.parametrize(
    "text, field, problem",
    [
        ("shape: single\nsystem: s\nuser: '{prompt'\nlabels: {Y: pass, N: fail}\n", "user", "malformed template"),
        ("shape: single\nsystem: s\nuser: '{response_a}'\nlabels: {Y: pass, N: fail}\n", "user", "unknown placeholder {response_a} for a single judge"),
        ("shape: pairwise\nsystem: s\nuser: '{response}'\nlabels: {A: A, B: B}\n", "user", "unknown placeholder {response} for a pairwise judge"),
        ("shape: single\nsystem: s\nuser: '{prompt!r}'\nlabels: {Y: pass, N: fail}\n", "user", "is not a plain {name}"),
        ("shape: triple\nsystem: s\nuser: u\nlabels: {Y: pass, N: fail}\n", "shape", "must be one of pairwise, single"),
        ("shape: single\nsystem: s\nuser: u\nlabels: {Y: pass}\n", "labels", "at least two labels"),
        ("shape: single\nsystem: s\nuser: u\nlabels: {Y: pass, y: fail}\n", "labels", "token 'y' appears twice"),
        ("shape: pairwise\nsystem: s\nuser: u\nlabels: {X: left, Y: right}\n", "labels", "labels are A, B and optionally tie"),
        ("shape: pairwise\nsystem: s\nuser: u\nlabels: {'1': '1', '2': '2'}\nordinal: true\n", "ends", "ends: [A, B]"),
        ("shape: single\nsystem: s\nuser: u\nlabels: {Y: pass, N: fail}\ntop_logprobs: 50\n", "top_logprobs", "[1, 20]"),
        ("shape: single\nsystem: s\nuser: u\nlabels: {Y: pass, N: fail}\ntemprature: 0\n", "temprature", "unknown field"),
        ("shape: single\nuser: u\nlabels: {Y: pass, N: fail}\n", "system", "is required"),
    ],
)
def test_a_malformed_judge_file_names_the_file_and_field(tmp_path, text, field, problem):
    path = write(tmp_path, text)
    with pytest.raises(JudgeSpecError) as info:
        load_judge(path)
    assert str(info.value).startswith(f"{path}, field {field!r}: ") and problem in str(info.value)


def test_yaml_that_does_not_parse_names_the_file(tmp_path):
    path = write(tmp_path, "shape: [single\n")
    with pytest.raises(JudgeSpecError, match=rf"^{path}: is not valid YAML"):
        load_judge(path)


def test_every_shape_renders_from_item_columns():
    item = {
        "item_id": "i1", "user_turns": ["Summarize: the cat sat."], "answers_a": ["Cat sat."], "answers_b": ["A cat."],
        "response": ["The cat sat down."], "reference": ["A cat sat."], "criterion": "Is it one sentence?",
    }
    judges = {j.name: j for j in load_judges(BUILTINS, None)}
    single = render_messages(item, judge=judges["pass-fail"])[1]["content"]
    assert "[Criterion]\nIs it one sentence?" in single and "[Answer]\nThe cat sat down." in single
    assert "Summarize: the cat sat." in single and "None" not in single
    reference = render_messages(item, judge=judges["reference-correct"])[1]["content"]
    assert "[Reference answer]\nA cat sat." in reference and "[Answer to check]\nThe cat sat down." in reference
    classify = render_messages(item, judge=judges["task-type"])[1]["content"]
    assert classify.startswith("[Request]\nSummarize: the cat sat.") and "cat sat down" not in classify
    likert = render_messages(item, True, judges["pairwise-likert-8"])[1]["content"]
    assert likert.index("A cat.") < likert.index("Cat sat.")  # swapped: B shown first
    # a missing criterion falls back to the judge's default
    assert "follows the user's instructions" in render_messages({**item, "criterion": None}, judge=judges["pass-fail"])[1]["content"]


def test_check_columns_skips_items_the_shape_does_not_fit_and_refuses_a_missing_column(tmp_path):
    items = pd.DataFrame({
        "item_id": ["a", "b"], "user_turns": [["q1"], ["q2"]], "answers_a": [["x"], None], "answers_b": [["y"], None],
        "response": [None, ["r"]], "reference": [None, None],
    })
    judges = {j.name: j for j in load_judges(BUILTINS, None)}
    assert check_columns(items, judges["mt-bench-pairwise"]).tolist() == [True, False]
    assert check_columns(items, judges["pass-fail"]).tolist() == [False, True]
    with pytest.raises(MissingColumnError, match=r"judge 'reference-correct' \(.*reference-correct.yaml\) needs column 'reference', which data.csv has no value in"):
        check_columns(items, judges["reference-correct"], "data.csv")
    extra = load_judge(write(tmp_path, "shape: classify\nsystem: s\nuser: '{prompt} {topic}'\nlabels: {A: x, B: y}\n", "extra.yaml"))
    with pytest.raises(MissingColumnError, match="needs column 'topic', which data.csv lacks"):
        check_columns(items, extra, "data.csv")
    assert check_columns(items.assign(topic=["t", None]), extra).tolist() == [True, False]


def test_labels_map_case_insensitively_and_pairwise_swaps_back():
    pass_fail = load_judge(BUILTIN_DIR / "pass-fail.yaml")
    score = map_top_logprobs(top((" y", 0.3), ("Y", 0.3), ("n", 0.2), ("The", 0.2)), pass_fail)
    assert score.probs == pytest.approx((0.75, 0.25)) and score.label_mass == pytest.approx(0.8)
    likert = load_judge(BUILTIN_DIR / "pairwise-likert-8.yaml")
    swapped = map_top_logprobs(top(("1", 0.5), ("7", 0.5)), likert, swapped=True)  # shown B first: 1 means B much better
    assert swapped.probs == pytest.approx((0, 0.5, 0, 0, 0, 0, 0, 0.5))


def test_likert_stores_the_distribution_its_expected_score_and_derived_verdicts():
    likert = load_judge(BUILTIN_DIR / "pairwise-likert-8.yaml")
    assert likert.verdict_of_label() == {"1": "A", "2": "A", "3": "A", "4": "tie", "5": "tie", "6": "B", "7": "B", "8": "B"}
    per_order = pd.DataFrame({
        "item_id": ["i", "i"], "swapped": [False, True], "status": ["ok", "ok"], "error": [None, None],
        "probs": [(0.5, 0, 0, 0.5, 0, 0, 0, 0), (0.3, 0, 0, 0, 0.2, 0, 0, 0.5)], "label_mass": [1.0, 1.0],
    })
    row = combine_orders(per_order, likert).iloc[0]
    assert row["label_probs"] == pytest.approx({"1": 0.4, "2": 0, "3": 0, "4": 0.25, "5": 0.1, "6": 0, "7": 0, "8": 0.25})
    assert (row["p_a"], row["p_b"], row["p_tie"]) == pytest.approx((0.4, 0.25, 0.35))
    assert (row["p_a_ab"], row["p_tie_ab"], row["p_b_ba"]) == pytest.approx((0.5, 0.5, 0.5))
    no_ties = load_judge(BUILTIN_DIR / "pairwise-likert-8.yaml").__class__(**{**likert.__dict__, "keep_ties": False})
    assert no_ties.verdict_labels == ("A", "B") and no_ties.verdict_of_label()["4"] == "A" and no_ties.verdict_of_label()["5"] == "B"


def test_balanced_probabilities_never_become_the_first_label():
    assert pick_label([0.4, 0.4, 0.2], ("A", "B", "tie"), "i1", "j") == "tie"  # the judge has a tie label
    assert pick_label([0.3, 0.3, 0.4], ("A", "B", "tie"), "i1", "j") == "tie"
    draws = [pick_label([0.5, 0.5], ("pass", "fail"), f"item{i}", "j") for i in range(200)]
    assert set(draws) == {"pass", "fail"} and 60 < draws.count("pass") < 140  # seeded by item and judge, not first
    assert draws == [pick_label([0.5, 0.5], ("pass", "fail"), f"item{i}", "j") for i in range(200)]  # deterministic
    assert pick_label([0.6, 0.4], ("pass", "fail"), "x", "j") == "pass"
    assert pick_label([math.nan, 0.4], ("pass", "fail"), "x", "j") is None


def test_a_panel_file_names_keys_by_variable_only(tmp_path):
    members = load_panel(write(tmp_path, "models:\n  - model: a\n    api_key_var: KEY_A\n    price_per_1m_input: 0.5\n  - model: b\n", "p.yaml"))
    assert [(m.model, m.api_key_var, m.price_in_per_1m) for m in members] == [("a", "KEY_A", 0.5), ("b", None, None)]
    path = write(tmp_path, "models:\n  - model: a\n    api_key: sk-literal\n", "bad.yaml")
    with pytest.raises(JudgeSpecError, match=rf"^{path}, field 'models\[0\].api_key': a key never goes in a file"):
        load_panel(path)
    path = write(tmp_path, "models:\n  - model: a\n  - model: a\n", "dup.yaml")
    with pytest.raises(JudgeSpecError, match=r"field 'models\[1\].model': 'a' is listed twice"):
        load_panel(path)
