import type { NodeEvents, NodeState } from '../events.js';
import { StopCode } from './stop-code.js';

/** Where a node is in its life, told to its subscribers as it moves; and the stop code it obeys. */
export class NodeStatus {
  private current: NodeState = 'starting';
  /** Set by the first shutdown: nothing new is claimed or taken from then on. */
  stopping = false;
  /** The worker row's stop code as last read. */
  stopCode: StopCode = StopCode.run;
  private resolveExited: () => void = () => undefined;
  /** Resolves once the node has stopped. */
  readonly exited = new Promise<void>((resolve) => {
    this.resolveExited = resolve;
  });

  constructor(private readonly events: NodeEvents) {}

  get state(): NodeState {
    return this.current;
  }

  set state(state: NodeState) {
    if (state === this.current) return;
    this.current = state;
    this.events.publish('state', { state });
  }

  stopped(): void {
    this.state = 'stopped';
    this.resolveExited();
  }
}
