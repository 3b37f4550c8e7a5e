import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { quoteIdent } from './connection.js';

// src/db and dist/db both sit two levels below the package root; the SQL ships in src/sql.
export const SQL_DIR = fileURLToPath(new URL('../../src/sql/', import.meta.url));

/** A named statement ready to send: `:name` placeholders numbered $1, $2… in order of first use. */
export interface CompiledQuery {
  text: string;
  /** The parameter names, in $n order. */
  params: string[];
}

/** Splits a file of "-- name: x" blocks into named statements. */
export function parseNamedQueries(text: string): Map<string, string> {
  const queries = new Map<string, string>();
  let name: string | undefined;
  let body: string[] = [];
  const flush = (): void => {
    if (name !== undefined) queries.set(name, body.join('\n').trim().replace(/;\s*$/, ''));
  };
  for (const line of text.split('\n')) {
    const match = /^--\s*name:\s*(\w+)\s*$/.exec(line);
    if (match) {
      flush();
      name = match[1];
      body = [];
    } else if (name !== undefined) {
      body.push(line);
    }
  }
  flush();
  return queries;
}

/**
 * Turns `:name` placeholders into $n. Comments, string literals, quoted identifiers and `::`
 * casts are left as they are, so a comment may name a parameter without becoming one.
 */
export function compilePlaceholders(sql: string): CompiledQuery {
  const params: string[] = [];
  const token = /--[^\n]*|'(?:[^']|'')*'|"(?:[^"]|"")*"|::|:([a-z][A-Za-z0-9]*)|\$(\d+)/g;
  const text = sql.replace(token, (match, name: string | undefined, position: string | undefined) => {
    if (position !== undefined) throw new Error(`positional parameter $${position}: name it (:name)`);
    if (name === undefined) return match;
    let n = params.indexOf(name);
    if (n < 0) n = params.push(name) - 1;
    return `$${n + 1}`;
  });
  return { text, params };
}

const cache = new Map<string, Map<string, CompiledQuery>>();

/** Every runtime statement, by name, with the schema identifier substituted once. */
export function loadQueries(schema: string): ReadonlyMap<string, CompiledQuery> {
  const cached = cache.get(schema);
  if (cached) return cached;
  const dir = path.join(SQL_DIR, 'queries');
  const all = new Map<string, CompiledQuery>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.sql')).sort()) {
    for (const [name, sql] of parseNamedQueries(readFileSync(path.join(dir, file), 'utf8'))) {
      if (all.has(name)) throw new Error(`query ${name} is defined twice (${file})`);
      // A function, not a string: `$$` and `$&` in a replacement string are patterns.
      all.set(name, compilePlaceholders(sql.replaceAll('{{schema}}', () => quoteIdent(schema))));
    }
  }
  cache.set(schema, all);
  return all;
}
