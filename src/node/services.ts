/**
 * The one contract of every part of a node that has a life of its own (a connection, a
 * timer, a child process): start() begins it, stop() ends it, and once stop() has resolved
 * nothing of the part fires any more (no statement sent, no timer armed; a cycle in flight
 * arms nothing). Both are idempotent, and stop() before start() does nothing. Every part here
 * may be started again after stop(): it starts afresh (a new connection, a new child).
 * The idea is River's rivershared/startstop.
 */
export interface Service {
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

/** A service and the name it is logged and documented by (docs/node.md). */
export interface NamedService {
  name: string;
  service: Service;
}

/**
 * Starts the services in order, each once the one before it has started. A start that is
 * synchronous runs in the caller's turn (a term's parts are armed before anything else
 * happens). When one fails, those already started are stopped, in reverse, and its error
 * is thrown as it was (a node that cannot connect says why, in the driver's words).
 */
export async function startAll(services: readonly NamedService[]): Promise<void> {
  const started: NamedService[] = [];
  for (const entry of services) {
    try {
      const starting = entry.service.start();
      if (starting instanceof Promise) await starting;
    } catch (error) {
      await stopAll(started).catch(() => undefined);
      throw error;
    }
    started.push(entry);
  }
}

/**
 * Stops the services in reverse order, each once the one after it has stopped. Every one is
 * stopped even when one fails; the first failure is thrown then, naming the service.
 */
export async function stopAll(services: readonly NamedService[]): Promise<void> {
  let failure: Error | null = null;
  for (const entry of [...services].reverse()) {
    try {
      const stopping = entry.service.stop();
      if (stopping instanceof Promise) await stopping;
    } catch (error) {
      failure ??= new Error(`${entry.name} could not stop: ${(error as Error).message}`, { cause: error });
    }
  }
  if (failure) throw failure;
}

/**
 * Stops independent services at once: every stop() is called in this turn (in reverse order),
 * then all are awaited. For a term's parts: a stop that waits for one part's cycle in flight
 * must not leave another running, nor stop it late, after a new term has started it again.
 */
export async function stopAllAtOnce(services: readonly NamedService[]): Promise<void> {
  const stopping = [...services].reverse().map(async (entry) => {
    try {
      await entry.service.stop();
    } catch (error) {
      throw new Error(`${entry.name} could not stop: ${(error as Error).message}`, { cause: error });
    }
  });
  const results = await Promise.allSettled(stopping);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
