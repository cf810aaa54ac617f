// Neutron clean-up that Docker need not wait for. `docker network rm` (ReleasePool, then
// DeleteNetwork) returns once kuryr has checked that nothing of the user's keeps the network;
// deleting the warm ports, the subnets and subnetpools, then the network goes on here, one after
// another in the order Docker asked. The daemon waits for it at shutdown; what a crash interrupts
// is what `kuryr gc` finds (a network tagged for a Docker network that no longer exists).
import { runDetached } from '../util/context.js';
import { errorMessage } from '../util/errors.js';

export class Teardowns {
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;

  constructor(private readonly warn: (message: string, detail?: Record<string, unknown>) => void) {}

  /** Runs `work` after every teardown queued before it; failures are logged, never thrown. */
  queue(what: string, work: () => Promise<void>): void {
    this.pending++;
    this.tail = this.tail
      .then(() => runDetached(work))
      .catch((err) =>
        this.warn(`${what} failed; 'kuryr gc' removes what is left`, { err: errorMessage(err) }),
      )
      .finally(() => {
        this.pending--;
      });
  }

  /**
   * Like `queue`, after `first` (already started: a warm pool being drained, which closes the
   * pool at once) has settled; its failure is reported like the work's.
   */
  queueAfter(what: string, first: Promise<unknown>, work: () => Promise<void>): void {
    first.catch(() => undefined); // awaited, and reported, below
    this.queue(what, async () => {
      await first;
      await work();
    });
  }

  /** Whether clean-up is still going on (new work that depends on it must queue too). */
  get busy(): boolean {
    return this.pending > 0;
  }

  /** How many teardowns are queued or running. */
  get size(): number {
    return this.pending;
  }

  /** Resolves when everything queued so far is done (shutdown, tests). */
  settled(): Promise<void> {
    return this.tail;
  }
}
