-- materialized: view
-- grain: annotator
-- Annotators ranked by CROWDLAB annotator quality (1 = best, equal quality = equal rank),
-- overall (rank) and within their group (rank_in_group; groups: author, expert, llm, human),
-- with their kind (human / llm), agreement with the consensus, the class they label worst and
-- how many items each labeled. Reads no label by name, so it fits any label set.
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
