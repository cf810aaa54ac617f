// `--ip-range` in both [DEFAULT] ip_range_mode settings, end to end: allocation_pool (default,
// Docker's meaning: the subnet is --subnet, its allocation pool the range) and subnet
// (kuryr-libnetwork's layout: pool and subnet are the range's CIDR, an existing subnet equal to the
// range is adopted). CIDRs 10.4.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  IMAGE,
  type KuryrProcess,
  networkId,
  neutron,
  neutronNetworksOf,
  pingUntilReply,
  portOfEndpoint,
  startKuryr,
  uniqueName,
} from './harness.js';

const inRange = (ip: string) => /^10\.4\.0\.\d+$/.test(ip);
const RANGE = ['--subnet', '10.4.0.0/16', '--ip-range', '10.4.0.0/24'];

/** Two containers on the network: addresses inside the range, and they reach each other. */
async function twoContainersPing(net: string, containers: string[]): Promise<string[]> {
  const [a, b] = [uniqueName('range-a'), uniqueName('range-b')];
  containers.push(a, b);
  for (const c of [a, b]) await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
  const [na, nb] = [await containerNet(a, net), await containerNet(b, net)];
  assert.ok(inRange(na.ip) && inRange(nb.ip), `${na.ip} ${nb.ip}`);
  await pingUntilReply(a, nb.ip);
  return [a, b];
}

describe('ip_range_mode = subnet (kuryr-libnetwork layout)', () => {
  let kuryr: KuryrProcess;
  const containers: string[] = [];
  const networks: string[] = [];
  const userNets: string[] = [];

  before(async () => {
    kuryr = await startKuryr('ip_range_mode = subnet');
  });
  after(async () => {
    await cleanupDocker(containers, networks);
    for (const id of userNets) await neutron.delete('networks', id).catch(() => false);
    await kuryr.stop();
  });

  it('--subnet 10.4.0.0/16 --ip-range 10.4.0.0/24: a /24 subnet kuryr-subnet-10.4.0.0/24 from pool kuryrPool-10.4.0.0/24', async () => {
    const net = uniqueName('range-sub');
    networks.push(net);
    await createKuryrNetwork(...RANGE, net);
    const [n] = await neutronNetworksOf(await networkId(net));
    assert.ok(n);
    const [pool] = await neutron.list('subnetpools', { name: 'kuryrPool-10.4.0.0/24' });
    assert.ok(pool, 'subnetpool kuryrPool-10.4.0.0/24');
    assert.deepEqual(pool.prefixes, ['10.4.0.0/24']);
    assert.deepEqual(await neutron.list('subnetpools', { name: 'kuryrPool-10.4.0.0/16' }), []);
    const subnets = await neutron.list('subnets', { network_id: n.id });
    assert.deepEqual(
      subnets.map((s) => [s.cidr, s.name, s.subnetpool_id]),
      [['10.4.0.0/24', 'kuryr-subnet-10.4.0.0/24', pool.id]],
    );
    const [a, b] = await twoContainersPing(net, containers);
    await docker('rm', '-f', a as string, b as string);
    await docker('network', 'rm', net);
    assert.deepEqual(await neutron.list('networks', { id: n.id }), []);
    assert.deepEqual(await neutron.list('subnetpools', { name: 'kuryrPool-10.4.0.0/24' }), []);
  });

  it('on a joined network an existing /24 subnet equal to the range is adopted and handed back', async () => {
    const userNet = await neutron.create('networks', { name: uniqueName('e2e-net') });
    userNets.push(userNet.id);
    const userSubnet = await neutron.create('subnets', {
      network_id: userNet.id,
      ip_version: 4,
      cidr: '10.4.0.0/24',
      name: uniqueName('e2e-subnet'),
      enable_dhcp: false,
    });
    await neutron.setTags('subnets', userSubnet.id, ['e2e-mine']);
    const net = uniqueName('range-join');
    networks.push(net);
    await createKuryrNetwork(...RANGE, '-o', `neutron.net.uuid=${userNet.id}`, net);
    assert.deepEqual(
      (await neutron.list('subnets', { network_id: userNet.id })).map((s) => s.id),
      [userSubnet.id],
      'adopted, not duplicated',
    );
    const [a, b] = await twoContainersPing(net, containers);
    const port = await portOfEndpoint((await containerNet(a as string, net)).endpointId);
    assert.equal(port?.fixed_ips[0]?.subnet_id, userSubnet.id);
    await docker('rm', '-f', a as string, b as string);
    await docker('network', 'rm', net);
    const after = await neutron.get('subnets', userSubnet.id);
    assert.deepEqual(after.tags, ['e2e-mine']);
    assert.deepEqual((await neutron.get('networks', userNet.id)).tags, []);
    assert.deepEqual(await neutron.list('subnetpools', { name: 'kuryrPool-10.4.0.0/24' }), []);
  });
});

describe('ip_range_mode = allocation_pool (default)', () => {
  let kuryr: KuryrProcess;
  const containers: string[] = [];
  const networks: string[] = [];

  before(async () => {
    kuryr = await startKuryr();
  });
  after(async () => {
    await cleanupDocker(containers, networks);
    await kuryr.stop();
  });

  it('--subnet 10.4.0.0/16 --ip-range 10.4.0.0/24: a /16 subnet whose allocation pools lie in the /24', async () => {
    const net = uniqueName('range-pool');
    networks.push(net);
    await createKuryrNetwork(...RANGE, net);
    const [n] = await neutronNetworksOf(await networkId(net));
    assert.ok(n);
    const [subnet] = await neutron.list('subnets', { network_id: n.id });
    assert.equal(subnet?.cidr, '10.4.0.0/16');
    assert.equal(subnet?.name, 'kuryr-subnet-10.4.0.0/16');
    const pools = subnet?.allocation_pools ?? [];
    assert.ok(pools.length > 0);
    for (const p of pools) assert.ok(inRange(p.start) && inRange(p.end), JSON.stringify(p));
    assert.equal((await neutron.list('subnetpools', { name: 'kuryrPool-10.4.0.0/16' })).length, 1);
    const [a, b] = await twoContainersPing(net, containers);
    await docker('rm', '-f', a as string, b as string);
    await docker('network', 'rm', net);
    assert.deepEqual(await neutron.list('networks', { id: n.id }), []);
    assert.deepEqual(await neutron.list('subnetpools', { name: 'kuryrPool-10.4.0.0/16' }), []);
  });
});
