// The group roles of an installation (docs/security.md, "Roles"): created by `pg-tasks
// migrate`, then granted their privileges on the schema (src/sql/roles.sql).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { quoteIdent } from './connection.js';
import { SQL_DIR } from './queries.js';

// Not pg_tasks_, the name: PostgreSQL reserves every role name that starts with
// "pg_" ("role name "pg_tasks_reader" is reserved", for superusers too).
export const DEFAULT_ROLE_PREFIX = 'pgtasks_';
export const ROLE_KINDS = ['reader', 'submitter', 'operator', 'admin', 'node'] as const;
export type RoleKind = (typeof ROLE_KINDS)[number];
export type RoleNames = Record<RoleKind, string>;

// Each role is a member of the one it extends: what submitter may, operator may, and so on.
// node extends reader only: a node does not add, queue or cancel tasks on anyone's behalf.
// submitter is not a member of reader: reader reads every task (a row-level policy for
// reader's members), a submitter only its own; it is granted what else reader reads itself.
const MEMBERSHIPS: [member: RoleKind, of: RoleKind][] = [
  ['operator', 'submitter'],
  ['admin', 'operator'],
  ['node', 'reader'],
];

// Granted by versions before owners (migration 21), taken back by the next migrate.
const FORMER_MEMBERSHIPS: [member: RoleKind, of: RoleKind][] = [['submitter', 'reader']];

// 63 bytes is PostgreSQL's limit on a name; the longest suffix is "submitter" (9).
const MAX_PREFIX = 63 - 'submitter'.length;

/** The prefix given (--role-prefix, PGTASKS_ROLE_PREFIX), checked; a clear error otherwise. */
export function checkRolePrefix(prefix: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(prefix) || prefix.length > MAX_PREFIX) {
    throw new Error(
      `invalid role prefix "${prefix}": use lower-case letters, digits and _, starting with a letter or _, at most ${MAX_PREFIX} characters (e.g. acme_tasks_)`,
    );
  }
  if (prefix.startsWith('pg_')) {
    throw new Error(`invalid role prefix "${prefix}": PostgreSQL reserves role names that start with "pg_" (the default is ${DEFAULT_ROLE_PREFIX})`);
  }
  return prefix;
}

/** The prefix in force: the one given, else PGTASKS_ROLE_PREFIX, else pgtasks_. */
export function rolePrefix(given?: string): string {
  return checkRolePrefix(given ?? process.env.PGTASKS_ROLE_PREFIX ?? DEFAULT_ROLE_PREFIX);
}

export function roleNames(prefix: string): RoleNames {
  const names = {} as RoleNames;
  for (const kind of ROLE_KINDS) names[kind] = `${prefix}${kind}`;
  return names;
}

export interface EnsureRolesResult {
  /** Roles this call created. */
  created: string[];
  /** True when the privileges of src/sql/roles.sql were (re)applied. */
  granted: boolean;
  /** One line each: what could not be done, and what to do about it. */
  warnings: string[];
}

const DUPLICATE = new Set(['42710', '23505']); // duplicate_object, unique_violation
const NOT_ALLOWED = '42501'; // insufficient_privilege

function code(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

/**
 * Creates the roles that are missing (with `create`), makes each a member of the one it
 * extends, and applies their privileges on `schema`. Roles are cluster-wide: a migrator of
 * another database may create the same role at the same moment, which is success. Without
 * CREATEROLE, or when the connected user does not own the tables, it warns and goes on: the
 * schema works as before for the users that already use it. Callers hold the migration lock.
 */
export async function ensureRoles(
  client: pg.ClientBase,
  schema: string,
  prefix: string,
  options: { create: boolean },
): Promise<EnsureRolesResult> {
  const names = roleNames(checkRolePrefix(prefix));
  const result: EnsureRolesResult = { created: [], granted: false, warnings: [] };
  const who = await client.query<{ user: string; owns: boolean }>(
    `SELECT current_user AS user,
            coalesce((SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass($1)), false) AS owns`,
    [`${quoteIdent(schema)}.task`],
  );
  const { user, owns } = who.rows[0]!;
  if (!owns) {
    result.warnings.push(
      `roles not set up: ${user} does not own the tables of schema "${schema}"; run "pg-tasks migrate" as their owner to create and grant the ${prefix}* roles`,
    );
    return result;
  }

  const missing: string[] = [];
  for (const kind of ROLE_KINDS) {
    const name = names[kind];
    if (await roleExists(client, name)) continue;
    if (!options.create) {
      missing.push(name);
      continue;
    }
    try {
      await client.query(`CREATE ROLE ${quoteIdent(name)} NOLOGIN`);
      result.created.push(name);
    } catch (error) {
      if (DUPLICATE.has(code(error) ?? '')) continue; // another migrator, maybe of another database
      if (code(error) !== NOT_ALLOWED) throw error;
      missing.push(name);
    }
  }
  if (missing.length > 0) {
    result.warnings.push(
      `roles not set up: ${missing.join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist and ${user} may not create roles (CREATEROLE); run "pg-tasks migrate" once as a user who may`,
    );
    return result;
  }

  for (const [member, of] of MEMBERSHIPS) await grantMembership(client, names[of], names[member]);
  for (const [member, of] of FORMER_MEMBERSHIPS) {
    if (await revokeMembership(client, names[of], names[member])) continue;
    result.warnings.push(
      `${names[member]} is still a member of ${names[of]}, so submitters read every task: ${user} may not revoke it; a superuser can (REVOKE ${names[of]} FROM ${names[member]})`,
    );
  }

  const sql = readFileSync(path.join(SQL_DIR, 'roles.sql'), 'utf8');
  const text = sql.replace(/\{\{(schema|reader|submitter|operator|admin|node)\}\}/g, (_, key: string) =>
    quoteIdent(key === 'schema' ? schema : names[key as RoleKind]),
  );
  await client.query('BEGIN');
  try {
    await client.query(text);
    // The recover policy is the admin's to replace: it owns the function. Changing an owner
    // takes membership in the new owner role, which a superuser has and a CREATEROLE user
    // may not; then the migrator keeps it and says so.
    await client.query('SAVEPOINT recover_owner');
    try {
      for (const signature of ['int', 'int, bigint']) {
        await client.query(`ALTER FUNCTION ${quoteIdent(schema)}.recover_worker_tasks(${signature}) OWNER TO ${quoteIdent(names.admin)}`);
      }
    } catch (error) {
      if (code(error) !== NOT_ALLOWED) throw error;
      await client.query('ROLLBACK TO SAVEPOINT recover_owner');
      result.warnings.push(
        `${names.admin} cannot replace recover_worker_tasks: ${user} may not give it to ${names.admin}; a superuser can (ALTER FUNCTION ... OWNER TO ${names.admin})`,
      );
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw new Error(`could not grant the ${prefix}* roles their privileges: ${(error as Error).message}`, { cause: error });
  }
  result.granted = true;
  return result;
}

async function roleExists(client: pg.ClientBase, name: string): Promise<boolean> {
  const { rows } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
  return rows.length > 0;
}

async function isMember(client: pg.ClientBase, role: string, member: string): Promise<boolean> {
  const { rows } = await client.query(
    `SELECT 1 FROM pg_auth_members m
       JOIN pg_roles r ON r.oid = m.roleid
       JOIN pg_roles u ON u.oid = m.member
      WHERE r.rolname = $1 AND u.rolname = $2`,
    [role, member],
  );
  return rows.length > 0;
}

/** True when `member` is no longer a member of `role` (PostgreSQL 16 revokes only the grants the revoker may). */
async function revokeMembership(client: pg.ClientBase, role: string, member: string): Promise<boolean> {
  if (!(await isMember(client, role, member))) return true;
  try {
    await client.query(`REVOKE ${quoteIdent(role)} FROM ${quoteIdent(member)}`);
  } catch (error) {
    if (code(error) !== NOT_ALLOWED) throw error;
  }
  return !(await isMember(client, role, member));
}

async function grantMembership(client: pg.ClientBase, role: string, member: string): Promise<void> {
  if (await isMember(client, role, member)) return;
  try {
    await client.query(`GRANT ${quoteIdent(role)} TO ${quoteIdent(member)}`);
  } catch (error) {
    // A migrator of another database granted it at the same moment: the catalog row is
    // there (unique_violation), or was being written ("tuple concurrently updated").
    if (DUPLICATE.has(code(error) ?? '') || (await isMember(client, role, member))) return;
    throw error;
  }
}
