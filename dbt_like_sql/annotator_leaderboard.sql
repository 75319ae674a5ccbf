-- materialized: view
-- Annotators ranked by CROWDLAB annotator quality (1 = best), overall and within their
-- group (MT-Bench: author, expert, llm), with how many items each labeled.
SELECT
    rank() OVER (ORDER BY annotator_quality DESC) AS rank,
    rank() OVER (PARTITION BY annotator_group ORDER BY annotator_quality DESC) AS rank_in_group,
    annotator,
    annotator_kind,
    annotator_group,
    annotator_quality,
    agreement_with_consensus,
    worst_class,
    num_examples_labeled
FROM annotator_stats
ORDER BY rank, annotator
