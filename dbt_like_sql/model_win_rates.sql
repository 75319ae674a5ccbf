-- materialized: table
-- grain: model_a, model_b
-- Per model pair (canonical order model_a < model_b): model_a's win, tie and loss rates from
-- the consensus labels (n_items, one outcome per item) next to the same rates from the raw
-- human votes (n_human_votes, one outcome per vote), and win_rate_gap = consensus_win_rate -
-- vote_win_rate. Pairwise data only: outcomes are the pairwise classes of label_set (A =
-- model_a's answer is better, B = model_b's, tie = neither) on items with both model_a and
-- model_b; generic data (no model pair, other classes) gives no rows.
WITH outcomes AS (
    SELECT
        label,
        CAST(label = 'A' AS DOUBLE) AS win,
        CAST(label = 'tie' AS DOUBLE) AS tie,
        CAST(label = 'B' AS DOUBLE) AS loss
    FROM label_set
    WHERE label IN ('A', 'B', 'tie')
),
consensus AS (
    SELECT
        c.model_a,
        c.model_b,
        count(*) AS n_items,
        avg(o.win) AS consensus_win_rate,
        avg(o.tie) AS consensus_tie_rate,
        avg(o.loss) AS consensus_loss_rate
    FROM consensus_labels AS c
    JOIN outcomes AS o ON o.label = c.consensus_label
    WHERE c.model_a IS NOT NULL AND c.model_b IS NOT NULL
    GROUP BY c.model_a, c.model_b
),
human_votes AS (
    SELECT
        j.model_a,
        j.model_b,
        count(*) AS n_human_votes,
        avg(o.win) AS vote_win_rate,
        avg(o.tie) AS vote_tie_rate,
        avg(o.loss) AS vote_loss_rate
    FROM judgments AS j
    JOIN outcomes AS o ON o.label = j.label
    WHERE j.annotator_kind = 'human' AND j.model_a IS NOT NULL AND j.model_b IS NOT NULL
    GROUP BY j.model_a, j.model_b
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
