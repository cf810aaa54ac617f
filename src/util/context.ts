// Per-Docker-call context (request id, Neutron calls made) carried through async code, so the
// Neutron client can report its calls without every handler passing a logger around.
import { AsyncLocalStorage } from 'node:async_hooks';

export interface NeutronCallRecord {
  method: string;
  resource: string;
  status: number;
  ms: number;
}

export interface CallContext {
  requestId: string;
  handler: string;
  neutronCalls: NeutronCallRecord[];
  /** Time spent waiting for Neutron's agent (port ACTIVE), not working. */
  waitedMs?: number;
}

const storage = new AsyncLocalStorage<CallContext>();

export function runWithContext<T>(ctx: CallContext, fn: () => Promise<T>): Promise<T> {
  return storage.run(ctx, fn);
}

export function currentContext(): CallContext | undefined {
  return storage.getStore();
}

/** Runs background work (not part of any Docker call) so its Neutron calls are not billed to one. */
export function runDetached<T>(fn: () => Promise<T>): Promise<T> {
  return storage.exit(fn);
}
