#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by npm run build and shipped in the package) with plain
// node. Only in a clone that was never built does it fall back to the TypeScript sources
// through tsx, a dev dependency: an installed package never loads it.
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
let main;
if (existsSync(compiled)) {
  main = await import(compiled.href);
} else {
  try {
    const { register } = await import('tsx/esm/api');
    register();
  } catch {
    process.stderr.write('pg-tasks: dist/ is not built and tsx is not installed: run npm ci && npm run build\n');
    process.exit(1);
  }
  main = await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
process.exitCode = await main.run(process.argv.slice(2));
