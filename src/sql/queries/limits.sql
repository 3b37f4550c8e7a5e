-- The limits of migration 9, as the CLI and the client read and write them.

-- name: setGroupLimit
-- :maxRunning null: no limit. A group with no row gets one (its other settings take their
-- defaults).
INSERT INTO {{schema}}.task_group (id, max_running) VALUES (:groupId, :maxRunning)
ON CONFLICT (id) DO UPDATE SET max_running = excluded.max_running
RETURNING id, max_running;

-- name: setKeyLimit
INSERT INTO {{schema}}.concurrency_limit (key, max_running) VALUES (:key, :maxRunning)
ON CONFLICT (key) DO UPDATE SET max_running = excluded.max_running
RETURNING key, max_running;

-- name: setKeyRate
-- A rate (migration 27): at most :maxStarts starts of the key per :periodSeconds, beside its
-- max_running (a key with no row gets one, at the default 1; null: no rate).
INSERT INTO {{schema}}.concurrency_limit (key, max_running, max_starts, period)
VALUES (:key, 1, :maxStarts, make_interval(secs => :periodSeconds))
ON CONFLICT (key) DO UPDATE SET max_starts = excluded.max_starts, period = excluded.period
RETURNING key, max_running, max_starts;

-- name: deleteKeyLimit
-- Back to the default of a key: 1 (a mutex), and no rate.
DELETE FROM {{schema}}.concurrency_limit WHERE key = :key
RETURNING key;

-- name: listLimits
-- Each group with max_running and each key with a limit row, live runs or waiting tasks: its
-- limit (and a key's rate, if any) and what runs and waits now. Keys waiting or live are few (see the partial indexes).
SELECT 'group' AS kind, g.id::text AS name, g.max_running, NULL::int AS max_starts, NULL::float8 AS period_seconds,
       (SELECT count(*) FROM {{schema}}.task t WHERE t.group_id = g.id AND t.live_worker_id IS NOT NULL)::int AS running,
       (SELECT count(*) FROM {{schema}}.task t WHERE t.group_id = g.id AND t.state_id = 'AW')::int AS waiting
  FROM {{schema}}.task_group g
 WHERE g.max_running IS NOT NULL
UNION ALL
SELECT 'key', k.key, coalesce(l.max_running, 1), l.max_starts, extract(epoch FROM l.period)::float8,
       (SELECT count(*) FROM {{schema}}.task t WHERE t.concurrency_key = k.key AND t.live_worker_id IS NOT NULL)::int,
       (SELECT count(*) FROM {{schema}}.task t WHERE t.concurrency_key = k.key AND t.state_id = 'AW')::int
  FROM (SELECT key FROM {{schema}}.concurrency_limit
        UNION SELECT concurrency_key FROM {{schema}}.task WHERE live_worker_id IS NOT NULL AND concurrency_key IS NOT NULL
        UNION SELECT concurrency_key FROM {{schema}}.task WHERE state_id = 'AW' AND concurrency_key IS NOT NULL) k
  LEFT JOIN {{schema}}.concurrency_limit l ON l.key = k.key
 ORDER BY 1 DESC, 2;
