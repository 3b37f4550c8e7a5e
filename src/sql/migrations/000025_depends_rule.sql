-- Version 25: a dependent task says when it runs (issue 30, item 3).
--
-- task.depends_rule, read by task_deps_release's recount:
--   all_success  (the default, the seed's rule) every prerequisite ended CS; one that ends CF
--                or CC cancels it (CC 'dependency')
--   all_done     every prerequisite has ended, however (CS, CF, CC, or deleted)
--   any_failed   as soon as one prerequisite fails: CF, deleted, or CC 'dependency' because
--                of a failure above it; when all have ended and none failed, it ends CC
--                'dependency' without a process ("notify on failure")
-- NOT NULL with a default, so an INSERT that does not name it (the seed's) gets today's rule,
-- and a reader never has to read NULL as all_success. Adding it rewrites no row (PostgreSQL
-- 11+ stores the default in the catalog) and changes no existing task's behaviour.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task ADD COLUMN depends_rule text NOT NULL DEFAULT 'all_success'
  CONSTRAINT task_depends_rule_valid CHECK (depends_rule IN ('all_success', 'all_done', 'any_failed'));
