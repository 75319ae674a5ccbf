"""Stage 6 — SQL: the dbt-like SQL models and the read-only query engine."""
