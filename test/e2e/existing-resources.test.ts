// Issue 10 end to end: Neutron resources the user made before kuryr are adopted, handed back
// intact and never deleted by gc. Real Docker CLI, real Neutron, the kuryr daemon from dist/.
// CIDRs 10.204.0.0/16, 10.208.0.0/16 - 10.210.0.0/16 and fd00:208::/32 belong to this file.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  DEVICE_OWNER,
  dockerIdTags,
  EXISTING_POOL_TAG,
  EXISTING_PORT_TAG,
  existingNetworkTag,
} from '../../src/cnm/naming.js';
import type { Port } from '../../src/neutron/types.js';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  HOST,
  IMAGE,
  isIdleWarmPort,
  type KuryrProcess,
  kuryrCli,
  Made,
  neutron,
  neutronNetworksOf,
  pingUntilReply,
  pluginCall,
  portOfEndpoint,
  startKuryr,
  track,
  uniqueName,
  waitFor,
} from './harness.js';

/** Ports on a network other than Neutron's own (DHCP, router) and kuryr's idle warm pool. */
async function userVisiblePorts(networkId: string): Promise<Port[]> {
  return (await neutron.list('ports', { network_id: networkId })).filter(
    (p) => !p.device_owner.startsWith('network:') && !isIdleWarmPort(p),
  );
}

/** What kuryr must give back exactly as it found it. */
function portView(p: Port) {
  return {
    name: p.name,
    device_owner: p.device_owner,
    device_id: p.device_id,
    host: p['binding:host_id'] ?? '',
    mac_address: p.mac_address,
    admin_state_up: p.admin_state_up,
    tags: [...p.tags].sort(),
    fixed_ips: p.fixed_ips.map((f) => f.ip_address).sort(),
  };
}

describe('existing Neutron resources with real Docker', () => {
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

  it('bug 1: an existing subnet matched by --subnet is used by containers, and left intact and untagged', async () => {
    const userNet = made.add('networks', await neutron.create('networks', { name: uniqueName('e2e-net') }));
    await neutron.setTags('networks', userNet.id, ['e2e-mine']);
    const userSubnet = made.add(
      'subnets',
      await neutron.create('subnets', {
        network_id: userNet.id,
        ip_version: 4,
        cidr: '10.204.0.0/24',
        name: uniqueName('e2e-subnet'),
        enable_dhcp: false,
      }),
    );
    await neutron.setTags('subnets', userSubnet.id, ['e2e-mine']);
    const n = track(networks, uniqueName('bug1'));
    await createKuryrNetwork(
      '--subnet',
      '10.204.0.0/24',
      '--gateway',
      '10.204.0.1',
      '-o',
      `neutron.net.uuid=${userNet.id}`,
      n,
    );
    assert.deepEqual(
      (await neutron.list('subnets', { network_id: userNet.id })).map((s) => s.id),
      [userSubnet.id],
      'adopted, not duplicated',
    );
    const [c1, c2] = [track(containers, uniqueName('bug1-a')), track(containers, uniqueName('bug1-b'))];
    // Before the fix: "IpamDriver.RequestAddress: Docker pool … has no Neutron subnet".
    for (const c of [c1, c2]) await docker('run', '-d', '--name', c, '--net', n, IMAGE, 'sleep', '600');
    const [a, b] = [await containerNet(c1, n), await containerNet(c2, n)];
    assert.match(a.ip, /^10\.204\.0\./);
    // (A warm port's endpoint is recorded on it a moment after the start.)
    for (const x of [a, b]) assert.ok(await portOfEndpoint(x.endpointId));
    const ports = await userVisiblePorts(userNet.id);
    assert.equal(ports.length, 2);
    assert.ok(ports.every((p) => p.fixed_ips[0]?.subnet_id === userSubnet.id));
    await pingUntilReply(c1, b.ip);
    await docker('rm', '-f', c1, c2);
    await docker('network', 'rm', n);
    assert.deepEqual((await neutron.get('networks', userNet.id)).tags, ['e2e-mine']);
    const subnet = await neutron.get('subnets', userSubnet.id);
    assert.deepEqual(subnet.tags, ['e2e-mine']);
    assert.equal(subnet.cidr, '10.204.0.0/24');
    assert.deepEqual(await userVisiblePorts(userNet.id), []);
    assert.deepEqual(await neutron.list('subnetpools', { name: 'kuryrPool-10.204.0.0/24' }), []);
  });

  it("bug 2: a user's dual-stack port taken by connect/run --ip --ip6 is handed back exactly and kept, also across a crash, and gc leaves it", async () => {
    const userNet = made.add('networks', await neutron.create('networks', { name: uniqueName('e2e-net') }));
    const n = track(networks, uniqueName('bug2'));
    await createKuryrNetwork(
      '--ipv6',
      '--subnet',
      '10.208.0.0/24',
      '--subnet',
      'fd00:208::/64',
      '-o',
      `neutron.net.uuid=${userNet.id}`,
      n,
    );
    const first = track(networks, uniqueName('bug2-first'));
    await createKuryrNetwork('--subnet', '10.208.9.0/24', first);
    const subnets = await neutron.list('subnets', { network_id: userNet.id });
    const v4 = subnets.find((s) => s.ip_version === 4);
    const v6 = subnets.find((s) => s.ip_version === 6);
    assert.ok(v4 && v6);
    // The user's port: Neutron picks one address in each subnet.
    const created = made.add(
      'ports',
      await neutron.create('ports', {
        network_id: userNet.id,
        name: uniqueName('e2e-port'),
        fixed_ips: [{ subnet_id: v4.id }, { subnet_id: v6.id }],
      }),
    );
    await neutron.setTags('ports', created.id, ['e2e-mine']);
    const before = await neutron.get('ports', created.id);
    const ip4 = before.fixed_ips.find((f) => f.subnet_id === v4.id)?.ip_address as string;
    const ip6 = before.fixed_ips.find((f) => f.subnet_id === v6.id)?.ip_address as string;

    const assertTaken = async (c: string) => {
      const net = await containerNet(c, n);
      assert.equal(net.ip, ip4);
      assert.equal(net.ipv6, ip6);
      const port = await waitFor(
        'the user port to be ACTIVE',
        async () => {
          const p = await neutron.get('ports', created.id);
          return p.status === 'ACTIVE' ? p : undefined;
        },
        30_000,
        300,
      );
      assert.equal(port.device_id, net.endpointId, 'the same port serves the endpoint');
      assert.ok(port.tags.includes(EXISTING_PORT_TAG));
      assert.deepEqual(
        (await userVisiblePorts(userNet.id)).map((p) => p.id),
        [created.id],
        'no port of its own',
      );
    };
    const assertHandedBack = async () => {
      const now = await neutron.get('ports', created.id);
      assert.deepEqual(portView(now), portView(before));
    };

    // docker network connect / disconnect
    const c = track(containers, uniqueName('bug2-c'));
    await docker('run', '-d', '--name', c, '--net', first, IMAGE, 'sleep', '600');
    await docker('network', 'connect', '--ip', ip4, '--ip6', ip6, n, c);
    await assertTaken(c);
    await docker('network', 'disconnect', n, c);
    await assertHandedBack();

    // docker run --ip --ip6 / docker rm -f
    const r = track(containers, uniqueName('bug2-r'));
    await docker('run', '-d', '--name', r, '--net', n, '--ip', ip4, '--ip6', ip6, IMAGE, 'sleep', '600');
    await assertTaken(r);
    await docker('rm', '-f', r);
    await assertHandedBack();

    // A crash while the container holds it: the next daemon hands it back, gc never deletes it.
    const k = track(containers, uniqueName('bug2-k'));
    await docker('run', '-d', '--name', k, '--net', n, '--ip', ip4, '--ip6', ip6, IMAGE, 'sleep', '600');
    await assertTaken(k);
    kuryr.child.kill('SIGKILL');
    await waitFor(
      'kuryr to die',
      async () => kuryr.child.exitCode !== null || kuryr.child.signalCode !== null,
    );
    kuryr = await startKuryr();
    await docker('rm', '-f', k);
    await assertHandedBack();
    const gc = await kuryrCli(kuryr.conf, 'gc', '--min-age', '0', '--apply');
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    await assertHandedBack();

    await docker('rm', '-f', c);
    await neutron.delete('ports', created.id); // the user's, on kuryr's subnet: theirs to remove
    await docker('network', 'rm', n, first);
    assert.deepEqual((await neutron.get('networks', userNet.id)).tags, []);
  });
});

describe('kuryr gc --apply with user resources kuryr adopted (real Neutron)', () => {
  let kuryr: KuryrProcess;
  const made = new Made();

  before(async () => {
    kuryr = await startKuryr();
  });
  after(async () => {
    await made.cleanup();
    await kuryr.stop();
  });

  it('every user resource still exists, untagged or handed back; kuryr garbage is removed', async () => {
    const dead = randomBytes(32).toString('hex');
    const deadEp = randomBytes(32).toString('hex');
    const userNet = made.add('networks', await neutron.create('networks', { name: uniqueName('e2e-net') }));
    await neutron.setTags('networks', userNet.id, [
      'e2e-mine',
      ...dockerIdTags(dead),
      existingNetworkTag(dead),
    ]);
    const userSubnet = made.add(
      'subnets',
      await neutron.create('subnets', {
        network_id: userNet.id,
        ip_version: 4,
        cidr: '10.209.0.0/24',
        name: uniqueName('e2e-subnet'),
        enable_dhcp: false,
      }),
    );
    await neutron.setTags('subnets', userSubnet.id, ['e2e-mine', randomUUID()]); // a dead PoolID
    const userPool = made.add(
      'subnetpools',
      await neutron.create('subnetpools', {
        name: uniqueName('e2e-pool'),
        prefixes: ['10.209.128.0/20'],
        default_prefixlen: 24,
      }),
    );
    await neutron.setTags('subnetpools', userPool.id, [EXISTING_POOL_TAG]);
    const lookalike = made.add(
      'subnetpools',
      await neutron.create('subnetpools', {
        name: 'kuryrPool-10.209.200.0/24',
        prefixes: ['10.209.200.0/24'],
        default_prefixlen: 24,
      }),
    );
    await neutron.setTags('subnetpools', lookalike.id, [EXISTING_POOL_TAG]);
    // A user's port in kuryr's "taken" state, for an endpoint Docker no longer has, bound here.
    const userPort = made.add(
      'ports',
      await neutron.create('ports', {
        network_id: userNet.id,
        name: uniqueName('e2e-port'),
        device_owner: DEVICE_OWNER,
        device_id: deadEp,
        'binding:host_id': HOST,
      }),
    );
    await neutron.setTags('ports', userPort.id, ['e2e-mine', EXISTING_PORT_TAG, ...dockerIdTags(deadEp)]);

    // kuryr's own: a network, pool and port for a Docker network that does not exist.
    const ownNet = randomBytes(32).toString('hex');
    const pool = await pluginCall('IpamDriver.RequestPool', {
      AddressSpace: 'x',
      Pool: '10.210.0.0/24',
      SubPool: '',
      Options: {},
      V6: false,
    });
    assert.equal(pool.status, 200, JSON.stringify(pool.body));
    const cn = await pluginCall('NetworkDriver.CreateNetwork', {
      NetworkID: ownNet,
      Options: {},
      IPv4Data: [{ AddressSpace: 'x', Pool: '10.210.0.0/24', Gateway: '10.210.0.1/24' }],
      IPv6Data: [],
    });
    assert.equal(cn.status, 200, JSON.stringify(cn.body));
    const addr = await pluginCall('IpamDriver.RequestAddress', {
      PoolID: pool.body.PoolID,
      Address: '',
      Options: {},
    });
    assert.equal(addr.status, 200, JSON.stringify(addr.body));
    const [net] = await neutronNetworksOf(ownNet);
    const ownIp = String(addr.body.Address).split('/')[0];
    const [ownPort] = (await neutron.list('ports', { network_id: net?.id })).filter((p) =>
      p.fixed_ips.some((f) => f.ip_address === ownIp),
    );
    assert.ok(net && ownPort);

    const gc = await kuryrCli(kuryr.conf, 'gc', '--min-age', '0', '--apply');
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);

    assert.deepEqual((await neutron.get('networks', userNet.id)).tags, ['e2e-mine']);
    assert.ok(await neutron.get('subnets', userSubnet.id), 'user subnet kept');
    assert.ok(await neutron.get('subnetpools', userPool.id), 'user subnetpool kept');
    assert.ok(await neutron.get('subnetpools', lookalike.id), "user subnetpool named like kuryr's kept");
    const port = await neutron.get('ports', userPort.id);
    assert.equal(port.device_owner, '');
    assert.equal(port.device_id, '');
    assert.equal(port['binding:host_id'] ?? '', '');
    assert.deepEqual(port.tags, ['e2e-mine']);
    assert.deepEqual(await neutron.list('networks', { id: net.id }), [], "kuryr's network removed");
    assert.deepEqual(await neutron.list('ports', { id: ownPort.id }), [], "kuryr's port removed");
    assert.deepEqual(await neutron.list('subnetpools', { id: String(pool.body.PoolID) }), []);
    // Last, so that everything above is checked too: the dead PoolID tag is gone.
    assert.deepEqual((await neutron.get('subnets', userSubnet.id)).tags, ['e2e-mine']);
  });
});
