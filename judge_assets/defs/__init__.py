"""Dagster wiring: assets, checks, sensors and resources over the pure functions in ``judge_assets.core``."""
