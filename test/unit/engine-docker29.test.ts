// Docker 28/29 semantics against the real drivers (buildDrivers) over the HTTP layer, with the
// in-process fake Neutron: GwAllocCheck answers, and moby 29's driver proxy for
// Program/RevokeExternalConnectivity, modelled on daemon/libnetwork/drivers/remote/driver.go at
// docker-v29.7.2: it remembers each endpoint's Join options and gateway role, sends Program only
// when the role changes, Revoke when it is lost, and forgets everything when the plugin is
// registered again (a managed plugin re-enabled or restarted), after which nothing is sent.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { BoundInterface, HostBinder } from '../../src/binding/index.js';
import { containerIfaceName, hostIfaceName, type VethState } from '../../src/binding/veth.js';
import { buildDrivers } from '../../src/daemon.js';
import { OptionKeys } from '../../src/docker/protocol.js';
import { buildServer } from '../../src/docker/server.js';
import { createNeutronClient } from '../../src/neutron/from-config.js';
import type { Port } from '../../src/neutron/types.js';
import { loadFixtures, requestOf } from '../fixtures/moby.js';
import { fakeNeutronConfig } from './helpers/config.js';
import { silentLogger } from './helpers/fake-drivers.js';
import { FakeNeutron } from './helpers/fake-neutron.js';

const HOST = 'test-host';
const hexId = () => randomBytes(32).toString('hex');
const moby29 = loadFixtures().find((f) => f.file === 'moby-29/container-lifecycle.json')?.fixture;
if (!moby29) throw new Error('fixture moby-29/container-lifecycle.json missing');
/** The sandbox options moby 29 sends with Join (and Program): --expose 8080 -p 9000:9000/udp. */
const SANDBOX_OPTIONS = (requestOf(moby29, 'NetworkDriver.Join') as { Options: Record<string, unknown> })
  .Options;

/** No host networking in unit tests. */
class NoHost implements HostBinder {
  async bind(port: Port): Promise<BoundInterface> {
    return { host: hostIfaceName(port.id), container: containerIfaceName(port.id) };
  }
  async unbind(): Promise<void> {}
  containerIface(port: Pick<Port, 'id'>): string {
    return containerIfaceName(port.id);
  }
  vethState(): VethState {
    return 'absent';
  }
  async recordEndpoint(): Promise<void> {}
  async recordPool(): Promise<void> {}
  recordedEndpoint(): string | undefined {
    return undefined;
  }
  portOfRecordedEndpoint(): string | undefined {
    return undefined;
  }
}

let fake: FakeNeutron;
let app: FastifyInstance;
let stop: () => Promise<void>;
let settle: () => Promise<void>;

beforeEach(async () => {
  fake = await FakeNeutron.start({ agentHost: HOST });
  const config = fakeNeutronConfig(fake.url, HOST);
  const neutron = createNeutronClient(config);
  const noop = () => undefined;
  const drivers = buildDrivers(
    config,
    neutron,
    { warn: noop, warnDetail: noop, activeWaited: noop },
    new NoHost(),
  );
  app = buildServer({ network: drivers.network, ipam: drivers.ipam, logger: silentLogger });
  settle = () => drivers.settle();
  stop = async () => {
    await app.close();
    await drivers.pool.close();
    await drivers.settle();
    await neutron.close();
  };
});
afterEach(async () => {
  await stop();
  await fake.close();
});

async function call<T = Record<string, unknown>>(method: string, body?: unknown, status = 200): Promise<T> {
  const res = await app.inject({
    method: 'POST',
    url: `/${method}`,
    headers: { 'content-type': 'application/vnd.docker.plugins.v1.2+json' },
    payload: body === undefined ? '' : JSON.stringify(body),
  });
  assert.equal(res.statusCode, status, `${method}: ${res.body}`);
  return res.json() as T;
}

const ENGINE_OPTIONS = { [OptionKeys.enableIPv4]: true, [OptionKeys.enableIPv6]: false };

/** docker network create on moby 29: GwAllocCheck, pool, gateway (unless skipped), CreateNetwork. */
async function createNetwork(cidr: string, extra: Record<string, unknown> = {}) {
  const id = hexId();
  const options = { ...ENGINE_OPTIONS, [OptionKeys.generic]: {}, ...extra };
  const skip = await call<{ SkipIPv4: boolean }>('NetworkDriver.GwAllocCheck', { Options: options });
  await call('IpamDriver.GetDefaultAddressSpaces');
  const pool = await call<{ PoolID: string; Pool: string }>('IpamDriver.RequestPool', {
    AddressSpace: 'no_address_space',
    Pool: cidr,
    SubPool: '',
    Options: null,
    V6: false,
  });
  const gateway = skip.SkipIPv4
    ? undefined
    : (
        await call<{ Address: string }>('IpamDriver.RequestAddress', {
          PoolID: pool.PoolID,
          Address: '',
          Options: { [OptionKeys.requestAddressType]: OptionKeys.gatewayAddressType },
        })
      ).Address;
  await call('NetworkDriver.CreateNetwork', {
    NetworkID: id,
    Options: options,
    IPv4Data: [
      { AddressSpace: 'no_address_space', Pool: pool.Pool, ...(gateway ? { Gateway: gateway } : {}) },
    ],
    IPv6Data: [],
  });
  return { id, poolId: pool.PoolID, gateway };
}

/** docker run / network connect up to Join (moby 29: the endpoint's name in RequestAddress). */
async function createEndpoint(net: { id: string; poolId: string }, name: string) {
  const id = hexId();
  const mac = `02:42:0a:${randomBytes(3).toString('hex').match(/../g)?.join(':')}`;
  const { Address } = await call<{ Address: string }>('IpamDriver.RequestAddress', {
    PoolID: net.poolId,
    Address: '',
    Options: { [OptionKeys.endpointName]: name, [OptionKeys.macAddress]: mac },
  });
  await call('NetworkDriver.CreateEndpoint', {
    NetworkID: net.id,
    EndpointID: id,
    Interface: { Address, AddressIPv6: '', MacAddress: mac },
    Options: SANDBOX_OPTIONS,
  });
  return { id, net: net.id, poolId: net.poolId, ip: Address.split('/')[0] as string };
}
type Ep = Awaited<ReturnType<typeof createEndpoint>>;

/** moby 29's remote driver proxy: per registration, what it remembers about endpoints. */
class Docker29Proxy {
  private known = new Map<string, { options: Record<string, unknown>; gw4: boolean; gw6: boolean }>();
  readonly sent: string[] = [];

  async join(ep: Ep): Promise<void> {
    await call('NetworkDriver.Join', {
      NetworkID: ep.net,
      EndpointID: ep.id,
      SandboxKey: `/var/run/docker/netns/${randomBytes(6).toString('hex')}`,
      Options: SANDBOX_OPTIONS,
    });
    this.known.set(ep.id, { options: SANDBOX_OPTIONS, gw4: false, gw6: false });
  }

  /** ProgramExternalConnectivity(nid, eid, gw4Id, gw6Id) as the proxy handles it. */
  async program(ep: Ep, gw4?: Ep, gw6?: Ep): Promise<void> {
    const state = this.known.get(ep.id);
    if (!state) throw new Error(`remote network driver: endpoint ${ep.id} not found`);
    const [isGw4, isGw6] = [gw4?.id === ep.id, gw6?.id === ep.id];
    if (state.gw4 === isGw4 && state.gw6 === isGw6) return;
    if (!isGw4 && !isGw6) {
      state.gw4 = state.gw6 = false;
      this.sent.push(`Revoke ${ep.id.slice(0, 4)}`);
      await call('NetworkDriver.RevokeExternalConnectivity', { NetworkID: ep.net, EndpointID: ep.id });
      return;
    }
    [state.gw4, state.gw6] = [isGw4, isGw6];
    const options = !isGw6 && gw6 ? { ...state.options, [OptionKeys.noProxy6To4]: true } : state.options;
    this.sent.push(`Program ${ep.id.slice(0, 4)}`);
    await call('NetworkDriver.ProgramExternalConnectivity', {
      NetworkID: ep.net,
      EndpointID: ep.id,
      Options: options,
    });
  }

  /** sbLeave: program with no gateway (errors are only logged by Docker), then Leave. */
  async leave(ep: Ep): Promise<void> {
    await this.program(ep).catch(() => undefined);
    await call('NetworkDriver.Leave', { NetworkID: ep.net, EndpointID: ep.id });
    this.known.delete(ep.id);
  }

  /** The plugin registered again: a new proxy, with no endpoint state. */
  reregister(): void {
    this.known = new Map();
  }
}

/** docker rm -f after Leave: DeleteEndpoint, ReleaseAddress. */
async function removeEndpoint(ep: Ep): Promise<void> {
  await call('NetworkDriver.DeleteEndpoint', { NetworkID: ep.net, EndpointID: ep.id });
  await call('IpamDriver.ReleaseAddress', { PoolID: ep.poolId, Address: ep.ip });
  await settle(); // the port's DELETE runs behind ReleaseAddress's answer
}

const portOf = (ep: Ep) =>
  [...fake.state.ports.values()].find((p) => p.fixed_ips.some((f) => f.ip_address === ep.ip));

/** The port's exposed-ports group as Neutron has it, its ingress rules ("tcp 8080-8080"), or undefined. */
function exposedGroup(ep: Ep): { attached: boolean; rules: string[] } | undefined {
  const port = portOf(ep);
  if (!port) return undefined;
  const group = [...fake.state['security-groups'].values()].find(
    (g) => g.name === `${port.id}-exposed_ports`,
  );
  if (!group) return undefined;
  const rules = [...fake.state['security-group-rules'].values()]
    .filter((r) => r.security_group_id === group.id && r.direction === 'ingress')
    .map((r) => `${r.protocol} ${r.port_range_min}-${r.port_range_max}`)
    .sort();
  return { attached: port.security_groups.includes(group.id as string), rules };
}
const EXPECTED_RULES = ['tcp 8080-8080', 'udp 9000-9000'];
const groupsLeft = () => [...fake.state['security-groups'].values()].filter((g) => g.name !== 'default');

describe('GwAllocCheck (Docker ≥ 28) answered by the real driver', () => {
  it('GetCapabilities says GwAllocChecker', async () => {
    const caps = await call('NetworkDriver.GetCapabilities');
    assert.deepEqual(caps, { Scope: 'local', ConnectivityScope: 'local', GwAllocChecker: true });
  });

  it('--internal: both families skip the gateway (Neutron subnets get gateway_ip null); no Neutron call', async () => {
    const req = requestOf(
      loadFixtures().find((f) => f.file === 'moby-28/internal-network.json')?.fixture ?? moby29,
      'NetworkDriver.GwAllocCheck',
    );
    const before = fake.log.length;
    assert.deepEqual(await call('NetworkDriver.GwAllocCheck', req), { SkipIPv4: true, SkipIPv6: true });
    assert.equal(fake.log.length, before);
  });

  it('an ordinary network keeps its gateway reserved in both families', async () => {
    const req = requestOf(moby29, 'NetworkDriver.GwAllocCheck');
    assert.deepEqual(await call('NetworkDriver.GwAllocCheck', req), { SkipIPv4: false, SkipIPv6: false });
    const ipv6Only = {
      Options: { ...ENGINE_OPTIONS, [OptionKeys.enableIPv4]: false, [OptionKeys.enableIPv6]: true },
    };
    assert.deepEqual(await call('NetworkDriver.GwAllocCheck', ipv6Only), {
      SkipIPv4: false,
      SkipIPv6: false,
    });
  });

  it('-o neutron.subnet[.v6].*: skipped for a named subnet without a gateway, kept for one with', async () => {
    const { network } = await fakePost<{ network: { id: string } }>('networks', {
      network: { name: 'user-net' },
    });
    const mk = (cidr: string, ip_version: number, gateway_ip: string | null, name: string) =>
      fakePost('subnets', { subnet: { network_id: network.id, cidr, ip_version, gateway_ip, name } });
    await mk('10.61.0.0/24', 4, null, 'no-gw4');
    await mk('10.62.0.0/24', 4, '10.62.0.1', 'gw4');
    await mk('fd00:61::/64', 6, null, 'no-gw6');
    const check = (generic: Record<string, string>) =>
      call('NetworkDriver.GwAllocCheck', { Options: { ...ENGINE_OPTIONS, [OptionKeys.generic]: generic } });
    assert.deepEqual(await check({ 'neutron.net.name': 'user-net', 'neutron.subnet.name': 'no-gw4' }), {
      SkipIPv4: true,
      SkipIPv6: false,
    });
    assert.deepEqual(await check({ 'neutron.subnet.name': 'gw4', 'neutron.subnet.v6.name': 'no-gw6' }), {
      SkipIPv4: false,
      SkipIPv6: true,
    });
  });

  it('a bad -o is refused at GwAllocCheck, before Docker asks for pools', async () => {
    const res = await call<{ Err: string }>(
      'NetworkDriver.GwAllocCheck',
      { Options: { ...ENGINE_OPTIONS, [OptionKeys.generic]: { 'neutron.nett.name': 'x' } } },
      400,
    );
    assert.match(res.Err, /unknown option -o neutron\.nett\.name/);
    const missing = await app.inject({
      method: 'POST',
      url: '/NetworkDriver.GwAllocCheck',
      payload: JSON.stringify({ Options: { [OptionKeys.generic]: { 'neutron.subnet.name': 'nope' } } }),
    });
    assert.notEqual(missing.statusCode, 200);
    assert.match((missing.json() as { Err: string }).Err, /nope/);
  });

  it('an --internal network created the moby 28 way (no gateway requested) gets a subnet without gateway', async () => {
    await createNetwork('10.63.0.0/24', { [OptionKeys.internal]: true });
    const [subnet] = [...fake.state.subnets.values()].filter((s) => s.cidr === '10.63.0.0/24');
    assert.ok(subnet);
    assert.equal(subnet.gateway_ip, null);
  });
});

describe('Docker 29: exposed ports through Program/RevokeExternalConnectivity only on gateway changes', () => {
  it('container start → group with the exposed ports; removal → Revoke, group gone', async () => {
    const docker = new Docker29Proxy();
    const net = await createNetwork('10.64.0.0/24');
    const web = await createEndpoint(net, 'web');
    await docker.join(web);
    await docker.program(web, web); // updateExternalConnectivity: web is the IPv4 gateway
    assert.deepEqual(exposedGroup(web), { attached: true, rules: EXPECTED_RULES });
    await docker.leave(web);
    assert.deepEqual(docker.sent, [`Program ${web.id.slice(0, 4)}`, `Revoke ${web.id.slice(0, 4)}`]);
    assert.equal(exposedGroup(web), undefined);
    await removeEndpoint(web);
    assert.equal(portOf(web), undefined);
    assert.deepEqual(groupsLeft(), []);
  });

  it('plugin registered again: no Revoke ever comes, DeleteEndpoint still removes the group', async () => {
    const docker = new Docker29Proxy();
    const net = await createNetwork('10.65.0.0/24');
    const web = await createEndpoint(net, 'web');
    await docker.join(web);
    await docker.program(web, web);
    assert.ok(exposedGroup(web)?.attached);
    docker.reregister();
    await docker.leave(web); // the proxy does not know web: Docker logs a warning, sends no Revoke
    assert.deepEqual(docker.sent, [`Program ${web.id.slice(0, 4)}`]);
    assert.ok(exposedGroup(web)?.attached, 'still there after Leave');
    await removeEndpoint(web);
    assert.deepEqual(groupsLeft(), []);
  });

  it('the gateway moves to a connected network and back: the group follows it', async () => {
    const docker = new Docker29Proxy();
    const [n, a] = [await createNetwork('10.66.0.0/24'), await createNetwork('10.67.0.0/24')];
    const e1 = await createEndpoint(n, 'web');
    await docker.join(e1);
    await docker.program(e1, e1);
    // docker network connect: e2 sorts first and takes the gateway role.
    const e2 = await createEndpoint(a, 'web');
    await docker.join(e2);
    await docker.program(e1, e2);
    await docker.program(e2, e2);
    assert.equal(exposedGroup(e1), undefined);
    assert.deepEqual(exposedGroup(e2), { attached: true, rules: EXPECTED_RULES });
    // docker network disconnect: e1 is the gateway again.
    await docker.leave(e2);
    await docker.program(e1, e1);
    await removeEndpoint(e2);
    assert.deepEqual(exposedGroup(e1), { attached: true, rules: EXPECTED_RULES });
    assert.deepEqual(
      groupsLeft().map((g) => g.name),
      [`${portOf(e1)?.id}-exposed_ports`],
    );
  });

  it('Program again for a new role (IPv4 gateway, then IPv4 and IPv6) keeps one group with its rules', async () => {
    const docker = new Docker29Proxy();
    const net = await createNetwork('10.68.0.0/24');
    const [web, other] = [await createEndpoint(net, 'web'), await createEndpoint(net, 'other')];
    await docker.join(web);
    await docker.join(other);
    await docker.program(web, web, other); // IPv4 gateway, another endpoint has IPv6: no_proxy_6to4
    await docker.program(web, web, web);
    assert.deepEqual(docker.sent, [`Program ${web.id.slice(0, 4)}`, `Program ${web.id.slice(0, 4)}`]);
    assert.deepEqual(exposedGroup(web), { attached: true, rules: EXPECTED_RULES });
    assert.equal(groupsLeft().length, 1);
  });
});

/** POST to the fake Neutron (user-made resources). */
async function fakePost<T = unknown>(collection: string, body: unknown): Promise<T> {
  const res = await fetch(`${fake.url}/v2.0/${collection}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.ok(res.ok, `POST ${collection}: ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as T;
}
