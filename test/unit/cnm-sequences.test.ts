// Docker's call sequences driven through the real drivers (buildDrivers) against the in-process
// fake Neutron: create, adopt, replay, restart (a fresh process against the same Neutron), run
// concurrently, delete; after each step what Neutron holds is checked, and that the drivers'
// answers agree with it. Covers issue 10: a pre-existing subnet adopted by CIDR (bug 1), a user's
// port handed back as it was (bug 2), kuryr gc never deleting adopted resources, ip_range_mode.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { BoundInterface, HostBinder } from '../../src/binding/index.js';
import { containerIfaceName, hostIfaceName, type VethState } from '../../src/binding/veth.js';
import {
  DEVICE_OWNER,
  dockerIdTags,
  EXISTING_POOL_TAG,
  EXISTING_PORT_TAG,
  existingNetworkTag,
  NET_TAG_HIGH,
  NET_TAG_LOW,
} from '../../src/cnm/naming.js';
import { buildDrivers } from '../../src/daemon.js';
import type { CreateEndpointResponse, IpamDriver, NetworkDriver } from '../../src/docker/protocol.js';
import { OptionKeys } from '../../src/docker/protocol.js';
import { NoAuth } from '../../src/neutron/auth.js';
import { NeutronClient as Client, type NeutronClient } from '../../src/neutron/client.js';
import { createNeutronClient } from '../../src/neutron/from-config.js';
import type { Port } from '../../src/neutron/types.js';
import { findGarbage, removeGarbage } from '../../src/ops/gc.js';
import { fakeNeutronConfig } from './helpers/config.js';
import { FakeNeutron, type FakePort } from './helpers/fake-neutron.js';

const HOST = 'test-host';
const hexId = () => randomBytes(32).toString('hex');
const dockerMac = () =>
  ['02', '42', ...[...randomBytes(4)].map((b) => b.toString(16).padStart(2, '0'))].join(':');

// ------------------------------------------------------------------ the process under test
/** The host side in memory: records bind/unbind, runs no `ip`. */
class MemoryBinder implements HostBinder {
  readonly plugged = new Map<string, { mac: string; mtu: number }>();
  readonly events: string[] = [];
  /** Set: binding waits for it (a warm-pool batch that Neutron made, still being plugged). */
  bindGate?: Promise<void>;
  async bind(port: Port, mtu: number): Promise<BoundInterface> {
    await this.bindGate;
    this.plugged.set(port.id, { mac: port.mac_address, mtu });
    this.events.push(`bind ${port.id}`);
    return { host: hostIfaceName(port.id), container: containerIfaceName(port.id) };
  }
  /** Set: unbind fails with it (the host's switch not up yet). */
  unbindFailure?: Error;
  async unbind(port: Port): Promise<void> {
    if (this.unbindFailure) throw this.unbindFailure;
    this.plugged.delete(port.id);
    this.records.delete(port.id);
    this.events.push(`unbind ${port.id}`);
  }
  containerIface(port: Pick<Port, 'id'>): string {
    return containerIfaceName(port.id);
  }
  /** Ports whose veth's container end a "container" holds (Docker moves it in at Join). */
  readonly inContainers = new Set<string>();
  vethState(port: Pick<Port, 'id'>): VethState {
    if (!this.plugged.has(port.id)) return 'absent';
    return this.inContainers.has(port.id) ? 'in-container' : 'on-host';
  }
  /** Endpoint records on host sides (the interface alias), by port ID: gone with the veth. */
  readonly records = new Map<string, string>();
  async recordEndpoint(port: Pick<Port, 'id'>, endpointId: string): Promise<void> {
    this.pooled.delete(port.id);
    this.records.set(port.id, endpointId);
  }
  recordedEndpoint(port: Pick<Port, 'id'>): string | undefined {
    return this.plugged.has(port.id) ? this.records.get(port.id) : undefined;
  }
  /** Ports whose host side says they are back in the warm pool. */
  readonly pooled = new Set<string>();
  async recordPool(port: Pick<Port, 'id'>): Promise<void> {
    this.records.delete(port.id);
    this.pooled.add(port.id);
  }
  portOfRecordedEndpoint(endpointId: string): string | undefined {
    return [...this.records].find(([id, ep]) => ep === endpointId && this.plugged.has(id))?.[0];
  }
}

interface Kuryr {
  network: NetworkDriver;
  ipam: IpamDriver;
  binder: MemoryBinder;
  warnings: string[];
  /** What Join reported waiting for ACTIVE (seconds), in order. */
  activeWaits: number[];
  neutron: NeutronClient;
  /** Graceful stop (what SIGTERM does). */
  stop(): Promise<void>;
  /** Waits for the clean-up kuryr does in the background (after a network rm). */
  settle(): Promise<void>;
  reapInterruptedStarts(): Promise<number>;
  repairRecordedEndpoints(): Promise<number>;
}

const running: Kuryr[] = [];

/** One kuryr process: config from the environment as the daemon reads it, the real drivers. */
function startKuryr(fake: FakeNeutron, env: Record<string, string> = {}, binder = new MemoryBinder()): Kuryr {
  const config = fakeNeutronConfig(fake.url, HOST, {
    // The warm pool has tests of its own (warm-pool.test.ts); here every port is the CNM's.
    KURYR_VIF_POOL_ENABLED: 'false',
    ...env,
  });
  const neutron = createNeutronClient(config);
  const warnings: string[] = [];
  const activeWaits: number[] = [];
  const drivers = buildDrivers(
    config,
    neutron,
    {
      warn: (m) => void warnings.push(m),
      warnDetail: (m, d) => void warnings.push(d ? `${m} ${JSON.stringify(d)}` : m),
      activeWaited: (s) => void activeWaits.push(s),
    },
    binder,
  );
  const k: Kuryr = {
    network: drivers.network,
    ipam: drivers.ipam,
    binder,
    warnings,
    activeWaits,
    neutron,
    async stop() {
      await drivers.pool.close();
      await drivers.settle();
    },
    settle: () => drivers.settle(),
    reapInterruptedStarts: () => drivers.reapInterruptedStarts(),
    repairRecordedEndpoints: () => drivers.repairRecordedEndpoints(),
  };
  running.push(k);
  return k;
}

/** SIGKILL: the process is gone without any goodbye (nothing it queued runs). */
function kill(k: Kuryr): void {
  running.splice(running.indexOf(k), 1);
  void k.neutron.close();
}

/** A crash: the process is gone without any goodbye; a new one starts against the same Neutron. */
function restart(fake: FakeNeutron, env: Record<string, string> = {}, binder?: MemoryBinder): Kuryr {
  return startKuryr(fake, env, binder);
}

// ------------------------------------------------------------------ Docker's side of the calls
const GATEWAY = { [OptionKeys.requestAddressType]: OptionKeys.gatewayAddressType };

interface DockerPool {
  poolId: string;
  pool: string;
  gateway: string;
}

async function requestPool(
  k: Kuryr,
  cidr: string,
  opts: { subPool?: string; v6?: boolean; ipamOptions?: Record<string, string>; gateway?: string } = {},
): Promise<DockerPool> {
  const res = await k.ipam.requestPool({
    AddressSpace: 'no_address_space',
    Pool: cidr,
    SubPool: opts.subPool ?? '',
    Options: opts.ipamOptions ?? {},
    V6: opts.v6 ?? false,
  });
  const gw = await k.ipam.requestAddress({
    PoolID: res.PoolID,
    Address: opts.gateway ?? '',
    Options: GATEWAY,
  });
  return { poolId: res.PoolID, pool: res.Pool, gateway: gw.Address };
}

async function createNetwork(
  k: Kuryr,
  networkId: string,
  v4: DockerPool[],
  v6: DockerPool[] = [],
  driverOptions: Record<string, string> = {},
): Promise<void> {
  await k.network.createNetwork({
    NetworkID: networkId,
    Options: {
      [OptionKeys.generic]: driverOptions,
      [OptionKeys.enableIPv6]: v6.length > 0,
    },
    IPv4Data: v4.map((p) => ({ AddressSpace: 'no_address_space', Pool: p.pool, Gateway: p.gateway })),
    IPv6Data: v6.map((p) => ({ AddressSpace: 'no_address_space', Pool: p.pool, Gateway: p.gateway })),
  });
}

/** Docker's network rm: IPAM releases first (gateway, pool), then the driver's DeleteNetwork. */
async function removeNetwork(k: Kuryr, networkId: string, pools: DockerPool[]): Promise<void> {
  for (const p of pools) {
    await k.ipam.releaseAddress({ PoolID: p.poolId, Address: p.gateway.split('/')[0] as string });
    await k.ipam.releasePool({ PoolID: p.poolId });
  }
  await k.network.deleteNetwork({ NetworkID: networkId });
  // Docker has its answer; the Neutron side goes in the background.
  await k.settle();
}

async function requestAddress(k: Kuryr, pool: DockerPool, mac: string, address = ''): Promise<string> {
  const res = await k.ipam.requestAddress({
    PoolID: pool.poolId,
    Address: address,
    Options: mac ? { [OptionKeys.macAddress]: mac } : {},
  });
  return res.Address;
}

async function createEndpoint(
  k: Kuryr,
  networkId: string,
  endpointId: string,
  addr: { v4?: string; v6?: string; mac?: string },
): Promise<CreateEndpointResponse> {
  return k.network.createEndpoint({
    NetworkID: networkId,
    EndpointID: endpointId,
    Interface: { Address: addr.v4 ?? '', AddressIPv6: addr.v6 ?? '', MacAddress: addr.mac ?? '' },
    Options: {},
  });
}

async function waitUntil(what: string, cond: () => boolean, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const join = (k: Kuryr, networkId: string, endpointId: string) =>
  k.network.join({
    NetworkID: networkId,
    EndpointID: endpointId,
    SandboxKey: `/var/run/docker/netns/${randomBytes(6).toString('hex')}`,
    Options: {},
  });

/** Docker's stop: Leave, DeleteEndpoint, ReleaseAddress per family. */
async function stopEndpoint(
  k: Kuryr,
  networkId: string,
  endpointId: string,
  released: { pool: DockerPool; ip: string }[],
): Promise<void> {
  await k.network.leave({ NetworkID: networkId, EndpointID: endpointId });
  await k.network.deleteEndpoint({ NetworkID: networkId, EndpointID: endpointId });
  for (const r of released) await k.ipam.releaseAddress({ PoolID: r.pool.poolId, Address: bare(r.ip) });
}

const bare = (cidrAddr: string) => cidrAddr.split('/')[0] as string;

// ------------------------------------------------------------------ what Neutron holds
function inCidr(cidr: string, ip: string): boolean {
  const [net, len] = cidr.split('/');
  if (!net || !len || ip.includes(':') !== net.includes(':')) return false;
  if (ip.includes(':')) return ip.startsWith(net.replace(/::$/, ':'));
  const n = (s: string) => s.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(len));
  return Math.floor(n(ip) / size) === Math.floor(n(net) / size);
}

function taggedNetworks(fake: FakeNeutron, dockerNetworkId: string) {
  const tags = dockerIdTags(dockerNetworkId);
  return fake.all('networks').filter((n) => tags.every((t) => n.tags.includes(t)));
}

const isIdle = (p: FakePort | undefined) => p?.name === 'kuryr-pool-port' && p.device_id === '';

function portsOn(fake: FakeNeutron, networkId: string): FakePort[] {
  return fake.all('ports').filter((p) => p.network_id === networkId);
}

function subnetsOn(fake: FakeNeutron, networkId: string) {
  return fake.all('subnets').filter((s) => s.network_id === networkId);
}

/** Everything about a user's port that kuryr must give back as it found it. */
function userView(p: FakePort) {
  return {
    name: p.name,
    device_owner: p.device_owner,
    device_id: p.device_id,
    host: p['binding:host_id'],
    mac_address: p.mac_address,
    admin_state_up: p.admin_state_up,
    security_groups: [...p.security_groups].sort(),
    tags: [...p.tags].sort(),
    fixed_ips: p.fixed_ips.map((f) => `${f.subnet_id}|${f.ip_address}`).sort(),
  };
}

const hasKuryrTag = (tags: string[]) =>
  tags.some((t) => t.startsWith('kuryr.') || /^[0-9a-f]{8}-[0-9a-f]{4}-/.test(t) || t.startsWith('subnet:'));

// ------------------------------------------------------------------ the suite
let fake: FakeNeutron;

// A fresh Neutron per test: a test that fails half-way leaves nothing for the next one.
beforeEach(async () => {
  fake = await FakeNeutron.start({ agentHost: HOST });
});
afterEach(async () => {
  for (const k of running.splice(0)) {
    await k.stop().catch(() => undefined);
    await k.neutron.close();
  }
  await fake.close();
});

describe('the fake Neutron behaves like Neutron where kuryr depends on it', () => {
  it('subnets from a subnetpool, allocation, conflicts, filters, tags, bulk create, in-use errors', async () => {
    const client = new Client({ auth: new NoAuth(fake.url), timeoutMs: 5000 });
    const pool = await client.create('subnetpools', {
      name: 'fake-selftest',
      prefixes: ['10.250.0.0/16'],
      default_prefixlen: 24,
    });
    assert.equal(pool.default_prefixlen, '24');
    const net = await client.create('networks', { name: 'fake-selftest' });
    const carved = await client.create('subnets', {
      network_id: net.id,
      ip_version: 4,
      subnetpool_id: pool.id,
    });
    assert.equal(carved.cidr, '10.250.0.0/24');
    assert.equal(carved.gateway_ip, '10.250.0.1');
    assert.deepEqual(carved.allocation_pools, [{ start: '10.250.0.2', end: '10.250.0.254' }]);
    await assert.rejects(
      client.create('subnets', { network_id: net.id, ip_version: 4, cidr: '10.251.0.0/24' }),
      /NetworkSubnetPoolAffinityError/,
    );
    const net2 = await client.create('networks', { name: 'fake-selftest-2' });
    await assert.rejects(
      client.create('subnets', {
        network_id: net2.id,
        ip_version: 4,
        subnetpool_id: pool.id,
        cidr: '10.250.0.0/24',
      }),
      /SubnetAllocationError/,
    );
    await assert.rejects(client.create('networks', { name: 'x', tags: ['a'] }), /Unrecognized attribute/);
    const p1 = await client.create('ports', { network_id: net.id });
    assert.equal(p1.fixed_ips[0]?.ip_address, '10.250.0.2');
    assert.equal(p1.status, 'DOWN');
    await assert.rejects(
      client.create('ports', { network_id: net.id, fixed_ips: [{ ip_address: '10.250.0.2' }] }),
      /409 IpAddressAlreadyAllocated/,
    );
    await assert.rejects(
      client.create('ports', { network_id: net.id, mac_address: p1.mac_address }),
      /409 MacAddressInUse/,
    );
    const bound = await client.update('ports', p1.id, {
      'binding:host_id': HOST,
      device_owner: DEVICE_OWNER,
    });
    assert.equal(bound.status, 'ACTIVE');
    assert.equal(bound['binding:vif_type'], 'bridge');
    await assert.rejects(
      client.update('ports', p1.id, { mac_address: '02:00:00:00:00:01' }),
      /409 PortBound/,
    );
    await client.setTags('ports', p1.id, ['a', 'b', 'a']);
    assert.deepEqual((await client.get('ports', p1.id)).tags, ['a', 'b']);
    assert.equal((await client.list('ports', { tags: 'a,b' })).length, 1);
    assert.equal((await client.list('ports', { tags: 'a,c' })).length, 0);
    assert.equal(
      (await client.list('ports', { fixed_ips: [`subnet_id=${carved.id}`, 'ip_address=10.250.0.2'] })).length,
      1,
    );
    assert.equal((await client.list('ports', { fixed_ips: 'ip_address=10.250.0.3' })).length, 0);
    assert.deepEqual(
      Object.keys((await client.list('ports', { id: p1.id, fields: ['id', 'status'] }))[0] ?? {}).sort(),
      ['id', 'status'],
    );
    await assert.rejects(
      client.createMany('ports', [
        { network_id: net.id },
        { network_id: net.id, fixed_ips: [{ ip_address: '10.250.0.2' }] },
      ]),
      /IpAddressAlreadyAllocated/,
    );
    assert.equal(portsOn(fake, net.id).length, 1, 'bulk create is all or none');
    await assert.rejects(client.delete('subnets', carved.id), /409 SubnetInUse/);
    await assert.rejects(client.delete('networks', net.id), /409 NetworkInUse/);
    await assert.rejects(client.delete('subnetpools', pool.id), /409 SubnetPoolInUse/);
    assert.equal(await client.delete('ports', randomUUID()), false, 'a 404 on delete');
    await assert.rejects(client.get('ports', randomUUID()), /404 PortNotFound/);
    fake.failNext({ method: 'DELETE', path: '/ports/', status: 409, type: 'Conflict', message: 'injected' });
    await assert.rejects(client.delete('ports', p1.id), /injected/);
    assert.equal(await client.delete('ports', p1.id), true);
    assert.equal(await client.delete('networks', net.id), true, 'its subnet goes with it');
    assert.equal(fake.get('subnets', carved.id), undefined);
    await client.delete('networks', net2.id);
    await client.delete('subnetpools', pool.id);
    await client.close();
  });
});

describe('Docker sequences on a network kuryr creates', () => {
  it('the whole lifecycle, every call replayed, Neutron agreeing with every answer', async () => {
    let k = startKuryr(fake);
    const net = hexId();
    const ep = hexId();
    const mac = dockerMac();
    const pool = await requestPool(k, '10.20.0.0/24');
    assert.equal(pool.pool, '10.20.0.0/24');
    assert.equal(pool.gateway, '10.20.0.1/24');
    const sp = fake.get('subnetpools', pool.poolId);
    assert.equal(sp?.name, 'kuryrPool-10.20.0.0/24');
    await createNetwork(k, net, [pool]);
    await createNetwork(k, net, [pool]); // replay
    const [n] = taggedNetworks(fake, net);
    assert.ok(n);
    assert.equal(taggedNetworks(fake, net).length, 1);
    const [subnet] = subnetsOn(fake, n.id);
    assert.equal(subnetsOn(fake, n.id).length, 1);
    assert.equal(subnet?.cidr, '10.20.0.0/24');
    assert.equal(subnet?.subnetpool_id, pool.poolId);
    assert.equal(subnet?.gateway_ip, '10.20.0.1');

    const ip = await requestAddress(k, pool, mac);
    const [port] = portsOn(fake, n.id);
    assert.equal(portsOn(fake, n.id).length, 1);
    assert.equal(`${port?.fixed_ips[0]?.ip_address}/24`, ip);
    assert.equal(port?.mac_address, mac);
    await createEndpoint(k, net, ep, { v4: ip, mac });
    await createEndpoint(k, net, ep, { v4: ip, mac }); // replay
    // CreateEndpoint waits for no Neutron request: the endpoint is recorded on the veth, and
    // device_id, name and tags are written behind the answer.
    assert.equal(k.binder.recordedEndpoint({ id: port?.id ?? '' }), ep, 'recorded on the host side');
    await k.settle();
    const claimed = fake.get('ports', port?.id ?? '');
    assert.equal(claimed?.device_id, ep, 'device_id written behind the answer');
    assert.equal(claimed?.device_owner, DEVICE_OWNER);
    assert.equal(claimed?.['binding:host_id'], HOST);
    for (const t of dockerIdTags(ep)) assert.ok(claimed?.tags.includes(t), t);
    const joined = await join(k, net, ep);
    assert.equal(joined.InterfaceName.SrcName, containerIfaceName(port?.id ?? ''));
    assert.equal(joined.Gateway, '10.20.0.1');

    // A restart mid-sequence: the new process only has Neutron.
    k = restart(fake);
    assert.deepEqual(await join(k, net, ep), joined, 'Join replayed after a restart');
    await stopEndpoint(k, net, ep, [{ pool, ip }]);
    await k.settle(); // the DELETE runs behind ReleaseAddress's answer
    assert.equal(fake.get('ports', port?.id ?? ''), undefined, 'ReleaseAddress deletes our port');
    await stopEndpoint(k, net, ep, [{ pool, ip }]); // replayed: idempotent
    await removeNetwork(k, net, [pool]);
    await removeNetwork(k, net, [pool]); // replayed
    assert.equal(fake.get('networks', n.id), undefined);
    assert.equal(fake.get('subnetpools', pool.poolId), undefined);
    assert.equal(fake.get('subnets', subnet?.id ?? ''), undefined);
  });

  it('Join reports its wait for ACTIVE: 0 when the agent was first (OVN often is), the wait when it was not', async () => {
    await fake.close();
    fake = await FakeNeutron.start({ agentHost: HOST, activeOn: 'manual' });
    const env = { KURYR_BINDING_ACTIVE_WAIT_TIMEOUT: '5' };
    let k = startKuryr(fake, env);
    const net = hexId();
    const pool = await requestPool(k, '10.21.0.0/24');
    await createNetwork(k, net, [pool]);
    const start = async () => {
      const ep = hexId();
      const mac = dockerMac();
      const ip = await requestAddress(k, pool, mac);
      await createEndpoint(k, net, ep, { v4: ip, mac });
      await k.settle();
      const port = fake.all('ports').find((p) => p.device_id === ep);
      assert.ok(port, 'the endpoint has its port');
      return { ep, port };
    };
    const first = await start();
    fake.activate(first.port.id); // wired before Docker's Join
    k = restart(fake, env); // a process that learns the port's status from Neutron
    await join(k, net, first.ep);
    assert.deepEqual(k.activeWaits, [0]);
    const second = await start();
    const joining = join(k, net, second.ep);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(k.activeWaits.length, 1, 'Join still waiting for the agent');
    fake.activate(second.port.id);
    await joining;
    assert.equal(k.activeWaits.length, 2);
    assert.ok((k.activeWaits[1] ?? 0) >= 0.25, `waited ${k.activeWaits[1]} s`);
  });

  it('CreateNetwork replayed after a restart converges on one network with one subnet', async () => {
    const k = startKuryr(fake);
    const net = hexId();
    const pool = await requestPool(k, '10.21.0.0/24');
    await createNetwork(k, net, [pool]);
    const k2 = restart(fake);
    await createNetwork(k2, net, [pool]);
    const nets = taggedNetworks(fake, net);
    assert.equal(nets.length, 1, 'no second Neutron network');
    assert.equal(subnetsOn(fake, nets[0]?.id ?? '').length, 1);
    const ip = await requestAddress(k2, pool, dockerMac());
    assert.ok(inCidr('10.21.0.0/24', bare(ip)), ip);
    await k2.ipam.releaseAddress({ PoolID: pool.poolId, Address: bare(ip) });
    await removeNetwork(k2, net, [pool]);
    assert.equal(taggedNetworks(fake, net).length, 0);
    assert.equal(fake.get('subnetpools', pool.poolId), undefined);
  });

  it('RequestPool/RequestAddress/CreateEndpoint replayed after restarts (ipam_request_replay) create nothing twice', async () => {
    const env = { KURYR_DEFAULT_IPAM_REQUEST_REPLAY: 'true' };
    const k = startKuryr(fake, env);
    const net = hexId();
    const ep = hexId();
    const mac = dockerMac();
    const pool = await requestPool(k, '10.22.0.0/24');
    await createNetwork(k, net, [pool]);
    // Docker replays pool and gateway requests after it restarts: the same answers.
    const k2 = restart(fake, env);
    assert.deepEqual(await requestPool(k2, '10.22.0.0/24'), pool, 'the same pool and gateway');
    assert.equal(fake.all('subnetpools').filter((p) => p.name === 'kuryrPool-10.22.0.0/24').length, 1);
    const [n] = taggedNetworks(fake, net);
    assert.ok(n);
    // kuryr dies while answering RequestAddress (the port was made): Docker's plugin client retries
    // the same request against the next process.
    const ip = await requestAddress(k2, pool, mac);
    const [made] = portsOn(fake, n.id);
    const k3 = restart(fake, env);
    assert.equal(await requestAddress(k3, pool, mac), ip, 'the same address again');
    assert.deepEqual(
      portsOn(fake, n.id).map((p) => p.id),
      [made?.id],
      'no second port',
    );
    // The same for CreateEndpoint.
    await createEndpoint(k3, net, ep, { v4: ip, mac });
    const k4 = restart(fake, env);
    await createEndpoint(k4, net, ep, { v4: ip, mac });
    assert.deepEqual(
      portsOn(fake, n.id).map((p) => [p.id, p.device_id]),
      [[made?.id, ep]],
    );
    await join(k4, net, ep);
    await stopEndpoint(k4, net, ep, [{ pool, ip }]);
    await removeNetwork(k4, net, [pool]);
    assert.equal(taggedNetworks(fake, net).length, 0);
    assert.equal(fake.all('subnetpools').filter((p) => p.name === 'kuryrPool-10.22.0.0/24').length, 0);
  });

  it('concurrent starts on one network and two networks with the same CIDR at once', async () => {
    const k = startKuryr(fake);
    const [a, b] = [hexId(), hexId()];
    const [pa, pb] = await Promise.all([requestPool(k, '10.23.0.0/24'), requestPool(k, '10.23.0.0/24')]);
    assert.notEqual(pa.poolId, pb.poolId);
    await Promise.all([createNetwork(k, a, [pa]), createNetwork(k, b, [pb])]);
    const [na] = taggedNetworks(fake, a);
    const [nb] = taggedNetworks(fake, b);
    assert.ok(na && nb && na.id !== nb.id);
    const starts = Array.from({ length: 6 }, (_, i) => ({
      ep: hexId(),
      mac: dockerMac(),
      pool: i % 2 ? pb : pa,
      net: i % 2 ? b : a,
    }));
    const ips = await Promise.all(
      starts.map(async (s) => {
        const ip = await requestAddress(k, s.pool, s.mac);
        await createEndpoint(k, s.net, s.ep, { v4: ip, mac: s.mac });
        await join(k, s.net, s.ep);
        return ip;
      }),
    );
    await k.settle(); // device_id is written behind CreateEndpoint's answer
    for (const [net, count] of [
      [na, 3],
      [nb, 3],
    ] as const) {
      const ports = portsOn(fake, net.id);
      assert.equal(ports.length, count);
      assert.equal(new Set(ports.map((p) => p.fixed_ips[0]?.ip_address)).size, count, 'distinct addresses');
      assert.ok(ports.every((p) => p.device_owner === DEVICE_OWNER && p.device_id));
    }
    await Promise.all(
      starts.map((s, i) => stopEndpoint(k, s.net, s.ep, [{ pool: s.pool, ip: ips[i] as string }])),
    );
    await Promise.all([removeNetwork(k, a, [pa]), removeNetwork(k, b, [pb])]);
    assert.equal(fake.get('networks', na.id), undefined);
    assert.equal(fake.get('networks', nb.id), undefined);
    assert.equal(fake.all('subnetpools').filter((p) => p.name === 'kuryrPool-10.23.0.0/24').length, 0);
  });

  it('a pool released and requested again with the same CIDR works in the same process', async () => {
    const k = startKuryr(fake);
    for (let round = 0; round < 2; round++) {
      const net = hexId();
      const pool = await requestPool(k, '10.24.0.0/24');
      await createNetwork(k, net, [pool]);
      const ip = await requestAddress(k, pool, dockerMac());
      assert.ok(inCidr('10.24.0.0/24', bare(ip)), `round ${round}: ${ip}`);
      await k.ipam.releaseAddress({ PoolID: pool.poolId, Address: bare(ip) });
      await removeNetwork(k, net, [pool]);
      assert.equal(taggedNetworks(fake, net).length, 0);
    }
    assert.equal(fake.all('subnetpools').filter((p) => p.name === 'kuryrPool-10.24.0.0/24').length, 0);
  });
});

// ------------------------------------------------------------------ issue 10, bug 1
describe('with the defaults: warm pool on, sized by demand', () => {
  const POOL_ON = { KURYR_VIF_POOL_ENABLED: 'true' };

  it('asks Docker for no MAC; a start takes a warm port (no Neutron request waited for); network rm returns before the teardown, which leaves nothing', async () => {
    const k = startKuryr(fake, POOL_ON);
    assert.equal((await k.ipam.getCapabilities()).RequiresMACAddress, false);
    const net = hexId();
    const pool = await requestPool(k, '10.21.0.0/24');
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    assert.ok(n);
    // min_size (2) warm ports, made in one bulk request, bound here and plugged.
    await waitUntil('the pool to fill', () => portsOn(fake, n.id).length === 2);
    const warm = portsOn(fake, n.id).map((p) => p.id);
    fake.clearLog();
    const ep = hexId();
    const ip = await requestAddress(k, pool, '');
    // RequestAddress takes it from memory (its subnets are read ahead, in the background, for
    // Join). CreateEndpoint records the endpoint on the veth and writes device_id behind its
    // answer; Join finds the port ACTIVE in memory: Docker waits for no Neutron request.
    // (The pool's refill, a bulk POST of ports, runs in the background meanwhile.)
    const asked = () =>
      fake.log
        .map((r) => `${r.method} ${r.resource}`)
        .filter((r) => r !== 'GET subnets' && r !== 'POST ports');
    assert.deepEqual(asked(), [], 'RequestAddress asked Neutron nothing');
    await createEndpoint(k, net, ep, { v4: ip });
    await join(k, net, ep);
    assert.deepEqual(asked(), [], 'CreateEndpoint and Join asked Neutron nothing');
    await k.settle();
    assert.ok(asked().includes('PUT ports'), 'device_id written behind');
    const mine = portsOn(fake, n.id).find((p) => `${p.fixed_ips[0]?.ip_address}/24` === ip);
    assert.ok(mine && warm.includes(mine.id), 'the container got a warm port');
    await stopEndpoint(k, net, ep, [{ pool, ip }]);
    for (const [id, call] of [
      [pool.poolId, () => k.ipam.releasePool({ PoolID: pool.poolId })],
      [net, () => k.network.deleteNetwork({ NetworkID: net })],
    ] as const) {
      assert.ok(id);
      await call();
    }
    assert.ok(fake.get('networks', n.id), 'Docker got its answer before the network was deleted');
    await k.settle();
    assert.equal(fake.get('networks', n.id), undefined);
    assert.equal(fake.get('subnetpools', pool.poolId), undefined);
    assert.equal(fake.all('ports').length, 0, 'the warm ports went too');
  });

  /** A kuryr with a fixed-size pool and a network whose warm ports are all made. */
  async function warmNetwork(cidr: string, size: number) {
    const k = startKuryr(fake, { ...POOL_ON, KURYR_VIF_POOL_SIZE: String(size) });
    const net = hexId();
    const pool = await requestPool(k, cidr);
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    assert.ok(n);
    await waitUntil('the pool to fill', () => portsOn(fake, n.id).length === size);
    return { k, net, pool, n };
  }

  it('starts on one network share one subnet read for their Joins, and a Join 2 s later reads again (a new route shows)', async () => {
    const { k, net, pool, n } = await warmNetwork('10.21.9.0/24', 6);
    fake.slowDown('GET', '/subnets', 200); // as a busy neutron-server: the first read is on its way through the burst
    // Docker serialises a network's RequestAddress and CreateEndpoint; the Joins run together.
    const eps: string[] = [];
    for (let i = 0; i < 5; i++) {
      const ep = hexId();
      await createEndpoint(k, net, ep, { v4: await requestAddress(k, pool, '') });
      eps.push(ep);
    }
    const joined = await Promise.all(eps.map((ep) => join(k, net, ep)));
    for (const j of joined) assert.equal(j.Gateway, '10.21.9.1');
    assert.equal(fake.requests('GET', 'subnets').length, 1, 'five starts, one subnet read');

    const [subnet] = subnetsOn(fake, n.id);
    assert.ok(subnet);
    await new Promise((r) => setTimeout(r, 2_100));
    fake.seedUpdate('subnets', subnet.id, {
      host_routes: [{ destination: '10.99.0.0/16', nexthop: '10.21.9.254' }],
    });
    const late = hexId();
    await createEndpoint(k, net, late, { v4: await requestAddress(k, pool, '') });
    const lateJoin = await join(k, net, late);
    assert.deepEqual(lateJoin.StaticRoutes, [
      { Destination: '10.99.0.0/16', RouteType: 0, NextHop: '10.21.9.254' },
    ]);
    assert.equal(fake.requests('GET', 'subnets').length, 2, 'a read older than 2 s is not used');
  });

  it('a start never reuses a subnet read answered before it began: each one learns that Neutron answers now', async () => {
    const { k, net, pool } = await warmNetwork('10.21.10.0/24', 3);
    for (const ep of [hexId(), hexId()]) {
      await createEndpoint(k, net, ep, { v4: await requestAddress(k, pool, '') });
      await join(k, net, ep);
    }
    assert.equal(fake.requests('GET', 'subnets').length, 2, 'one read per start, however close together');
    fake.failNext({
      method: 'GET',
      path: '/subnets',
      status: 503,
      type: 'ServiceUnavailable',
      message: 'down',
      times: 50, // beyond the client's own retries of a GET
    });
    const third = hexId();
    await createEndpoint(k, net, third, { v4: await requestAddress(k, pool, '') });
    await assert.rejects(join(k, net, third), /down/, 'Neutron down: the start fails, as without sharing');
  });

  it('docker rm gives a warm port back to the pool: veth kept, identity reset behind, reused by a later start; nothing deleted or made for it', async () => {
    const k = startKuryr(fake, POOL_ON);
    const net = hexId();
    const pool = await requestPool(k, '10.21.5.0/24');
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    assert.ok(n);
    await waitUntil('the pool to fill', () => portsOn(fake, n.id).length === 2);
    const ep = hexId();
    const ip = await requestAddress(k, pool, '');
    await createEndpoint(k, net, ep, { v4: ip });
    await join(k, net, ep);
    await k.settle(); // its identity is in Neutron, the pool refilled
    const port = portsOn(fake, n.id).find((p) => p.device_id === ep);
    assert.ok(port, 'the endpoint has its port');
    assert.ok(
      port.tags.some((t) => ep.startsWith(t.split(':')[1] ?? '-')),
      'tagged with the endpoint',
    );
    fake.clearLog();
    await stopEndpoint(k, net, ep, [{ pool, ip }]);
    assert.ok(k.binder.plugged.has(port.id), 'the veth stays plugged');
    assert.ok(k.binder.pooled.has(port.id), "the veth says it is the pool's");
    assert.equal(k.binder.recordedEndpoint(port), undefined, 'and no longer names the endpoint');
    await k.settle();
    const reset = fake.get('ports', port.id);
    assert.ok(reset, 'not deleted');
    assert.equal(reset.device_id, '');
    assert.equal(reset.name, 'kuryr-pool-port');
    assert.equal(reset['binding:host_id'], HOST, 'still bound here');
    assert.ok(!reset.tags.some((t) => t.startsWith('kuryr.net.uuid')), `endpoint tags gone: ${reset.tags}`);
    const calls = fake.log.map((r) => `${r.method} ${r.resource}`);
    assert.ok(
      !calls.includes('DELETE ports') && !calls.includes('POST ports'),
      `nothing deleted or made: ${calls}`,
    );
    // A restarted daemon's gc would keep it too: it is a pool port of a live network now.
    // The later starts take the warm ports; one of them is this one, unchanged in Neutron but for its identity.
    const held = portsOn(fake, n.id).length;
    const got: string[] = [];
    for (let i = 0; i < held && !got.includes(ip); i++) got.push(await requestAddress(k, pool, ''));
    assert.ok(got.includes(ip), `a later start got the recycled port's address (${got} of ${held})`);
    const ep2 = hexId();
    await createEndpoint(k, net, ep2, { v4: ip });
    await join(k, net, ep2);
    await k.settle();
    assert.equal(fake.get('ports', port.id)?.device_id, ep2, 'the same port, given to the new endpoint');
    assert.ok(k.binder.recordedEndpoint(port) === ep2 && !k.binder.pooled.has(port.id));
    await stopEndpoint(k, net, ep2, [{ pool, ip }]);
    await k.settle();
    // A container removed before its identity reached Neutron: its port needs no reset write.
    fake.clearLog();
    assert.equal(await requestAddress(k, pool, '', bare(ip)), ip, '--ip of it: the same warm port');
    const ep3 = hexId();
    await createEndpoint(k, net, ep3, { v4: ip });
    await join(k, net, ep3);
    await stopEndpoint(k, net, ep3, [{ pool, ip }]);
    await k.settle();
    const writes = fake.log.filter((r) => r.method === 'PUT' || r.method === 'DELETE').map((r) => r.path);
    assert.ok(!writes.some((w) => w.includes(port.id)), `no write to the port: ${writes}`);
    assert.ok(isIdle(fake.get('ports', port.id)), 'and it is an idle warm port');
    for (const other of got.filter((a) => a !== ip))
      await k.ipam.releaseAddress({ PoolID: pool.poolId, Address: bare(other) });
    await removeNetwork(k, net, [pool]);
    assert.equal(fake.all('ports').length, 0, 'network rm takes the recycled ports too');
    assert.equal(k.binder.plugged.size, 0, 'and their veths');
  });

  it("--mac-address of a recycled port's MAC takes that port out of the pool: no other start gets it", async () => {
    const k = startKuryr(fake, POOL_ON);
    const net = hexId();
    const pool = await requestPool(k, '10.21.6.0/24');
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    assert.ok(n);
    await waitUntil('the pool to fill', () => portsOn(fake, n.id).length === 2);
    const ep = hexId();
    const mac = dockerMac();
    const ip = await requestAddress(k, pool, '');
    await createEndpoint(k, net, ep, { v4: ip, mac }); // Docker 26 tells the MAC only here
    await stopEndpoint(k, net, ep, [{ pool, ip }]);
    await k.settle();
    const recycled = portsOn(fake, n.id).find((p) => p.mac_address === mac);
    assert.ok(recycled && recycled.device_id === '', 'back in the pool with its MAC');
    // docker run --mac-address of that MAC (Docker 20.10 asks IPAM with it).
    const again = await requestAddress(k, pool, mac);
    assert.equal(again, ip, 'served by the port that has the MAC');
    const others: string[] = [];
    const warm = portsOn(fake, n.id).length;
    for (let i = 0; i < warm; i++) others.push(await requestAddress(k, pool, ''));
    assert.ok(!others.includes(ip), `no other start got it: ${others}`);
    for (const a of [again, ...others])
      await k.ipam.releaseAddress({ PoolID: pool.poolId, Address: bare(a) });
    await removeNetwork(k, net, [pool]);
    assert.equal(fake.all('ports').length, 0);
  });

  it('--mac-address with a warm port: CreateEndpoint gives the port that MAC', async () => {
    const k = startKuryr(fake, POOL_ON);
    const net = hexId();
    const pool = await requestPool(k, '10.21.1.0/24');
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    await waitUntil('the pool to fill', () => portsOn(fake, n?.id ?? '').length === 2);
    const ep = hexId();
    const ip = await requestAddress(k, pool, '');
    const res = await createEndpoint(k, net, ep, { v4: ip, mac: '02:42:0a:15:01:07' });
    const port = portsOn(fake, n?.id ?? '').find((p) => p.device_id === ep);
    assert.equal(port?.mac_address, '02:42:0a:15:01:07');
    assert.deepEqual(res.Interface ?? {}, {}, 'Docker chose the MAC: kuryr answers none');
    await stopEndpoint(k, net, ep, [{ pool, ip }]);
    await removeNetwork(k, net, [pool]);
    assert.equal(fake.all('ports').length, 0);
  });

  /** A new network whose pool's first batch is in Neutron: one of its ports, and the address it drew. */
  async function networkWithWarmPorts(k: Kuryr, cidr: string) {
    const net = hexId();
    const pool = await requestPool(k, cidr);
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    await waitUntil('the batch in Neutron', () => portsOn(fake, n?.id ?? '').length === 2);
    const [warm] = portsOn(fake, n?.id ?? '');
    const held = warm?.fixed_ips[0]?.ip_address;
    assert.ok(n && warm && held);
    return { net, pool, n, warm, held };
  }

  it('--ip of an address a warm port drew (Neutron picks them at random) gets that warm port', async () => {
    const k = startKuryr(fake, POOL_ON);
    const { net, pool, warm, held } = await networkWithWarmPorts(k, '10.21.2.0/24');
    const ep = hexId();
    const ip = await requestAddress(k, pool, '', held);
    assert.equal(ip, `${held}/24`);
    await createEndpoint(k, net, ep, { v4: ip });
    await k.settle();
    assert.equal(fake.get('ports', warm.id)?.device_id, ep, 'the endpoint got the warm port itself');
    // The other warm port is still the pool's: a start without --ip takes it, not the same one.
    const other = await requestAddress(k, pool, '');
    assert.notEqual(other, ip);
    await k.ipam.releaseAddress({ PoolID: pool.poolId, Address: bare(other) });
    await stopEndpoint(k, net, ep, [{ pool, ip }]);
    await removeNetwork(k, net, [pool]);
    assert.equal(fake.all('ports').length, 0);
  });
  it('--ip of an address a warm port drew while its batch is still being plugged waits for the batch and gets that port', async () => {
    const k = startKuryr(fake, POOL_ON);
    let plugged = (): void => undefined;
    k.binder.bindGate = new Promise((resolve) => {
      plugged = resolve;
    });
    // Neutron has made the batch (the addresses are taken); the pool is still plugging it.
    const { net, pool, n, warm, held } = await networkWithWarmPorts(k, '10.21.3.0/24');
    const asked = requestAddress(k, pool, '', held);
    await waitUntil('the POST of that address answered 409', () =>
      fake.log.some((r) => r.method === 'POST' && r.resource === 'ports' && r.status === 409),
    );
    plugged();
    assert.equal(await asked, `${held}/24`);
    const ep = hexId();
    await createEndpoint(k, net, ep, { v4: `${held}/24` });
    await k.settle();
    assert.equal(fake.get('ports', warm.id)?.device_id, ep, 'the endpoint got the warm port itself');
    assert.equal(portsOn(fake, n.id).length, 2, 'no port made for the start');
    await stopEndpoint(k, net, ep, [{ pool, ip: `${held}/24` }]);
    await removeNetwork(k, net, [pool]);
    await k.settle();
    assert.equal(fake.all('ports').length, 0);
  });

  it('a host side that cannot be unplugged (Open vSwitch not up after a reboot) still lets the Neutron port go, and says why', async () => {
    const k = startKuryr(fake);
    const net = hexId();
    const pool = await requestPool(k, '10.21.4.0/24');
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    const ep = hexId();
    const mac = dockerMac();
    const ip = await requestAddress(k, pool, mac);
    await createEndpoint(k, net, ep, { v4: ip, mac });
    await k.settle();
    k.binder.unbindFailure = new Error('ovs-vsctl: database connection failed');
    // DeleteEndpoint leaves kuryr's port plugged; it is unplugged with its deletion (ReleaseAddress).
    await k.network.deleteEndpoint({ NetworkID: net, EndpointID: ep });
    await k.ipam.releaseAddress({ PoolID: pool.poolId, Address: bare(ip) });
    await k.settle();
    assert.deepEqual(portsOn(fake, n?.id ?? ''), [], 'the port went all the same');
    assert.ok(
      k.warnings.some((w) => /releasing .* failed.*database connection failed/.test(w)),
      `warned: ${k.warnings.join(' | ')}`,
    );
    k.binder.unbindFailure = undefined;
    await removeNetwork(k, net, [pool]);
  });

  it('ReleaseAddress answers before the DELETE; --ip of that address waits for it; network rm goes after it', async () => {
    const k = startKuryr(fake); // Docker's MACs: no warm port
    const net = hexId();
    const pool = await requestPool(k, '10.21.3.0/24');
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    const ep = hexId();
    const mac = dockerMac();
    const ip = await requestAddress(k, pool, mac);
    await createEndpoint(k, net, ep, { v4: ip, mac });
    await k.settle();
    const [port] = portsOn(fake, n?.id ?? '');
    assert.ok(port);
    fake.slowDown('DELETE', '/ports/', 300);
    const t0 = Date.now();
    await stopEndpoint(k, net, ep, [{ pool, ip }]);
    assert.ok(Date.now() - t0 < 250, `docker rm did not wait for the DELETE (${Date.now() - t0} ms)`);
    assert.ok(fake.get('ports', port.id), 'still being deleted');
    // docker run --ip of the same address, at once: it waits for the port to go, then gets a new one.
    const again = await requestAddress(k, pool, dockerMac(), bare(ip));
    assert.equal(again, ip);
    assert.equal(fake.get('ports', port.id), undefined, 'the old port went first');
    const [fresh] = portsOn(fake, n?.id ?? '');
    assert.ok(fresh && fresh.id !== port.id);
    await k.ipam.releaseAddress({ PoolID: pool.poolId, Address: bare(again) });
    await removeNetwork(k, net, [pool]);
    await k.settle();
    assert.equal(fake.all('ports').length, 0);
    assert.equal(fake.get('networks', n?.id ?? ''), undefined, 'the network went after its port');
  });
});

describe('a daemon killed in the middle of a start', () => {
  it('leaves ports the next daemon deletes at start, unless a container holds them or they are newer than that start', async () => {
    const k = startKuryr(fake);
    const net = hexId();
    const pool = await requestPool(k, '10.22.0.0/24');
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    const portAt = (ip: string) =>
      portsOn(fake, n?.id ?? '').find((p) => `${p.fixed_ips[0]?.ip_address}/24` === ip);
    // Four starts when the daemon dies: RequestAddress only; CreateEndpoint but no Join (Docker
    // rolls the start back with no driver to tell); and the same two with the veth's container
    // end in a container (a running container whose identity was, or was not, written).
    const noEndpoint = await requestAddress(k, pool, dockerMac());
    const noJoin = await requestAddress(k, pool, dockerMac());
    await createEndpoint(k, net, hexId(), { v4: noJoin });
    const runningNoEndpoint = await requestAddress(k, pool, dockerMac());
    const running = await requestAddress(k, pool, dockerMac());
    await createEndpoint(k, net, hexId(), { v4: running });
    for (const ip of [runningNoEndpoint, running]) k.binder.inContainers.add(portAt(ip)?.id ?? '');
    // Killed before the endpoints' device_id reached Neutron: only the veths record them.
    const runningEp = k.binder.recordedEndpoint({ id: portAt(running)?.id ?? '' });
    assert.ok(runningEp && k.binder.recordedEndpoint({ id: portAt(noJoin)?.id ?? '' }));
    assert.ok(!portAt(noJoin)?.device_id && !portAt(running)?.device_id && !portAt(noEndpoint)?.device_id);
    const before = new Map(
      [noEndpoint, noJoin, runningNoEndpoint, running].map((ip) => [ip, portAt(ip)?.id]),
    );
    kill(k);
    await new Promise((r) => setTimeout(r, 2_100)); // Neutron's created_at counts seconds
    // Same host: the veths the killed daemon made, and what they record, are still there.
    const next = startKuryr(fake, {}, k.binder);
    // Before start-up's repair, the running container's port is found by its endpoint already.
    assert.equal(
      (await next.network.endpointOperInfo({ NetworkID: net, EndpointID: runningEp })).Value.port_id,
      before.get(running),
    );
    assert.equal(await next.repairRecordedEndpoints(), 2, 'the two recorded endpoints get their device_id');
    await next.settle();
    assert.equal(portAt(running)?.device_id, runningEp);
    const mine = await requestAddress(next, pool, dockerMac()); // a start of the new daemon
    assert.equal(await next.reapInterruptedStarts(), 2);
    assert.equal(fake.get('ports', before.get(noEndpoint) ?? ''), undefined, 'no endpoint: went');
    assert.equal(fake.get('ports', before.get(noJoin) ?? ''), undefined, 'never joined: went');
    assert.ok(!next.binder.plugged.has(before.get(noJoin) ?? ''), 'with its veth');
    for (const ip of [runningNoEndpoint, running]) assert.ok(portAt(ip), `a container holds ${ip}: kept`);
    assert.ok(portAt(mine), "the new daemon's own start is kept");
  });
});

describe('bug 1: a pre-existing subnet matched by CIDR on a joined network', () => {
  const seedUserNetwork = (cidr: string) => {
    const net = fake.seed('networks', { name: 'user-net' });
    fake.seedTags('networks', net.id, ['mine-net']);
    const subnet = fake.seed('subnets', { network_id: net.id, ip_version: 4, cidr, name: 'user-subnet' });
    fake.seedTags('subnets', subnet.id, ['mine-subnet']);
    return { net, subnet };
  };

  /** docker network create --subnet CIDR --gateway GW -o neutron.net.uuid=NET */
  const dockerCreate = async (k: Kuryr, dockerNet: string, netId: string, cidr: string, gw: string) => {
    const pool = await requestPool(k, cidr, { gateway: gw });
    assert.equal(pool.gateway, `${gw}/${cidr.split('/')[1]}`);
    await createNetwork(k, dockerNet, [pool], [], { 'neutron.net.uuid': netId });
    return pool;
  };

  /** After docker network rm: the user's network and subnet are intact, with only their own tags. */
  const assertHandedBack = (u: ReturnType<typeof seedUserNetwork>, cidr: string) => {
    const net = fake.get('networks', u.net.id);
    const subnet = fake.get('subnets', u.subnet.id);
    assert.ok(net, 'the user network still exists');
    assert.ok(subnet, 'the user subnet still exists');
    assert.deepEqual(net.tags, ['mine-net']);
    assert.deepEqual(subnet.tags, ['mine-subnet']);
    assert.equal(subnet.cidr, cidr);
    assert.deepEqual(portsOn(fake, u.net.id), []);
    assert.deepEqual(
      subnetsOn(fake, u.net.id).map((s) => s.id),
      [u.subnet.id],
    );
    assert.deepEqual(
      fake.all('subnetpools').filter((p) => p.name === `kuryrPool-${cidr}`),
      [],
      "kuryr's own subnetpool is gone",
    );
  };

  it('RequestAddress gets an address in the adopted subnet in the same process, and everything is handed back', async () => {
    const u = seedUserNetwork('10.204.0.0/24');
    const k = startKuryr(fake);
    const dockerNet = hexId();
    const pool = await dockerCreate(k, dockerNet, u.net.id, '10.204.0.0/24', '10.204.0.1');
    assert.deepEqual(
      subnetsOn(fake, u.net.id).map((s) => s.id),
      [u.subnet.id],
      'adopted, not duplicated',
    );
    assert.ok(fake.get('subnets', u.subnet.id)?.tags.includes(pool.poolId), 'tagged with the PoolID');
    const mac = dockerMac();
    const ep = hexId();
    // Today: "Docker pool … has no Neutron subnet: its network was not created with -d kuryr".
    const ip = await requestAddress(k, pool, mac);
    assert.ok(inCidr('10.204.0.0/24', bare(ip)), ip);
    const ports = portsOn(fake, u.net.id);
    assert.equal(ports.length, 1);
    assert.deepEqual(ports[0]?.fixed_ips, [{ subnet_id: u.subnet.id, ip_address: bare(ip) }]);
    await createEndpoint(k, dockerNet, ep, { v4: ip, mac });
    const joined = await join(k, dockerNet, ep);
    assert.equal(joined.Gateway, '10.204.0.1');
    await stopEndpoint(k, dockerNet, ep, [{ pool, ip }]);
    await removeNetwork(k, dockerNet, [pool]);
    assertHandedBack(u, '10.204.0.0/24');
  });

  it('works after a restart between CreateNetwork and RequestAddress, and the restarted process hands back', async () => {
    const u = seedUserNetwork('10.205.0.0/24');
    const k = startKuryr(fake);
    const dockerNet = hexId();
    const pool = await dockerCreate(k, dockerNet, u.net.id, '10.205.0.0/24', '10.205.0.1');
    const k2 = restart(fake);
    const mac = dockerMac();
    const ep = hexId();
    const ip = await requestAddress(k2, pool, mac);
    assert.ok(inCidr('10.205.0.0/24', bare(ip)), ip);
    await createEndpoint(k2, dockerNet, ep, { v4: ip, mac });
    await join(k2, dockerNet, ep);
    const k3 = restart(fake);
    await stopEndpoint(k3, dockerNet, ep, [{ pool, ip }]);
    await removeNetwork(k3, dockerNet, [pool]);
    assertHandedBack(u, '10.205.0.0/24');
  });

  it('-o/--ipam-opt neutron.subnet.uuid names the user subnet: used, then kept untouched', async () => {
    const u = seedUserNetwork('10.207.0.0/24');
    const k = startKuryr(fake);
    const dockerNet = hexId();
    const pool = await requestPool(k, '10.207.0.0/24', {
      ipamOptions: { 'neutron.subnet.uuid': u.subnet.id },
      gateway: '10.207.0.1',
    });
    await createNetwork(k, dockerNet, [pool], [], {
      'neutron.net.uuid': u.net.id,
      'neutron.subnet.uuid': u.subnet.id,
    });
    assert.deepEqual(
      subnetsOn(fake, u.net.id).map((s) => s.id),
      [u.subnet.id],
    );
    const mac = dockerMac();
    const ep = hexId();
    const ip = await requestAddress(k, pool, mac);
    assert.equal(portsOn(fake, u.net.id)[0]?.fixed_ips[0]?.subnet_id, u.subnet.id);
    await createEndpoint(k, dockerNet, ep, { v4: ip, mac });
    await join(k, dockerNet, ep);
    await stopEndpoint(k, dockerNet, ep, [{ pool, ip }]);
    await removeNetwork(k, dockerNet, [pool]);
    assertHandedBack(u, '10.207.0.0/24');
  });

  it('the same user subnet adopted again by a new Docker network in the same process', async () => {
    const u = seedUserNetwork('10.206.0.0/24');
    const k = startKuryr(fake);
    for (let round = 0; round < 2; round++) {
      const dockerNet = hexId();
      const pool = await dockerCreate(k, dockerNet, u.net.id, '10.206.0.0/24', '10.206.0.1');
      const ip = await requestAddress(k, pool, dockerMac());
      assert.ok(inCidr('10.206.0.0/24', bare(ip)), `round ${round}: ${ip}`);
      await k.ipam.releaseAddress({ PoolID: pool.poolId, Address: bare(ip) });
      await removeNetwork(k, dockerNet, [pool]);
      assertHandedBack(u, '10.206.0.0/24');
    }
  });
});

// ------------------------------------------------------------------ issue 10, bug 2
describe("bug 2: a user's port taken with --ip is handed back exactly as it was, and kept", () => {
  /** A user network joined by a Docker network whose subnets kuryr makes (-o neutron.net.uuid). */
  const joinedNetwork = async (k: Kuryr, v4: string, v6?: string) => {
    const net = fake.seed('networks', { name: 'user-net' });
    fake.seedTags('networks', net.id, ['mine-net']);
    const dockerNet = hexId();
    const p4 = await requestPool(k, v4);
    const p6 = v6 ? await requestPool(k, v6, { v6: true }) : undefined;
    await createNetwork(k, dockerNet, [p4], p6 ? [p6] : [], { 'neutron.net.uuid': net.id });
    assert.equal(subnetsOn(fake, net.id).length, v6 ? 2 : 1);
    return { net, dockerNet, p4, p6 };
  };

  /** The user's own port: Neutron picks its addresses; a name, tags, unbound, no owner. */
  const userPort = (networkId: string): FakePort => {
    const sg = fake.seed('security-groups', { name: 'user-sg' });
    const port = fake.seed('ports', {
      network_id: networkId,
      name: 'user-port',
      admin_state_up: true,
      security_groups: [fake.defaultSecurityGroupId, sg.id as string],
    });
    fake.seedTags('ports', port.id, ['mine', 'also-mine']);
    return fake.get('ports', port.id) as FakePort;
  };

  const ipOf = (p: FakePort, v: 4 | 6) =>
    p.fixed_ips.find((f) => f.ip_address.includes(':') === (v === 6))?.ip_address as string;

  /** Docker's start with --ip (and --ip6): RequestAddress per family, CreateEndpoint, Join. */
  const start = async (
    k: Kuryr,
    j: Awaited<ReturnType<typeof joinedNetwork>>,
    port: FakePort,
    ep: string,
    mac: string,
  ) => {
    const ip4 = await requestAddress(k, j.p4, mac, ipOf(port, 4));
    assert.equal(ip4, `${ipOf(port, 4)}/24`);
    const ip6 = j.p6 ? await requestAddress(k, j.p6, mac, ipOf(port, 6)) : undefined;
    if (j.p6) assert.equal(ip6, `${ipOf(port, 6)}/64`);
    assert.deepEqual(
      portsOn(fake, j.net.id).map((p) => p.id),
      [port.id],
      'the user port is used: no new port',
    );
    assert.ok(fake.get('ports', port.id)?.tags.includes(EXISTING_PORT_TAG), 'marked kuryr.port.existing');
    await createEndpoint(k, j.dockerNet, ep, { v4: ip4, v6: ip6, mac });
    const taken = fake.get('ports', port.id) as FakePort;
    assert.equal(taken.device_id, ep);
    assert.equal(taken['binding:host_id'], HOST);
    assert.ok(taken.tags.includes(EXISTING_PORT_TAG));
    const joined = await join(k, j.dockerNet, ep);
    assert.equal(joined.InterfaceName.SrcName, containerIfaceName(port.id));
    assert.ok(joined.Gateway);
    if (j.p6) assert.ok(joined.GatewayIPv6);
    return [{ pool: j.p4, ip: ip4 }, ...(j.p6 && ip6 ? [{ pool: j.p6, ip: ip6 }] : [])];
  };

  /** The port is back as the user made it; then the user removes it and the network goes. */
  const assertRestoredAndFinish = async (
    k: Kuryr,
    j: Awaited<ReturnType<typeof joinedNetwork>>,
    before: FakePort,
  ) => {
    const now = fake.get('ports', before.id);
    assert.ok(now, 'the user port still exists');
    assert.deepEqual(userView(now), userView(before));
    assert.ok(!now.tags.includes(EXISTING_PORT_TAG));
    // The user deletes their port (it holds an address on kuryr's subnet), then docker network rm.
    await k.neutron.delete('ports', before.id);
    await removeNetwork(k, j.dockerNet, [j.p4, ...(j.p6 ? [j.p6] : [])]);
    assert.deepEqual(subnetsOn(fake, j.net.id), []);
    assert.deepEqual(fake.get('networks', j.net.id)?.tags, ['mine-net']);
    await k.neutron.delete('networks', j.net.id);
  };

  it('IPv4: RequestAddress --ip uses it, CreateEndpoint with a Docker MAC + Join work, release restores it', async () => {
    const k = startKuryr(fake);
    const j = await joinedNetwork(k, '10.31.0.0/24');
    const before = userPort(j.net.id);
    const ep = hexId();
    const released = await start(k, j, before, ep, dockerMac());
    await stopEndpoint(k, j.dockerNet, ep, released);
    await assertRestoredAndFinish(k, j, before);
  });

  it('dual stack: --ip and --ip6 of a port holding both addresses; both kept on release', async () => {
    const k = startKuryr(fake);
    const j = await joinedNetwork(k, '10.32.0.0/24', 'fd00:32::/64');
    const before = userPort(j.net.id);
    assert.equal(before.fixed_ips.length, 2, 'Neutron gave it one address per family');
    const ep = hexId();
    const released = await start(k, j, before, ep, dockerMac());
    await stopEndpoint(k, j.dockerNet, ep, released);
    await assertRestoredAndFinish(k, j, before);
  });

  it('a restart between CreateEndpoint and DeleteEndpoint/ReleaseAddress still hands it back', async () => {
    const k = startKuryr(fake);
    const j = await joinedNetwork(k, '10.33.0.0/24', 'fd00:33::/64');
    const before = userPort(j.net.id);
    const ep = hexId();
    const released = await start(k, j, before, ep, dockerMac());
    const k2 = restart(fake);
    await stopEndpoint(k2, j.dockerNet, ep, released);
    await assertRestoredAndFinish(k2, j, before);
  });

  it('a crash before DeleteEndpoint: the next process gets only ReleaseAddress and hands it back, not deleting it', async () => {
    const k = startKuryr(fake);
    const j = await joinedNetwork(k, '10.34.0.0/24');
    const before = userPort(j.net.id);
    const ep = hexId();
    const released = await start(k, j, before, ep, dockerMac());
    const k2 = restart(fake);
    for (const r of released) await k2.ipam.releaseAddress({ PoolID: r.pool.poolId, Address: bare(r.ip) });
    await assertRestoredAndFinish(k2, j, before);
  });
});

// ------------------------------------------------------------------ issue 10, part 3
describe('ip_range_mode', () => {
  const SUBNET_MODE = { KURYR_DEFAULT_IP_RANGE_MODE: 'subnet' };

  it('subnet: --subnet 10.4.0.0/16 --ip-range 10.4.0.0/24 becomes a /24 pool and subnet, named as kuryr-libnetwork names them', async () => {
    const k = startKuryr(fake, SUBNET_MODE);
    const net = hexId();
    const pool = await requestPool(k, '10.4.0.0/16', { subPool: '10.4.0.0/24' });
    assert.equal(pool.pool, '10.4.0.0/24', 'RequestPool answers with the range');
    assert.ok(inCidr('10.4.0.0/24', bare(pool.gateway)), pool.gateway);
    const pools = fake.all('subnetpools').filter((p) => p.name.startsWith('kuryrPool-10.4.'));
    assert.deepEqual(
      pools.map((p) => [p.name, p.prefixes]),
      [['kuryrPool-10.4.0.0/24', ['10.4.0.0/24']]],
    );
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    const subnets = subnetsOn(fake, n?.id ?? '');
    assert.deepEqual(
      subnets.map((s) => [s.cidr, s.name, s.subnetpool_id]),
      [['10.4.0.0/24', 'kuryr-subnet-10.4.0.0/24', pools[0]?.id]],
    );
    const ep = hexId();
    const mac = dockerMac();
    const ip = await requestAddress(k, pool, mac);
    assert.ok(inCidr('10.4.0.0/24', bare(ip)) && ip.endsWith('/24'), ip);
    await createEndpoint(k, net, ep, { v4: ip, mac });
    await join(k, net, ep);
    await stopEndpoint(k, net, ep, [{ pool, ip }]);
    await removeNetwork(k, net, [pool]);
    assert.equal(taggedNetworks(fake, net).length, 0);
    assert.equal(fake.all('subnetpools').filter((p) => p.name.startsWith('kuryrPool-10.4.')).length, 0);
  });

  it('subnet: on a joined network an existing subnet equal to the range is adopted, not duplicated, and handed back', async () => {
    const k = startKuryr(fake, SUBNET_MODE);
    const userNet = fake.seed('networks', { name: 'user-net' });
    const userSubnet = fake.seed('subnets', {
      network_id: userNet.id,
      ip_version: 4,
      cidr: '10.4.0.0/24',
      name: 'user-subnet',
    });
    fake.seedTags('subnets', userSubnet.id, ['mine']);
    const net = hexId();
    const pool = await requestPool(k, '10.4.0.0/16', { subPool: '10.4.0.0/24' });
    assert.equal(pool.pool, '10.4.0.0/24');
    await createNetwork(k, net, [pool], [], { 'neutron.net.uuid': userNet.id });
    assert.deepEqual(
      subnetsOn(fake, userNet.id).map((s) => s.id),
      [userSubnet.id],
    );
    assert.ok(
      fake.get('subnets', userSubnet.id)?.tags.includes(pool.poolId),
      'adopted: tagged with the PoolID',
    );
    const ep = hexId();
    const mac = dockerMac();
    const ip = await requestAddress(k, pool, mac);
    assert.equal(portsOn(fake, userNet.id)[0]?.fixed_ips[0]?.subnet_id, userSubnet.id);
    await createEndpoint(k, net, ep, { v4: ip, mac });
    await join(k, net, ep);
    await stopEndpoint(k, net, ep, [{ pool, ip }]);
    await removeNetwork(k, net, [pool]);
    assert.deepEqual(fake.get('subnets', userSubnet.id)?.tags, ['mine']);
    assert.deepEqual(fake.get('networks', userNet.id)?.tags, []);
    await k.neutron.delete('networks', userNet.id);
  });

  it('allocation_pool (default): a /16 subnet whose allocation pool is the /24 range', async () => {
    const k = startKuryr(fake);
    const net = hexId();
    const pool = await requestPool(k, '10.4.0.0/16', { subPool: '10.4.0.0/24' });
    assert.equal(pool.pool, '10.4.0.0/16');
    assert.equal(fake.all('subnetpools').filter((p) => p.name === 'kuryrPool-10.4.0.0/16').length, 1);
    await createNetwork(k, net, [pool]);
    const [n] = taggedNetworks(fake, net);
    const [subnet] = subnetsOn(fake, n?.id ?? '');
    assert.equal(subnet?.cidr, '10.4.0.0/16');
    const pools = subnet?.allocation_pools ?? [];
    assert.ok(pools.length > 0);
    for (const p of pools)
      assert.ok(inCidr('10.4.0.0/24', p.start) && inCidr('10.4.0.0/24', p.end), JSON.stringify(p));
    assert.equal(pools[0]?.start, '10.4.0.2');
    assert.equal(pools.at(-1)?.end, '10.4.0.255');
    const ip = await requestAddress(k, pool, dockerMac());
    assert.ok(inCidr('10.4.0.0/24', bare(ip)) && ip.endsWith('/16'), ip);
    await k.ipam.releaseAddress({ PoolID: pool.poolId, Address: bare(ip) });
    await removeNetwork(k, net, [pool]);
    assert.equal(taggedNetworks(fake, net).length, 0);
  });
});

// ------------------------------------------------------------------ issue 10: gc
describe('kuryr gc never deletes what kuryr adopted', () => {
  it('after a crash: user network, subnet, subnetpools and ports survive (untagged, handed back); kuryr garbage goes', async () => {
    // A user network + subnet that a Docker network (now gone) had joined and adopted.
    const deadNet = hexId();
    const userNet = fake.seed('networks', { name: 'user-net' });
    const userSubnet = fake.seed('subnets', {
      network_id: userNet.id,
      ip_version: 4,
      cidr: '10.77.0.0/24',
      name: 'user-subnet',
    });
    fake.seedTags('subnets', userSubnet.id, ['mine-subnet']);
    // User subnetpools kuryr-libnetwork style marks as used (one named like kuryr's own).
    const userPool = fake.seed('subnetpools', {
      name: 'user-pool',
      prefixes: ['10.78.0.0/16'],
      default_prefixlen: 24,
    });
    fake.seedTags('subnetpools', userPool.id, [EXISTING_POOL_TAG, 'mine-pool']);
    const lookalike = fake.seed('subnetpools', {
      name: 'kuryrPool-10.76.0.0/24',
      prefixes: ['10.76.0.0/24'],
      default_prefixlen: 24,
    });
    fake.seedTags('subnetpools', lookalike.id, [EXISTING_POOL_TAG]);

    // Port A: taken by the real drivers (so the pre-kuryr state is recorded however kuryr does it),
    // on the user subnet adopted by CIDR, which then carries the Docker PoolID.
    const userPortA = fake.seed('ports', { network_id: userNet.id, name: 'user-port-a' });
    fake.seedTags('ports', userPortA.id, ['mine-a']);
    const beforeA = fake.get('ports', userPortA.id) as FakePort;
    const k = startKuryr(fake);
    const poolA = await requestPool(k, '10.77.0.0/24', { gateway: '10.77.0.1' });
    await createNetwork(k, deadNet, [poolA], [], { 'neutron.net.uuid': userNet.id });
    assert.ok(fake.get('subnets', userSubnet.id)?.tags.includes(poolA.poolId), 'adopted');
    const epA = hexId();
    const macA = dockerMac();
    const ipA = await requestAddress(k, poolA, macA, beforeA.fixed_ips[0]?.ip_address);
    await createEndpoint(k, deadNet, epA, { v4: ipA, mac: macA });
    assert.equal(fake.get('ports', userPortA.id)?.device_id, epA, 'taken');

    // Port B: left as kuryr-libnetwork (or a kuryr without a record of the pre-kuryr state) leaves it.
    const userPortB = fake.seed('ports', { network_id: userNet.id, name: 'user-port-b' });
    const epB = hexId();
    fake.seedUpdate('ports', userPortB.id, {
      name: `${epB}-port`,
      device_owner: DEVICE_OWNER,
      device_id: epB,
      'binding:host_id': HOST,
      'binding:vif_type': 'bridge',
      status: 'ACTIVE',
    });
    fake.seedTags('ports', userPortB.id, ['mine-b', EXISTING_PORT_TAG, ...dockerIdTags(epB)]);

    // kuryr's own garbage: a network for a Docker network that is gone, with a kuryr port.
    const ownNet = hexId();
    const ownPool = await requestPool(k, '10.79.0.0/24');
    await createNetwork(k, ownNet, [ownPool]);
    const ownIp = await requestAddress(k, ownPool, dockerMac());
    const ownEp = hexId();
    await createEndpoint(k, ownNet, ownEp, { v4: ownIp, mac: dockerMac() });
    const [ownNeutronNet] = taggedNetworks(fake, ownNet);
    const [ownPort] = portsOn(fake, ownNeutronNet?.id ?? '');
    assert.ok(ownNeutronNet && ownPort);
    // The crash; Docker no longer has either network.
    running.splice(running.indexOf(k), 1);
    await k.neutron.close();

    const client = new Client({ auth: new NoAuth(fake.url), timeoutMs: 5000 });
    try {
      const found = await findGarbage(client, [], {
        host: HOST,
        subnetpoolPrefix: 'kuryrPool',
        minAgeMs: 0,
        now: Date.now() + 5_000,
      });
      // Host interfaces are not this test's (the fake's ports have none): never touch the host.
      const garbage = found.filter((g) => g.kind !== 'veth');
      const { failed } = await removeGarbage(client, garbage);
      assert.deepEqual(failed, []);

      const net = fake.get('networks', userNet.id);
      assert.ok(net, 'user network kept');
      assert.ok(
        !net.tags.some((t) => t.startsWith(NET_TAG_LOW) || t.startsWith(NET_TAG_HIGH)),
        net.tags.join(),
      );
      assert.ok(!net.tags.includes(existingNetworkTag(deadNet)));
      const subnet = fake.get('subnets', userSubnet.id);
      assert.ok(subnet, 'user subnet kept');
      assert.ok(fake.get('subnetpools', userPool.id), 'user subnetpool kept');
      assert.ok(fake.get('subnetpools', lookalike.id), "user subnetpool named like kuryr's kept");

      const a = fake.get('ports', userPortA.id);
      assert.ok(a, 'user port A kept');
      assert.deepEqual(userView(a), userView(beforeA), 'user port A back to its pre-kuryr state');
      const b = fake.get('ports', userPortB.id);
      assert.ok(b, 'user port B kept');
      assert.equal(b.device_owner, '');
      assert.equal(b.device_id, '');
      assert.equal(b['binding:host_id'], '');
      assert.ok(!b.tags.includes(EXISTING_PORT_TAG));
      assert.ok(!b.tags.some((t) => t.startsWith(NET_TAG_LOW) || t.startsWith(NET_TAG_HIGH)));
      assert.ok(b.tags.includes('mine-b'), 'user tags kept');
      assert.ok(!hasKuryrTag(b.tags), b.tags.join());

      assert.equal(fake.get('networks', ownNeutronNet.id), undefined, "kuryr's network removed");
      assert.equal(fake.get('ports', ownPort.id), undefined, "kuryr's port removed");
      assert.equal(fake.get('subnetpools', ownPool.poolId), undefined, "kuryr's subnetpool removed");
      // Last, so that everything above is checked too: the adopted subnet loses kuryr's tag.
      assert.deepEqual(
        subnet.tags,
        ['mine-subnet'],
        "the dead Docker pool's PoolID tag is gone, the user tag stays",
      );
    } finally {
      await client.close();
    }
  });

  it("on one host never judges networks kuryr uses on another host (their Docker networks are not this Docker's)", async () => {
    const k1 = startKuryr(fake, { KURYR_DEFAULT_HOST: 'host1' });
    const net1 = hexId();
    const pool1 = await requestPool(k1, '10.79.0.0/24');
    await createNetwork(k1, net1, [pool1]);
    const [n1] = taggedNetworks(fake, net1);
    assert.ok(n1?.tags.includes(`kuryr.host:host1:${net1.slice(0, 12)}`), 'made on host1, marked so');
    // host2 joins it (local scope, -o neutron.net.uuid): marked by host2 as well.
    const k2 = startKuryr(fake, { KURYR_DEFAULT_HOST: 'host2' });
    const net2 = hexId();
    const pool2 = await requestPool(k2, '10.79.0.0/24'); // host1's subnet, adopted by CIDR
    await createNetwork(k2, net2, [pool2], [], { 'neutron.net.uuid': n1?.id ?? '' });
    // host2's containers get addresses in host1's subnet (by CIDR, without naming the subnet).
    const ip2 = await requestAddress(k2, pool2, dockerMac());
    assert.match(ip2, /^10\.79\.0\.\d+\/24$/);
    assert.equal(subnetsOn(fake, n1?.id ?? '').length, 1, "host1's subnet, not a second one");
    await k2.ipam.releaseAddress({ PoolID: pool2.poolId, Address: ip2 });
    const client = new Client({ auth: new NoAuth(fake.url), timeoutMs: 5000 });
    try {
      // host2's Docker knows only net2; host3's knows nothing: neither touches host1's network.
      for (const [host, docker] of [
        ['host2', [{ Id: net2, Name: 'n', Driver: 'kuryr' }]],
        ['host3', []],
      ] as const) {
        const found = await findGarbage(client, [...docker], {
          host,
          subnetpoolPrefix: 'kuryrPool',
          minAgeMs: 0,
        });
        assert.deepEqual(
          found.filter((g) => g.kind === 'network' || g.kind === 'network-tags').map((g) => g.id),
          [],
          `gc on ${host}`,
        );
      }
      // Once host2 has left it, host1's own gc judges it again: with net1 gone from host1's Docker,
      // the network is garbage there.
      await removeNetwork(k2, net2, [pool2]);
      const [kept] = subnetsOn(fake, n1?.id ?? '');
      assert.ok(kept, "host1's subnet survives host2's network rm");
      assert.ok(!kept.tags.includes(pool2.poolId), "without host2's pool mark");
      assert.equal(fake.get('subnetpools', pool2.poolId), undefined, "host2's own pool went");
      assert.deepEqual(
        fake.get('networks', n1?.id ?? '')?.tags.filter((t) => t.startsWith('kuryr.host:')),
        [`kuryr.host:host1:${net1.slice(0, 12)}`],
        "host2's mark went with its Docker network",
      );
      const found = await findGarbage(client, [], {
        host: 'host1',
        subnetpoolPrefix: 'kuryrPool',
        minAgeMs: 0,
      });
      assert.ok(found.some((g) => g.kind === 'network' && g.id === n1?.id));
    } finally {
      await client.close();
    }
  });
});

describe('Swarm (global scope): the manager allocates, nodes create, bind and leave', () => {
  const swarm = (host: string) =>
    startKuryr(fake, { KURYR_DEFAULT_HOST: host, KURYR_DEFAULT_CAPABILITY_SCOPE: 'global' });

  it("one Neutron network from AllocateNetwork; a task's address reserved unbound, bound by the node that runs it; nodes leaving keep it; FreeNetwork removes it", async () => {
    const manager = swarm('host1');
    const node = swarm('host2');
    const net = hexId();
    // The manager's allocator: pool, gateway, AllocateNetwork, then each task's address.
    const pool = await requestPool(manager, '10.81.0.0/24');
    const allocated = await manager.network.allocateNetwork({
      NetworkID: net,
      Options: { 'neutron.net.shared': 'false' },
      IPv4Data: [{ AddressSpace: 'no_address_space', Pool: pool.pool, Gateway: pool.gateway }],
      IPv6Data: [],
    });
    assert.deepEqual(allocated.Options, { 'neutron.net.shared': 'false' }, 'options travel on to the nodes');
    const [n] = taggedNetworks(fake, net);
    assert.ok(n);
    assert.ok(n.tags.includes(`kuryr.swarm:${net.slice(0, 12)}`), 'marked as the Swarm network');
    assert.equal(subnetsOn(fake, n.id).length, 1, 'the subnet exists before any node creates the network');
    const taskIp = await requestAddress(manager, pool, '');
    const [reserved] = portsOn(fake, n.id);
    assert.equal(reserved?.['binding:host_id'] ?? '', '', 'reserved for whichever node runs the task');
    assert.equal(reserved?.device_id, '');
    assert.equal(manager.binder.plugged.size, 0, 'no veth on the manager for a task it may not run');

    // The node that runs the task: same pool, same Neutron network, the manager's port.
    const nodePool = await requestPool(node, '10.81.0.0/24');
    assert.equal(nodePool.poolId, pool.poolId, "the node's RequestPool finds the manager's pool");
    await createNetwork(node, net, [nodePool], [], { 'neutron.net.shared': 'false' });
    assert.equal(taggedNetworks(fake, net).length, 1, 'never one Neutron network per host');
    assert.equal(await requestAddress(node, nodePool, '', taskIp.split('/')[0]), taskIp);
    assert.equal(portsOn(fake, n.id).length, 1, "the node took the manager's reservation");
    const ep = hexId();
    await createEndpoint(node, net, ep, { v4: taskIp });
    const bound = fake.get('ports', reserved?.id ?? '');
    assert.equal(bound?.['binding:host_id'], 'host2', 'bound to the host that runs the task');
    assert.equal(bound?.device_id, ep);
    assert.ok(node.binder.plugged.has(bound?.id ?? ''), "the node plugged the task's veth");
    await join(node, net, ep);

    // The task ends: the node releases its endpoint (unplugged at once: no warm pool in global
    // scope), address, network and pool ...
    await node.network.leave({ NetworkID: net, EndpointID: ep });
    await node.network.deleteEndpoint({ NetworkID: net, EndpointID: ep });
    assert.ok(!node.binder.plugged.has(bound?.id ?? ''), "DeleteEndpoint unplugged the task's veth");
    await node.ipam.releaseAddress({ PoolID: nodePool.poolId, Address: bare(taskIp) });
    await removeNetwork(node, net, [nodePool]);
    assert.equal(fake.get('ports', reserved?.id ?? ''), undefined, 'the task port went with the task');
    const kept = fake.get('networks', n.id);
    assert.ok(kept, 'the Swarm network stays while the Swarm has it');
    assert.ok(!kept.tags.some((t) => t.startsWith('kuryr.host:host2:')), "host2's mark is gone");
    assert.ok(kept.tags.includes(`kuryr.host:host1:${net.slice(0, 12)}`), "the manager's mark stays");
    assert.equal(subnetsOn(fake, n.id).length, 1, 'its subnet stays');
    assert.ok(fake.get('subnetpools', pool.poolId), 'its pool stays');
    // The manager's own node ran a task too, and left: no host marks the network any more.
    await createNetwork(manager, net, [pool]);
    await manager.network.deleteNetwork({ NetworkID: net });
    await manager.settle();
    assert.ok(!fake.get('networks', n.id)?.tags.some((t) => t.startsWith('kuryr.host:')));
    // host2's Docker no longer lists the network: its gc still leaves the Swarm's network alone.
    const client = new Client({ auth: new NoAuth(fake.url), timeoutMs: 5000 });
    try {
      const found = await findGarbage(client, [], {
        host: 'host2',
        subnetpoolPrefix: 'kuryrPool',
        minAgeMs: 0,
      });
      assert.deepEqual(
        found.filter((g) => g.id === n.id || g.id === pool.poolId),
        [],
        "gc on a node never judges the Swarm's network or pool",
      );
    } finally {
      await client.close();
    }
    // ... then the manager frees the task's address (nothing left to do) and the network.
    await manager.ipam.releaseAddress({ PoolID: pool.poolId, Address: taskIp });
    await manager.network.freeNetwork({ NetworkID: net });
    await manager.settle();
    await manager.ipam.releaseAddress({ PoolID: pool.poolId, Address: pool.gateway.split('/')[0] as string });
    await manager.ipam.releasePool({ PoolID: pool.poolId });
    await manager.settle();
    assert.equal(fake.get('networks', n.id), undefined, 'FreeNetwork removed the Neutron network');
    assert.equal(fake.get('subnetpools', pool.poolId), undefined, 'and ReleasePool its subnetpool');
    assert.equal(fake.all('ports').filter((p) => p.network_id === n.id).length, 0);
  });

  it("a manager never takes a local-scope host's pool of the same CIDR; a node whose CreateNetwork fails leaves the Swarm network tagged", async () => {
    const local = startKuryr(fake, { KURYR_DEFAULT_HOST: 'host3' });
    const localPool = await requestPool(local, '10.84.0.0/24');
    const manager = swarm('host1');
    const pool = await requestPool(manager, '10.84.0.0/24');
    assert.notEqual(pool.poolId, localPool.poolId, "the local host's pool is not the Swarm's");
    const net = hexId();
    await manager.network.allocateNetwork({
      NetworkID: net,
      Options: {},
      IPv4Data: [{ AddressSpace: 'no_address_space', Pool: pool.pool, Gateway: pool.gateway }],
      IPv6Data: [],
    });
    const [n] = taggedNetworks(fake, net);
    assert.ok(n);
    const tagsBefore = [...n.tags];
    // A node whose CreateNetwork fails after finding the network (Neutron refuses a subnet write).
    const node = swarm('host2');
    const nodePool = await requestPool(node, '10.84.0.0/24');
    assert.equal(nodePool.poolId, pool.poolId);
    await assert.rejects(
      node.network.createNetwork({
        NetworkID: net,
        Options: { [OptionKeys.generic]: { 'neutron.subnet.uuid': randomUUID() } },
        IPv4Data: [{ AddressSpace: 'no_address_space', Pool: pool.pool, Gateway: pool.gateway }],
        IPv6Data: [],
      }),
    );
    const after = fake.get('networks', n.id);
    for (const t of tagsBefore) assert.ok(after?.tags.includes(t), `${t} kept for the other nodes`);
  });

  it('AllocateNetwork replayed, and a node creating the network before its AllocateNetwork is seen, converge on one network', async () => {
    const manager = swarm('host1');
    const net = hexId();
    const pool = await requestPool(manager, '10.82.0.0/24');
    const data = [{ AddressSpace: 'no_address_space', Pool: pool.pool, Gateway: pool.gateway }];
    for (let i = 0; i < 2; i++)
      await manager.network.allocateNetwork({ NetworkID: net, Options: {}, IPv4Data: data, IPv6Data: [] });
    await createNetwork(manager, net, [pool]); // the manager runs a task too
    assert.equal(taggedNetworks(fake, net).length, 1);
    assert.equal(subnetsOn(fake, taggedNetworks(fake, net)[0]?.id ?? '').length, 1);
    await manager.network.freeNetwork({ NetworkID: net });
    await manager.network.freeNetwork({ NetworkID: net }); // replayed
    await manager.settle();
    assert.equal(taggedNetworks(fake, net).length, 0);
  });
});
