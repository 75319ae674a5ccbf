"""Stage 5 — reports: judge report cards, leaderboards, the consensus benchmark, what changed."""
