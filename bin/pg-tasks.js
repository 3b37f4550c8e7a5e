#!/usr/bin/env node
// Runs the compiled CLI when it was built (npm run build), else the TypeScript sources
// through tsx, so a fresh clone works with no build step.
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
let main;
if (existsSync(compiled)) {
  main = await import(compiled.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  main = await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
process.exitCode = await main.run(process.argv.slice(2));
