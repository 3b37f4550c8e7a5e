// `pg-tasks uninstall`: drops a pg-tasks schema and, when asked, the group roles of a prefix
// (docs/security.md, "Roles"; docs/deploy.md). Roles are cluster-wide and may serve other
// schemas and databases: PostgreSQL refuses to drop a role that still has privileges or owns
// objects anywhere in the cluster, and then nothing is dropped.
import type pg from 'pg';
import { loadStatements } from '../sql/queries/index.js';
import { quoteIdent } from './connection.js';
import { roleNames } from './roles.js';

export interface InstallInfo {
  schema: string;
  /** The schema exists and has pg-tasks' migrations table. */
  installed: boolean;
  /** The schema exists (installed or not). */
  schemaExists: boolean;
  tasks: number;
  workers: number;
  /** Workers a node holds the lease of now. */
  liveWorkers: Array<{ id: number; node_name: string | null }>;
  /** The roles of the prefix that exist (empty without a prefix). */
  roles: string[];
  /** Users granted one of those roles: they lose it with the role. */
  members: Array<{ role: string; member: string }>;
}

export interface UninstallResult {
  schemaDropped: boolean;
  rolesDropped: string[];
  /** The memberships dropped with the roles. */
  membershipsDropped: Array<{ role: string; member: string }>;
}

/** A refusal whose message is the whole story (the CLI prints it as one line). */
export class UninstallRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UninstallRefused';
  }
}

const DEPENDENT_OBJECTS = '2BP01'; // dependent_objects_still_exist
const NOT_ALLOWED = '42501'; // insufficient_privilege

/** What an uninstall of `schema` (and the roles of `rolePrefix`, when given) would drop. */
export async function describeInstall(client: pg.ClientBase, schema: string, rolePrefix: string | null): Promise<InstallInfo> {
  const q = loadStatements(schema, { named: false });
  const state = (await q.installState(client, { schema })).rows[0]!;
  const info: InstallInfo = { schema, installed: state.installed, schemaExists: state.schema_exists, tasks: 0, workers: 0, liveWorkers: [], roles: [], members: [] };
  if (state.installed) {
    const counts = (await q.installCounts(client)).rows[0]!;
    info.tasks = counts.tasks;
    info.workers = counts.workers;
    info.liveWorkers = (await q.liveWorkers(client)).rows;
  }
  if (rolePrefix !== null) {
    const names = Object.values(roleNames(rolePrefix));
    info.roles = (await q.existingRoles(client, { names })).rows.map((r) => r.name);
    info.members = (await q.outsideMembers(client, { names })).rows;
  }
  return info;
}

/**
 * Drops the schema (CASCADE: every table, function and policy in it) and, with a prefix, its
 * five roles, in one transaction under the migration lock: a refusal drops nothing. Refuses a
 * schema that exists but is not pg-tasks' (no migrations table), and, unless `force`, one
 * whose workers a node holds (it would fail, and its restart would migrate the schema back).
 */
export async function uninstall(client: pg.ClientBase, schema: string, options: { rolePrefix: string | null; force?: boolean }): Promise<UninstallResult> {
  await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [`pg-tasks:${schema}`]);
  try {
    const info = await describeInstall(client, schema, options.rolePrefix);
    if (info.schemaExists && !info.installed) {
      throw new UninstallRefused(`schema "${schema}" is not a pg-tasks schema (it has no migrations table): nothing dropped`);
    }
    if (info.liveWorkers.length > 0 && !options.force) {
      const held = info.liveWorkers.map((w) => `${w.id}${w.node_name ? ` (${w.node_name})` : ''}`).join(', ');
      throw new UninstallRefused(`nodes hold worker ${held} of schema "${schema}": stop them first (a node restarted with migrate on creates the schema again), or use --force`);
    }
    await client.query('BEGIN');
    try {
      if (info.installed) await client.query(`DROP SCHEMA ${quoteIdent(schema)} CASCADE`);
      if (info.roles.length > 0) await dropRoles(client, info.roles, schema);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
    return { schemaDropped: info.installed, rolesDropped: info.roles, membershipsDropped: info.members };
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [`pg-tasks:${schema}`]);
  }
}

async function dropRoles(client: pg.ClientBase, roles: string[], schema: string): Promise<void> {
  // Each alone, so that the refusal names the role; in the transaction, so that it undoes all.
  for (const role of roles) {
    try {
      await client.query(`DROP ROLE ${quoteIdent(role)}`);
    } catch (error) {
      const e = error as { code?: string; detail?: string; message: string };
      if (e.code === DEPENDENT_OBJECTS) {
        const where = (e.detail ?? '').split('\n').filter(Boolean).slice(0, 3).join('; ');
        throw new UninstallRefused(
          `nothing dropped: role ${role} is still used outside schema "${schema}" (${where || e.message}); uninstall those schemas first, or leave out --roles to keep the roles`,
        );
      }
      if (e.code === NOT_ALLOWED) {
        throw new UninstallRefused(`nothing dropped: you may not drop role ${role} (${e.message}); run it as a superuser or a CREATEROLE user with ADMIN OPTION on the roles, or leave out --roles`);
      }
      throw error;
    }
  }
}
