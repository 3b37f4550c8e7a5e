import type { Command } from 'commander';
import { TaskClient } from '../client/client.js';
import { resolveSchema } from '../db/connection.js';
import type { CliIo } from './io.js';

export interface GlobalOptions {
  schema?: string;
}

export interface CliContext {
  io: CliIo;
  /** The schema chosen by --schema, PGTASKS_SCHEMA or the default. */
  schema(): string;
  /** Runs fn with a client, closing it afterwards. */
  /** sessionUrl: where the client LISTENs (default PGTASKS_SESSION_URL, then DATABASE_URL). */
  withClient<T>(fn: (client: TaskClient) => Promise<T>, options?: { sessionUrl?: string | undefined }): Promise<T>;
}

export function makeContext(program: Command, io: CliIo): CliContext {
  const schema = (): string => resolveSchema(program.opts<GlobalOptions>().schema);
  return {
    io,
    schema,
    async withClient(fn, options = {}) {
      const client = new TaskClient({ schema: schema(), sessionUrl: options.sessionUrl });
      try {
        return await fn(client);
      } finally {
        await client.close();
      }
    },
  };
}
