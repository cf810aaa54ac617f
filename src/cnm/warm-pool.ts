// A warm pool of Neutron ports per Docker network on this host (the port-pool idea of
// kuryr-kubernetes, applied to Docker): ports created ahead of containers with Neutron's bulk
// create, bound to this host, veth plugged, wired ACTIVE by the L2 agent. RequestAddress then takes
// a port from memory instead of creating one and waiting for the agent.
//
// Pool ports are named POOL_PORT_NAME and bound to this host, so Neutron alone says which are
// pool ports: a restarted daemon adopts them, `kuryr gc` knows them. They are drained when their
// Docker network goes (DeleteNetwork, ReleasePool) and on shutdown.

import { randomUUID } from 'node:crypto';
import pLimit from 'p-limit';
import type { Port } from '../neutron/types.js';
import { runDetached } from '../util/context.js';
import { errorMessage } from '../util/errors.js';
import { HostActivity } from './host-activity.js';
import { dockerIdTags, POOL_PORT_NAME } from './naming.js';
import type { PortBinding } from './port-binding.js';
import type { WriteBehind } from './write-behind.js';

/** What one pool's ports are made for: a Docker network's subnets (one per address family). */
export interface PoolSpec {
  networkId: string;
  subnetIds: string[];
}

/** Neutron and host operations the pool needs (real: `neutronPoolBackend`; tests: a fake). */
export interface PoolBackend {
  /**
   * Creates `count` ports bound to this host with an address in each subnet, in one request,
   * marked with `batch` (their description) so a request that timed out can find its own ports.
   */
  create(spec: PoolSpec, count: number, batch: string): Promise<Port[]>;
  /** Makes their host side (veth, plugged for the vif_type). */
  plug(ports: Port[]): Promise<void>;
  /** Deletes a port and its host side. */
  remove(port: Port): Promise<void>;
  /** This host's pool ports as Neutron has them, optionally only one network's or one batch's. */
  listMine(filter?: { networkId?: string; batch?: string }): Promise<Port[]>;
  /** Resolves with the port's status once ACTIVE, or the last status seen when the wait ends. */
  waitActive(portId: string): Promise<string>;
  /**
   * A port a container had, made a pool port again: its host side kept (the veth plugged, marked
   * as the pool's) and its endpoint identity reset in Neutron behind. Undefined when it cannot be
   * kept (its veth is gone, or it still has a security group of the container's).
   */
  reuse(port: Port): Port | undefined;
  /**
   * The port was given to an endpoint, not yet recorded in Neutron (its veth records the endpoint,
   * or a container holds it): not free, whatever Neutron says.
   */
  claimed(port: Port): boolean;
}

export interface WarmPoolSettings {
  enabled: boolean;
  /** Ports kept ready per Docker network: fixed (> 0), or 0: sized by demand (below). */
  size: number;
  /** Demand sizing: an idle network holds minSize ports; recent takes grow it up to maxSize. */
  minSize: number;
  maxSize: number;
  /** Most pool ports on this host, over all networks (ready and being made). */
  maxPorts: number;
  /** Takes within this window count as recent demand. */
  demandWindowMs: number;
  /** A pool nobody took from for this long gives back its ports beyond minSize. */
  idleMs: number;
  /**
   * Ports containers gave back beyond the pool's bound (size, or maxSize) are kept until nobody
   * took from the pool for this long, then deleted: not during the burst that follows a removal.
   */
  trimAfterMs: number;
  /** Most ports made by one bulk request. */
  batch: number;
  /** After a failed refill, how long before trying again. */
  retryMs: number;
  /** How long after a take the refill starts (0: at once). */
  refillDelayMs: number;
  /**
   * How long a previous run's ports found at start-up are held before they are handed out or
   * deleted, unless a start on their network comes first (0: at once). See `adopt`.
   */
  adoptHoldMs: number;
}

export interface WarmPoolHooks {
  warn(message: string, detail?: Record<string, unknown>): void;
  taken?(hit: boolean): void;
  /** A port it handed out came back from Docker: kept, or left to be deleted. */
  returned?(kept: boolean): void;
}

interface Ready {
  port: Port;
  active: boolean;
}

interface Pool {
  key: string;
  spec: PoolSpec;
  /** Docker network this pool serves, when known (registered by CreateNetwork). */
  dockerNetworkId?: string;
  ready: Ready[];
  /** The refill loop, when it runs. */
  filling?: Promise<void>;
  /** Batches made for starts that outgrew the one in flight (a burst), when any run. */
  extra: Set<Promise<void>>;
  /** Ports being made for this pool (every batch in flight). */
  making: number;
  /** Cancels the pending refill (or a burst's gathering pause). */
  cancelRefill?: () => void;
  closed: boolean;
  retryAt: number;
  /** When ports were taken, within the demand window (demand sizing). */
  takes: number[];
  lastUsed: number;
  /** Starts that found the pool empty, waiting for the batch being made (a burst). */
  waiters: Waiter[];
  /** A burst's first start is waiting a moment for the others before the batch is asked for. */
  gathering?: boolean;
  /** The same, for a batch of its own while another is in flight. */
  gatheringExtra?: boolean;
}

interface Waiter {
  resolve: (port: Port | undefined) => void;
  timer: NodeJS.Timeout;
}

const REMOVALS_AT_ONCE = 8;
/** How long a burst's first start waits for the others before one batch is made for all. */
const BURST_GATHER_MS = 30;
/**
 * Bulk creates in flight at once for one pool's waiting starts: a burst that outgrows the batch
 * being made does not wait for it to finish before its own is asked for (Neutron makes a batch of
 * 10 in 1-3 s; batches one after another made a burst of 20 take 4-5 of them).
 */
const BATCHES_AT_ONCE = 3;
const OWNED_PRUNE_AT = 1_000;
/**
 * A refill waits for a quiet host at most this long after the take that asked for it (as long as
 * identity writes: a burst of 20 starts lasts 10-20 s here, and ports given back by removed
 * containers refill a pool without any Neutron work).
 */
const REFILL_DEFER_MAX_MS = 30_000;
const OWNED_KEEP_MS = 10 * 60_000;

const keyOf = (subnetIds: string[]) => [...subnetIds].sort().join(',');

/** The subnets a port has addresses in, sorted: the spec it was made for. */
export function specOf(port: Port): PoolSpec {
  return {
    networkId: port.network_id,
    subnetIds: [...new Set(port.fixed_ips.map((f) => f.subnet_id))].sort(),
  };
}

/** Whether `work` settles within `ms` (its rejection is the caller's); false when time ran out. */
async function doneWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  return Promise.race([work.then(() => true), late]).finally(() => clearTimeout(timer));
}

export class WarmPool {
  private readonly pools = new Map<string, Pool>();
  private readonly bySubnet = new Map<string, Pool>();
  private readonly resolving = new Set<string>();
  private closing = false;
  /** Ports this pool holds or handed out recently (by ID, with when): never adopted again. */
  private readonly owned = new Map<string, number>();
  /** Subnets whose pool was drained (their Docker network is gone). */
  private readonly drained = new Set<string>();
  private readonly removals = pLimit(REMOVALS_AT_ONCE);
  /** Ports handed out to starts and not yet released: the ones `recycle` may take back. */
  private readonly handedOut = new Set<string>();
  /** Ports asked of Neutron and not yet in a pool (they count against maxPorts). */
  private creating = 0;
  /**
   * A previous run's ports found at start-up, not handed out or deleted yet (see `adopt`); plugged
   * false: their veth could not be made, so they are deleted, not adopted, when the hold ends.
   */
  private readonly held = new Map<string, { port: Port; plugged: boolean }>();
  private holdTimer?: NodeJS.Timeout;
  /** Batches in flight, by the marker their ports carry (description), until their ports are in. */
  private readonly batches = new Map<string, Promise<boolean>>();
  /** The next shrink check: a timer, then a wait for starts to pause. */
  private cancelShrink?: () => void;

  constructor(
    private readonly backend: PoolBackend,
    private readonly settings: WarmPoolSettings,
    private readonly hooks: WarmPoolHooks,
    /** Refills wait until starts on this host pause. */
    private readonly activity = new HostActivity(),
  ) {}

  get enabled(): boolean {
    return this.settings.enabled && (this.settings.size > 0 || this.settings.maxSize > 0);
  }

  /** How many ready ports this pool aims at now. */
  private target(pool: Pool): number {
    // Pruned whatever the sizing: with a fixed size nothing else would.
    const since = Date.now() - this.settings.demandWindowMs;
    pool.takes = pool.takes.filter((t) => t >= since);
    if (this.settings.size > 0) return this.settings.size;
    const { minSize, maxSize } = this.settings;
    // Each recent take asks for one more ready port: a burst finds warm ports next time.
    return Math.min(maxSize, minSize + pool.takes.length);
  }

  /** Room left under the host's bound. */
  private hostRoom(): number {
    let used = this.creating + this.held.size;
    for (const pool of this.pools.values()) used += pool.ready.length;
    return Math.max(0, this.settings.maxPorts - used);
  }

  /**
   * Room under the host's bound for `wanted` more ports in `pool`: ports other pools were given
   * back beyond their own target (kept only in case their starts came back) make way for a network
   * still short of its own. Without this a burst's returns filled the host and the next networks
   * created stayed empty until the trim, 30 s later.
   */
  private roomFor(pool: Pool, wanted: number): number {
    let short = wanted - this.hostRoom();
    if (short <= 0) return wanted;
    const surplus: Port[] = [];
    for (const other of this.pools.values()) {
      if (other === pool || other.closed || short <= 0) continue;
      const extra = Math.min(short, other.ready.length - this.target(other));
      if (extra <= 0) continue;
      surplus.push(...this.beyond(other, other.ready.length - extra));
      short -= extra;
    }
    this.giveBack(surplus);
    return Math.min(wanted, this.hostRoom());
  }

  /** Takes the pool's ready ports beyond `keep` out of it, unwired ones first. */
  private beyond(pool: Pool, keep: number): Port[] {
    pool.ready.sort((a, b) => Number(b.active) - Number(a.active));
    return pool.ready.splice(keep).map((r) => r.port);
  }

  /** Deletes ports taken out of their pools, in the background. */
  private giveBack(ports: Port[]): void {
    if (ports.length === 0) return;
    void runDetached(() => this.removeAll(ports)).catch((err) =>
      this.hooks.warn('warm pool: giving back ports failed', { err: errorMessage(err) }),
    );
  }

  /** The spec a subnet's pool ports are made for (dual stack: both subnets), if a pool serves it. */
  specFor(subnetId: string): PoolSpec | undefined {
    return this.bySubnet.get(subnetId)?.spec;
  }

  /** Starts (or keeps) a pool for a Docker network's subnets and fills it in the background. */
  register(spec: PoolSpec, dockerNetworkId?: string): void {
    if (!this.enabled || this.closing || spec.subnetIds.length === 0) return;
    // A lookup that finished after DeleteNetwork/ReleasePool must not bring the pool back.
    if (spec.subnetIds.some((id) => this.drained.has(id))) return;
    const pool = this.poolFor(spec);
    pool.dockerNetworkId ??= dockerNetworkId;
    this.refill(pool);
  }

  /**
   * Starts a pool for a subnet that has none (after a restart: CreateNetwork registers pools),
   * once `resolve` has found the Docker network's subnets; in the background.
   */
  registerLater(subnetId: string, resolve: () => Promise<PoolSpec>): void {
    if (!this.enabled || this.closing || this.bySubnet.has(subnetId) || this.resolving.has(subnetId)) return;
    this.resolving.add(subnetId);
    runDetached(resolve)
      .then((spec) => this.register(spec))
      .catch((err) =>
        this.hooks.warn('warm pool: cannot start a pool', { subnet: subnetId, err: errorMessage(err) }),
      )
      .finally(() => this.resolving.delete(subnetId));
  }

  private poolFor(spec: PoolSpec): Pool {
    const key = keyOf(spec.subnetIds);
    let pool = this.pools.get(key);
    if (!pool) {
      pool = {
        key,
        spec: { ...spec, subnetIds: [...spec.subnetIds].sort() },
        ready: [],
        closed: false,
        retryAt: 0,
        takes: [],
        lastUsed: Date.now(),
        waiters: [],
        extra: new Set(),
        making: 0,
      };
      this.scheduleShrink();
      this.pools.set(key, pool);
      // A subnet belongs to one Docker network, so to one pool; a newer registration wins.
      for (const id of spec.subnetIds) this.bySubnet.set(id, pool);
    }
    return pool;
  }

  /**
   * A ready port with an address in the subnet, preferring ones the agent has wired (ACTIVE);
   * undefined when the subnet has no pool or it is empty. Taking starts a refill.
   */
  take(subnetId: string): Port | undefined {
    if (this.held.size > 0) this.releaseHeld(subnetId);
    const pool = this.bySubnet.get(subnetId);
    if (!pool || pool.closed) {
      if (this.enabled) this.hooks.taken?.(false);
      return undefined;
    }
    const i = Math.max(
      0,
      pool.ready.findIndex((r) => r.active),
    );
    const port = this.handOut(pool, i);
    this.hooks.taken?.(port !== undefined);
    return port;
  }

  /**
   * This warm port, when the pool still holds it: Neutron drew a pool port's address at random,
   * and a start asks for that address (--ip). Undefined when it is not (or no longer) ready.
   */
  takeById(portId: string): Port | undefined {
    // Asked for by address (--ip): that one is the pool's whatever its target, the others as usual.
    const held = this.held.get(portId)?.port;
    if (held) this.releaseHeld(held.fixed_ips[0]?.subnet_id, portId);
    for (const pool of this.pools.values()) {
      const i = pool.ready.findIndex((r) => r.port.id === portId);
      if (i >= 0 && !pool.closed) return this.handOut(pool, i);
    }
    return undefined;
  }

  /**
   * takeById for a port that may still be in one of this process's batches in flight: Neutron
   * gave it its address before the bulk create answered and the port was plugged, so a start
   * asking for that address (--ip) right after `docker network create` waits for that batch, at
   * most `maxWaitMs`. A holder in no batch in flight (handed out earlier, another host's, a
   * user's) is not waited for. (A port of that batch can still go to a burst's waiting start
   * first: then this start gets Neutron's 409 after all.)
   */
  async takeByIdOnceMade(port: Port, maxWaitMs: number): Promise<Port | undefined> {
    const ready = this.takeById(port.id);
    const batch = port.description ? this.batches.get(port.description) : undefined;
    if (ready || !batch) return ready;
    await doneWithin(
      batch.catch(() => false),
      maxWaitMs,
    );
    return this.takeById(port.id);
  }

  /** Takes the pool's i-th ready port out, as a start's own, and starts a refill. */
  private handOut(pool: Pool, i: number): Port | undefined {
    const [taken] = pool.ready.splice(i, 1);
    this.activity.containerStarting();
    pool.takes.push(Date.now());
    pool.lastUsed = Date.now();
    // A miss is takeOrWait's to handle (it starts a batch for the burst at once).
    if (!taken) return undefined;
    this.owned.set(taken.port.id, Date.now());
    this.handedOut.add(taken.port.id);
    if (this.owned.size > OWNED_PRUNE_AT) this.pruneOwned();
    this.refillSoon(pool);
    return taken.active ? { ...taken.port, status: 'ACTIVE' } : taken.port;
  }

  /**
   * Like `take`, but when the pool is empty (a burst of starts), waits up to `maxWaitMs` for a port
   * of the batch being made, started now if none is: one bulk request serves the burst instead
   * of one request per start. Undefined (make a port of your own) when there is no pool, it
   * cannot grow (host bound, a failure) or the wait runs out.
   */
  async takeOrWait(subnetId: string, maxWaitMs: number): Promise<Port | undefined> {
    const port = this.take(subnetId);
    const pool = this.bySubnet.get(subnetId);
    if (port || !pool || pool.closed) return port;
    if (!pool.filling && !pool.gathering) {
      if (pool.closed || Date.now() < pool.retryAt || this.roomFor(pool, 1) === 0) return undefined;
      // The first start of a burst waits a moment for the others, so one batch serves them all.
      pool.cancelRefill?.();
      pool.gathering = true;
      const timer = setTimeout(() => {
        pool.cancelRefill = undefined;
        pool.gathering = false;
        this.refill(pool);
        if (!pool.filling) this.release(pool);
      }, BURST_GATHER_MS);
      pool.cancelRefill = () => clearTimeout(timer);
    } else if (pool.filling) this.growForWaiters(pool);
    const waited = new Promise<Port | undefined>((resolve) => {
      const waiter: Waiter = {
        resolve,
        timer: setTimeout(() => {
          pool.waiters = pool.waiters.filter((w) => w !== waiter);
          resolve(undefined);
        }, maxWaitMs),
      };
      waiter.timer.unref();
      pool.waiters.push(waiter);
    });
    return this.activity.during(waited);
  }

  /** Lets every waiting start go make its own port (the pool failed or is going). */
  private release(pool: Pool): void {
    for (const w of pool.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.resolve(undefined);
    }
  }

  /** Forgets ports handed out long ago (their endpoint is recorded by now, under another name). */
  private pruneOwned(): void {
    const ready = new Set([...this.pools.values()].flatMap((p) => p.ready.map((r) => r.port.id)));
    const old = Date.now() - OWNED_KEEP_MS;
    for (const [id, at] of this.owned) if (at < old && !ready.has(id)) this.owned.delete(id);
  }

  /**
   * Takes back a port this pool handed out, now that Docker released it (ReleaseAddress), instead
   * of it being deleted: the next start finds it warm, bound and ACTIVE, and neither its DELETE
   * nor a new port's POST, plugging and wiring costs neutron-server anything. Within the host's
   * bound (maxPorts); beyond the pool's own (size, or maxSize) only until nobody took from it for
   * trimAfterMs (a removal is often followed by starts). False: the caller deletes it.
   */
  recycle(port: Port): boolean {
    if (!this.handedOut.delete(port.id)) return false;
    const kept = this.takeBack(port);
    this.hooks.returned?.(kept);
    return kept;
  }

  private takeBack(port: Port): boolean {
    if (!this.enabled || this.closing) return false;
    const pool = this.pools.get(keyOf(specOf(port).subnetIds));
    if (!pool || pool.closed || this.hostRoom() === 0) return false;
    const reset = this.backend.reuse(port);
    if (!reset) return false;
    const handedOutAt = this.owned.get(port.id) ?? 0;
    this.owned.delete(port.id); // add() keeps a port only once; this one comes back
    this.add(pool, reset);
    // A take whose port came back is not demand the pool must grow for: starts and removals one
    // after another grew it by a port each, made (and wired) while the next start ran. A port
    // handed out before the demand window has no take left to cancel (not another start's).
    if (handedOutAt >= Date.now() - this.settings.demandWindowMs) pool.takes.pop();
    return true;
  }

  /**
   * Forgets a port that is being deleted (ReleaseAddress): a previous run's port that Docker's
   * rollback releases after this process adopted it must not be handed out again.
   */
  discard(portId: string): void {
    this.handedOut.delete(portId);
    this.held.delete(portId);
    // Not adopted either, should an adoption that listed it before this still be plugging it.
    this.owned.set(portId, Date.now());
    for (const pool of this.pools.values()) {
      const i = pool.ready.findIndex((r) => r.port.id === portId);
      if (i >= 0) {
        pool.ready.splice(i, 1);
        this.refill(pool);
      }
    }
  }

  /**
   * Refills once the starts are done: a refill (a bulk create in neutron-server, `ip` for each
   * veth) would compete with them for the CPU. It waits until starts on this host paused for
   * refillDelayMs (HostActivity: a burst, over one network or many, is one quiet period later), but
   * no longer than REFILL_DEFER_MAX_MS after its first take. Takes in a burst share one refill.
   */
  private refillSoon(pool: Pool): void {
    if (this.settings.refillDelayMs <= 0) {
      this.refill(pool);
      return;
    }
    if (pool.cancelRefill) return;
    pool.cancelRefill = this.activity.afterQuiet(this.settings.refillDelayMs, REFILL_DEFER_MAX_MS, () => {
      pool.cancelRefill = undefined;
      this.refill(pool);
    });
  }

  /** Tops the pool up to size, one bulk request per batch; at most one refill per pool at a time. */
  private refill(pool: Pool): void {
    if (pool.closed || pool.filling || Date.now() < pool.retryAt) return;
    const wanted = this.target(pool) - pool.ready.length;
    if (wanted <= 0 || this.roomFor(pool, wanted) === 0) return;
    // Background work: its Neutron calls are not the Docker call's that happened to start it.
    pool.filling = runDetached(() => this.fill(pool))
      .catch((err) => this.failed(pool, 'refilling', err))
      .finally(() => {
        pool.filling = undefined;
      });
  }

  private async fill(pool: Pool): Promise<void> {
    let burst = false;
    for (;;) {
      // A burst's waiting starts get ports made for them; the pool's own top-up waits until starts
      // pause (refillSoon): made during the burst, it doubled neutron-server's work there.
      const waiting = pool.waiters.length;
      if (waiting > 0) burst = true;
      else if (burst && this.settings.refillDelayMs > 0) {
        this.refillSoon(pool);
        return;
      }
      // Ports other batches are making count as on their way.
      const wanted = (waiting > 0 ? waiting : this.target(pool) - pool.ready.length) - pool.making;
      const count = Math.min(this.settings.batch, wanted, this.hostRoom());
      if (pool.closed || count <= 0) {
        if (pool.making === 0) this.release(pool); // bounded: whoever still waits makes a port of their own
        return;
      }
      if (!(await this.makeBatch(pool, count))) return;
    }
  }

  /**
   * Starts waiting beyond the ports being made (a burst outgrowing the batch in flight) get a
   * batch of their own, gathered for a moment, up to BATCHES_AT_ONCE per pool.
   */
  private growForWaiters(pool: Pool): void {
    if (pool.closed || pool.gatheringExtra || pool.extra.size + 1 >= BATCHES_AT_ONCE) return;
    pool.gatheringExtra = true;
    setTimeout(() => {
      pool.gatheringExtra = false;
      const count = Math.min(this.settings.batch, pool.waiters.length - pool.making, this.hostRoom());
      if (pool.closed || count <= 0 || Date.now() < pool.retryAt) return;
      const batch: Promise<void> = runDetached(() => this.makeBatch(pool, count))
        .then(() => undefined)
        .catch((err) => this.failed(pool, 'creating warm-pool ports', err))
        .finally(() => {
          pool.extra.delete(batch);
          // Its ports went to the waiters; the refill loop tops up what is left.
          this.refill(pool);
        });
      pool.extra.add(batch);
    }, BURST_GATHER_MS).unref();
  }

  /** One bulk create, plugged, into the pool (waiting starts first); false when it failed. */
  private makeBatch(pool: Pool, count: number): Promise<boolean> {
    const batch = `kuryr-pool ${randomUUID()}`;
    const made = this.makeMarked(pool, count, batch).finally(() => this.batches.delete(batch));
    this.batches.set(batch, made);
    return made;
  }

  private async makeMarked(pool: Pool, count: number, batch: string): Promise<boolean> {
    let ports: Port[];
    this.creating += count;
    pool.making += count;
    try {
      try {
        ports = await this.backend.create(pool.spec, count, batch);
      } catch (err) {
        this.failed(pool, 'creating warm-pool ports', err);
        // The request may have reached Neutron (a timeout): whatever it made is found and kept,
        // now and once more later (an overloaded Neutron may still be making them).
        await this.reconcile(pool, batch).catch(() => undefined);
        setTimeout(
          () => void this.reconcile(pool, batch).catch(() => undefined),
          this.settings.retryMs,
        ).unref();
        return false;
      } finally {
        this.creating -= count;
      }
      if (ports.length === 0) {
        this.failed(pool, 'creating warm-pool ports', new Error('Neutron created no ports'));
        return false;
      }
      try {
        await this.backend.plug(ports);
      } catch (err) {
        this.failed(pool, 'plugging warm-pool ports', err);
        await Promise.all(ports.map((p) => this.backend.remove(p).catch(() => undefined)));
        return false;
      }
      if (pool.closed) {
        // Drained while this batch was being made: it goes too.
        await Promise.all(ports.map((p) => this.backend.remove(p).catch(() => undefined)));
        return false;
      }
      for (const port of ports) this.add(pool, port);
      return true;
    } finally {
      pool.making -= count;
    }
  }

  private add(pool: Pool, port: Port): void {
    if (this.owned.has(port.id)) return; // already held or handed out: never twice
    this.owned.set(port.id, Date.now());
    const waiter = pool.waiters.shift();
    if (waiter) {
      // A start is waiting for it: straight to that start (Join waits for ACTIVE, as without a pool).
      this.handedOut.add(port.id);
      clearTimeout(waiter.timer);
      waiter.resolve(port);
      return;
    }
    const entry: Ready = { port, active: port.status === 'ACTIVE' };
    pool.ready.push(entry);
    if (!entry.active) void runDetached(() => this.watch(pool, entry));
  }

  /** Follows a pool port until the agent has wired it, for as long as it is in the pool. */
  private async watch(pool: Pool, entry: Ready): Promise<void> {
    while (!pool.closed && pool.ready.includes(entry)) {
      const status = await this.backend.waitActive(entry.port.id).catch(() => 'ERROR');
      if (status === 'ACTIVE') {
        entry.active = true;
        return;
      }
      if (status === 'UNKNOWN') {
        // Neutron no longer has it (deleted behind our back): out of the pool.
        this.discard(entry.port.id);
        return;
      }
    }
  }

  private failed(pool: Pool, doing: string, err: unknown): void {
    this.release(pool);
    // A pool being drained (network gone, daemon stopping) has nothing to retry: its batch in
    // flight is removed by makeBatch, or left for the next daemon to adopt.
    if (pool.closed) return;
    pool.retryAt = Date.now() + this.settings.retryMs;
    setTimeout(() => this.refill(pool), this.settings.retryMs).unref();
    this.hooks.warn(`warm pool: ${doing} failed; trying again in ${this.settings.retryMs / 1000} s`, {
      network: pool.spec.networkId,
      err: errorMessage(err),
    });
  }

  /** The ports a bulk create that failed (timed out) made after all: plugged and kept. */
  private async reconcile(pool: Pool, batch: string): Promise<void> {
    const found = (await this.backend.listMine({ networkId: pool.spec.networkId, batch })).filter(
      (p) => !this.owned.has(p.id),
    );
    if (found.length === 0) return;
    if (pool.closed) {
      await this.removeAll(found);
      return;
    }
    await this.backend.plug(found);
    for (const port of found) this.add(pool, port);
  }

  /**
   * At start-up: this host's pool ports left by a previous run are taken back (their veths made
   * again if the host rebooted), beyond the pool's target, or all with the pool off, deleted.
   *
   * Not at once: the previous run may have handed a port out (RequestAddress) just before it died,
   * and Docker's CreateEndpoint for it, retried for up to 30 s, reaches this process later. Until
   * then the port looks free; handing it out again gave two containers one port, deleting it left
   * a running container without one (CI: the SIGKILL scenario). So the ports are held until a start
   * on their network comes (Docker creates a network's endpoints one at a time, so by then the
   * previous start there is done: its port is claimed, or released by Docker's rollback) or until
   * adoptHoldMs, whichever is first; then the ones no endpoint claimed are the pool's.
   */
  async adopt(): Promise<{ adopted: number; removed: number; held: number }> {
    // A port given to an endpoint just before a crash (its veth records the endpoint, or a
    // container holds it) is not free. Ports this process already holds or handed out are not
    // adopted either.
    const mine = (await this.backend.listMine()).filter(
      (p) => !this.backend.claimed(p) && !this.owned.has(p.id) && !this.held.has(p.id),
    );
    // Plugged now (their veths made again after a reboot), so that a start takes one at once.
    const plugged = await Promise.all(
      mine.map((p) =>
        this.usable(specOf(p))
          ? this.backend.plug([p]).then(
              () => true,
              (err: unknown) => {
                this.hooks.warn('warm pool: could not plug an adopted port; it will be deleted', {
                  port: p.id,
                  err: errorMessage(err),
                });
                return false;
              },
            )
          : false,
      ),
    );
    // Docker's rollback may have released (discarded) one meanwhile: that one is being deleted.
    for (const [i, port] of mine.entries())
      if (!this.owned.has(port.id)) this.held.set(port.id, { port, plugged: plugged[i] ?? false });
    if (this.settings.adoptHoldMs > 0 && this.held.size > 0) {
      clearTimeout(this.holdTimer);
      this.holdTimer = setTimeout(() => this.releaseHeld(), this.settings.adoptHoldMs).unref();
      return { adopted: 0, removed: 0, held: this.held.size };
    }
    const { adopted, removed, removing } = this.releaseHeld();
    await removing;
    return { adopted, removed, held: 0 };
  }

  private usable(spec: PoolSpec): boolean {
    return this.enabled && !this.closing && !spec.subnetIds.some((id) => this.drained.has(id));
  }

  /**
   * The held ports of a subnet's network (all without one) become their pool's, up to its target
   * (`wanted`, asked for by address, whatever the target); the rest are deleted. One an endpoint
   * claimed meanwhile was handed out before the crash: it is that endpoint's.
   */
  private releaseHeld(
    subnetId?: string,
    wanted?: string,
  ): { adopted: number; removed: number; removing: Promise<void> } {
    const surplus: Port[] = [];
    const filled = new Set<Pool>();
    let adopted = 0;
    for (const { port, plugged } of [...this.held.values()]) {
      const spec = specOf(port);
      if (subnetId && !spec.subnetIds.includes(subnetId)) continue;
      this.held.delete(port.id);
      if (this.backend.claimed(port)) continue;
      const pool = plugged && this.usable(spec) ? this.poolFor(spec) : undefined;
      const room = pool && pool.ready.length < this.target(pool) && this.hostRoom() > 0;
      if (pool && !pool.closed && (room || port.id === wanted)) {
        this.add(pool, port);
        filled.add(pool);
        adopted++;
      } else surplus.push(port);
    }
    for (const pool of filled) this.refill(pool);
    const removing = this.removeAll(surplus).catch(() => undefined);
    return { adopted, removed: surplus.length, removing };
  }

  /** Deletes the pools serving a Docker network (DeleteNetwork). */
  drainDockerNetwork(dockerNetworkId: string, networkId?: string): Promise<void> {
    return this.drain(
      (p) => p.dockerNetworkId === dockerNetworkId || (!p.dockerNetworkId && p.spec.networkId === networkId),
      (spec) => spec.networkId === networkId,
    );
  }

  /** Deletes the pools with an address in these subnets (ReleasePool: the subnet is going). */
  drainSubnets(subnetIds: string[]): Promise<void> {
    const hit = (spec: PoolSpec) => spec.subnetIds.some((id) => subnetIds.includes(id));
    return this.drain((p) => hit(p.spec), hit);
  }

  /**
   * Deletes every pool and makes no new ones (shutdown). Then this host's pool ports Neutron still
   * has and this process does not know (a bulk create that answered too late) go too, except
   * those handed out to containers.
   *
   * Bounded by deadlineMs: a stopping daemon has a few seconds (Docker SIGKILLs a managed plugin
   * 10 s after SIGTERM), and a busy Neutron deletes a port in ~0.3-1 s. Past it the deletions not
   * yet sent are dropped: those ports stay tagged as this host's pool ports, and the next kuryr on
   * this host adopts them (as after a crash) or `kuryr gc` removes them.
   */
  async close(deadlineMs = Number.POSITIVE_INFINITY): Promise<void> {
    this.closing = true;
    this.cancelShrink?.();
    clearTimeout(this.holdTimer); // held ports go with the drain below
    const work = (async () => {
      await this.drain(
        () => true,
        () => true,
      );
      if (!this.enabled) return;
      const strays = (await this.backend.listMine()).filter(
        (p) => !this.owned.has(p.id) && !this.backend.claimed(p),
      );
      await this.removeAll(strays);
    })();
    if (!Number.isFinite(deadlineMs)) return work;
    if (await doneWithin(work, deadlineMs)) return;
    const left = this.removals.pendingCount;
    this.removals.clearQueue(); // their promises never settle: the process is about to exit
    work.catch(() => undefined);
    this.hooks.warn(
      `warm pool: not drained within ${deadlineMs / 1000} s of shutdown; ${left} warm ports left for the next kuryr on this host to adopt (or kuryr gc)`,
    );
  }

  /** Closes the pools `which` picks and deletes their ports, and the held ports `held` picks. */
  private async drain(which: (pool: Pool) => boolean, held: (spec: PoolSpec) => boolean): Promise<void> {
    const doomed = [...this.pools.values()].filter(which);
    // A previous run's ports of a network going away: never a pool's now (no endpoint is left).
    const heldDoomed = [...this.held.values()].map((h) => h.port).filter((p) => held(specOf(p)));
    for (const port of heldDoomed) {
      this.held.delete(port.id);
      for (const id of specOf(port).subnetIds) this.drained.add(id);
    }
    for (const pool of doomed) {
      pool.closed = true;
      this.release(pool);
      pool.cancelRefill?.();
      for (const id of pool.spec.subnetIds) this.drained.add(id);
      this.pools.delete(pool.key);
      for (const id of pool.spec.subnetIds) if (this.bySubnet.get(id) === pool) this.bySubnet.delete(id);
    }
    await Promise.all([
      ...doomed.map(async (pool) => {
        // A batch in flight is removed by makeBatch() itself.
        await Promise.all([pool.filling, ...pool.extra]);
        await this.removeAll(pool.ready.splice(0).map((r) => r.port));
      }),
      this.removeAll(heldDoomed.filter((p) => !this.backend.claimed(p))),
    ]);
  }

  /** Checks now and then for pools idle long enough to give back ports. */
  private scheduleShrink(): void {
    if (this.cancelShrink || this.closing) return;
    const every = Math.max(100, Math.min(15_000, this.settings.idleMs / 4, this.settings.trimAfterMs / 2));
    const timer = setTimeout(() => {
      // Deletes wait for starts on the host to pause, as refills do: a burst, on this network or
      // another, would share neutron-server with them.
      this.cancelShrink = this.activity.afterQuiet(this.settings.refillDelayMs, REFILL_DEFER_MAX_MS, () => {
        this.cancelShrink = undefined;
        this.shrinkIdle();
        if (this.pools.size > 0) this.scheduleShrink();
      });
    }, every);
    timer.unref();
    this.cancelShrink = () => clearTimeout(timer);
  }

  /**
   * Pools nobody took from for trimAfterMs keep no more than their bound (ports given back beyond
   * it go); with demand sizing, those nobody took from for idleMs keep minSize. Unwired ports go
   * first.
   */
  private shrinkIdle(): void {
    const now = Date.now();
    const { size, minSize, maxSize, idleMs, trimAfterMs } = this.settings;
    const surplus: Port[] = [];
    for (const pool of this.pools.values()) {
      const idle = size === 0 && pool.lastUsed <= now - idleMs;
      if (pool.closed || (!idle && pool.lastUsed > now - trimAfterMs)) continue;
      const keep = size > 0 ? size : idle ? minSize : maxSize;
      if (pool.ready.length > keep) surplus.push(...this.beyond(pool, keep));
    }
    this.giveBack(surplus);
  }

  /** Deletes ports a few at a time: hundreds at once would only queue up in front of Neutron. */
  private async removeAll(ports: Port[]): Promise<void> {
    const results = await Promise.allSettled(ports.map((p) => this.removals(() => this.backend.remove(p))));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) {
      throw new Error(
        `${failed.length} of ${ports.length} warm-pool ports could not be deleted: ${errorMessage((failed[0] as PromiseRejectedResult).reason)}`,
      );
    }
  }

  stats(): { pools: number; ready: number; active: number } {
    let ready = 0;
    let active = 0;
    for (const pool of this.pools.values()) {
      ready += pool.ready.length;
      active += pool.ready.filter((r) => r.active).length;
    }
    return { pools: this.pools.size, ready, active };
  }
}

/** How long a pool port may take to turn ACTIVE before it is handed out as it is. */
const POOL_ACTIVE_WAIT_MS = 120_000;

/** How a recycled port's reset is written (WriteBehind, like an endpoint's identity). */
export interface ResetWrites {
  writes: WriteBehind;
  /** Quiet time before the reset goes to Neutron (it waits for starts to pause, as identities do). */
  delayMs: number;
  warn(message: string): void;
}

/** The pool's Neutron and host side: bulk create, veths via the host binder, batched ACTIVE polls. */
export function neutronPoolBackend(ports: PortBinding, resets: ResetWrites): PoolBackend {
  const catalog = ports.catalog;
  return {
    create: (spec, count, batch) =>
      catalog.createPorts(
        Array.from({ length: count }, () => ({
          network_id: spec.networkId,
          name: POOL_PORT_NAME,
          description: batch,
          admin_state_up: true,
          ...ports.bindAttrs(),
          fixed_ips: spec.subnetIds.map((subnet_id) => ({ subnet_id })),
        })),
      ),
    plug: async (list) => {
      await Promise.all(list.map((p) => ports.plugHost(p)));
    },
    remove: (port) => ports.release(port),
    reuse: (port) => {
      // Since Leave the container end is back on the host (Docker moves it out of the sandbox):
      // the pair is as the pool made it. Its exposed-ports group went with DeleteEndpoint.
      if (!ports.isBoundHere(port) || ports.binder.vethState(port) !== 'on-host') return undefined;
      if ((port.security_groups?.length ?? 0) > 1) return undefined;
      const endpointTags = new Set(port.device_id ? dockerIdTags(port.device_id) : []);
      const fields = { device_id: '', name: POOL_PORT_NAME };
      const reset: Port = { ...port, ...fields, tags: port.tags.filter((t) => !endpointTags.has(t)) };
      // The pool holds it now; the catalog remembers ports from their hand-out on.
      catalog.forgetPort(port.id);
      // The veth says "pool" at once (gc, a restart); Neutron learns it behind, unless the port
      // is taken again first (the next identity write replaces the reset).
      void ports.binder
        .recordPool(port)
        .catch((err) => resets.warn(`marking veth of port ${port.id} as warm failed: ${errorMessage(err)}`));
      if (port.device_id || port.name !== POOL_PORT_NAME) {
        resets.writes.enqueue(
          port.id,
          `resetting warm port ${port.id} (was endpoint ${port.device_id.slice(0, 12)})`,
          () => catalog.resetPortIdentity(port.id, fields, reset.tags),
          resets.warn,
          resets.delayMs,
          false,
        );
      }
      return reset;
    },
    listMine: (filter = {}) =>
      catalog.reader.list('ports', {
        name: POOL_PORT_NAME,
        'binding:host_id': ports.host,
        network_id: filter.networkId,
        description: filter.batch,
      }),
    waitActive: (portId) => ports.active.wait(portId, POOL_ACTIVE_WAIT_MS),
    claimed: (port) => ports.claimed(port),
  };
}
