"""Pure functions of the pipeline, one module per stage. Nothing here imports Dagster."""
