-- materialized: table
-- Per model pair (canonical order model_a < model_b): model_a's win, tie and loss rates
-- from the consensus labels (one outcome per item) next to the same rates from the raw
-- human votes (one outcome per vote), and the gap between the two win rates.
WITH consensus AS (
    SELECT
        model_a,
        model_b,
        count(*) AS n_items,
        avg(CAST(consensus_label = 'A' AS DOUBLE)) AS consensus_win_rate,
        avg(CAST(consensus_label = 'tie' AS DOUBLE)) AS consensus_tie_rate,
        avg(CAST(consensus_label = 'B' AS DOUBLE)) AS consensus_loss_rate
    FROM consensus_labels
    GROUP BY model_a, model_b
),
human_votes AS (
    SELECT
        model_a,
        model_b,
        count(*) AS n_human_votes,
        avg(CAST(label = 'A' AS DOUBLE)) AS vote_win_rate,
        avg(CAST(label = 'tie' AS DOUBLE)) AS vote_tie_rate,
        avg(CAST(label = 'B' AS DOUBLE)) AS vote_loss_rate
    FROM judgments
    WHERE annotator_kind = 'human'
    GROUP BY model_a, model_b
)
SELECT
    coalesce(c.model_a, h.model_a) AS model_a,
    coalesce(c.model_b, h.model_b) AS model_b,
    coalesce(c.n_items, 0) AS n_items,
    c.consensus_win_rate,
    c.consensus_tie_rate,
    c.consensus_loss_rate,
    coalesce(h.n_human_votes, 0) AS n_human_votes,
    h.vote_win_rate,
    h.vote_tie_rate,
    h.vote_loss_rate,
    c.consensus_win_rate - h.vote_win_rate AS win_rate_gap
FROM consensus AS c
FULL OUTER JOIN human_votes AS h ON h.model_a = c.model_a AND h.model_b = c.model_b
ORDER BY model_a, model_b
