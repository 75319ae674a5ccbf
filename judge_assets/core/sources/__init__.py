"""Stage 1 — where votes come from: loading, validating and registering annotation batches."""
