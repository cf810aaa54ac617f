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
import { POOL_PORT_NAME } from './naming.js';
import type { PortBinding } from './port-binding.js';

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
  /** A container holds the port's veth already (taken, its endpoint not yet recorded in Neutron). */
  inContainer(port: Port): boolean;
}

export interface WarmPoolSettings {
  /** Ports kept ready per Docker network (0: no pool). */
  size: number;
  /** Most ports made by one bulk request. */
  batch: number;
  /** After a failed refill, how long before trying again. */
  retryMs: number;
  /** How long after a take the refill starts (0: at once). */
  refillDelayMs: number;
}

export interface WarmPoolHooks {
  warn(message: string, detail?: Record<string, unknown>): void;
  taken?(hit: boolean): void;
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
  filling?: Promise<void>;
  refillTimer?: NodeJS.Timeout;
  closed: boolean;
  retryAt: number;
}

const REMOVALS_AT_ONCE = 8;
const OWNED_PRUNE_AT = 1_000;
const OWNED_KEEP_MS = 10 * 60_000;

const keyOf = (subnetIds: string[]) => [...subnetIds].sort().join(',');

/** The subnets a port has addresses in, sorted: the spec it was made for. */
export function specOf(port: Port): PoolSpec {
  return {
    networkId: port.network_id,
    subnetIds: [...new Set(port.fixed_ips.map((f) => f.subnet_id))].sort(),
  };
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

  constructor(
    private readonly backend: PoolBackend,
    private readonly settings: WarmPoolSettings,
    private readonly hooks: WarmPoolHooks,
  ) {}

  get enabled(): boolean {
    return this.settings.size > 0;
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
      };
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
    const pool = this.bySubnet.get(subnetId);
    if (!pool || pool.closed) {
      if (this.enabled) this.hooks.taken?.(false);
      return undefined;
    }
    const i = Math.max(
      0,
      pool.ready.findIndex((r) => r.active),
    );
    const [taken] = pool.ready.splice(i, 1);
    this.hooks.taken?.(taken !== undefined);
    if (taken) {
      this.owned.set(taken.port.id, Date.now());
      if (this.owned.size > OWNED_PRUNE_AT) this.pruneOwned();
    }
    this.refillSoon(pool);
    if (!taken) return undefined;
    return taken.active ? { ...taken.port, status: 'ACTIVE' } : taken.port;
  }

  /** Forgets ports handed out long ago (their endpoint is recorded by now, under another name). */
  private pruneOwned(): void {
    const ready = new Set([...this.pools.values()].flatMap((p) => p.ready.map((r) => r.port.id)));
    const old = Date.now() - OWNED_KEEP_MS;
    for (const [id, at] of this.owned) if (at < old && !ready.has(id)) this.owned.delete(id);
  }

  /**
   * Forgets a port that is being deleted (ReleaseAddress): a previous run's port that Docker's
   * rollback releases after this process adopted it must not be handed out again.
   */
  discard(portId: string): void {
    for (const pool of this.pools.values()) {
      const i = pool.ready.findIndex((r) => r.port.id === portId);
      if (i >= 0) {
        pool.ready.splice(i, 1);
        this.refill(pool);
      }
    }
  }

  /**
   * Refills once the container that took a port is up: a refill (a bulk create in neutron-server,
   * `ip` for each veth) started at once would compete with that start for the CPU. Takes in a
   * burst share one refill.
   */
  private refillSoon(pool: Pool): void {
    if (pool.refillTimer || this.settings.refillDelayMs <= 0) {
      if (this.settings.refillDelayMs <= 0) this.refill(pool);
      return;
    }
    pool.refillTimer = setTimeout(() => {
      pool.refillTimer = undefined;
      this.refill(pool);
    }, this.settings.refillDelayMs);
    pool.refillTimer.unref();
  }

  /** Tops the pool up to size, one bulk request per batch; at most one refill per pool at a time. */
  private refill(pool: Pool): void {
    if (pool.closed || pool.filling || Date.now() < pool.retryAt) return;
    if (pool.ready.length >= this.settings.size) return;
    // Background work: its Neutron calls are not the Docker call's that happened to start it.
    pool.filling = runDetached(() => this.fill(pool))
      .catch((err) => this.failed(pool, 'refilling', err))
      .finally(() => {
        pool.filling = undefined;
      });
  }

  private async fill(pool: Pool): Promise<void> {
    while (!pool.closed && pool.ready.length < this.settings.size) {
      const count = Math.min(this.settings.batch, this.settings.size - pool.ready.length);
      let ports: Port[];
      const batch = `kuryr-pool ${randomUUID()}`;
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
        return;
      }
      if (ports.length === 0) {
        this.failed(pool, 'creating warm-pool ports', new Error('Neutron created no ports'));
        return;
      }
      try {
        await this.backend.plug(ports);
      } catch (err) {
        this.failed(pool, 'plugging warm-pool ports', err);
        await Promise.all(ports.map((p) => this.backend.remove(p).catch(() => undefined)));
        return;
      }
      if (pool.closed) {
        // Drained while this batch was being made: it goes too.
        await Promise.all(ports.map((p) => this.backend.remove(p).catch(() => undefined)));
        return;
      }
      for (const port of ports) this.add(pool, port);
    }
  }

  private add(pool: Pool, port: Port): void {
    if (this.owned.has(port.id)) return; // already held or handed out: never twice
    this.owned.set(port.id, Date.now());
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
   * again if the host rebooted), beyond `size` per network, or all with the pool off, deleted.
   */
  async adopt(): Promise<{ adopted: number; removed: number }> {
    // A port whose veth a container holds was taken just before a crash: it is not free. Ports
    // this process already holds or handed out are not adopted either.
    const mine = (await this.backend.listMine()).filter(
      (p) => !this.backend.inContainer(p) && !this.owned.has(p.id),
    );
    const surplus: Port[] = [];
    const groups = new Map<string, Port[]>();
    for (const port of mine) {
      const key = keyOf(specOf(port).subnetIds);
      groups.set(key, [...(groups.get(key) ?? []), port]);
    }
    let adopted = 0;
    for (const ports of groups.values()) {
      const first = ports[0] as Port;
      const spec = specOf(first);
      const usable = this.enabled && !this.closing && !spec.subnetIds.some((id) => this.drained.has(id));
      const pool = usable ? this.poolFor(spec) : undefined;
      const room = pool ? Math.max(0, this.settings.size - pool.ready.length) : 0;
      const keep = ports.slice(0, room);
      surplus.push(...ports.slice(room));
      if (!pool || keep.length === 0) continue;
      try {
        await this.backend.plug(keep);
      } catch (err) {
        this.hooks.warn('warm pool: could not plug adopted ports; deleting them', { err: errorMessage(err) });
        surplus.push(...keep);
        continue;
      }
      // A refill may have run meanwhile: keep no more than size.
      for (const port of keep) {
        if (pool.closed || pool.ready.length >= this.settings.size) surplus.push(port);
        else {
          this.add(pool, port);
          adopted++;
        }
      }
      this.refill(pool);
    }
    await this.removeAll(surplus).catch(() => undefined);
    return { adopted, removed: surplus.length };
  }

  /** Deletes the pools serving a Docker network (DeleteNetwork). */
  drainDockerNetwork(dockerNetworkId: string, networkId?: string): Promise<void> {
    return this.drain(
      (p) => p.dockerNetworkId === dockerNetworkId || (!p.dockerNetworkId && p.spec.networkId === networkId),
    );
  }

  /** Deletes the pools with an address in these subnets (ReleasePool: the subnet is going). */
  drainSubnets(subnetIds: string[]): Promise<void> {
    return this.drain((p) => p.spec.subnetIds.some((id) => subnetIds.includes(id)));
  }

  /**
   * Deletes every pool and makes no new ones (shutdown). Then this host's pool ports Neutron still
   * has and this process does not know (a bulk create that answered too late) go too, except
   * those handed out to containers.
   */
  async close(): Promise<void> {
    this.closing = true;
    await this.drain(() => true);
    if (!this.enabled) return;
    const strays = (await this.backend.listMine()).filter(
      (p) => !this.owned.has(p.id) && !this.backend.inContainer(p),
    );
    await this.removeAll(strays);
  }

  private async drain(which: (pool: Pool) => boolean): Promise<void> {
    const doomed = [...this.pools.values()].filter(which);
    for (const pool of doomed) {
      pool.closed = true;
      clearTimeout(pool.refillTimer);
      for (const id of pool.spec.subnetIds) this.drained.add(id);
      this.pools.delete(pool.key);
      for (const id of pool.spec.subnetIds) if (this.bySubnet.get(id) === pool) this.bySubnet.delete(id);
    }
    await Promise.all(
      doomed.map(async (pool) => {
        await pool.filling; // a batch in flight is removed by fill() itself
        await this.removeAll(pool.ready.splice(0).map((r) => r.port));
      }),
    );
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

/** The pool's Neutron and host side: bulk create, veths via the host binder, batched ACTIVE polls. */
export function neutronPoolBackend(ports: PortBinding): PoolBackend {
  const neutron = ports.view.neutron;
  return {
    create: (spec, count, batch) =>
      neutron.createMany(
        'ports',
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
    remove: (port) => ports.remove(port),
    listMine: (filter = {}) =>
      neutron.list('ports', {
        name: POOL_PORT_NAME,
        'binding:host_id': ports.host,
        network_id: filter.networkId,
        description: filter.batch,
      }),
    waitActive: (portId) => ports.active.wait(portId, POOL_ACTIVE_WAIT_MS),
    inContainer: (port) => ports.inContainer(port),
  };
}
