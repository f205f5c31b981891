-- Why raw messages were refused: messages and vehicles per reason, share of all rejections, the
-- time span, and one example of the pipeline's explanation.
SELECT
    reason,
    count(*) AS messages,
    count(DISTINCT vehicle_id) AS vehicles,
    round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS share_pct,
    min(rejected_ts) AS first_seen,
    max(rejected_ts) AS last_seen,
    min(detail) AS example
FROM rejected
GROUP BY reason
ORDER BY messages DESC, reason;
