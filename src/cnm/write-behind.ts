// Neutron writes Docker need not wait for (a warm port's endpoint identity, and its reset when the
// port goes back to the warm pool): run a little later, in order per port, retried on 5xx and
// dropped connections. Each write sets the same fields in full, so a newer write for a port
// replaces one not yet started (a recycled port taken again before its reset was written costs no
// reset at all). Calls about the same port start the pending write at once and wait for it
// (`settled`), so nothing reads a port half-written.
import pLimit from 'p-limit';
import { NeutronApiError } from '../neutron/errors.js';
import { runDetached } from '../util/context.js';
import { HostActivity } from './host-activity.js';

/**
 * A delayed write waits for a quiet moment at most this long after it was queued. A burst of 20
 * starts on a 2-core host lasts 10-20 s while neutron-server works for it; with 10 s, identity
 * writes landed inside it (measured: docs/performance.md).
 */
export const MAX_DEFER_MS = 30_000;

/**
 * Writes in flight at once. A long burst holds every write back until MAX_DEFER_MS, and then all
 * of them were due together: 40 concurrent PUTs to one neutron-server API worker made a start's
 * port POST take 35 s (measured: docs/performance.md).
 */
const WRITES_AT_ONCE = 4;

export class WriteBehind {
  /** The last queued write per port, and how to start the waiting one early. */
  private readonly writes = new Map<string, Promise<void>>();
  private readonly startNow = new Map<string, () => void>();
  /** Ports whose writes not yet started are dropped (their endpoint is going). */
  private readonly cancelled = new Set<string>();
  /** The newest write queued per port: older ones not yet started are skipped. */
  private readonly newest = new Map<string, number>();
  private queued = 0;
  private readonly inFlight = pLimit(WRITES_AT_ONCE);

  /** Delayed writes wait until starts on this host pause (the warm pool's refills too). */
  constructor(private readonly activity = new HostActivity()) {}

  /**
   * Queues `write` for `portId`, due once starts on this host paused for `delayMs`; failures are
   * reported through `onFail`. A start's write counts as its activity (`asStart`); a removal's
   * (a reset) does not.
   */
  enqueue(
    portId: string,
    what: string,
    write: () => Promise<unknown>,
    onFail: (msg: string) => void,
    delayMs = 0,
    asStart = true,
  ): void {
    const previous = this.writes.get(portId) ?? Promise.resolve();
    const id = ++this.queued;
    this.newest.set(portId, id);
    // The write this one replaces, if not started, is due now: it only steps aside.
    this.startNow.get(portId)?.();
    const attempt = async () => {
      if (this.cancelled.has(portId) || this.newest.get(portId) !== id) return;
      for (let i = 0; ; i++) {
        try {
          await write();
          return;
        } catch (err) {
          if (err instanceof NeutronApiError && err.isNotFound) return; // the port went meanwhile
          if (i >= 2 || (err instanceof NeutronApiError && err.httpStatus < 500)) {
            onFail(`${what} failed: ${err instanceof Error ? err.message : String(err)}`);
            return;
          }
          await new Promise((r) => setTimeout(r, 500 * (i + 1)));
          if (this.newest.get(portId) !== id) return; // a newer write says it all
        }
      }
    };
    if (asStart) this.activity.started();
    const due = new Promise<void>((resolve) => {
      // A burst's writes wait for its end, when neutron-server's work no longer competes with the
      // starts, but no longer than MAX_DEFER_MS.
      const cancel = this.activity.afterQuiet(delayMs, MAX_DEFER_MS, resolve);
      this.startNow.set(portId, () => {
        cancel();
        resolve();
      });
    });
    const done: Promise<void> = runDetached(() => previous.then(() => due).then(() => this.inFlight(attempt)))
      .catch(() => undefined) // attempt() reports through onFail; nothing may reject unhandled
      .finally(() => {
        if (this.writes.get(portId) === done) {
          this.writes.delete(portId);
          this.startNow.delete(portId);
          this.newest.delete(portId);
        }
      });
    this.writes.set(portId, done);
  }

  /** Starts this port's pending writes now and resolves when they are done. */
  async settled(portId: string): Promise<void> {
    this.startNow.get(portId)?.();
    await this.writes.get(portId);
  }

  /**
   * Drops this port's writes that have not started (its endpoint is being deleted, and the port
   * with it: writing its identity first would only make DeleteEndpoint wait) and waits for one
   * in flight.
   */
  async cancel(portId: string): Promise<void> {
    this.cancelled.add(portId);
    try {
      await this.settled(portId);
    } finally {
      this.cancelled.delete(portId);
    }
  }

  /** Starts all pending writes now and resolves when they are done (shutdown). */
  async settleAll(): Promise<void> {
    for (const start of this.startNow.values()) start();
    await Promise.all(this.writes.values());
  }
}
