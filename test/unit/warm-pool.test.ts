// The warm pool's bookkeeping against an in-memory backend: filling in batches, one refill at a
// time, taking ACTIVE ports first, back-off after failures, draining while a batch is in flight,
// adoption after a restart. The real Neutron/veth side is covered by test/e2e/warm-pool.test.ts.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostActivity } from '../../src/cnm/host-activity.js';
import { type PoolBackend, type PoolSpec, WarmPool, type WarmPoolSettings } from '../../src/cnm/warm-pool.js';
import type { Port } from '../../src/neutron/types.js';

const SPEC: PoolSpec = { networkId: 'net-a', subnetIds: ['sub-a4', 'sub-a6'] };
const OTHER: PoolSpec = { networkId: 'net-b', subnetIds: ['sub-b4'] };

function port(spec: PoolSpec, status = 'DOWN'): Port {
  return {
    id: randomUUID(),
    network_id: spec.networkId,
    fixed_ips: spec.subnetIds.map((subnet_id, i) => ({
      subnet_id,
      ip_address: `10.0.${i}.${Math.floor(Math.random() * 250)}`,
    })),
    status,
    mac_address: 'fa:16:3e:00:00:01',
    device_id: '',
    device_owner: 'compute:kuryr',
    name: 'kuryr-pool-port',
    tags: [],
    security_groups: [],
    admin_state_up: true,
  } as unknown as Port;
}

class FakeBackend implements PoolBackend {
  /** Ports that exist in "Neutron". */
  readonly neutron = new Map<string, Port>();
  readonly plugged = new Set<string>();
  readonly createCalls: number[] = [];
  readonly removed: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  failCreate: Error | undefined;
  failPlug: Error | undefined;
  /** Create made the ports but "timed out" before answering. */
  createTimesOut = false;
  createDelayMs = 0;
  activeAfterMs = 0;
  held = new Set<string>();

  async create(spec: PoolSpec, count: number, batch: string): Promise<Port[]> {
    this.createCalls.push(count);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await sleep(this.createDelayMs);
      if (this.failCreate) throw this.failCreate;
      const ports = Array.from({ length: count }, () => ({ ...port(spec), description: batch }));
      for (const p of ports) this.neutron.set(p.id, p);
      if (this.createTimesOut) throw new Error('timed out');
      return ports;
    } finally {
      this.inFlight--;
    }
  }
  /** Plugging waits for this (ports Neutron has made, not yet in the pool). */
  plugGate: Promise<void> | undefined;
  /** Ports whose veth cannot be made. */
  readonly failPlugFor = new Set<string>();
  async plug(ports: Port[]): Promise<void> {
    await this.plugGate;
    if (this.failPlug) throw this.failPlug;
    const failing = ports.find((p) => this.failPlugFor.has(p.id));
    if (failing) throw new Error(`cannot plug ${failing.id}`);
    for (const p of ports) this.plugged.add(p.id);
  }
  async remove(p: Port): Promise<void> {
    this.removed.push(p.id);
    this.neutron.delete(p.id);
    this.plugged.delete(p.id);
  }
  async listMine(filter: { networkId?: string; batch?: string } = {}): Promise<Port[]> {
    return [...this.neutron.values()].filter(
      (p) =>
        (!filter.networkId || p.network_id === filter.networkId) &&
        (!filter.batch || (p as { description?: string }).description === filter.batch),
    );
  }
  /** Waits that end before the agent got to the port (the real wait gives up after 120 s). */
  slowWaits = 0;
  async waitActive(portId: string): Promise<string> {
    await sleep(this.activeAfterMs);
    if (this.slowWaits > 0) {
      this.slowWaits--;
      return 'BUILD';
    }
    return this.neutron.has(portId) ? 'ACTIVE' : 'DOWN';
  }
  claimed(p: Port): boolean {
    return this.held.has(p.id);
  }
  /** Ports whose veth a container took away (Docker never gave it back): not reusable. */
  readonly vethGone = new Set<string>();
  readonly reused: string[] = [];
  reuse(p: Port): Port | undefined {
    if (this.vethGone.has(p.id) || !this.plugged.has(p.id)) return undefined;
    this.reused.push(p.id);
    return { ...p, device_id: '', name: 'kuryr-pool-port', status: 'ACTIVE' };
  }
}

const warnings: string[] = [];
/** Fixed size unless overridden; demand sizing tests pass size 0 and the bounds. */
function settings(over: Partial<WarmPoolSettings> = {}): WarmPoolSettings {
  return {
    enabled: true,
    size: 4,
    minSize: 2,
    maxSize: 10,
    maxPorts: 1_000,
    demandWindowMs: 60_000,
    idleMs: 600_000,
    trimAfterMs: 600_000,
    batch: 3,
    retryMs: 60_000,
    refillDelayMs: 0,
    adoptHoldMs: 0,
    ...over,
  };
}
function makePool(backend: FakeBackend, size = 4, batch = 3, retryMs = 60_000): WarmPool {
  return new WarmPool(backend, settings({ size, batch, retryMs }), { warn: (m) => void warnings.push(m) });
}

async function until(what: string, cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('warm pool', () => {
  it('fills to size in batches, with every port plugged, and hands out ports only for its subnets', async () => {
    const b = new FakeBackend();
    const pool = makePool(b, 7, 3);
    pool.register(SPEC, 'docker-net');
    await until('pool full', () => pool.stats().ready === 7);
    assert.deepEqual(b.createCalls, [3, 3, 1]);
    assert.equal(b.plugged.size, 7);
    assert.deepEqual(pool.specFor('sub-a6'), { networkId: 'net-a', subnetIds: ['sub-a4', 'sub-a6'] });
    assert.equal(pool.take('sub-b4'), undefined, 'no pool for that subnet');
    const taken = pool.take('sub-a4');
    assert.ok(taken && b.neutron.has(taken.id));
    assert.deepEqual(taken.fixed_ips.map((f) => f.subnet_id).sort(), ['sub-a4', 'sub-a6']);
  });

  it('a start asking for the address of a port still being made (--ip) gets that port once its batch is in', async () => {
    const b = new FakeBackend();
    let plugged = (): void => undefined;
    b.plugGate = new Promise((resolve) => {
      plugged = resolve;
    });
    const pool = makePool(b, 2, 2);
    pool.register(SPEC);
    await until('created in Neutron', () => b.neutron.size === 2);
    const [holder] = [...b.neutron.values()];
    assert.ok(holder);
    assert.equal(pool.takeById(holder.id), undefined, 'not in the pool yet');
    const got = pool.takeByIdOnceMade(holder, 10_000);
    // Not taken while it is being plugged: the start waits for the batch, not for the timeout.
    assert.equal(await Promise.race([got, sleep(50).then(() => 'waiting')]), 'waiting');
    plugged();
    assert.equal((await got)?.id, holder.id, 'the port that holds the address');
    assert.equal(pool.stats().ready, 1, 'the other one stays');
    // Handed out already: nothing to wait for, whatever the timeout.
    const t0 = Date.now();
    assert.equal(await pool.takeByIdOnceMade(holder, 10_000), undefined);
    // Not a port of a batch of this pool's (another host's, a user's): not waited for either.
    assert.equal(
      await pool.takeByIdOnceMade({ ...port(SPEC), description: 'kuryr-pool other' }, 10_000),
      undefined,
    );
    assert.ok(Date.now() - t0 < 1_000, 'no wait for a port that is not coming');
  });

  it('a start asking for the address of a port whose batch is slow waits no longer than it is told', async () => {
    const b = new FakeBackend();
    b.plugGate = new Promise(() => undefined); // never plugged
    const pool = makePool(b, 2, 2);
    pool.register(SPEC);
    await until('created in Neutron', () => b.neutron.size === 2);
    const [holder] = [...b.neutron.values()];
    assert.ok(holder);
    const t0 = Date.now();
    assert.equal(await pool.takeByIdOnceMade(holder, 100), undefined);
    assert.ok(Date.now() - t0 >= 90, 'it did wait for the batch');
  });

  it('is off with enabled = false: nothing is made, nothing handed out', async () => {
    const b = new FakeBackend();
    const pool = new WarmPool(b, settings({ enabled: false }), { warn: () => undefined });
    assert.equal(pool.enabled, false);
    pool.register(SPEC);
    await sleep(20);
    assert.equal(b.createCalls.length, 0);
    assert.equal(pool.take('sub-a4'), undefined);
  });

  it('hands out ACTIVE ports first (marked ACTIVE) and refills after each take, one refill at a time', async () => {
    const b = new FakeBackend();
    b.createDelayMs = 10;
    const pool = makePool(b, 4, 4);
    pool.register(SPEC);
    await until('pool full and active', () => pool.stats().active === 4);
    const first = pool.take('sub-a4');
    assert.equal(first?.status, 'ACTIVE');
    // A burst of takes while the refill runs: never two creates at once for one pool.
    const burst = [pool.take('sub-a4'), pool.take('sub-a4'), pool.take('sub-a6'), pool.take('sub-a4')];
    assert.equal(burst.filter(Boolean).length, 3, 'three left, then empty');
    assert.equal(burst[3], undefined);
    await until('refilled', () => pool.stats().ready === 4);
    assert.equal(b.maxInFlight, 1);
    const ids = new Set([first, ...burst].filter(Boolean).map((p) => p?.id));
    assert.equal(ids.size, 4, 'no port handed out twice');
  });

  it('keeps following a port the agent is slow to wire, until it is ACTIVE', async () => {
    const b = new FakeBackend();
    b.slowWaits = 5;
    b.activeAfterMs = 5;
    const pool = makePool(b, 2, 2);
    pool.register(SPEC);
    await until('both ports ACTIVE', () => pool.stats().active === 2);
    assert.equal(b.slowWaits, 0, 'every wait that ended early was followed by another');
  });

  it('refills a moment after a burst of takes, with one request', async () => {
    const b = new FakeBackend();
    const pool = new WarmPool(b, settings({ size: 3, batch: 10, refillDelayMs: 80 }), {
      warn: () => undefined,
    });
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 3);
    for (let i = 0; i < 3; i++) pool.take('sub-a4');
    await sleep(30);
    assert.equal(b.createCalls.length, 1, 'no refill while the containers start');
    await until('refilled', () => pool.stats().ready === 3);
    assert.deepEqual(b.createCalls, [3, 3]);
  });

  it('refills wait for a quiet host: takes on another network put them off (bounded)', async () => {
    const b = new FakeBackend();
    const pool = new WarmPool(b, settings({ size: 4, batch: 10, refillDelayMs: 100 }), {
      warn: () => undefined,
    });
    pool.register(SPEC);
    pool.register(OTHER);
    await until('both filled', () => pool.stats().ready === 8);
    const filled = b.createCalls.length;
    pool.take('sub-a4');
    for (let i = 0; i < 3; i++) {
      await sleep(60);
      pool.take('sub-b4'); // another network's starts keep the host busy
    }
    await sleep(60); // 240 ms after the first take, 60 ms after the last
    assert.equal(b.createCalls.length, filled, 'no refill while starts go on');
    await until('both refilled', () => pool.stats().ready === 8);
    assert.deepEqual(b.createCalls.slice(filled).sort(), [1, 3], 'one refill per network');
  });

  it('after a failed create it backs off instead of hammering Neutron, and warns', async () => {
    const b = new FakeBackend();
    b.failCreate = new Error('Neutron 409 IpAddressGenerationFailure');
    const pool = makePool(b, 3, 3, 60_000);
    warnings.length = 0;
    pool.register(SPEC);
    await until('first attempt', () => b.createCalls.length === 1);
    await sleep(20);
    for (let i = 0; i < 5; i++) assert.equal(pool.take('sub-a4'), undefined);
    await sleep(20);
    assert.equal(b.createCalls.length, 1, 'no retry before the back-off ends');
    assert.ok(warnings.some((w) => w.includes('creating warm-pool ports failed')));
  });

  it('a create that fails while the pool is being drained raises no retry warning (there is nothing to retry)', async () => {
    const b = new FakeBackend();
    b.createDelayMs = 100;
    b.failCreate = new Error('aborted');
    const pool = makePool(b, 3, 3, 50);
    warnings.length = 0;
    pool.register(SPEC);
    await until('create in flight', () => b.inFlight === 1);
    await pool.close();
    await sleep(200); // past the retry back-off
    assert.equal(b.createCalls.length, 1, 'no retry for a drained pool');
    assert.deepEqual(warnings, [], 'no "trying again in 30 s" for a pool that is gone');
  });

  it('keeps the ports of a bulk create that timed out after Neutron made them', async () => {
    const b = new FakeBackend();
    b.createTimesOut = true;
    const pool = makePool(b, 3, 3);
    pool.register(SPEC);
    await until('ports adopted', () => pool.stats().ready === 3);
    assert.equal(b.neutron.size, 3, 'nothing made twice');
    assert.equal(b.plugged.size, 3);
  });

  it('after a timed-out create it keeps only that batch, never a port it already handed out', async () => {
    const b = new FakeBackend();
    const pool = makePool(b, 2, 2);
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 2);
    const handedOut = pool.take('sub-a4'); // its name in Neutron is still the pool's for a while
    assert.ok(handedOut);
    b.createTimesOut = true;
    await until('refilled from the timed-out batch', () => pool.stats().ready === 2);
    const again = [pool.take('sub-a4'), pool.take('sub-a4')].map((p) => p?.id);
    assert.ok(!again.includes(handedOut.id), 'the handed-out port was not taken back');
    await pool.adopt();
    assert.notEqual(pool.take('sub-a4')?.id, handedOut.id);
  });

  it('discard() drops a port being deleted, and a drained network is not registered again', async () => {
    const b = new FakeBackend();
    const pool = makePool(b, 2, 2);
    pool.register(SPEC, 'docker-a');
    await until('filled', () => pool.stats().ready === 2);
    const [first] = await b.listMine();
    assert.ok(first);
    pool.discard(first.id);
    const ids = [pool.take('sub-a4')?.id, pool.take('sub-a4')?.id];
    assert.ok(!ids.includes(first.id));
    await pool.drainDockerNetwork('docker-a', 'net-a');
    pool.register(SPEC, 'docker-a'); // e.g. a lookup that finished after the drain
    pool.registerLater('sub-a6', async () => SPEC);
    await sleep(30);
    assert.equal(pool.stats().pools, 0);
  });

  it('removes the ports of a batch it could not plug', async () => {
    const b = new FakeBackend();
    b.failPlug = new Error('ip: permission denied');
    const pool = makePool(b, 2, 2);
    pool.register(SPEC);
    await until('cleanup', () => b.removed.length === 2);
    assert.equal(b.neutron.size, 0);
    assert.equal(pool.stats().ready, 0);
  });

  it('drains a network while a batch is being made: nothing is left, nothing handed out after', async () => {
    const b = new FakeBackend();
    b.createDelayMs = 50;
    const pool = makePool(b, 3, 3);
    pool.register(SPEC, 'docker-a');
    pool.register(OTHER, 'docker-b');
    await sleep(10); // both creates in flight
    await pool.drainDockerNetwork('docker-a', 'net-a');
    await until('b filled', () => pool.stats().ready === 3);
    assert.equal(pool.take('sub-a4'), undefined);
    assert.equal(
      [...b.neutron.values()].filter((p) => p.network_id === 'net-a').length,
      0,
      'the in-flight batch of the drained network was removed',
    );
    await pool.drainSubnets(['sub-b4']);
    assert.equal(b.neutron.size, 0);
    assert.equal(pool.stats().pools, 0);
  });

  it('close() also deletes pool ports Neutron made after a create timed out, never a handed-out one', async () => {
    const b = new FakeBackend();
    const pool = makePool(b, 2, 2);
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 2);
    const handedOut = pool.take('sub-a4');
    assert.ok(handedOut);
    const late = port(SPEC); // a bulk create that answered after its timeout
    b.neutron.set(late.id, late);
    await until('refilled', () => pool.stats().ready === 2);
    await pool.close();
    assert.deepEqual([...b.neutron.keys()], [handedOut.id]);
  });

  it('close(deadline) gives up on a Neutron too slow to delete: the ports left stay for the next daemon', async () => {
    const b = new FakeBackend();
    const pool = makePool(b, 10, 10);
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 10);
    const slow = b.remove.bind(b);
    b.remove = async (p: Port) => {
      await sleep(400); // 8 at a time: at 300 ms the first 8 are in flight, the other 2 queued
      await slow(p);
    };
    warnings.length = 0;
    const t0 = Date.now();
    await pool.close(300);
    const took = Date.now() - t0;
    assert.ok(took < 1_000, `close took ${took} ms`);
    await sleep(600); // deletions already sent finish; those dropped never start
    assert.equal(
      b.neutron.size,
      2,
      'the 2 deletions not yet sent at the deadline were dropped, the 8 sent finished',
    );
    assert.match(warnings.join('\n'), /not drained within 0.3 s of shutdown; \d+ warm ports left/);
  });

  it('close() drains every pool', async () => {
    const b = new FakeBackend();
    const pool = makePool(b, 2, 2);
    pool.register(SPEC);
    pool.register(OTHER);
    await until('filled', () => pool.stats().ready === 4);
    await pool.close();
    assert.equal(b.neutron.size, 0);
    assert.equal(b.plugged.size, 0);
  });

  it('adopts a previous run’s ports up to size, deletes the surplus, never takes one a container holds', async () => {
    const b = new FakeBackend();
    const mine = Array.from({ length: 6 }, () => port(SPEC, 'ACTIVE'));
    for (const p of mine) b.neutron.set(p.id, p);
    const held = mine[0] as Port;
    b.held.add(held.id);
    const pool = makePool(b, 4, 4);
    const result = await pool.adopt();
    assert.deepEqual(result, { adopted: 4, removed: 1, held: 0 });
    assert.ok(b.neutron.has(held.id), 'the held port is neither adopted nor deleted');
    const handed = new Set<string>();
    for (let i = 0; i < 4; i++) handed.add(pool.take('sub-a4')?.id ?? 'none');
    assert.ok(!handed.has(held.id) && !handed.has('none'));
  });

  /** A previous run's pool ports in "Neutron", and a pool that holds what it finds for `holdMs`. */
  function afterCrash(count: number, holdMs: number, size = 1, spec = SPEC) {
    const b = new FakeBackend();
    const mine = Array.from({ length: count }, () => port(spec, 'ACTIVE'));
    for (const p of mine) b.neutron.set(p.id, p);
    const pool = new WarmPool(b, settings({ size, batch: 1, adoptHoldMs: holdMs }), {
      warn: () => undefined,
    });
    return { b, mine, pool };
  }

  it("holds a previous run's ports until a start on their network comes: one that Docker's retried CreateEndpoint claims meanwhile is neither handed out again nor deleted", async () => {
    const { b, mine, pool } = afterCrash(4, 60_000);
    const [handedBeforeCrash, released] = mine as [Port, Port];
    assert.deepEqual(await pool.adopt(), { adopted: 0, removed: 0, held: 4 });
    assert.equal(pool.stats().ready, 0, 'held: none handed out yet');
    // A start on another network leaves them held.
    assert.equal(pool.take('sub-b4'), undefined);
    assert.equal(b.removed.length, 0, 'held: none deleted yet');
    // Docker's retries reach this process: CreateEndpoint claims one, a rollback releases another.
    b.held.add(handedBeforeCrash.id);
    pool.discard(released.id);
    // The next start on that network: Docker made it wait for the previous one, now done.
    const taken = pool.take('sub-a4');
    assert.ok(taken && taken.id !== handedBeforeCrash.id && taken.id !== released.id);
    // Size 1: of the two free ones, one was the pool's (and is taken); the other goes.
    await until('the surplus deleted', () => b.removed.length === 1);
    assert.ok(!b.removed.includes(handedBeforeCrash.id) && !b.removed.includes(taken.id));
    await until('refilled', () => pool.stats().ready === 1);
    assert.notEqual(pool.take('sub-a4')?.id, handedBeforeCrash.id, 'never handed out again');
  });

  it("without a start on their network, a previous run's ports are the pool's once the hold is over, except one claimed meanwhile", async () => {
    const { b, mine, pool } = afterCrash(3, 50, 4);
    await pool.adopt();
    b.held.add((mine[0] as Port).id); // claimed during the hold
    assert.equal(pool.stats().ready, 0);
    await until('the two free ones adopted', () => pool.stats().ready >= 2);
    assert.equal(b.removed.length, 0);
    const handed = [pool.take('sub-a4')?.id, pool.take('sub-a4')?.id];
    assert.ok(!handed.includes((mine[0] as Port).id) && !handed.includes(undefined));
  });

  it("a port Docker's rollback releases while adoption is still plugging it is never held, adopted or handed out", async () => {
    const { b, mine, pool } = afterCrash(2, 0, 4);
    let plugged = (): void => undefined;
    b.plugGate = new Promise((resolve) => {
      plugged = resolve;
    });
    const adopting = pool.adopt();
    await sleep(10);
    pool.discard((mine[0] as Port).id); // ReleaseAddress: the IPAM deletes it
    plugged();
    assert.deepEqual(await adopting, { adopted: 1, removed: 0, held: 0 });
    assert.equal(pool.take('sub-a4')?.id, (mine[1] as Port).id);
  });

  it("a previous run's port whose veth cannot be made is deleted when the hold ends, the others adopted", async () => {
    const { b, mine, pool } = afterCrash(3, 0, 4);
    b.failPlugFor.add((mine[0] as Port).id);
    assert.deepEqual(await pool.adopt(), { adopted: 2, removed: 1, held: 0 });
    assert.deepEqual(b.removed, [(mine[0] as Port).id]);
  });

  it("--ip of a held port gets that port, whatever the pool's target", async () => {
    const { b, mine, pool } = afterCrash(3, 60_000, 1);
    await pool.adopt();
    const wanted = mine[2] as Port;
    assert.equal(pool.takeById(wanted.id)?.id, wanted.id);
    await until(
      'the other two deleted (size 1: one adopted, then taken; one surplus)',
      () => b.removed.length >= 1,
    );
    assert.ok(!b.removed.includes(wanted.id));
  });

  it("a previous run's ports held while their network is removed go with it, and no pool comes back for it", async () => {
    const { b, pool } = afterCrash(2, 50, 2);
    await pool.adopt();
    await pool.drainSubnets(['sub-a4']); // Docker's ReleasePool, then DeleteNetwork
    assert.equal(b.neutron.size, 0, 'deleted with the network');
    await sleep(100); // the hold is over: nothing is left to adopt, nothing is made
    assert.equal(pool.stats().ready, 0);
    assert.deepEqual(b.createCalls, []);
  });

  it('with the pool off, adoption deletes every leftover pool port', async () => {
    const b = new FakeBackend();
    for (let i = 0; i < 3; i++) {
      const p = port(OTHER);
      b.neutron.set(p.id, p);
    }
    const pool = new WarmPool(b, settings({ enabled: false }), { warn: () => undefined });
    assert.deepEqual(await pool.adopt(), { adopted: 0, removed: 3, held: 0 });
    assert.equal(b.neutron.size, 0);
  });

  it('registerLater resolves the spec once, in the background, and then fills', async () => {
    const b = new FakeBackend();
    const pool = makePool(b, 2, 2);
    let resolved = 0;
    const resolve = async () => {
      resolved++;
      await sleep(10);
      return SPEC;
    };
    pool.registerLater('sub-a4', resolve);
    pool.registerLater('sub-a4', resolve);
    await until('filled', () => pool.stats().ready === 2);
    assert.equal(resolved, 1);
    pool.registerLater('sub-a6', resolve);
    await sleep(20);
    assert.equal(resolved, 1, 'the other subnet of the same pool is known now');
  });
});

describe('warm pool sized by demand (size = 0)', () => {
  const demand = (b: FakeBackend, over: Partial<WarmPoolSettings> = {}) =>
    new WarmPool(b, settings({ size: 0, minSize: 2, maxSize: 6, batch: 10, ...over }), {
      warn: (m) => void warnings.push(m),
    });

  it('an idle network holds min_size ports', async () => {
    const b = new FakeBackend();
    const pool = demand(b);
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 2);
    await sleep(50);
    assert.equal(pool.stats().ready, 2);
    assert.equal(b.neutron.size, 2);
  });

  it('each recent take asks for one more ready port, up to max_size', async () => {
    const b = new FakeBackend();
    const pool = demand(b);
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 2);
    for (let i = 0; i < 3; i++) pool.take('sub-a4'); // the third finds none ready: demand too
    // 3 recent takes: 2 + 3 = 5 ready.
    await until('grown to 5', () => pool.stats().ready === 5);
    for (let i = 0; i < 10; i++) pool.take('sub-a4');
    await until('grown to max_size', () => pool.stats().ready === 6);
    await sleep(50);
    assert.equal(pool.stats().ready, 6, 'never beyond max_size');
  });

  it('starts and removals one after another do not grow the pool: a port that came back is no demand', async () => {
    const b = new FakeBackend();
    const pool = demand(b);
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 2);
    for (let i = 0; i < 6; i++) {
      const p = pool.take('sub-a4');
      assert.ok(p, `start ${i} found a warm port`);
      if (i === 0) await until('the refill the first take asked for', () => b.createCalls.length === 2);
      await sleep(20); // time for any refill a later take would ask for
      assert.ok(pool.recycle({ ...p, device_id: `ep-${i}` }), 'taken back');
    }
    await sleep(50);
    // The first take asked for one more ready port (2 + 1, with the one out); nothing after.
    assert.deepEqual(b.createCalls, [2, 2]);
    assert.equal(b.neutron.size, 4);
  });

  it("a port handed out before the demand window comes back without cancelling a newer start's demand", async () => {
    const b = new FakeBackend();
    const pool = demand(b, { demandWindowMs: 200, maxSize: 10 });
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 2);
    const old = pool.take('sub-a4');
    assert.ok(old);
    await until('refilled for it', () => pool.stats().ready === 3);
    await sleep(250); // its take is out of the window
    for (let i = 0; i < 3; i++) assert.ok(pool.take('sub-a4'));
    await until('grown for the three recent takes', () => pool.stats().ready === 5);
    assert.ok(pool.recycle({ ...old, device_id: 'ep-old' }));
    await sleep(50);
    assert.equal(pool.stats().ready, 6, 'the old port is back; the three recent takes still count');
    pool.take('sub-a4');
    await sleep(50);
    // Four recent takes: 2 + 4 = 6 ready (the old port's return cancelled none of them).
    assert.equal(pool.stats().ready, 6);
  });

  it('recent demand expires with the window', async () => {
    const b = new FakeBackend();
    const pool = demand(b, { demandWindowMs: 100 });
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 2);
    pool.take('sub-a4');
    pool.take('sub-a4');
    await until('refilled to 4', () => pool.stats().ready === 4);
    await sleep(150);
    pool.take('sub-a4'); // the two old takes are out of the window: target 2 + 1 = 3
    await sleep(50);
    assert.equal(pool.stats().ready, 3);
  });

  it('max_ports bounds the host over all networks', async () => {
    const b = new FakeBackend();
    const pool = demand(b, { minSize: 3, maxPorts: 4 });
    pool.register(SPEC);
    pool.register(OTHER);
    await until('bounded', () => pool.stats().ready === 4);
    await sleep(50);
    assert.equal(pool.stats().ready, 4);
    assert.equal(b.neutron.size, 4);
  });

  it('ports given back beyond a pool target make room under max_ports for a new network', async () => {
    const b = new FakeBackend();
    const pool = demand(b, { minSize: 1, maxSize: 2, maxPorts: 4, refillDelayMs: 60_000 });
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 1);
    const out = [pool.take('sub-a4')];
    // The pool's timers never hold the process open (the daemon's server does): this test does.
    const alive = setInterval(() => undefined, 50);
    for (let i = 0; i < 3; i++) out.push(await pool.takeOrWait('sub-a4', 2_000));
    clearInterval(alive);
    for (const p of out) assert.ok(p && pool.recycle(p), 'taken back');
    assert.equal(pool.stats().ready, 4, 'the host is at max_ports, two beyond the target of 2');
    pool.register(OTHER);
    await until('the new network got its min_size', () => pool.stats().ready === 4 && b.removed.length === 1);
    assert.ok(pool.take('sub-b4'), 'a warm port on the new network');
    assert.ok(b.removed[0] && out.some((p) => p?.id === b.removed[0]), "one of the first network's surplus");
    await sleep(50);
    assert.equal(b.removed.length, 1, 'only what the new network needed; the rest waits for the trim');
  });

  it('a pool nobody took from for idle_timeout gives back all but min_size', async () => {
    const b = new FakeBackend();
    const pool = demand(b, { idleMs: 200, demandWindowMs: 100 });
    pool.register(SPEC);
    await until('filled', () => pool.stats().ready === 2);
    let handedOut = 0;
    for (let i = 0; i < 4; i++) if (pool.take('sub-a4')) handedOut++;
    await until('grown', () => pool.stats().ready === 6);
    await until('shrunk to min_size', () => pool.stats().ready === 2, 3_000);
    await until('surplus deleted in Neutron', () => b.neutron.size === 2 + handedOut, 3_000);
    await sleep(300);
    assert.equal(pool.stats().ready, 2, 'stays at min_size while idle');
  });

  it('a burst on an empty pool shares one bulk request instead of making a port per start', async () => {
    const b = new FakeBackend();
    b.createDelayMs = 50;
    const pool = demand(b, { minSize: 0, maxSize: 10 });
    pool.register(SPEC);
    await sleep(20);
    const got = await Promise.all(Array.from({ length: 6 }, () => pool.takeOrWait('sub-a4', 2_000)));
    assert.equal(got.filter(Boolean).length, 6, 'every start got a port');
    assert.equal(new Set(got.map((p) => p?.id)).size, 6, 'never the same port twice');
    assert.deepEqual(b.createCalls.slice(0, 1), [6], 'one bulk request for the burst');
  });

  it('starts that outgrow the batch in flight get a batch of their own at once, not after it', async () => {
    const b = new FakeBackend();
    b.createDelayMs = 200;
    const pool = demand(b, { minSize: 0, maxSize: 20, batch: 10 });
    pool.register(SPEC);
    await sleep(20);
    const t0 = Date.now();
    const first = Array.from({ length: 3 }, () => pool.takeOrWait('sub-a4', 5_000));
    await sleep(80); // the first batch (3) is in flight
    const second = Array.from({ length: 8 }, () => pool.takeOrWait('sub-a4', 5_000));
    const got = await Promise.all([...first, ...second]);
    const ms = Date.now() - t0;
    assert.equal(got.filter(Boolean).length, 11, 'every start got a port');
    assert.equal(new Set(got.map((p) => p?.id)).size, 11, 'never the same port twice');
    assert.deepEqual(b.createCalls.slice(0, 2), [3, 8], 'one batch per wave');
    assert.equal(b.maxInFlight, 2, 'the second wave did not wait for the first batch');
    assert.ok(ms < 2 * 200 + 80, `both waves served in ${ms} ms, less than two creates one after the other`);
  });

  it('waiting starts are let go when the batch fails, or when their wait runs out', async () => {
    const b = new FakeBackend();
    b.createDelayMs = 50;
    b.failCreate = new Error('Neutron 503');
    const pool = demand(b, { minSize: 0 });
    pool.register(SPEC);
    await sleep(80);
    assert.equal(await pool.takeOrWait('sub-a4', 2_000), undefined, 'a failed batch lets them go at once');
    const slow = new FakeBackend();
    slow.createDelayMs = 500;
    const pool2 = demand(slow, { minSize: 0 });
    pool2.register(SPEC);
    const t0 = Date.now();
    assert.equal(await pool2.takeOrWait('sub-a4', 100), undefined);
    assert.ok(Date.now() - t0 < 400, 'the wait is bounded');
  });

  it('takes back a port it handed out, hands it out again; beyond its size only until it is left alone', async () => {
    const b = new FakeBackend();
    // Refills (and deletes) wait for a quiet host: here, a second.
    const pool = new WarmPool(b, settings({ size: 2, batch: 2, refillDelayMs: 1_000, trimAfterMs: 300 }), {
      warn: () => undefined,
    });
    pool.register({ networkId: 'net-a', subnetIds: ['sub-a4'] });
    await until('pool full', () => pool.stats().ready === 2);
    const [one, two] = [pool.take('sub-a4'), pool.take('sub-a4')];
    assert.ok(one && two);
    assert.equal(pool.stats().ready, 0);
    assert.equal(pool.recycle({ ...one, device_id: 'ep-1' }), true);
    assert.equal(pool.recycle({ ...one, device_id: 'ep-1' }), false, 'a replayed release is not taken twice');
    assert.equal(
      pool.recycle({ ...port(SPEC), device_id: 'ep-x' }),
      false,
      'never a port it did not hand out',
    );
    assert.equal(pool.recycle({ ...two, device_id: 'ep-2' }), true);
    assert.deepEqual(b.reused, [one.id, two.id]);
    const again = pool.take('sub-a4');
    assert.ok(again && [one.id, two.id].includes(again.id), 'a recycled port is handed out again');
    assert.equal(again.device_id, '', 'as a warm port, its old endpoint gone');
    assert.equal(again.status, 'ACTIVE');
    // A start that found the pool empty gets a port made for it (no top-up during a burst).
    const three = pool.take('sub-a4');
    const four = await pool.takeOrWait('sub-a4', 2_000);
    assert.ok(three && four && again.id !== three.id);
    assert.equal(pool.stats().ready, 0);
    // Three back, one beyond its size: kept while starts may follow the removal, then given back.
    for (const p of [again, three, four]) assert.equal(pool.recycle(p), true);
    assert.equal(pool.stats().ready, 3);
    assert.equal(b.removed.length, 0, 'nothing deleted at once');
    await until('trimmed to its size once left alone', () => pool.stats().ready === 2, 3_000);
    await until('the surplus deleted', () => b.removed.length === 1);
    assert.deepEqual(b.createCalls, [2, 1], 'one port made, for the start that found the pool empty');
  });

  it('gives back ports beyond its size only once starts on the host pause', async () => {
    const b = new FakeBackend();
    const activity = new HostActivity();
    const pool = new WarmPool(
      b,
      settings({ size: 1, batch: 1, refillDelayMs: 400, trimAfterMs: 200 }),
      { warn: () => undefined },
      activity,
    );
    pool.register({ networkId: 'net-a', subnetIds: ['sub-a4'] });
    await until('pool full', () => pool.stats().ready === 1);
    const [one, two] = [pool.take('sub-a4'), await pool.takeOrWait('sub-a4', 2_000)];
    assert.ok(one && two);
    for (const p of [one, two]) assert.equal(pool.recycle(p), true);
    // Starts on another network go on for 1.5 s: this pool is left alone, the host is not.
    for (let t = 0; t < 15; t++) {
      activity.started();
      await sleep(100);
    }
    assert.equal(b.removed.length, 0, 'no delete while starts go on');
    await until('the surplus deleted once starts paused', () => b.removed.length === 1, 3_000);
    assert.equal(pool.stats().ready, 1);
  });

  it('takes nothing back beyond the host bound (max_ports)', async () => {
    const b = new FakeBackend();
    const pool = new WarmPool(b, settings({ size: 2, batch: 2, maxPorts: 2, refillDelayMs: 60_000 }), {
      warn: () => undefined,
    });
    pool.register({ networkId: 'net-a', subnetIds: ['sub-a4'] });
    await until('pool full', () => pool.stats().ready === 2);
    const [a, c] = [pool.take('sub-a4'), pool.take('sub-a4')];
    const waited = await pool.takeOrWait('sub-a4', 2_000); // a port made for it: three out
    assert.ok(a && c && waited);
    assert.equal(pool.recycle(a), true);
    assert.equal(pool.recycle(c), true);
    assert.equal(pool.recycle(waited), false, 'the host holds max_ports: the caller deletes it');
  });

  it('takes back a port made for a start that found the pool empty (a burst) as well', async () => {
    const b = new FakeBackend();
    const pool = new WarmPool(b, settings({ size: 2, batch: 1, refillDelayMs: 60_000 }), {
      warn: () => undefined,
    });
    pool.register({ networkId: 'net-a', subnetIds: ['sub-a4'] });
    await until('pool full', () => pool.stats().ready === 2);
    assert.ok(pool.take('sub-a4') && pool.take('sub-a4'));
    const waited = await pool.takeOrWait('sub-a4', 2_000);
    assert.ok(waited, 'made for it');
    assert.equal(pool.stats().ready, 0, 'no top-up while the burst may go on');
    assert.equal(pool.recycle(waited), true);
    assert.equal(pool.take('sub-a4')?.id, waited.id);
  });

  it('does not take back a port whose veth is gone, nor one released after its network was drained', async () => {
    const b = new FakeBackend();
    const pool = demand(b, { minSize: 2, maxSize: 4 });
    pool.register({ networkId: 'net-a', subnetIds: ['sub-a4'] }, 'docker-a');
    await until('pool filled', () => pool.stats().ready === 2);
    const gone = pool.take('sub-a4');
    const kept = pool.take('sub-a4');
    assert.ok(gone && kept);
    b.vethGone.add(gone.id);
    assert.equal(pool.recycle(gone), false);
    await pool.drainDockerNetwork('docker-a', 'net-a');
    assert.equal(pool.recycle(kept), false, 'the network is going: the port goes with it');
    assert.deepEqual(b.reused, []);
  });
});
