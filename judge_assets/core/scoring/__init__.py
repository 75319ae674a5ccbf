"""Stage 3 — scoring: the LLM judge and the model prior CROWDLAB weighs annotators against."""
