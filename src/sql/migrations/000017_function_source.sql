-- Version 17: the functions and triggers leave the migrations. Their current text is one file
-- each in src/sql/functions, which the migrator applies after the migrations whenever a
-- file's text changed; this table records what it applied. From here on a migration changes
-- tables, indexes and data only (src/sql/README.md).

SET LOCAL search_path TO {{schema}}, pg_catalog;

CREATE TABLE function_source (
  -- The file's name, src/sql/functions/<name>.sql, and the name of its function(s).
  name       text        PRIMARY KEY,
  -- sha256 of the file's text when it was applied (or, for a user's own policy, found kept).
  checksum   text        NOT NULL,
  -- md5 of pg_get_functiondef of what the file installed: a user-replaceable function whose
  -- definition is still this one is pg-tasks' own, and is replaced when its file changes.
  -- null: the user's own was kept.
  definition text,
  applied_at timestamptz NOT NULL DEFAULT now()
);
