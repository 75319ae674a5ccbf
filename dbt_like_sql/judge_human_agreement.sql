-- materialized: table
-- Agreement of each LLM judge with the human-only CROWDLAB consensus, per category and
-- overall (category = 'overall'): with ties (3-class exact match over every item both have)
-- and without ties (only items where neither the judge nor the human consensus says tie).
WITH judge_votes AS (
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
    count(*) FILTER (WHERE judge_label <> 'tie' AND human_label <> 'tie') AS n_without_ties,
    avg(CAST(judge_label = human_label AS DOUBLE))
        FILTER (WHERE judge_label <> 'tie' AND human_label <> 'tie') AS agreement_without_ties
FROM scoped
GROUP BY judge, category
ORDER BY judge, category = 'overall' DESC, category
