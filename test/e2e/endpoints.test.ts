// Endpoints end to end: what a container gets from its Neutron port (MTU, routes, internal
// networks), EndpointOperInfo, replayed driver calls, Join waiting for ACTIVE, binding failures,
// exposed ports as security groups, and the host side (tap in the network's bridge). Real Docker
// CLI and daemon, real Neutron and Linux bridge agent. CIDRs 10.61.0.0/16 - 10.69.0.0/16 belong
// to this file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { exposedGroupName } from '../../src/cnm/exposed-ports.js';
import { isKuryrPortOwner, subnetPoolName } from '../../src/cnm/naming.js';
import type { Network, Port, Subnet } from '../../src/neutron/types.js';
import {
  BACKEND_FACTS,
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  detectBackend,
  docker,
  dockerFails,
  expectedBridge,
  HOST,
  hostLinks,
  IMAGE,
  isIdleWarmPort,
  type KuryrProcess,
  networkId,
  neutron,
  neutronNetworksOf,
  pingUntilReply,
  pluggedInto,
  pluginCall,
  portOfEndpoint,
  run,
  startKuryr,
  uniqueName,
  waitFor,
} from './harness.js';

/** Everything one describe() creates, removed in its after() even when a test failed half-way. */
class Created {
  readonly containers: string[] = [];
  readonly networks: string[] = [];
  readonly dockerNetIds: string[] = [];
  readonly cidrs: string[] = [];
  readonly portIds: string[] = [];

  container(name: string): string {
    this.containers.push(name);
    return name;
  }

  /** docker network create -d kuryr --ipam-driver kuryr --subnet <cidr> [extra] <name>. */
  async network(
    prefix: string,
    cidr: string,
    extra: string[] = [],
  ): Promise<{ name: string; dockerId: string; net: Network; subnet: Subnet }> {
    const name = uniqueName(prefix);
    this.networks.push(name);
    this.cidrs.push(cidr);
    await createKuryrNetwork('--subnet', cidr, ...extra, name);
    const dockerId = await networkId(name);
    this.dockerNetIds.push(dockerId);
    const nets = await neutronNetworksOf(dockerId);
    assert.equal(nets.length, 1, `one Neutron network for Docker network ${name}`);
    const net = nets[0] as Network;
    const subnets = await neutron.list('subnets', { network_id: net.id });
    assert.equal(subnets.length, 1, `one Neutron subnet on ${net.id}`);
    return { name, dockerId, net, subnet: subnets[0] as Subnet };
  }

  /** The Neutron port of a container's endpoint on a network (remembered for cleanup). */
  async port(container: string, network: string): Promise<Port> {
    const { endpointId } = await containerNet(container, network);
    const port = await portOfEndpoint(endpointId);
    assert.ok(port, `Neutron port of ${container} (endpoint ${endpointId.slice(0, 12)})`);
    this.portIds.push(port.id);
    return port;
  }

  async cleanup(): Promise<void> {
    const quietly = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        console.error(`cleanup: ${what}: ${(err as Error).message}`);
      }
    };
    await cleanupDocker(this.containers, this.networks);
    // Whatever Docker could not remove through kuryr goes directly.
    for (const id of this.dockerNetIds) {
      await quietly(`Neutron network of ${id.slice(0, 12)}`, async () => {
        for (const net of await neutronNetworksOf(id)) {
          for (const p of await neutron.list('ports', { network_id: net.id }))
            if (!p.device_owner.startsWith('network:')) await neutron.delete('ports', p.id);
          for (const s of await neutron.list('subnets', { network_id: net.id }))
            await neutron.delete('subnets', s.id);
          await neutron.delete('networks', net.id);
        }
      });
    }
    for (const cidr of this.cidrs) {
      await quietly(`subnetpool for ${cidr}`, async () => {
        for (const pool of await neutron.list('subnetpools', { name: subnetPoolName('kuryrPool', cidr) }))
          await neutron.delete('subnetpools', pool.id);
      });
    }
    for (const portId of this.portIds) {
      await quietly(`leftovers of port ${portId}`, async () => {
        await neutron.delete('ports', portId);
        for (const sg of await neutron.list('security-groups', { name: exposedGroupName(portId) }))
          await neutron.delete('security-groups', sg.id);
        for (const link of [`tap${portId.slice(0, 11)}`, `t_c${portId.slice(0, 11)}`])
          if ((await hostLinks(link)).length) await run('ip', ['link', 'del', link]);
      });
    }
  }
}

async function sandboxKey(container: string): Promise<string> {
  return docker('inspect', '-f', '{{.NetworkSettings.SandboxKey}}', container);
}

/** One ping, no retry: true only if the reply came. */
async function pingOnce(from: string, ip: string): Promise<boolean> {
  try {
    const out = await docker('exec', from, 'ping', '-c', '1', '-W', '2', ip);
    return out.includes('1 packets received');
  } catch {
    return false;
  }
}

/** kuryr's ports on the network that serve containers (not the idle warm pool). */
const kuryrPortsOn = async (neutronNetId: string) =>
  (await neutron.list('ports', { network_id: neutronNetId })).filter(
    (p) => isKuryrPortOwner(p.device_owner) && !isIdleWarmPort(p),
  );

describe('endpoint on a kuryr network: MTU, host routes, oper info, host side', () => {
  let kuryr: KuryrProcess;
  const created = new Created();
  const c1 = created.container(uniqueName('ep-c1'));
  let netName = '';
  let dockerNet = '';
  let neutronNet: Network;
  let subnet: Subnet;

  before(async () => {
    kuryr = await startKuryr();
    const made = await created.network('ep-net', '10.61.0.0/24', ['--gateway', '10.61.0.1']);
    ({ name: netName, dockerId: dockerNet, net: neutronNet, subnet } = made);
    // Host routes set on the Neutron subnet after the network exists: Join reads them fresh.
    const updated = await neutron.update('subnets', subnet.id, {
      host_routes: [{ destination: '192.168.77.0/24', nexthop: '10.61.0.254' }],
    });
    assert.deepEqual(updated.host_routes, [{ destination: '192.168.77.0/24', nexthop: '10.61.0.254' }]);
    // A fixed address: Neutron must not give the container the nexthop itself.
    await docker('run', '-d', '--name', c1, '--net', netName, '--ip', '10.61.0.10', IMAGE, 'sleep', '600');
  });
  after(async () => {
    await created.cleanup();
    await kuryr?.stop();
  });

  it("eth0's MTU is the Neutron network's mtu (1450 on vxlan)", async () => {
    const net = await neutron.get('networks', neutronNet.id);
    assert.equal(typeof net.mtu, 'number', 'Neutron reports the network MTU');
    if ((net as unknown as Record<string, unknown>)['provider:network_type'] === 'vxlan')
      assert.equal(net.mtu, 1450);
    assert.equal(Number(await docker('exec', c1, 'cat', '/sys/class/net/eth0/mtu')), net.mtu);
    const port = await created.port(c1, netName);
    // The host end carries the same MTU, or the bridge would drop full-size frames.
    assert.equal(await run('cat', [`/sys/class/net/tap${port.id.slice(0, 11)}/mtu`]), String(net.mtu));
  });

  it("the subnet's host_routes become static routes; the default route goes via the gateway", async () => {
    assert.equal((await containerNet(c1, netName)).ip, '10.61.0.10');
    const routes = await docker('exec', c1, 'ip', 'route');
    assert.match(routes, /^192\.168\.77\.0\/24 via 10\.61\.0\.254 dev eth0/m);
    assert.match(routes, /^default via 10\.61\.0\.1 dev eth0/m);
  });

  it("EndpointOperInfo reports the endpoint's Neutron port", async () => {
    const { endpointId } = await containerNet(c1, netName);
    const port = await created.port(c1, netName);
    const res = await pluginCall('NetworkDriver.EndpointOperInfo', {
      NetworkID: dockerNet,
      EndpointID: endpointId,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const value = res.body.Value as Record<string, unknown>;
    assert.ok(value, `Value in ${JSON.stringify(res.body)}`);
    assert.equal(value.port_id, port.id);
    assert.equal(value.status, 'ACTIVE');
    assert.equal(value.status, port.status);
    assert.equal(value.mac_address, port.mac_address);
    const raw = value.fixed_ips;
    const reported = (
      typeof raw === 'string'
        ? raw.split(',')
        : Array.isArray(raw)
          ? raw.map((f) => (typeof f === 'string' ? f : (f as { ip_address: string }).ip_address))
          : []
    ).sort();
    assert.deepEqual(
      reported,
      port.fixed_ips.map((f) => f.ip_address).sort(),
      `fixed_ips ${JSON.stringify(raw)}`,
    );
  });

  it('the tap is in brq<network-id[:11]> (br-int with OVS) while the container runs; docker rm -f removes both veth ends', async () => {
    const port = await created.port(c1, netName);
    const tap = `tap${port.id.slice(0, 11)}`;
    assert.deepEqual(await hostLinks(tap), [tap]);
    assert.equal(await pluggedInto(tap), await expectedBridge(neutronNet.id));
    assert.equal(port['binding:host_id'], HOST);
    assert.equal(port['binding:vif_type'], BACKEND_FACTS[await detectBackend()].vifType);
    await docker('rm', '-f', c1);
    assert.deepEqual(await hostLinks(tap), []);
    assert.deepEqual(await hostLinks(`t_c${port.id.slice(0, 11)}`), []);
    assert.deepEqual(await neutron.list('ports', { id: port.id }), [], 'the port went with the address');
  });
});

describe('--internal network', () => {
  let kuryr: KuryrProcess;
  const created = new Created();
  const a = created.container(uniqueName('int-a'));
  const b = created.container(uniqueName('int-b'));

  before(async () => {
    kuryr = await startKuryr();
  });
  after(async () => {
    await created.cleanup();
    await kuryr?.stop();
  });

  it('has no gateway in Neutron, no default route in containers, and containers still reach each other', async () => {
    const { name, subnet } = await created.network('int-net', '10.62.0.0/24', ['--internal']);
    assert.equal(subnet.gateway_ip, null, 'Neutron subnet of an --internal network has no gateway');
    await docker('run', '-d', '--name', a, '--net', name, IMAGE, 'sleep', '600');
    await docker('run', '-d', '--name', b, '--net', name, IMAGE, 'sleep', '600');
    for (const c of [a, b]) {
      const routes = await docker('exec', c, 'ip', 'route');
      assert.doesNotMatch(routes, /default/, `${c} routes:\n${routes}`);
      assert.match(routes, /^10\.62\.0\.0\/24 dev eth0/m);
    }
    const [ia, ib] = [await containerNet(a, name), await containerNet(b, name)];
    await pingUntilReply(a, ib.ip);
    await pingUntilReply(b, ia.ip);
  });
});

describe('replayed driver calls are idempotent', () => {
  let kuryr: KuryrProcess;
  const created = new Created();
  const c = created.container(uniqueName('rep-c'));
  let netName = '';
  let dockerNet = '';
  let neutronNet: Network;
  let subnet: Subnet;
  let endpointId = '';

  before(async () => {
    kuryr = await startKuryr();
    ({
      name: netName,
      dockerId: dockerNet,
      net: neutronNet,
      subnet,
    } = await created.network('rep-net', '10.63.0.0/24'));
    await docker('run', '-d', '--name', c, '--net', netName, IMAGE, 'sleep', '600');
    endpointId = (await containerNet(c, netName)).endpointId;
    await created.port(c, netName);
  });
  after(async () => {
    await created.cleanup();
    await kuryr?.stop();
  });

  it('Join twice gives identical answers; Leave twice gives {}', async () => {
    const body = {
      NetworkID: dockerNet,
      EndpointID: endpointId,
      SandboxKey: await sandboxKey(c),
      Options: {},
    };
    const first = await pluginCall('NetworkDriver.Join', body);
    const second = await pluginCall('NetworkDriver.Join', body);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.deepEqual(second.body, first.body);
    const port = (await portOfEndpoint(endpointId)) as Port;
    assert.deepEqual(first.body.InterfaceName, { SrcName: `t_c${port.id.slice(0, 11)}`, DstPrefix: 'eth' });
    assert.equal(first.body.Gateway, subnet.gateway_ip);
    for (let i = 0; i < 2; i++) {
      const left = await pluginCall('NetworkDriver.Leave', { NetworkID: dockerNet, EndpointID: endpointId });
      assert.equal(left.status, 200, JSON.stringify(left.body));
      assert.deepEqual(left.body, {});
    }
  });

  it('DeleteEndpoint, ReleaseAddress and DeleteNetwork for things that do not exist answer 200 {}', async () => {
    const unknownEndpoint = randomBytes(32).toString('hex');
    const del = await pluginCall('NetworkDriver.DeleteEndpoint', {
      NetworkID: dockerNet,
      EndpointID: unknownEndpoint,
    });
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.deepEqual(del.body, {});

    const held = new Set(
      (await kuryrPortsOn(neutronNet.id)).flatMap((p) => p.fixed_ips.map((f) => f.ip_address)),
    );
    const free = ['10.63.0.250', '10.63.0.251', '10.63.0.252'].find((ip) => !held.has(ip)) as string;
    assert.ok(subnet.subnetpool_id, 'the subnet comes from a kuryr subnetpool (the PoolID)');
    const before = await kuryrPortsOn(neutronNet.id);
    const rel = await pluginCall('IpamDriver.ReleaseAddress', {
      PoolID: subnet.subnetpool_id,
      Address: free,
    });
    assert.equal(rel.status, 200, JSON.stringify(rel.body));
    assert.deepEqual(rel.body, {});
    assert.deepEqual(
      (await kuryrPortsOn(neutronNet.id)).map((p) => p.id).sort(),
      before.map((p) => p.id).sort(),
      'releasing a free address deletes no port',
    );

    const delNet = await pluginCall('NetworkDriver.DeleteNetwork', {
      NetworkID: randomBytes(32).toString('hex'),
    });
    assert.equal(delNet.status, 200, JSON.stringify(delNet.body));
    assert.deepEqual(delNet.body, {});
    assert.equal((await neutronNetworksOf(dockerNet)).length, 1, 'our network is untouched');
  });

  it('CreateEndpoint replayed as Docker sent it succeeds and leaves exactly one port for the endpoint', async () => {
    const info = await containerNet(c, netName);
    const prefix = await docker(
      'inspect',
      '-f',
      `{{(index .NetworkSettings.Networks "${netName}").IPPrefixLen}}`,
      c,
    );
    const res = await pluginCall('NetworkDriver.CreateEndpoint', {
      NetworkID: dockerNet,
      EndpointID: endpointId,
      Interface: { Address: `${info.ip}/${prefix}`, AddressIPv6: '', MacAddress: info.mac },
      Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [] },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.Err, undefined);
    await portOfEndpoint(endpointId); // (identity written behind)
    const ports = await neutron.list('ports', { device_id: endpointId });
    assert.equal(ports.length, 1, 'exactly one Neutron port carries the endpoint');
    const [port] = ports as [Port];
    assert.deepEqual(
      port.fixed_ips.map((f) => f.ip_address),
      [info.ip],
    );
    assert.equal(port.mac_address, info.mac.toLowerCase());
    assert.equal(port['binding:host_id'], HOST);
    assert.equal((await kuryrPortsOn(neutronNet.id)).length, 1, 'no second port on the network');
    // The running container is not disturbed: its interface is still in the bridge and up.
    assert.equal(await pluggedInto(`tap${port.id.slice(0, 11)}`), await expectedBridge(neutronNet.id));
    assert.equal(await docker('exec', c, 'cat', '/sys/class/net/eth0/address'), port.mac_address);
  });
});

describe('Join waits for the port to be ACTIVE', () => {
  let kuryr: KuryrProcess;
  const created = new Created();
  let netName = '';

  before(async () => {
    kuryr = await startKuryr();
    netName = (await created.network('act-net', '10.64.0.0/24')).name;
  });
  after(async () => {
    await created.cleanup();
    await kuryr?.stop();
  });

  for (let round = 1; round <= 3; round++) {
    it(`round ${round}: the port is ACTIVE when docker run returns and the first ping gets a reply`, async () => {
      const a = created.container(uniqueName(`act${round}a`));
      const b = created.container(uniqueName(`act${round}b`));
      const ips: string[] = [];
      for (const c of [a, b]) {
        await docker('run', '-d', '--name', c, '--net', netName, IMAGE, 'sleep', '600');
        // Read right away: no polling.
        const { endpointId, ip } = await containerNet(c, netName);
        const port = await portOfEndpoint(endpointId);
        assert.ok(port, `port of ${c}`);
        created.portIds.push(port.id);
        assert.equal(port.status, 'ACTIVE', `port ${port.id} of ${c} right after docker run`);
        ips.push(ip);
      }
      assert.ok(await pingOnce(b, ips[0] as string), `first ping ${b} -> ${ips[0]} must get a reply`);
      assert.ok(await pingOnce(a, ips[1] as string), `first ping ${a} -> ${ips[1]} must get a reply`);
      await docker('rm', '-f', a, b);
    });
  }
});

describe('exposed ports become a security group on the port', () => {
  let kuryr: KuryrProcess;
  const created = new Created();
  const server = created.container(uniqueName('exp-srv'));
  const client = created.container(uniqueName('exp-cli'));
  let netName = '';

  before(async () => {
    kuryr = await startKuryr();
    netName = (await created.network('exp-net', '10.65.0.0/24')).name;
  });
  after(async () => {
    await created.cleanup();
    await kuryr?.stop();
  });

  it('--expose 8080 --expose 8081 --expose 9000/udp: group <port>-exposed_ports with merged ingress rules', async () => {
    await docker(
      'run',
      '-d',
      '--name',
      server,
      '--expose',
      '8080',
      '--expose',
      '8081',
      '--expose',
      '9000/udp',
      '--net',
      netName,
      IMAGE,
      'sleep',
      '600',
    );
    const port = await created.port(server, netName);
    const name = exposedGroupName(port.id);
    assert.equal(name, `${port.id}-exposed_ports`);
    const [sg] = await neutron.list('security-groups', { name });
    assert.ok(sg, `security group ${name} exists once docker run returned`);
    const rules = await neutron.list('security-group-rules', {
      security_group_id: sg.id,
      direction: 'ingress',
    });
    assert.deepEqual(
      rules.map((r) => `${r.ethertype} ${r.protocol} ${r.port_range_min}-${r.port_range_max}`).sort(),
      ['IPv4 tcp 8080-8081', 'IPv4 udp 9000-9000'],
    );
    const groups = (await neutron.get('ports', port.id)).security_groups ?? [];
    assert.ok(groups.includes(sg.id), `port ${port.id} has ${name}: ${groups}`);
    const others = await neutron.list('security-groups', { id: groups.filter((g) => g !== sg.id) });
    assert.ok(
      others.some((g) => g.name === 'default'),
      `port keeps the default group: ${others.map((g) => g.name)}`,
    );
  });

  it('a listener on an exposed port is reachable from another container on the network', async () => {
    const srv = await containerNet(server, netName);
    await docker('run', '-d', '--name', client, '--net', netName, IMAGE, 'sleep', '600');
    await docker('exec', '-d', server, 'sh', '-c', 'nc -l -p 8080 > /tmp/got');
    await waitFor(
      'the listener to receive from the client',
      async () => {
        await docker(
          'exec',
          client,
          'sh',
          '-c',
          `echo hi-from-client | timeout 5 nc -w 2 ${srv.ip} 8080`,
        ).catch(() => undefined);
        return (await docker('exec', server, 'cat', '/tmp/got')).includes('hi-from-client');
      },
      20_000,
      500,
    );
  });

  it('docker rm -f deletes the group (the port is deleted, or back in the warm pool without it)', async () => {
    const port = await created.port(server, netName);
    await docker('rm', '-f', server);
    assert.deepEqual(await neutron.list('security-groups', { name: exposedGroupName(port.id) }), []);
    for (const p of await neutron.list('ports', { id: port.id })) {
      assert.ok(isIdleWarmPort(p), `port ${p.id} is an idle warm port (${p.name}, device ${p.device_id})`);
      assert.equal(p.security_groups?.length, 1, 'only its default group');
    }
  });
});

describe('process_external_connectivity = false', () => {
  let kuryr: KuryrProcess;
  const created = new Created();
  const c = created.container(uniqueName('noexp-c'));

  before(async () => {
    kuryr = await startKuryr('process_external_connectivity = false');
  });
  after(async () => {
    await created.cleanup();
    await kuryr?.stop();
  });

  it('--expose creates no security group and the port keeps only its default group', async () => {
    const { name } = await created.network('noexp-net', '10.66.0.0/24');
    await docker('run', '-d', '--name', c, '--expose', '8080', '--net', name, IMAGE, 'sleep', '600');
    const port = await created.port(c, name);
    assert.deepEqual(await neutron.list('security-groups', { name: exposedGroupName(port.id) }), []);
    const groups = await neutron.list('security-groups', { id: port.security_groups ?? [] });
    assert.deepEqual(
      groups.map((g) => g.name),
      ['default'],
    );
  });
});

describe('binding_failed: no live agent on the configured host', () => {
  let kuryr: KuryrProcess;
  const created = new Created();
  const c = created.container(uniqueName('bf-c'));

  before(async () => {
    kuryr = await startKuryr('[DEFAULT]\nhost = nosuchhost-e2e');
  });
  after(async () => {
    await created.cleanup();
    await kuryr?.stop();
  });

  it('docker run fails naming the host and binding_failed, and leaves no port and no veth behind', async () => {
    const { name, net } = await created.network('bf-net', '10.67.0.0/24');
    const linksBefore = new Set([...(await hostLinks('tap')), ...(await hostLinks('t_c'))]);
    const err = await dockerFails('run', '-d', '--name', c, '--net', name, IMAGE, 'sleep', '600');
    assert.match(err, /nosuchhost-e2e/);
    assert.match(err, /binding:vif_type=binding_failed/);
    const portId = /port ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/.exec(err)?.[1];
    if (portId) {
      created.portIds.push(portId);
      await waitFor(
        `port ${portId} to be deleted`,
        async () => (await neutron.list('ports', { id: portId })).length === 0,
        10_000,
      );
      assert.deepEqual(await hostLinks(`tap${portId.slice(0, 11)}`), []);
      assert.deepEqual(await hostLinks(`t_c${portId.slice(0, 11)}`), []);
    }
    await waitFor(
      'no kuryr port left on the network',
      async () => (await kuryrPortsOn(net.id)).length === 0,
      10_000,
    );
    const linksAfter = [...(await hostLinks('tap')), ...(await hostLinks('t_c'))];
    assert.deepEqual(
      linksAfter.filter((l) => !linksBefore.has(l)),
      [],
      'no new tap/t_c link on the host',
    );
  });
});
