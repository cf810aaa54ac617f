// Neutron clean-up that Docker need not wait for. `docker network rm` (ReleasePool, then
// DeleteNetwork) returns once kuryr has checked that nothing of the user's keeps the network;
// deleting the warm ports, the subnets and subnetpools, then the network goes on here, one after
// another in the order Docker asked. `docker rm` (ReleaseAddress) returns once the endpoint's veth
// is gone; its port's DELETE (0.4-0.7 s on a busy neutron-server) runs here, a few at a time, and
// the network teardowns queued after it wait for it. The daemon waits for all of it at shutdown;
// what a crash interrupts is what `kuryr gc` finds (a network tagged for a Docker network that no
// longer exists, a port bound to an endpoint Docker no longer has).
import pLimit from 'p-limit';
import type { Port } from '../neutron/types.js';
import { runDetached } from '../util/context.js';
import { errorMessage } from '../util/errors.js';

/** Background port deletions at once: neutron-server has one API worker here. */
const PORT_DELETIONS_AT_ONCE = 4;

export class Teardowns {
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;
  /** Ports being deleted in the background, by id: the addresses they hold ("network|ip"). */
  private readonly deletions = new Map<string, { addresses: string[]; done: Promise<void> }>();
  private readonly deletionSlots = pLimit(PORT_DELETIONS_AT_ONCE);

  constructor(private readonly warn: (message: string, detail?: Record<string, unknown>) => void) {}

  /** Runs `work` after every teardown queued before it; failures are logged, never thrown. */
  queue(what: string, work: () => Promise<void>): void {
    this.pending++;
    this.tail = this.tail
      // A network goes after the ports Docker released on it (Neutron refuses it while they exist).
      .then(() => Promise.all([...this.deletions.values()].map((d) => d.done)))
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

  /**
   * Deletes a port Docker released, in the background; a second call for the same port while the
   * first runs (Docker replaying ReleaseAddress) joins it. Failures are logged, never thrown.
   */
  deletePort(
    port: Pick<Port, 'id' | 'network_id' | 'fixed_ips'>,
    what: string,
    work: () => Promise<void>,
  ): void {
    if (this.deletions.has(port.id)) return;
    const done = this.deletionSlots(() => runDetached(work))
      .catch((err) =>
        this.warn(`${what} failed; 'kuryr gc' removes what is left`, { err: errorMessage(err) }),
      )
      .finally(() => {
        if (this.deletions.get(port.id)?.done === done) this.deletions.delete(port.id);
      });
    const addresses = port.fixed_ips.map((f) => `${port.network_id}|${f.ip_address}`);
    this.deletions.set(port.id, { addresses, done });
  }

  /**
   * Resolves once no port being deleted holds this address: Docker may hand it out again the
   * moment it released it (`docker run --ip` right after `docker rm`).
   */
  async addressFreed(networkId: string, ip: string): Promise<void> {
    const address = `${networkId}|${ip}`;
    await Promise.all(
      [...this.deletions.values()].filter((d) => d.addresses.includes(address)).map((d) => d.done),
    );
  }

  /** How many teardowns and port deletions are queued or running. */
  get size(): number {
    return this.pending + this.deletions.size;
  }

  /** Resolves when everything queued so far is done (shutdown, tests). */
  async settled(): Promise<void> {
    await Promise.all([this.tail, ...[...this.deletions.values()].map((d) => d.done)]);
  }
}
