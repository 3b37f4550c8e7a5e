/**
 * W3C trace context (https://www.w3.org/TR/trace-context/#traceparent-header): what a task
 * gets in TRACEPARENT, and what a submitter may put in params.traceparent. Plain string work,
 * so that a node without tracing never loads the OpenTelemetry SDK.
 */
export interface TraceParent {
  /** 32 lowercase hex digits, not all zero. */
  traceId: string;
  /** 16 lowercase hex digits, not all zero: the parent span. */
  spanId: string;
  /** The trace flags byte (bit 0: sampled). */
  flags: number;
}

// version-traceid-parentid-flags. Version 00 has exactly these four fields; a later version
// may append more after a '-', which a reader of version 00 ignores (the spec's forward rule).
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** The longest value read: the header is 55 characters in version 00. */
const MAX_LENGTH = 512;

/** A valid traceparent, or null for anything else (not a string, upper case, all-zero ids, version ff). */
export function parseTraceParent(value: unknown): TraceParent | null {
  if (typeof value !== 'string' || value.length > MAX_LENGTH) return null;
  const m = TRACEPARENT.exec(value);
  if (!m) return null;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return null;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return null;
  return { traceId, spanId, flags: parseInt(flags, 16) };
}

/** "00-<trace id>-<span id>-<flags>", as TRACEPARENT carries it. */
export function formatTraceParent(context: TraceParent): string {
  return `00-${context.traceId}-${context.spanId}-${(context.flags & 0xff).toString(16).padStart(2, '0')}`;
}
