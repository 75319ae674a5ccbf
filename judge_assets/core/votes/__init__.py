"""Stage 2 — votes and items: label sets, item keys, canonical votes, items, the annotator matrix."""
