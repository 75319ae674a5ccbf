"""Stage 4 — consensus: sparse votes, CROWDLAB, majority vote, crowd-kit methods, what to label next."""
