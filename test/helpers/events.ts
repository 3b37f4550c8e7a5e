// Waiting for what a node says happened (its typed events), not for time: a test that asserts
// that something did not happen waits for the event that shows the node had its chance
// (a renewal, a claim round, a schedule fire). The model: River's testSignals.
import type { NodeEventMap } from '../../src/node/events.js';
import type { TaskNode } from '../../src/node/node.js';

// The listeners below are cast: @types/node's EventEmitter<T> cannot see that a listener of
// Payload<K> is one of K's (as in NodeEvents.publish).
type Payload<K extends keyof NodeEventMap> = NodeEventMap[K][0];

/**
 * Resolves with the node's next `name` event that `match` accepts. The timeout is a liveness
 * bound only: a node that has not said it in that long is broken, not slow.
 */
export function nextEvent<K extends keyof NodeEventMap>(
  node: TaskNode,
  name: K,
  match: (event: Payload<K>) => boolean = () => true,
  timeoutMs = 30_000,
): Promise<Payload<K>> {
  return new Promise((resolve, reject) => {
    const listener = (event: Payload<K>): void => {
      if (!match(event)) return;
      done();
      resolve(event);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for the node's ${name} event`));
    }, timeoutMs);
    function done(): void {
      clearTimeout(timer);
      node.events.off(name, listener as never);
    }
    node.events.on(name, listener as never);
  });
}

/** Counts the node's `name` events from now on; stop() unsubscribes. */
export function countEvents<K extends keyof NodeEventMap>(node: TaskNode, name: K): { readonly count: number; stop(): void } {
  let count = 0;
  const listener = (): void => {
    count++;
  };
  node.events.on(name, listener as never);
  return {
    get count() {
      return count;
    },
    stop: () => node.events.off(name, listener as never),
  };
}
