"""Asset ``majority_vote_labels`` (group ``matrix``)."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from judge_assets.core.db import replace_table
from judge_assets.core.judgments import stored_label_set
from judge_assets.core.majority import majority_vote_table
from judge_assets.defs.metadata import table_metadata
from judge_assets.defs.resources import DB_POOL


@dg.asset(
    deps=["judgments", "label_set"],
    group_name="matrix",
    kinds={"duckdb"},
    pool=DB_POOL,
    description="Per item: majority label, votes per class, agreement. Ties between classes follow cleanlab's rule "
    "(rarer class, then annotator agreement, then a seeded draw), never the class order.",
)
def majority_vote_labels(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        table = majority_vote_table(con, classes)
        replace_table(con, "majority_vote_labels", table)
        distribution = table["majority_label"].value_counts().reindex(list(classes), fill_value=0)
        context.log.info(f"majority labels for {len(table)} items; {int(table['tie_broken'].sum())} class ties broken")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "majority_vote_labels"),
                "label_distribution": dg.MetadataValue.json({k: int(v) for k, v in distribution.items()}),
                "class_ties_broken": int(table["tie_broken"].sum()),
                "mean_agreement": float(table["agreement"].mean()),
            }
        )
