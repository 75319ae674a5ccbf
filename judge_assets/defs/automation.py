"""How the graph runs: the jobs the CLI and the UI launch, and declarative automation.

Jobs: ``load_annotation_batch`` loads one ``raw_judgments`` partition; ``rebuild`` materializes
everything downstream (any subset of it: ``judge-assets run --select``). Runs started by the CLI
are runs of these jobs, so the UI lists them and can re-execute them.

Automation: what a new annotation batch can change rebuilds once after it lands; the expensive
evaluation assets run on their own cadence.

:func:`with_automation` gives every unpartitioned asset :func:`eager_over_batches` (``eager()``,
except that a failed or not-yet-loaded batch does not block it), and ``judge_assets_automation``
(an ``AutomationConditionSensorDefinition``) evaluates the conditions, so a new ``raw_judgments``
partition rebuilds everything downstream in one evaluation (one run, in dependency order), over
all batches. Old partitions are never touched.

Evaluation assets (``consensus_benchmark``, ``annotator_stats_history``: costly, and telling
nothing new after one more batch) declare :func:`evaluation_cadence` and the
:data:`EVALUATION_TAGS` instead: they run once a day after their inputs changed, when
``raw_judgments`` has grown by :data:`EVALUATION_GROWTH` since they were built, or on demand —
never on every batch. :data:`INGEST_SELECTION` is what an ingest rebuilds by hand. The
condition labels say in the UI (asset → Automation) which of these held, so an asset that did
not run says why.

Both sensors start STOPPED; switch them on in the UI (Automation tab) or with
``dagster sensor start annotation_inbox judge_assets_automation -w workspace.yaml``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import dagster as dg
import duckdb

from judge_assets.core.db import table_exists

RAW_KEY = dg.AssetKey("raw_judgments")
#: ``raw_judgments`` metadata: rows over all batches after a batch loaded (judge_assets/defs/sources.py).
RAW_ROWS_METADATA = "rows_all_batches"
#: What an evaluation asset records on its materialization: the ``raw_judgments`` rows it was built on.
ROWS_SEEN_METADATA = "raw_rows_seen"
#: Tag of the evaluation assets (selection ``tag:cadence=evaluation``).
EVALUATION_TAGS = {"cadence": "evaluation"}
#: Cron of the evaluation cadence: once a day, 03:00 UTC, after the inputs changed.
EVALUATION_CRON = "0 3 * * *"
#: Growth of ``raw_judgments`` since an evaluation asset was built that rebuilds it (10%).
EVALUATION_GROWTH = 0.10
#: What ``judge-assets ingest`` rebuilds after loading its batches: everything downstream but the
#: evaluation assets, which follow :func:`evaluation_cadence`.
INGEST_SELECTION = "key:raw_judgments+ and not tag:cadence=evaluation"


def eager_over_batches() -> dg.AutomationCondition:
    """``AutomationCondition.eager()``, except that a ``raw_judgments`` partition that is missing (its run
    failed, or it is registered but not loaded yet) does not hold back the downstream assets: they are
    rebuilt over the batches that did load. A batch still loading does hold them back (in progress)."""
    return dg.AutomationCondition.eager().replace(
        "any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets("raw_judgments"))
    )


def rows_seen_metadata(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """What an evaluation asset records on its materialization for :class:`RawJudgmentsGrew`:
    ``{raw_rows_seen: rows of raw_judgments}`` (nothing without that table)."""
    if not table_exists(con, RAW_KEY.path[-1]):
        return {}
    return {ROWS_SEEN_METADATA: con.execute(f"SELECT count(*) FROM {RAW_KEY.path[-1]}").fetchone()[0]}


class RawJudgmentsGrew(dg.AutomationCondition):
    """True when ``raw_judgments`` holds at least ``1 + fraction`` times the rows the asset was last
    built on (its :data:`ROWS_SEEN_METADATA`), or it was never built; read from the latest
    materializations' metadata in the instance, so evaluating it touches no data. Python code, so
    the sensor that evaluates it runs in the code location (``use_user_code_server``)."""

    def __init__(self, fraction: float):
        self.fraction = fraction

    @property
    def requires_cursor(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return "raw_judgments_grew"

    @property
    def description(self) -> str:
        return f"raw_judgments has grown by {self.fraction:.0%} or more since this asset was built (or it never was)"

    def get_label(self) -> str:
        return f"raw_judgments grew ≥{self.fraction:.0%} since the last build"

    def grew(self, instance, key: dg.AssetKey) -> bool:
        raw = instance.get_latest_materialization_event(RAW_KEY)
        rows = raw and raw.asset_materialization.metadata.get(RAW_ROWS_METADATA)
        if rows is None:
            return False
        own = instance.get_latest_materialization_event(key)
        seen = own and own.asset_materialization.metadata.get(ROWS_SEEN_METADATA)
        return seen is None or rows.value >= (1 + self.fraction) * seen.value

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        grown = self.grew(context.asset_graph_view.instance, context.key)
        return dg.AutomationResult(context, context.candidate_subset if grown else context.get_empty_subset())


def evaluation_cadence(cron: str = EVALUATION_CRON, growth: float = EVALUATION_GROWTH) -> dg.AutomationCondition:
    """The cadence of an expensive evaluation asset: after the ``cron`` tick (UTC) once all its inputs
    changed since, or when ``raw_judgments`` has grown by ``growth`` since it was built (and no input
    is missing or being rebuilt) — never merely because a batch landed. On demand is always possible."""
    idle = ~dg.AutomationCondition.in_progress() & ~dg.AutomationCondition.any_deps_in_progress()
    inputs_present = ~dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets(RAW_KEY))
    scheduled = dg.AutomationCondition.on_cron(cron).with_label(f"scheduled: first run after the {cron} (UTC) tick once every input changed")
    grown = (RawJudgmentsGrew(growth) & inputs_present & idle).with_label(f"data grew ≥{growth:.0%} since the last build")
    return (scheduled | grown).with_label(
        f"evaluation cadence: daily ({cron} UTC) after new data, or when raw_judgments grew ≥{growth:.0%}; "
        "never on every batch (materialize it to run it now)"
    )


def with_automation(
    assets: Sequence[dg.AssetsDefinition | dg.AssetSpec], condition: dg.AutomationCondition | None = None
) -> list:
    """``assets`` with ``condition`` (default :func:`eager_over_batches`) on every unpartitioned asset
    that has no condition yet. Partitioned assets (``raw_judgments``) are left to the inbox sensor and
    ``judge-assets ingest``; unpartitioned ones then rebuild once after any upstream partition lands.
    Apply in definitions.py: ``assets=with_automation(ASSETS)``, with :data:`automation_sensors`.
    """
    condition = condition or eager_over_batches()

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.partitions_def is not None or spec.automation_condition is not None:
            return spec
        return spec.replace_attributes(automation_condition=condition)

    return list(dg.map_asset_specs(apply, assets))


with warnings.catch_warnings():  # use_user_code_server: beta in Dagster 1.13, needed by RawJudgmentsGrew (Python code)
    warnings.filterwarnings("ignore", message="Parameter `use_user_code_server`", category=dg.BetaWarning)
    judge_assets_automation = dg.AutomationConditionSensorDefinition(
        "judge_assets_automation",
        target=dg.AssetSelection.all(),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        use_user_code_server=True,
        description="Evaluates the assets' automation conditions: eager (rebuild once after an upstream update) for "
        "everything a batch can change; the evaluation cadence (daily after new data, or 10% growth) for the "
        "evaluation assets (tag cadence=evaluation).",
    )


load_annotation_batch = dg.define_asset_job(
    "load_annotation_batch",
    selection=dg.AssetSelection.assets("raw_judgments"),
    description="Load one annotation batch (a partition of raw_judgments).",
)
rebuild = dg.define_asset_job(
    "rebuild",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("raw_judgments"),
    description="Rebuild everything downstream of raw_judgments over all loaded batches.",
)
