/**
 * Keeps the last `limit` bytes of a process's output, however much it writes: chunks are
 * dropped from the front as new ones arrive, so memory stays at about one limit per task.
 */
export class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;
  total = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.limit <= 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.chunks.length > 1 && this.size - this.chunks[0]!.length >= this.limit) {
      this.size -= this.chunks.shift()!.length;
    }
  }

  /** The tail as text PostgreSQL accepts: NUL bytes removed, invalid UTF-8 replaced. */
  toString(): string {
    if (this.size === 0) return '';
    let buffer = Buffer.concat(this.chunks, this.size);
    if (buffer.length > this.limit) buffer = buffer.subarray(buffer.length - this.limit);
    const text = buffer.toString('utf8').replace(/\0/g, '');
    return this.total > this.limit ? `[… ${this.total - this.limit} earlier bytes dropped]\n${text}` : text;
  }
}
