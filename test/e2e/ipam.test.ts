// IPAM end to end: every way a Docker user asks for addresses, checked in Neutron and in the
// containers. CIDRs 10.41.0.0/16 - 10.49.0.0/16 and fd00:41::/32 belong to this file.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { subnetPoolName } from '../../src/cnm/naming.js';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  dockerFails,
  IMAGE,
  KURYR_NET,
  type KuryrProcess,
  networkId,
  neutron,
  neutronNetworksOf,
  pingUntilReply,
  portOfEndpoint,
  startKuryr,
  uniqueName,
  waitFor,
} from './harness.js';

async function subnetsOf(dockerNetwork: string) {
  const [net] = await neutronNetworksOf(await networkId(dockerNetwork));
  assert.ok(net, `Neutron network of ${dockerNetwork}`);
  return { net, subnets: await neutron.list('subnets', { network_id: net.id }) };
}

describe('IPAM', () => {
  let kuryr: KuryrProcess;
  const containers: string[] = [];
  const networks: string[] = [];
  const track = (kind: 'c' | 'n', name: string) => {
    (kind === 'c' ? containers : networks).push(name);
    return name;
  };

  before(async () => {
    kuryr = await startKuryr();
  });
  after(async () => {
    await cleanupDocker(containers, networks);
    await kuryr.stop();
  });

  it('--subnet without --gateway: Neutron gateway is the first address and containers route through it', async () => {
    const net = track('n', uniqueName('nogw'));
    await createKuryrNetwork('--subnet', '10.41.0.0/24', net);
    const { subnets } = await subnetsOf(net);
    assert.equal(subnets[0]?.gateway_ip, '10.41.0.1');
    const c = track('c', uniqueName('nogw-c'));
    await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
    assert.match(await docker('exec', c, 'ip', 'route'), /default via 10\.41\.0\.1 dev eth0/);
  });

  it('--ip-range and --aux-address shape the Neutron allocation pools', async () => {
    const net = track('n', uniqueName('range'));
    await createKuryrNetwork(
      '--subnet',
      '10.42.0.0/24',
      '--gateway',
      '10.42.0.1',
      '--ip-range',
      '10.42.0.128/25',
      '--aux-address',
      'printer=10.42.0.130',
      net,
    );
    const { subnets } = await subnetsOf(net);
    assert.deepEqual(
      [...(subnets[0]?.allocation_pools ?? [])].sort((x, y) =>
        x.start.localeCompare(y.start, 'en', { numeric: true }),
      ),
      [
        { start: '10.42.0.128', end: '10.42.0.129' },
        { start: '10.42.0.131', end: '10.42.0.254' },
      ],
    );
    const c = track('c', uniqueName('range-c'));
    await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
    const { ip } = await containerNet(c, net);
    const last = Number(ip.split('.')[3]);
    assert.ok(last >= 128 && last !== 130, `${ip} is inside --ip-range and not the aux address`);
  });

  it('no --subnet: a /24 carved from the default subnetpool "kuryr", a different one per network, pool kept on rm', async () => {
    const [pool] = await neutron.list('subnetpools', { name: 'kuryr' });
    assert.ok(pool, 'default subnetpool kuryr exists (scripts/kuryr-env.sh creates it)');
    const a = track('n', uniqueName('dflt-a'));
    const b = track('n', uniqueName('dflt-b'));
    await createKuryrNetwork(a);
    await createKuryrNetwork(b);
    const sa = (await subnetsOf(a)).subnets[0];
    const sb = (await subnetsOf(b)).subnets[0];
    assert.equal(sa?.subnetpool_id, pool.id);
    assert.equal(sb?.subnetpool_id, pool.id);
    assert.match(sa?.cidr ?? '', /^10\.10\.\d+\.0\/24$/);
    assert.notEqual(sa?.cidr, sb?.cidr);
    const dockerCidr = await docker('network', 'inspect', '-f', '{{(index .IPAM.Config 0).Subnet}}', a);
    assert.equal(dockerCidr, sa?.cidr, 'Docker sees the carved subnet');
    const c = track('c', uniqueName('dflt-c'));
    await docker('run', '-d', '--name', c, '--net', a, IMAGE, 'sleep', '600');
    await docker('rm', '-f', c);
    await docker('network', 'rm', a);
    await docker('network', 'rm', b);
    assert.deepEqual(await neutron.list('subnets', { id: [sa?.id ?? '', sb?.id ?? ''] }), []);
    assert.equal((await neutron.list('subnetpools', { id: pool.id })).length, 1, 'default pool is kept');
  });

  it('a missing default subnetpool is a clear error that says how to create one', async () => {
    await kuryr.stop();
    kuryr = await startKuryr('[neutron]\ndefault_subnetpool_v4 = nosuchpool-e2e');
    try {
      const err = await dockerFails('network', 'create', ...KURYR_NET, uniqueName('nopool'));
      assert.match(err, /default Neutron subnetpool 'nosuchpool-e2e' does not exist/);
      assert.match(err, /openstack subnet pool create .*nosuchpool-e2e/);
    } finally {
      await kuryr.stop();
      kuryr = await startKuryr();
    }
  });

  it("--ip and --mac-address land on the Neutron port; a taken --ip is refused with Neutron's reason", async () => {
    const net = track('n', uniqueName('fixed'));
    await createKuryrNetwork('--subnet', '10.43.0.0/24', net);
    const c = track('c', uniqueName('fixed-c'));
    await docker(
      'run',
      '-d',
      '--name',
      c,
      '--net',
      net,
      '--ip',
      '10.43.0.77',
      '--mac-address',
      '02:42:0a:2b:00:4d',
      IMAGE,
      'sleep',
      '600',
    );
    const info = await containerNet(c, net);
    assert.equal(info.ip, '10.43.0.77');
    const port = await portOfEndpoint(info.endpointId);
    assert.deepEqual(
      port?.fixed_ips.map((f) => f.ip_address),
      ['10.43.0.77'],
    );
    assert.equal(port?.mac_address, '02:42:0a:2b:00:4d');
    assert.equal(await docker('exec', c, 'cat', '/sys/class/net/eth0/address'), '02:42:0a:2b:00:4d');
    const err = await dockerFails(
      'run',
      '-d',
      '--name',
      track('c', uniqueName('fixed-dup')),
      '--net',
      net,
      '--ip',
      '10.43.0.77',
      IMAGE,
      'sleep',
      '600',
    );
    assert.match(err, /Neutron 409 IpAddressAlreadyAllocated/);
    assert.match(err, /Choose another address/);
    const ports = await neutron.list('ports', {
      fixed_ips: 'ip_address=10.43.0.77',
      network_id: port?.network_id,
    });
    assert.equal(ports.length, 1, 'the failed attempt left no second port');
  });

  it('dual stack: one Neutron port per container with both families, ping over IPv4 and IPv6', async () => {
    const net = track('n', uniqueName('dual'));
    await createKuryrNetwork('--ipv6', '--subnet', '10.44.0.0/24', '--subnet', 'fd00:41:44::/64', net);
    const { subnets } = await subnetsOf(net);
    assert.deepEqual(subnets.map((s) => s.cidr).sort(), ['10.44.0.0/24', 'fd00:41:44::/64']);
    const [c1, c2] = [track('c', uniqueName('dual-1')), track('c', uniqueName('dual-2'))];
    for (const c of [c1, c2]) await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
    const [n1, n2] = [await containerNet(c1, net), await containerNet(c2, net)];
    for (const n of [n1, n2]) {
      await portOfEndpoint(n.endpointId); // its identity is written a moment after the start
      const ports = await neutron.list('ports', { device_id: n.endpointId });
      assert.equal(ports.length, 1, 'one port per endpoint');
      assert.deepEqual(ports[0]?.fixed_ips.map((f) => f.ip_address).sort(), [n.ip, n.ipv6].sort());
    }
    assert.match(await docker('exec', c1, 'ip', '-6', 'route'), /default via fd00:41:44::1/);
    await pingUntilReply(c1, n2.ip);
    await pingUntilReply(c1, n2.ipv6, 20_000, true);
    await docker('rm', '-f', c1, c2);
    for (const n of [n1, n2]) assert.equal(await portOfEndpoint(n.endpointId, 0), undefined);
  });

  it('the same CIDR on two Docker networks: two Neutron networks from two subnetpools, both usable', async () => {
    const [a, b] = [track('n', uniqueName('same-a')), track('n', uniqueName('same-b'))];
    await createKuryrNetwork('--subnet', '10.45.0.0/24', a);
    await createKuryrNetwork('--subnet', '10.45.0.0/24', b);
    const [sa, sb] = [(await subnetsOf(a)).subnets[0], (await subnetsOf(b)).subnets[0]];
    assert.notEqual(sa?.network_id, sb?.network_id);
    assert.notEqual(sa?.subnetpool_id, sb?.subnetpool_id);
    const [ca, cb] = [track('c', uniqueName('same-ca')), track('c', uniqueName('same-cb'))];
    await docker('run', '-d', '--name', ca, '--net', a, IMAGE, 'sleep', '600');
    await docker('run', '-d', '--name', cb, '--net', b, IMAGE, 'sleep', '600');
    assert.equal((await portOfEndpoint((await containerNet(ca, a)).endpointId))?.network_id, sa?.network_id);
    assert.equal((await portOfEndpoint((await containerNet(cb, b)).endpointId))?.network_id, sb?.network_id);
    await docker('rm', '-f', ca, cb);
    await docker('network', 'rm', a, b);
    assert.deepEqual(
      await neutron.list('subnetpools', { name: subnetPoolName('kuryrPool', '10.45.0.0/24') }),
      [],
    );
  });

  it('options are validated with precise errors', async () => {
    assert.match(
      await dockerFails(
        'network',
        'create',
        ...KURYR_NET,
        '--subnet',
        '10.46.0.0/24',
        '-o',
        'foo=bar',
        uniqueName('opt'),
      ),
      /unknown option -o foo; kuryr supports neutron\.net\.uuid/,
    );
    assert.match(
      await dockerFails(
        'network',
        'create',
        ...KURYR_NET,
        '--subnet',
        '10.46.1.0/24',
        '-o',
        'com.docker.network.driver.mtu=1400',
        uniqueName('opt'),
      ),
      /MTU comes from the Neutron network/,
    );
    assert.match(
      await dockerFails(
        'network',
        'create',
        ...KURYR_NET,
        '--subnet',
        '10.46.2.0/24',
        '--ipam-opt',
        'colour=blue',
        uniqueName('opt'),
      ),
      /unknown option --ipam-opt colour/,
    );
    assert.match(
      await dockerFails(
        'network',
        'create',
        ...KURYR_NET,
        '--subnet',
        '10.46.3.0/24',
        '-o',
        'neutron.net.uuid=00000000-0000-0000-0000-000000000000',
        uniqueName('opt'),
      ),
      /Neutron network 00000000-0000-0000-0000-000000000000 does not exist/,
    );
    // Nothing was left behind by the refused requests (Docker releases their pools; kuryr deletes
    // them in the background, at once).
    for (const cidr of ['10.46.0.0/24', '10.46.1.0/24', '10.46.2.0/24', '10.46.3.0/24']) {
      await waitFor(
        `no subnetpool left for ${cidr}`,
        async () =>
          (await neutron.list('subnetpools', { name: subnetPoolName('kuryrPool', cidr) })).length === 0,
        10_000,
      );
    }
  });
});
