"""judge-assets: one trustworthy label per item from disagreeing judges, as a Dagster asset graph in DuckDB."""

__version__ = "0.1.0"
