// Networks end to end: existing Neutron networks, subnets and subnetpools, kuryr-libnetwork's
// objects, global scope and request replay. CIDRs 10.51.0.0/16 - 10.59.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { dockerIdTags, existingNetworkTag, subnetPoolName } from '../../src/cnm/naming.js';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  dockerFails,
  IMAGE,
  isIdleWarmPort,
  KURYR_NET,
  type KuryrProcess,
  Made,
  networkId,
  neutron,
  neutronNetworksOf,
  pingUntilReply,
  pluginCall,
  portOfEndpoint,
  startKuryr,
  track,
  uniqueName,
  waitFor,
  waitPortActive,
} from './harness.js';

const hexId = () => randomBytes(32).toString('hex');

describe('existing Neutron networks, subnets and subnetpools', () => {
  let kuryr: KuryrProcess;
  const made = new Made();
  const containers: string[] = [];
  const networks: string[] = [];

  before(async () => {
    kuryr = await startKuryr();
  });
  after(async () => {
    await cleanupDocker(containers, networks);
    await made.cleanup();
    await kuryr.stop();
  });

  it('-o neutron.net.uuid joins an existing network: tagged, used, then untagged and left intact', async () => {
    const existing = made.add('networks', await neutron.create('networks', { name: uniqueName('e2e-net') }));
    const net = track(networks, uniqueName('exist'));
    await createKuryrNetwork('--subnet', '10.51.0.0/24', '-o', `neutron.net.uuid=${existing.id}`, net);
    const id = await networkId(net);
    const tagged = await neutron.get('networks', existing.id);
    for (const t of [...dockerIdTags(id), existingNetworkTag(id)]) assert.ok(tagged.tags.includes(t), t);
    assert.deepEqual(
      (await neutronNetworksOf(id)).map((n) => n.id),
      [existing.id],
    );
    const [c1, c2] = [track(containers, uniqueName('exist-1')), track(containers, uniqueName('exist-2'))];
    for (const c of [c1, c2]) await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
    const p1 = await portOfEndpoint((await containerNet(c1, net)).endpointId);
    assert.equal(p1?.network_id, existing.id);
    await pingUntilReply(c1, (await containerNet(c2, net)).ip);
    await docker('rm', '-f', c1, c2);
    await docker('network', 'rm', net);
    const after = await neutron.get('networks', existing.id);
    assert.deepEqual(after.tags, [], 'only our tags were removed');
    assert.deepEqual(
      await neutron.list('subnets', { network_id: existing.id }),
      [],
      'the subnet kuryr made is gone',
    );
  });

  it("neutron.net.name + neutron.subnet.uuid reuse the user's subnet, which survives docker network rm", async () => {
    const name = uniqueName('e2e-named');
    const existing = made.add('networks', await neutron.create('networks', { name }));
    const subnet = made.add(
      'subnets',
      await neutron.create('subnets', {
        network_id: existing.id,
        ip_version: 4,
        cidr: '10.52.0.0/24',
        name: uniqueName('e2e-subnet'),
        enable_dhcp: false,
      }),
    );
    const net = track(networks, uniqueName('exist-sub'));
    await createKuryrNetwork(
      '--subnet',
      '10.52.0.0/24',
      '-o',
      `neutron.net.name=${name}`,
      '-o',
      `neutron.subnet.uuid=${subnet.id}`,
      '--ipam-opt',
      `neutron.subnet.uuid=${subnet.id}`,
      net,
    );
    const c = track(containers, uniqueName('exist-sub-c'));
    await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
    const port = await waitPortActive((await containerNet(c, net)).endpointId);
    assert.equal(port.fixed_ips[0]?.subnet_id, subnet.id);
    await docker('rm', '-f', c);
    await docker('network', 'rm', net);
    assert.equal((await neutron.get('subnets', subnet.id)).id, subnet.id, 'user subnet kept');
    assert.deepEqual((await neutron.get('networks', existing.id)).tags, []);
    assert.deepEqual(await neutron.list('ports', { network_id: existing.id }), []);
  });

  it('two Docker networks on one Neutron network, each with its own subnet', async () => {
    const existing = made.add(
      'networks',
      await neutron.create('networks', { name: uniqueName('e2e-shared') }),
    );
    const [a, b] = [track(networks, uniqueName('two-a')), track(networks, uniqueName('two-b'))];
    await createKuryrNetwork('--subnet', '10.53.1.0/24', '-o', `neutron.net.uuid=${existing.id}`, a);
    await createKuryrNetwork('--subnet', '10.53.2.0/24', '-o', `neutron.net.uuid=${existing.id}`, b);
    const cidrs = (await neutron.list('subnets', { network_id: existing.id })).map((s) => s.cidr).sort();
    assert.deepEqual(cidrs, ['10.53.1.0/24', '10.53.2.0/24']);
    const [ca, cb] = [track(containers, uniqueName('two-ca')), track(containers, uniqueName('two-cb'))];
    await docker('run', '-d', '--name', ca, '--net', a, IMAGE, 'sleep', '600');
    await docker('run', '-d', '--name', cb, '--net', b, IMAGE, 'sleep', '600');
    await docker('rm', '-f', ca);
    await docker('network', 'rm', a);
    // b still works and keeps its tags; a's subnet is gone.
    assert.deepEqual(
      (await neutron.list('subnets', { network_id: existing.id })).map((s) => s.cidr),
      ['10.53.2.0/24'],
    );
    assert.deepEqual(
      (await neutronNetworksOf(await networkId(b))).map((n) => n.id),
      [existing.id],
    );
    assert.equal((await waitPortActive((await containerNet(cb, b)).endpointId)).network_id, existing.id);
    await docker('rm', '-f', cb);
    await docker('network', 'rm', b);
    assert.deepEqual((await neutron.get('networks', existing.id)).tags, []);
  });

  it('neutron.net.shared: a new network is created shared; a conflict with an existing one is refused', async () => {
    const net = track(networks, uniqueName('shared'));
    await createKuryrNetwork('--subnet', '10.54.0.0/24', '-o', 'neutron.net.shared=true', net);
    const [n] = await neutronNetworksOf(await networkId(net));
    assert.equal(n?.shared, true);
    const unshared = made.add(
      'networks',
      await neutron.create('networks', { name: uniqueName('e2e-unshared') }),
    );
    const err = await dockerFails(
      'network',
      'create',
      ...KURYR_NET,
      '--subnet',
      '10.54.1.0/24',
      '-o',
      `neutron.net.uuid=${unshared.id}`,
      '-o',
      'neutron.net.shared=true',
      uniqueName('shared-conflict'),
    );
    assert.match(err, /neutron\.net\.shared=true conflicts with Neutron network .* shared=false/);
    assert.deepEqual((await neutron.get('networks', unshared.id)).tags, [], 'refused network left untagged');
  });

  it("neutron.pool.uuid / neutron.pool.name: subnets come from the user's subnetpool, which stays", async () => {
    const pool = made.add(
      'subnetpools',
      await neutron.create('subnetpools', {
        name: uniqueName('e2e-pool'),
        prefixes: ['10.55.0.0/16'],
        default_prefixlen: 26,
      }),
    );
    const [a, b] = [track(networks, uniqueName('pool-a')), track(networks, uniqueName('pool-b'))];
    await createKuryrNetwork(
      '--subnet',
      '10.55.7.0/24',
      '-o',
      `neutron.pool.uuid=${pool.id}`,
      '--ipam-opt',
      `neutron.pool.uuid=${pool.id}`,
      a,
    );
    await createKuryrNetwork(
      '-o',
      `neutron.pool.name=${pool.name}`,
      '--ipam-opt',
      `neutron.pool.name=${pool.name}`,
      b,
    );
    const subnets = await neutron.list('subnets', { subnetpool_id: pool.id });
    assert.deepEqual(subnets.map((s) => s.cidr).sort(), ['10.55.0.0/26', '10.55.7.0/24']);
    const c = track(containers, uniqueName('pool-c'));
    await docker('run', '-d', '--name', c, '--net', b, IMAGE, 'sleep', '600');
    assert.match((await containerNet(c, b)).ip, /^10\.55\.0\./);
    await docker('rm', '-f', c);
    await docker('network', 'rm', a, b);
    assert.deepEqual(await neutron.list('subnets', { subnetpool_id: pool.id }), []);
    assert.equal((await neutron.get('subnetpools', pool.id)).id, pool.id, 'user pool kept');
  });

  it('the same CIDR in the default pool and the user pool fails cleanly when the pool is full', async () => {
    const pool = made.add(
      'subnetpools',
      await neutron.create('subnetpools', {
        name: uniqueName('e2e-tiny'),
        prefixes: ['10.56.0.0/24'],
        default_prefixlen: 24,
      }),
    );
    const a = track(networks, uniqueName('tiny-a'));
    await createKuryrNetwork(
      '--ipam-opt',
      `neutron.pool.uuid=${pool.id}`,
      '-o',
      `neutron.pool.uuid=${pool.id}`,
      a,
    );
    const err = await dockerFails(
      'network',
      'create',
      ...KURYR_NET,
      '--ipam-opt',
      `neutron.pool.uuid=${pool.id}`,
      uniqueName('tiny-b'),
    );
    assert.match(err, /has no free \/24 left/);
  });
});

describe('kuryr-libnetwork objects, global scope, replay and IPv6-only at the protocol level', () => {
  let kuryr: KuryrProcess;
  const made = new Made();

  before(async () => {
    kuryr = await startKuryr('capability_scope = global\nipam_request_replay = true');
  });
  after(async () => {
    await made.cleanup();
    await kuryr.stop();
  });

  it('a network made by kuryr-libnetwork (its names and tags) is used and cleaned up', async () => {
    const dockerNet = hexId();
    const endpoint = hexId();
    // What kuryr-libnetwork leaves in Neutron after `docker network create --subnet 10.57.0.0/24`.
    const pool = made.add(
      'subnetpools',
      await neutron.create('subnetpools', {
        name: subnetPoolName('kuryrPool', '10.57.0.0/24'),
        prefixes: ['10.57.0.0/24'],
        default_prefixlen: 24,
      }),
    );
    const net = made.add(
      'networks',
      await neutron.create('networks', { name: `kuryr-net-${dockerNet.slice(0, 8)}` }),
    );
    await neutron.setTags('networks', net.id, dockerIdTags(dockerNet));
    const subnet = made.add(
      'subnets',
      await neutron.create('subnets', {
        network_id: net.id,
        ip_version: 4,
        cidr: '10.57.0.0/24',
        subnetpool_id: pool.id,
        name: 'kuryr-subnet-10.57.0.0/24',
        gateway_ip: '10.57.0.1',
      }),
    );
    await neutron.setTags('subnets', subnet.id, [pool.id]);
    const mac = '02:42:0a:39:00:09';
    const addr = await pluginCall('IpamDriver.RequestAddress', {
      PoolID: pool.id,
      Address: '',
      Options: { 'com.docker.network.endpoint.macaddress': mac },
    });
    assert.equal(addr.status, 200, JSON.stringify(addr.body));
    const ip = String(addr.body.Address);
    assert.match(ip, /^10\.57\.0\.\d+\/24$/);
    const ce = await pluginCall('NetworkDriver.CreateEndpoint', {
      NetworkID: dockerNet,
      EndpointID: endpoint,
      Interface: { Address: ip, MacAddress: mac },
      Options: {},
    });
    assert.equal(ce.status, 200, JSON.stringify(ce.body));
    const join = await pluginCall('NetworkDriver.Join', {
      NetworkID: dockerNet,
      EndpointID: endpoint,
      SandboxKey: '/var/run/docker/netns/x',
      Options: null,
    });
    assert.equal(join.status, 200, JSON.stringify(join.body));
    assert.equal(join.body.Gateway, '10.57.0.1');
    const port = await portOfEndpoint(endpoint);
    assert.equal(port?.status, 'ACTIVE');
    for (const [method, body] of [
      ['NetworkDriver.Leave', { NetworkID: dockerNet, EndpointID: endpoint }],
      ['NetworkDriver.DeleteEndpoint', { NetworkID: dockerNet, EndpointID: endpoint }],
      ['IpamDriver.ReleaseAddress', { PoolID: pool.id, Address: ip.split('/')[0] }],
      ['IpamDriver.ReleaseAddress', { PoolID: pool.id, Address: '10.57.0.1' }],
      ['IpamDriver.ReleasePool', { PoolID: pool.id }],
      ['NetworkDriver.DeleteNetwork', { NetworkID: dockerNet }],
    ] as const) {
      const r = await pluginCall(method, body);
      assert.equal(r.status, 200, `${method}: ${JSON.stringify(r.body)}`);
    }
    assert.deepEqual(await neutron.list('networks', { id: net.id }), []);
    assert.deepEqual(await neutron.list('subnetpools', { id: pool.id }), []);
    assert.deepEqual(await neutron.list('ports', { network_id: net.id }), []);
  });

  it("global scope: a second host's CreateNetwork reuses the network; Swarm IDs, Allocate/FreeNetwork work", async () => {
    const caps = await pluginCall('NetworkDriver.GetCapabilities', {});
    assert.deepEqual(caps.body, { Scope: 'global', ConnectivityScope: 'global', GwAllocChecker: true });
    const swarmId = randomBytes(13)
      .toString('hex')
      .slice(0, 25)
      .replace(/[^0-9a-z]/g, 'a');
    // The manager: pool, then AllocateNetwork, which makes the Neutron network and subnet (the
    // driver options arrive flat; an unknown one is refused with the list of known ones).
    const pool = await pluginCall('IpamDriver.RequestPool', {
      AddressSpace: 'no_address_space',
      Pool: '10.58.0.0/24',
      SubPool: '',
      Options: {},
      V6: false,
    });
    const ipv4 = [{ AddressSpace: '', Pool: '10.58.0.0/24', Gateway: '10.58.0.1/24' }];
    const bad = await pluginCall('NetworkDriver.AllocateNetwork', {
      NetworkID: swarmId,
      Options: { a: 'b' },
      IPv4Data: ipv4,
      IPv6Data: [],
    });
    assert.match(String(bad.body.Err), /unknown option -o a; kuryr supports neutron\.net\.uuid/);
    assert.deepEqual(await neutronNetworksOf(swarmId), [], 'a refused AllocateNetwork makes nothing');
    const alloc = await pluginCall('NetworkDriver.AllocateNetwork', {
      NetworkID: swarmId,
      Options: { 'neutron.net.shared': 'false' },
      IPv4Data: ipv4,
      IPv6Data: [],
    });
    assert.deepEqual(alloc.body, { Options: { 'neutron.net.shared': 'false' } });
    assert.ok(
      (await neutronNetworksOf(swarmId))[0]?.tags.includes(`kuryr.swarm:${swarmId.slice(0, 12)}`),
      'the Swarm network, made by AllocateNetwork',
    );
    const create = {
      NetworkID: swarmId,
      Options: {},
      IPv4Data: ipv4,
      IPv6Data: [],
    };
    // Two hosts at once, then a third later.
    const results = await Promise.all([
      pluginCall('NetworkDriver.CreateNetwork', create),
      pluginCall('NetworkDriver.CreateNetwork', create),
    ]);
    for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await pluginCall('NetworkDriver.CreateNetwork', create)).status, 200);
    const nets = await neutronNetworksOf(swarmId);
    assert.equal(nets.length, 1, 'exactly one Neutron network for the Swarm network');
    assert.equal((await neutron.list('subnets', { network_id: nets[0]?.id })).length, 1);
    // A node's DeleteNetwork (its last task ended) leaves the Swarm network; FreeNetwork removes it.
    assert.equal((await pluginCall('NetworkDriver.DeleteNetwork', { NetworkID: swarmId })).status, 200);
    assert.equal((await neutronNetworksOf(swarmId)).length, 1, "a node's DeleteNetwork leaves it");
    assert.deepEqual((await pluginCall('NetworkDriver.FreeNetwork', { NetworkID: swarmId })).body, {});
    assert.equal((await pluginCall('IpamDriver.ReleasePool', { PoolID: pool.body.PoolID })).status, 200);
    await waitFor('the Swarm network and its pool to go', async () => {
      const [nets, pools] = await Promise.all([
        neutronNetworksOf(swarmId),
        neutron.list('subnetpools', { id: String(pool.body.PoolID) }),
      ]);
      return nets.length === 0 && pools.length === 0;
    });
  });

  it('RequiresRequestReplay: replayed requests get the same answers and create nothing twice', async () => {
    assert.equal((await pluginCall('IpamDriver.GetCapabilities', {})).body.RequiresRequestReplay, true);
    const dockerNet = hexId();
    const poolReq = {
      AddressSpace: 'no_address_space',
      Pool: '10.59.0.0/24',
      SubPool: '',
      Options: {},
      V6: false,
    };
    const pool = await pluginCall('IpamDriver.RequestPool', poolReq);
    const poolId = String(pool.body.PoolID);
    const gwReq = {
      PoolID: poolId,
      Address: '',
      Options: { RequestAddressType: 'com.docker.network.gateway' },
    };
    const gw = await pluginCall('IpamDriver.RequestAddress', gwReq);
    await pluginCall('NetworkDriver.CreateNetwork', {
      NetworkID: dockerNet,
      Options: {},
      IPv4Data: [{ AddressSpace: '', Pool: '10.59.0.0/24', Gateway: gw.body.Address }],
      IPv6Data: [],
    });
    const epReq = {
      PoolID: poolId,
      Address: '',
      Options: { 'com.docker.network.endpoint.macaddress': '02:42:0a:3b:00:05' },
    };
    const ep = await pluginCall('IpamDriver.RequestAddress', epReq);
    const [net] = await neutronNetworksOf(dockerNet);
    // (Idle warm ports come and go in the background: not counted.)
    const containerPorts = async () =>
      (await neutron.list('ports', { network_id: net?.id })).filter((p) => !isIdleWarmPort(p)).length;
    const before = await containerPorts();
    // What the daemon replays after a restart.
    assert.equal((await pluginCall('IpamDriver.RequestPool', poolReq)).body.PoolID, poolId);
    assert.equal((await pluginCall('IpamDriver.RequestAddress', gwReq)).body.Address, gw.body.Address);
    const replayed = await pluginCall('IpamDriver.RequestAddress', {
      ...epReq,
      Address: String(ep.body.Address).split('/')[0],
    });
    assert.equal(replayed.body.Address, ep.body.Address);
    assert.equal(
      (await neutron.list('subnetpools', { name: subnetPoolName('kuryrPool', '10.59.0.0/24') })).length,
      1,
    );
    assert.equal(await containerPorts(), before);
    await pluginCall('IpamDriver.ReleaseAddress', {
      PoolID: poolId,
      Address: String(ep.body.Address).split('/')[0],
    });
    await pluginCall('IpamDriver.ReleasePool', { PoolID: poolId });
    await pluginCall('NetworkDriver.DeleteNetwork', { NetworkID: dockerNet });
    assert.deepEqual(await neutronNetworksOf(dockerNet), []);
    assert.deepEqual(await neutron.list('subnetpools', { id: poolId }), []);
  });

  it('IPv6-only networks (Docker 20.10 cannot create them; the driver can)', async () => {
    const dockerNet = hexId();
    const pool = await pluginCall('IpamDriver.RequestPool', {
      AddressSpace: 'x',
      Pool: 'fd00:41:59::/64',
      SubPool: '',
      Options: {},
      V6: true,
    });
    assert.equal(pool.status, 200, JSON.stringify(pool.body));
    const gw = await pluginCall('IpamDriver.RequestAddress', {
      PoolID: pool.body.PoolID,
      Address: '',
      Options: { RequestAddressType: 'com.docker.network.gateway' },
    });
    assert.equal(gw.body.Address, 'fd00:41:59::1/64');
    const r = await pluginCall('NetworkDriver.CreateNetwork', {
      NetworkID: dockerNet,
      Options: { 'com.docker.network.enable_ipv6': true },
      IPv4Data: [],
      IPv6Data: [{ AddressSpace: 'x', Pool: 'fd00:41:59::/64', Gateway: gw.body.Address }],
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const [net] = await neutronNetworksOf(dockerNet);
    const subnets = await neutron.list('subnets', { network_id: net?.id });
    assert.deepEqual(
      subnets.map((s) => [s.ip_version, s.cidr, s.gateway_ip]),
      [[6, 'fd00:41:59::/64', 'fd00:41:59::1']],
    );
    await pluginCall('IpamDriver.ReleasePool', { PoolID: pool.body.PoolID });
    await pluginCall('NetworkDriver.DeleteNetwork', { NetworkID: dockerNet });
    assert.deepEqual(await neutronNetworksOf(dockerNet), []);
  });
});
