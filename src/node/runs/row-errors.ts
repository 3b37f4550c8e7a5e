// Which database errors a row's own data causes, and a batch write that finds such rows by
// splitting (the result writer's and the claimer's turnover).

/**
 * SQLSTATE classes of errors that a row's own data causes, so the same write fails again
 * however often it is tried: data exceptions (22), integrity constraints (23), program limits
 * (54: stack depth, too many columns), errors raised by functions and triggers (P0, 2F, 38,
 * 39). A batch that fails with one is split until the rows that fail alone are found. The
 * others (connection 08, server 57/58/XX, resources 53, locks 55, serialization and deadlock
 * 40, privileges 42: the node's own setup) say nothing about a row: the batch is kept whole
 * and written again after a backoff, as before.
 */
const ROW_ERROR_CLASSES = new Set(['22', '23', '54', 'P0', '2F', '38', '39']);

/** True when the database refused a write for what a row holds (see ROW_ERROR_CLASSES). */
export function isRowError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && ROW_ERROR_CLASSES.has(code.slice(0, 2));
}

/**
 * Writes `items` with `write`; when the database refuses it for a row's data (isRowError),
 * writes each half on its own, and so on down, so every row that can be written is, in about
 * 2·log2(n) statements per bad row; each row that still fails alone goes to `rejected`.
 * Any other error is thrown (the caller keeps what was not written, and tries again).
 */
export async function writeBisected<T>(
  items: T[],
  write: (part: T[]) => Promise<void>,
  rejected: (item: T, error: Error) => Promise<void> | void,
): Promise<void> {
  if (items.length === 0) return;
  try {
    await write(items);
  } catch (error) {
    if (!isRowError(error)) throw error;
    if (items.length === 1) {
      await rejected(items[0]!, error as Error);
      return;
    }
    const half = Math.ceil(items.length / 2);
    await writeBisected(items.slice(0, half), write, rejected);
    await writeBisected(items.slice(half), write, rejected);
  }
}
