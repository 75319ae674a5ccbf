"""The whole graph at 10K … 10M votes: `judge-assets run`, then `judge-assets ingest` of 1,000 votes.

    python benchmarks/pipeline_scale.py                          # 10K, 100K, 1M
    python benchmarks/pipeline_scale.py --sizes 100K 1M          # chosen sizes (10K, 100K, 1M, 10M)
    python benchmarks/pipeline_scale.py --sizes 10M --baseline issue
    python benchmarks/pipeline_scale.py --schema generic --sizes 100K

Each size is a seeded synthetic dataset of realistic shape (:func:`write_dataset`): 1–7 votes per
item (mean ≈ 3.3, so 1M votes are ~300K items), annotators of Zipf-skewed activity (a few do
most of the work; 2K annotators at 1M votes), the ``gpt4_pair`` LLM judge on about a third of the
items, 5% of the items with texts (conversations, or prompt/responses), MT-Bench's pairwise schema
(``--schema pairwise``, default: 16 models, question × turn × pair items, half the votes naming
the pair in the other order) or the generic one (``--schema generic``: item_id, annotator, label).

For each size, in a fresh ``JUDGE_DB`` and ``DAGSTER_HOME``, this runs ``judge-assets run`` with
``JUDGE_SOURCE`` = the generated parquet file, then ``judge-assets ingest`` of 1,000 new votes
(600 on existing items, 400 on new ones), each command in its own process, as a user types them.
The ingest rebuilds what it rebuilds by default: here ``INGEST_SELECTION``
(judge_assets/defs/automation.py: everything downstream but the evaluation assets, which follow
their own cadence); at the baseline commit everything downstream. Measured:

- per command: wall time, CPU time (user + system of the process and its children, from
  ``wait4``) and peak RSS (``ru_maxrss``), exact;
- per step (asset or asset check): wall time from Dagster's own STEP_START / STEP_SUCCESS events in
  the instance's event log; CPU time and peak RSS from sampling the process tree every 0.2 s
  (``/proc``) and attributing each sample to the step running then (short steps: ± one sample).
  "start-up / other" is the command's time outside every step (imports, Definitions, partition
  registration, the ingest gate, Dagster's run bookkeeping).

Baseline, side by side with a ratio: the same sizes run at git commit 0dd7025 (the source of the
issue's "before" numbers) through ``PYTHONPATH`` pointing at an exported copy of it
(``--baseline rev``), but only up to ``--baseline-max`` (default 100K; at 1M the old graph ran
over 30 minutes and peaked near 20 GB, more than this shared machine can spare), above it the
issue's measured numbers, labelled as such (``--baseline issue`` uses those everywhere).
``--baseline-json`` reuses an earlier run's baseline measurements instead of running them again.
A command killed by ``--timeout`` or ``--rss-limit-gb`` is reported as not finished.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
BASELINE_REV = "0dd7025"

#: label → (votes, items, human annotators)
SIZES: dict[str, tuple[int, int, int]] = {
    "10K": (10_000, 3_000, 100),
    "100K": (100_000, 30_000, 500),
    "1M": (1_000_000, 300_000, 2_000),
    "10M": (10_000_000, 3_000_000, 10_000),
}
#: votes per item 1..7 (mean 3.31)
VOTES_PER_ITEM_P = np.array([0.13, 0.21, 0.22, 0.18, 0.13, 0.08, 0.05])
MODELS = tuple(f"model-{c}" for c in "abcdefghijklmnop")
CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
GENERIC_LABELS = ("bad", "good", "unsure")
LLM_JUDGE = "gpt4_pair"
TEXT_SHARE = 0.05
LLM_SHARE = 0.35
INGEST_VOTES = 1_000
CHUNK_ITEMS = 250_000
SAMPLE_S = 0.2

#: The issue's measurements of commit 0dd7025 (same machine class: 2 cores, 24 GB).
ISSUE_BASELINE = {
    "100K": {"run": {"cpu_s": 216.0, "peak_mb": 1126.0, "steps": {}}, "ingest": {"cpu_s": 201.0, "steps": {}}},
    "1M": {
        "run": {
            "wall_s": None, "cpu_s": None, "peak_mb": 19_968.0, "note": "did not finish in 30 min",
            "steps": {"consensus": {"cpu_s": 632.0}, "consensus_benchmark": {"wall_s": 580.0}, "label_next": {"peak_mb": 19_968.0},
                      "raw_judgments": {"peak_mb": 3_174.0}},
        },
        "ingest": {"steps": {}},
    },
}


# --------------------------------------------------------------------------- data


def _zipf_cdf(n: int, exponent: float = 1.1, offset: float = 10.0) -> np.ndarray:
    weights = 1.0 / (np.arange(n) + offset) ** exponent
    return np.cumsum(weights) / weights.sum()


def _paragraphs(rng: np.random.Generator, n: int = 4_000) -> np.ndarray:
    """A pool of ``n`` random texts (20–120 words from a 3,000-word vocabulary)."""
    syllables = np.array(["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "dor", "ven", "lis", "tam"])
    vocab = np.array(["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(3_000)])
    lengths = rng.integers(20, 121, size=n)
    return np.array([" ".join(vocab[rng.integers(0, len(vocab), size=k)]) for k in lengths], dtype=object)


@dataclass(frozen=True)
class Crowd:
    """One chunk of synthetic votes. Arrays of shape (n_votes,) unless noted.

    item : global item index; annotator : index into the annotator names (``n_humans`` = the LLM
    judge); label : 0 = A (first model of the pair better), 1 = B, 2 = tie.
    """

    item: np.ndarray
    annotator: np.ndarray
    label: np.ndarray


def _draw_annotators(rng: np.random.Generator, item: np.ndarray, counts: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Distinct annotators per item (Zipf-weighted); the rare residual duplicate is marked -1."""
    annotator = np.searchsorted(cdf, rng.random(len(item)))
    for _ in range(20):
        key = item * len(cdf) + annotator
        order = np.argsort(key, kind="stable")
        dup = np.zeros(len(item), dtype=bool)
        dup[order[1:]] = key[order[1:]] == key[order[:-1]]
        if not dup.any():
            break
        annotator[dup] = np.searchsorted(cdf, rng.random(int(dup.sum())))
    else:
        annotator[dup] = -1
    return annotator


def synthetic_votes(first_item: int, n_items: int, n_humans: int, rng: np.random.Generator, truth_of) -> Crowd:
    """Votes on items ``first_item … first_item + n_items - 1``: 1–7 each, Zipf-skewed annotators,
    the LLM judge (index ``n_humans``) on ~35% of items, Beta(6, 2)-accurate humans."""
    counts = rng.choice(np.arange(1, 8), size=n_items, p=VOTES_PER_ITEM_P)
    item = np.repeat(np.arange(first_item, first_item + n_items, dtype=np.int64), counts)
    annotator = _draw_annotators(rng, item, counts, _zipf_cdf(n_humans))
    first_vote = np.cumsum(counts) - counts
    llm_items = np.flatnonzero(rng.random(n_items) < LLM_SHARE)
    annotator[first_vote[llm_items]] = n_humans
    keep = annotator >= 0
    item, annotator = item[keep], annotator[keep]
    accuracy = np.append(np.random.default_rng(12345).beta(6, 2, size=n_humans), 0.65)
    truth = truth_of(item)
    wrong = rng.random(len(item)) >= accuracy[annotator]
    label = truth.copy()
    label[wrong] = (label[wrong] + rng.integers(1, 3, size=int(wrong.sum()))) % 3
    return Crowd(item, annotator, label)


def _pair_table() -> tuple[np.ndarray, np.ndarray]:
    a, b = np.triu_indices(len(MODELS), k=1)
    return a, b


def _truth(item: np.ndarray) -> np.ndarray:
    """Each item's true label from Bradley-Terry strengths of its pair, ties 25%; seeded by item."""
    first, second = _pair_table()
    pair = item % len(first)
    strength = np.linspace(1.0, -1.0, len(MODELS))
    p_first = 1.0 / (1.0 + np.exp(-(strength[first[pair]] - strength[second[pair]])))
    u = (np.asarray(item, dtype=np.uint64) * np.uint64(2654435761) % np.uint64(2**32)).astype(float) / 2**32
    return np.where(u < 0.25, 2, np.where((u - 0.25) / 0.75 < p_first, 0, 1))


def _take(values, index: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values, type=pa.string()), pa.array(index))


def _conversations(item: np.ndarray, turn: np.ndarray, pool: np.ndarray, salt: int) -> pa.Array:
    """list<struct<content, role>> per row: user/assistant messages for each turn up to ``turn``
    (1 or 2), texts drawn from ``pool`` by item (``salt`` picks the answering model); an empty list
    for rows whose item has no texts (commit 0dd7025 fails on NULL conversations)."""
    lengths = np.where(_has_text(item), 2 * turn, 0)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    starts = offsets[:-1]
    content = np.empty(offsets[-1], dtype=object)
    for message in range(4):
        present = lengths > message
        source = item[present] * (7 if message % 2 == 0 else 7 * salt) + message
        content[starts[present] + message] = pool[source % len(pool)]
    role = np.tile(np.array(["user", "assistant"], dtype=object), len(content) // 2)
    struct = pa.StructArray.from_arrays([pa.array(content, pa.string()), pa.array(role, pa.string())], names=["content", "role"])
    return pa.ListArray.from_arrays(pa.array(offsets), struct)


def _has_text(item: np.ndarray) -> np.ndarray:
    return (np.asarray(item, dtype=np.uint64) * np.uint64(40503) % np.uint64(1000)) < TEXT_SHARE * 1000


def pairwise_rows(crowd: Crowd, annotator_names: np.ndarray, rng: np.random.Generator, pool: np.ndarray) -> pa.Table:
    """MT-Bench pairwise rows: item index → (question, turn, model pair); half the votes name the
    pair in the other order (winner flipped accordingly)."""
    first, second = _pair_table()
    pair = crowd.item % len(first)
    rest = crowd.item // len(first)
    turn = (rest % 2 + 1).astype(np.int64)
    question = (rest // 2 + 1).astype(np.int64)
    swap = rng.random(len(crowd.item)) < 0.5
    shown_a = np.where(swap, second[pair], first[pair])
    shown_b = np.where(swap, first[pair], second[pair])
    label = np.where(swap & (crowd.label < 2), 1 - crowd.label, crowd.label)
    tie_kind = np.where(rng.random(len(label)) < 0.15, 3, 2)
    winner = np.where(label == 2, tie_kind, label)
    first_conv = _conversations(crowd.item, turn, pool, 3)
    second_conv = _conversations(crowd.item, turn, pool, 5)
    return pa.table({
        "question_id": pa.array(question),
        "model_a": _take(MODELS, shown_a),
        "model_b": _take(MODELS, shown_b),
        "winner": _take(("model_a", "model_b", "tie", "tie (inconsistent)"), winner),
        "judge": _take(annotator_names, crowd.annotator),
        "turn": pa.array(turn),
        "category": _take(CATEGORIES, question % len(CATEGORIES)),
        "conversation_a": pc.if_else(pa.array(swap), second_conv, first_conv),
        "conversation_b": pc.if_else(pa.array(swap), first_conv, second_conv),
    })


def generic_rows(crowd: Crowd, annotator_names: np.ndarray, rng: np.random.Generator, pool: np.ndarray) -> pa.Table:
    """Generic rows: item_id, annotator, label (bad/good/unsure), category, texts on 5% of items."""
    texts = _has_text(crowd.item)

    def text(salt: int) -> pa.Array:
        values = pool[(crowd.item * salt + 1) % len(pool)].astype(object)
        values[~texts] = None
        return pa.array(values, pa.string())

    return pa.table({
        "item_id": pc.binary_join_element_wise("item-", pc.cast(pa.array(crowd.item), pa.string()), ""),
        "annotator": _take(annotator_names, crowd.annotator),
        "label": _take(GENERIC_LABELS, crowd.label),
        "category": _take(CATEGORIES, crowd.item % len(CATEGORIES)),
        "prompt": text(7),
        "response_a": text(13),
        "response_b": text(17),
    })


def annotator_names(n_humans: int) -> np.ndarray:
    names = [f"expert_{i}" if i % 5 == 0 else f"annot_{i}" for i in range(n_humans)]
    return np.array([*names, LLM_JUDGE], dtype=object)


def write_dataset(path: Path, size: str, schema: str, seed: int = 0) -> int:
    """The seeded dataset of ``size`` as one parquet file, written chunk by chunk; returns its rows."""
    _, n_items, n_humans = SIZES[size]
    names = annotator_names(n_humans)
    pool = _paragraphs(np.random.default_rng(seed + 99))
    build = pairwise_rows if schema == "pairwise" else generic_rows
    rows = 0
    writer = None
    try:
        for chunk, start in enumerate(range(0, n_items, CHUNK_ITEMS)):
            rng = np.random.default_rng([seed, chunk])
            crowd = synthetic_votes(start, min(CHUNK_ITEMS, n_items - start), n_humans, rng, _truth)
            table = build(crowd, names, rng, pool)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=200_000)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def write_ingest_batch(path: Path, size: str, schema: str, seed: int = 1) -> int:
    """1,000 new votes for the dataset of ``size``: 600 by existing annotators on existing items,
    400 on new items (1–7 votes each); one vote per (item, annotator) in the file."""
    _, n_items, n_humans = SIZES[size]
    names = annotator_names(n_humans)
    rng = np.random.default_rng([seed, 7])
    pool = _paragraphs(np.random.default_rng(seed + 99))
    old_items = rng.choice(n_items, size=600, replace=False)
    old = Crowd(item=old_items.astype(np.int64), annotator=np.searchsorted(_zipf_cdf(n_humans), rng.random(600)),
                label=_truth(old_items.astype(np.int64)))
    new = synthetic_votes(n_items + 1_000_000, 200, n_humans, rng, _truth)
    take = min(len(new.item), INGEST_VOTES - 600)
    crowd = Crowd(*(np.concatenate([getattr(old, f), getattr(new, f)[:take]]) for f in ("item", "annotator", "label")))
    build = pairwise_rows if schema == "pairwise" else generic_rows
    table = build(crowd, names, rng, pool)
    pq.write_table(table, path)
    return table.num_rows


# --------------------------------------------------------------------------- measurement


@dataclass
class Step:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mb: float = 0.0


@dataclass
class Command:
    """One measured command. ``steps``: step key → Step (in execution order)."""

    wall_s: float
    cpu_s: float
    peak_mb: float
    ok: bool
    note: str = ""
    steps: dict[str, Step] = field(default_factory=dict)


def _tree_sample(root: int) -> tuple[float, float, float]:
    """(CPU s, RSS MB, Σ VmHWM MB) of ``root`` and its descendants now (``judge-assets run`` runs
    the graph in a worker process of its own, so the tree, not the root, is measured)."""
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = rss = hwm = 0.0
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        f = stats[pid]
        cpu += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick
        rss += int(f[21]) * page / 2**20
        try:
            with open(f"/proc/{pid}/status") as handle:
                hwm += next((int(line.split()[1]) for line in handle if line.startswith("VmHWM:")), 0) / 1024
        except OSError:
            pass
        todo += children.get(pid, [])
    return cpu, rss, hwm


def measure(argv: list[str], env: dict[str, str], *, timeout_s: float, rss_limit_mb: float, log: Path) -> tuple[Command, list[tuple]]:
    """Run ``argv``; returns its :class:`Command` totals and the samples ``(t, cpu_s, rss_mb, hwm_mb)``.

    Peak RSS is the larger of ``ru_maxrss`` (the largest single process) and the largest sampled
    RSS of the whole process tree."""
    samples: list[tuple] = []
    note = ""
    start = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        status = rusage = None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            cpu, rss, hwm = _tree_sample(proc.pid)
            samples.append((time.time(), cpu, rss, hwm))
            if time.time() - start > timeout_s or rss > rss_limit_mb:
                note = f"did not finish in {timeout_s:.0f} s" if rss <= rss_limit_mb else f"killed at {rss:,.0f} MB RSS (limit {rss_limit_mb:,.0f})"
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(SAMPLE_S)
    wall = time.time() - start
    ok = not note and os.waitstatus_to_exitcode(status) == 0
    if not ok and not note:
        note = f"exit code {os.waitstatus_to_exitcode(status)} (see {log})"
    peak = max([rusage.ru_maxrss / 1024, *(s[2] for s in samples)])
    command = Command(wall_s=wall, cpu_s=rusage.ru_utime + rusage.ru_stime, peak_mb=peak, ok=ok, note=note)
    return command, [(start, 0.0, 0.0, 0.0), *samples]


DUMP_EVENTS = """
import json, sys
import dagster as dg
from dagster._core.storage.dagster_run import RunsFilter
instance = dg.DagsterInstance.get()
since = float(sys.argv[1])
out = []
for run in sorted(instance.get_runs(), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp.timestamp()):
    if instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp() < since - 1:
        continue
    for record in instance.all_logs(run.run_id):
        event = record.dagster_event
        if event is not None and event.event_type_value in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            out.append((record.timestamp, event.event_type_value, event.step_key, run.job_name))
print(json.dumps(out))
"""


def step_windows(env: dict[str, str], since: float) -> list[tuple[str, float, float]]:
    """(step key, start, end) of every step the commands since ``since`` ran, from the event log."""
    clean = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    text = subprocess.run([sys.executable, "-c", DUMP_EVENTS, str(since)], env=clean, capture_output=True, text=True, check=True).stdout
    starts: dict[str, float] = {}
    windows = []
    for ts, kind, step, job in json.loads(text):
        key = step if job != "load_annotation_batch" else f"{step} (batch)"
        if kind == "STEP_START":
            starts[key] = ts
        elif key in starts:
            windows.append((key, starts.pop(key), ts))
    return windows


def attribute(command: Command, samples: list[tuple], windows: list[tuple[str, float, float]]) -> None:
    """Fill ``command.steps`` from the step windows and the CPU/RSS samples."""
    times = np.array([s[0] for s in samples])
    cpu = np.array([s[1] for s in samples])
    rss = np.array([s[2] for s in samples])
    hwm = np.array([s[3] for s in samples])
    for key, begin, end in windows:
        inside = (times >= begin) & (times <= end + SAMPLE_S)
        before = np.flatnonzero(times <= begin)
        after = np.flatnonzero(times >= end)
        lo = before[-1] if len(before) else 0
        hi = after[0] if len(after) else len(times) - 1
        step = command.steps.setdefault(key, Step())
        step.wall_s += end - begin
        step.cpu_s += max(float(cpu[hi] - cpu[lo]), 0.0) * min(1.0, (end - begin) / max(times[hi] - times[lo], 1e-9)) if hi > lo else 0.0
        peak = float(rss[inside].max()) if inside.any() else 0.0
        if hwm[hi] > hwm[lo]:
            peak = max(peak, float(hwm[hi]))
        step.peak_mb = max(step.peak_mb, peak)
    in_steps = sum(s.wall_s for s in command.steps.values())
    command.steps["start-up / other"] = Step(
        wall_s=max(command.wall_s - in_steps, 0.0), cpu_s=max(command.cpu_s - sum(s.cpu_s for s in command.steps.values()), 0.0)
    )


def run_size(size: str, schema: str, workdir: Path, *, pythonpath: str | None, label: str, timeout_s: float,
             rss_limit_mb: float) -> dict[str, Command]:
    """`judge-assets run` then `judge-assets ingest` for ``size`` in a fresh database and instance."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    source = data / f"{schema}-{size}.parquet"
    batch = data / f"{schema}-{size}-ingest.parquet"
    if not source.exists():
        t = time.time()
        tmp = source.with_suffix(".partial")
        n = write_dataset(tmp, size, schema)
        tmp.rename(source)
        print(f"  generated {source.name}: {n:,} votes in {time.time() - t:.0f} s", flush=True)
    if not batch.exists():
        write_ingest_batch(batch, size, schema)
    home = Path(tempfile.mkdtemp(prefix=f"{label}-{schema}-{size}-", dir=workdir))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JUDGE_")},
        "JUDGE_DB": str(home / "judge.duckdb"),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "JUDGE_SOURCE": str(source),
        "JUDGE_INBOX_DIR": str(home / "inbox"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    ingest = [str(VENV_BIN / "judge-assets"), "ingest", str(batch)]  # what it rebuilds by default
    results = {}
    for name, argv in (("run", [str(VENV_BIN / "judge-assets"), "run"]), ("ingest", ingest)):
        since = time.time()
        command, samples = measure(argv, env, timeout_s=timeout_s, rss_limit_mb=rss_limit_mb, log=home / f"{name}.log")
        try:
            attribute(command, samples, step_windows(env, since))
        except subprocess.CalledProcessError as exc:
            command.note += f" (no step events: {exc.stderr.strip().splitlines()[-1] if exc.stderr else exc})"
        results[name] = command
        status = "ok" if command.ok else command.note
        print(f"  {label} {size} {name}: {command.wall_s:.1f} s wall, {command.cpu_s:.1f} CPU-s, {command.peak_mb:,.0f} MB peak — {status}", flush=True)
        if not command.ok:
            break
    return results


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _ratio(new: float | None, old: float | None) -> str:
    if new is None or old is None or new <= 0:
        return "–"
    return f"{old / new:,.1f}×"


def markdown(size: str, votes: int, new: dict[str, Command], old: dict[str, dict], old_label: str) -> str:
    """One table per size: every step of the run and of the ingest, new vs baseline."""
    lines = [
        f"### {size} votes ({votes:,} rows)",
        "",
        f"baseline: {old_label}; × = baseline / now (higher is better)",
        "",
        "| command | step | wall s | CPU s | peak MB | baseline wall s | baseline CPU s | baseline peak MB | wall × | CPU × | memory × |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("run", "ingest"):
        command = new.get(name)
        base = old.get(name, {})
        if command is None:
            continue
        base_steps = base.get("steps", {})
        for key, step in command.steps.items():
            b = base_steps.get(key, {})
            lines.append(
                f"| {name} | {key} | {_fmt(step.wall_s)} | {_fmt(step.cpu_s)} | {_fmt(step.peak_mb or None, 0)} | "
                f"{_fmt(b.get('wall_s'))} | {_fmt(b.get('cpu_s'))} | {_fmt(b.get('peak_mb'), 0)} | "
                f"{_ratio(step.wall_s, b.get('wall_s'))} | {_ratio(step.cpu_s, b.get('cpu_s'))} | {_ratio(step.peak_mb, b.get('peak_mb'))} |"
            )
        for key in base_steps:
            if key not in command.steps:
                b = base_steps[key]
                lines.append(f"| {name} | {key} (baseline only) | – | – | – | {_fmt(b.get('wall_s'))} | {_fmt(b.get('cpu_s'))} | "
                             f"{_fmt(b.get('peak_mb'), 0)} | – | – | – |")
        note = f" ({command.note})" if command.note else ""
        bnote = f" ({base['note']})" if base.get("note") else ""
        lines.append(
            f"| **{name}** | **total**{note} | **{_fmt(command.wall_s)}** | **{_fmt(command.cpu_s)}** | **{_fmt(command.peak_mb, 0)}** | "
            f"{_fmt(base.get('wall_s'))}{bnote} | {_fmt(base.get('cpu_s'))} | {_fmt(base.get('peak_mb'), 0)} | "
            f"{_ratio(command.wall_s, base.get('wall_s'))} | {_ratio(command.cpu_s, base.get('cpu_s'))} | {_ratio(command.peak_mb, base.get('peak_mb'))} |"
        )
    if "run" in new and "ingest" in new and new["run"].cpu_s:
        lines += ["", f"ingest CPU = {100 * new['ingest'].cpu_s / new['run'].cpu_s:.1f}% of the full run's CPU; "
                  f"ingest wall {new['ingest'].wall_s:.1f} s (Dagster start-up included)"]
    return "\n".join(lines)


def _as_dict(results: dict[str, Command]) -> dict:
    return {name: asdict(command) for name, command in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10K", "100K", "1M"], choices=list(SIZES))
    parser.add_argument("--schema", choices=("pairwise", "generic"), default="pairwise")
    parser.add_argument("--baseline", choices=("rev", "issue", "none"), default="rev",
                        help=f"rev: run commit {BASELINE_REV} up to --baseline-max, the issue's numbers above; issue: the issue's numbers only")
    parser.add_argument("--baseline-max", default="100K", choices=list(SIZES), help="largest size the baseline commit is run at")
    parser.add_argument("--baseline-json", type=Path, help="reuse the baseline measurements of an earlier --json output")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "judge_pipeline_scale")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before a command is killed (reported as not finished)")
    parser.add_argument("--rss-limit-gb", type=float, default=16.0, help="a command whose process tree exceeds this RSS is killed")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--baseline-only", action="store_true", help="measure only the baseline (to reuse with --baseline-json)")
    parser.add_argument("--source", help="measure the judge_assets package in this folder (e.g. an exported commit) instead of this checkout")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(args.baseline_json.read_text()) if args.baseline_json else {"baseline": {}, "baseline_label": {}}
    reuse = {size: m for size, m in earlier["baseline"].items() if m}
    baseline_src = None
    everything = {"machine": f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB",
                  "schema": args.schema, "new": {}, "baseline": dict(reuse), "baseline_label": {}}
    tables = []
    for size in args.sizes:
        print(f"{size}:", flush=True)
        new = {} if args.baseline_only else run_size(size, args.schema, args.workdir, pythonpath=args.source, label="now",
                                                      timeout_s=args.timeout, rss_limit_mb=args.rss_limit_gb * 1024)
        everything["new"][size] = _as_dict(new)
        run_old = args.baseline == "rev" and list(SIZES).index(size) <= list(SIZES).index(args.baseline_max)
        if size in reuse:
            old, old_label = reuse[size], earlier["baseline_label"].get(size, f"commit {BASELINE_REV}")
            if "(earlier run of this script)" not in old_label:  # a reused label says so once, however often reused
                old_label += " (earlier run of this script)"
        elif run_old:
            if baseline_src is None:
                baseline_src = args.workdir / f"baseline-{BASELINE_REV}"
                if not baseline_src.exists():
                    baseline_src.mkdir()
                    archive = subprocess.run(["git", "archive", BASELINE_REV], cwd=ROOT, capture_output=True, check=True).stdout
                    subprocess.run(["tar", "-x", "-C", str(baseline_src)], input=archive, check=True)
            old = _as_dict(run_size(size, args.schema, args.workdir, pythonpath=str(baseline_src), label="baseline",
                                    timeout_s=args.timeout, rss_limit_mb=args.rss_limit_gb * 1024))
            old_label = f"commit {BASELINE_REV}, run now on this machine"
        elif args.baseline != "none" and size in ISSUE_BASELINE:
            old, old_label = ISSUE_BASELINE[size], f"the issue's numbers for commit {BASELINE_REV} (not rerun)"
        else:
            old, old_label = {}, "none"
        everything["baseline"][size] = old
        everything["baseline_label"][size] = old_label
        votes = pq.ParquetFile(args.workdir / "data" / f"{args.schema}-{size}.parquet").metadata.num_rows
        tables.append(markdown(size, votes, new, old, old_label))
        if args.json:
            args.json.write_text(json.dumps(everything, indent=1))
    print(f"\n## Pipeline at scale ({args.schema} schema; machine: {everything['machine']})\n")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
