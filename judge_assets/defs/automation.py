"""How the graph runs: the jobs the CLI and the UI launch, and declarative automation.

Jobs: ``load_annotation_batch`` loads one ``raw_judgments`` partition; ``rebuild`` materializes
everything downstream (any subset of it: ``judge-assets run --select``). Runs started by the CLI
are runs of these jobs, so the UI lists them and can re-execute them.

Automation: every unpartitioned asset rebuilds once after a new annotation batch lands.

:func:`with_automation` gives every unpartitioned asset :func:`eager_over_batches` (``eager()``,
except that a failed or not-yet-loaded batch does not block it), and ``judge_assets_automation``
(an ``AutomationConditionSensorDefinition``) evaluates the conditions, so a new ``raw_judgments``
partition rebuilds everything downstream once, over all batches. Old partitions are never
touched. Both sensors start STOPPED; switch them on in the UI (Automation tab) or with
``dagster sensor start annotation_inbox judge_assets_automation -w workspace.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg


def eager_over_batches() -> dg.AutomationCondition:
    """``AutomationCondition.eager()``, except that a ``raw_judgments`` partition that is missing (its run
    failed, or it is registered but not loaded yet) does not hold back the downstream assets: they are
    rebuilt over the batches that did load. A batch still loading does hold them back (in progress)."""
    return dg.AutomationCondition.eager().replace(
        "any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets("raw_judgments"))
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


judge_assets_automation = dg.AutomationConditionSensorDefinition(
    "judge_assets_automation",
    target=dg.AssetSelection.all(),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Evaluates the assets' automation conditions (eager: rebuild after an upstream update).",
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
