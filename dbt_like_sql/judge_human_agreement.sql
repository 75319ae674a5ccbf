-- materialized: table
-- grain: judge, category
-- Agreement of each LLM judge (annotator_kind = 'llm') with the human-only CROWDLAB consensus,
-- per category ('unknown' for items without one) and overall (category = 'overall'):
-- n_with_ties / agreement_with_ties = items both labeled / share with the same label (every
-- class counts). n_without_ties / agreement_without_ties = the same over the items where
-- neither the judge nor the human consensus says 'tie'; they are NULL when the label set
-- (label_set) has no 'tie' class, e.g. pass/fail data, where there is nothing to leave out.
WITH tie_class AS (
    SELECT count(*) > 0 AS has_tie FROM label_set WHERE label = 'tie'
),
judge_votes AS (
    SELECT
        j.annotator AS judge,
        coalesce(j.category, 'unknown') AS category,
        j.label AS judge_label,
        h.human_consensus_label AS human_label
    FROM judgments AS j
    JOIN human_consensus_labels AS h ON h.item_id = j.item_id
    WHERE j.annotator_kind = 'llm'
),
scoped AS (
    SELECT judge, category, judge_label, human_label FROM judge_votes
    UNION ALL
    SELECT judge, 'overall' AS category, judge_label, human_label FROM judge_votes
)
SELECT
    judge,
    category,
    count(*) AS n_with_ties,
    avg(CAST(judge_label = human_label AS DOUBLE)) AS agreement_with_ties,
    CASE WHEN any_value(t.has_tie)
        THEN count(*) FILTER (WHERE judge_label <> 'tie' AND human_label <> 'tie')
    END AS n_without_ties,
    CASE WHEN any_value(t.has_tie)
        THEN avg(CAST(judge_label = human_label AS DOUBLE)) FILTER (WHERE judge_label <> 'tie' AND human_label <> 'tie')
    END AS agreement_without_ties
FROM scoped
CROSS JOIN tie_class AS t
GROUP BY judge, category
ORDER BY judge, category = 'overall' DESC, category
