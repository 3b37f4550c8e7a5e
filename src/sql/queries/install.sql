-- What `pg-tasks uninstall` looks at before it drops a schema and, with --roles, the group
-- roles (src/db/uninstall.ts).

-- name: installState
-- installed: the schema has pg-tasks' migrations table. A schema without one is not ours to drop.
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :schema) AS schema_exists,
       to_regclass(quote_ident(:schema) || '.migrations') IS NOT NULL AS installed;

-- name: installCounts
SELECT (SELECT count(*) FROM {{schema}}.task)::int AS tasks,
       (SELECT count(*) FROM {{schema}}.worker)::int AS workers;

-- name: liveWorkers
-- Workers whose lease a node holds now: dropping the schema under it fails its next statement,
-- and its restart (migrate on, the default) would create the schema again.
SELECT id, node_name
  FROM {{schema}}.worker
 WHERE active AND locked_until > now()
 ORDER BY id;

-- name: existingRoles
SELECT rolname AS name FROM pg_roles WHERE rolname = ANY(:names::text[]) ORDER BY rolname;

-- name: outsideMembers
-- The users granted one of these roles (not the roles' memberships in each other): dropping
-- the role takes the membership away from them.
SELECT r.rolname AS role, u.rolname AS member
  FROM pg_auth_members m
  JOIN pg_roles r ON r.oid = m.roleid
  JOIN pg_roles u ON u.oid = m.member
 WHERE r.rolname = ANY(:names::text[])
   AND NOT u.rolname = ANY(:names::text[])
 ORDER BY u.rolname, r.rolname;
