import { shown } from './parse.js';

// Commander's usage errors, reworded as ours: one line, the flag first, as every other
// `pg-tasks: …` error reads. Commander words them "error: option '--timeout <duration>'
// argument '5' is invalid. <our parser's message>", with a suggestion on a second line.

/** The long flag of commander's flags text: "-f, --follow" → "--follow". */
function flagOf(flags: string): string {
  return /--[\w-]+/.exec(flags)?.[0] ?? flags.split(/[ ,]/)[0]!;
}

/**
 * One of commander's error messages (as passed to outputError) as one line without
 * "error: "; `command` is the command path ("pg-tasks ls") for the usage hint.
 */
export function usageMessage(raw: string, command: string): string {
  const text = raw.replace(/\n+$/, '').replace(/^error: /, '');
  const hint = ` (see ${command} --help)`;
  // "\n(Did you mean ls?)": commander's suggestion, on the same line.
  const suggested = /^([\s\S]*?)\n\(Did you mean ([\s\S]*)\?\)$/.exec(text);
  if (suggested) return `${suggested[1]} (did you mean ${suggested[2]}?)`;

  const invalid = /^(option|command-argument value) '([\s\S]*?)' (?:argument|value|is invalid for argument) '([\s\S]*?)'(?: from env '([^']+)')?(?: is invalid)?\. ([\s\S]*)$/.exec(text);
  if (invalid) {
    const [, kind, first, second, env, rest] = invalid as unknown as [string, string, string, string, string | undefined, string];
    // An option: first is its flags, second the value; an argument: first is the value, second its name.
    const name = kind === 'option' ? flagOf(first) : `<${second}>`;
    const value = kind === 'option' ? second : first;
    const from = env ? ` (from ${env})` : '';
    const choices = /^Allowed choices are ([\s\S]*)\.$/.exec(rest);
    if (choices) return `${name}: ${shown(value)} is not one of ${choices[1]}${from}`;
    // Our parsers name the flag themselves in some messages ("--group must be an integer").
    if (kind === 'option' && rest.startsWith(`${name} `)) return `${rest}${from}`;
    return kind === 'option' ? `${name}: ${rest}${from}` : rest;
  }
  const missingValue = /^option '([^']+)' argument missing$/.exec(text);
  if (missingValue) return `${flagOf(missingValue[1]!)}: missing its value (${missingValue[1]})`;
  const required = /^required option '([^']+)' not specified$/.exec(text);
  if (required) return `${flagOf(required[1]!)} is required (${required[1]})`;
  if (/^(unknown (command|option)|missing required argument|too many arguments)/.test(text)) return text + hint;
  return text;
}
