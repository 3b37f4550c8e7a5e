-- Version 23: the worker row records the highest timeline its node has seen (issue 26, split
-- brain).
--
-- A node reads the system_identifier and timeline of every server it connects to (the
-- split-brain guard, src/db/server-guard.ts), keeps the first identifier and the highest
-- timeline in its memory, and refuses a server of another cluster or on an older timeline: a
-- stale old primary that a multi-host reconnect lands on. takeLease and renewLease write the
-- node's highest timeline here, for the operator (which side each node has seen).
--
-- No node reads it back as a floor, on purpose: on a stale old primary the row holds that
-- side's own old value, so it would catch nothing there; and after a dump and restore or a
-- pg_upgrade into a new cluster (timeline 1 again) a value carried over would refuse the new
-- cluster for good. NULL: no node of this version has held the worker yet, or its guard is
-- off. No function changes with this version; older nodes refuse this schema.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE worker ADD COLUMN timeline int CONSTRAINT worker_timeline_valid CHECK (timeline >= 1);
