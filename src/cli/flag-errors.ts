// The database words a refusal in its columns (depends_on, params, shed_cron); the CLI user
// gave flags. These name the flag instead, as commander's errors do: "--after: …".

const BY_FLAG: Array<[RegExp, (m: RegExpExecArray) => string]> = [
  [/^depends_on names task (\d+), which does not exist$/, (m) => `--after: task ${m[1]} does not exist`],
  // Only an insert names itself, by guessing the id it is about to get.
  [/^task (\d+) can't depend on itself$/, (m) => `--after: task ${m[1]} is the one being added: it can't depend on itself`],
  [/^depends_on names (\d+) tasks: at most (\d+)$/, (m) => `--after: ${m[1]} tasks: at most ${m[2]}`],
  [/^a chain of prerequisites may be at most (\d+) deep: this depends_on makes it deeper$/, (m) => `--after: a chain of prerequisites may be at most ${m[1]} deep: these make it deeper`],
  [/^params is ([\s\S]*)$/, (m) => `--params: ${m[1]}`],
  [/^cwd is ([\s\S]*)$/, (m) => `--cwd: ${m[1]}`],
  [/^invalid cron expression /, (m) => `--cron: ${m.input}`],
  [/^unknown time zone /, (m) => `--tz: ${m.input}`],
];

/** A database refusal as the CLI words it: the flag the column came from, when there is one. */
export function nameFlag(message: string): string {
  for (const [pattern, word] of BY_FLAG) {
    const match = pattern.exec(message);
    if (match) return word(match);
  }
  return message;
}
