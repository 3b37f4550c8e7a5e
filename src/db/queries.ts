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

/**
 * Splits a file of "-- name: x" blocks into named statements. A "-- fragment: y" block is no
 * statement: its text replaces `{{y}}` in the file's statements (so that two statements can
 * share a CTE list, e.g. the claim and the turnover that ends runs and claims in one).
 */
export function parseNamedQueries(text: string): Map<string, string> {
  const queries = new Map<string, string>();
  const fragments = new Map<string, string>();
  let target: Map<string, string> | undefined;
  let name: string | undefined;
  let body: string[] = [];
  const flush = (): void => {
    if (name !== undefined && target) target.set(name, body.join('\n').trim().replace(/;\s*$/, ''));
  };
  for (const line of text.split('\n')) {
    const match = /^--\s*(name|fragment):\s*(\w+)\s*$/.exec(line);
    if (match) {
      flush();
      target = match[1] === 'name' ? queries : fragments;
      name = match[2];
      body = [];
    } else if (name !== undefined) {
      body.push(line);
    }
  }
  flush();
  for (const [key, sql] of queries) {
    queries.set(key, sql.replace(/\{\{(\w+)\}\}/g, (match, fragment: string) => {
      if (fragment === 'schema') return match;
      const part = fragments.get(fragment);
      if (part === undefined) throw new Error(`query ${key}: no fragment ${fragment}`);
      return part;
    }));
  }
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
