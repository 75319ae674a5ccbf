-- materialized: table
-- grain: item_id
-- The 100 items with the lowest consensus quality score, for human review (review_rank 1 =
-- least trustworthy): the consensus, majority-vote and Dawid-Skene labels, every vote as
-- "annotator: label" (votes), the last user turn and both answers to it. Fits any label set.
-- Pairwise items carry question_id, turn, model_a and model_b; generic items have those NULL
-- and show their prompt and response_a / response_b as last_user_turn, answer_a, answer_b.
WITH disputed AS (
    SELECT *
    FROM consensus_labels
    ORDER BY consensus_quality_score ASC, item_id
    LIMIT 100
),
item_votes AS (
    SELECT
        item_id,
        string_agg(annotator || ': ' || label, ', ' ORDER BY annotator) AS votes
    FROM judgments
    WHERE item_id IN (SELECT item_id FROM disputed)
    GROUP BY item_id
)
SELECT
    row_number() OVER (ORDER BY d.consensus_quality_score ASC, d.item_id) AS review_rank,
    d.item_id,
    d.question_id,
    d.turn,
    d.category,
    d.model_a,
    d.model_b,
    d.consensus_label,
    d.consensus_quality_score,
    d.annotator_agreement,
    d.num_annotations,
    d.majority_vote_label,
    d.dawid_skene_label,
    v.votes,
    i.user_turns[-1] AS last_user_turn,
    i.answers_a[-1] AS answer_a,
    i.answers_b[-1] AS answer_b
FROM disputed AS d
LEFT JOIN item_votes AS v ON v.item_id = d.item_id
LEFT JOIN items AS i ON i.item_id = d.item_id
ORDER BY review_rank
