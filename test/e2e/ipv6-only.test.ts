// An IPv6-only kuryr network (Docker 28's `--ipv4=false`: IPv4Data empty), end to end against the
// real Neutron and L2 agent. Docker 20.10 and 26 cannot make such a network, so the test plays
// Docker's side of the protocol on the plugin socket (the calls and bodies Docker 28 sends, see
// test/fixtures), and each "container" is a network namespace this test creates, holding the
// veth end kuryr hands over, configured as Docker would from the answers. Then two of them ping
// each other over IPv6 through Neutron.
// CIDRs fd00:66::/32 belong to this file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  type KuryrProcess,
  neutron,
  neutronNetworksOf,
  pluginCall,
  portOfEndpoint,
  run,
  startKuryr,
  waitFor,
} from './harness.js';

const hex = () => randomBytes(32).toString('hex');
const ok = async (method: string, body: unknown) => {
  const res = await pluginCall(method, body);
  assert.equal(res.status, 200, `${method}: ${JSON.stringify(res.body)}`);
  return res.body;
};

describe('IPv6-only network (IPv4 disabled, Docker 28)', () => {
  let kuryr: KuryrProcess;
  const netId = hex();
  const endpoints = [hex(), hex()];
  const namespaces = endpoints.map((_, i) => `kuryr-e2e-v6only-${process.pid}-${i}`);
  let poolId = '';
  const addresses: string[] = [];

  before(async () => {
    kuryr = await startKuryr();
  });
  after(async () => {
    for (const ns of namespaces) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    for (const ep of endpoints) {
      await pluginCall('NetworkDriver.Leave', { NetworkID: netId, EndpointID: ep }).catch(() => undefined);
      await pluginCall('NetworkDriver.DeleteEndpoint', { NetworkID: netId, EndpointID: ep }).catch(
        () => undefined,
      );
    }
    for (const a of addresses)
      await pluginCall('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: a }).catch(() => undefined);
    if (poolId) await pluginCall('IpamDriver.ReleasePool', { PoolID: poolId }).catch(() => undefined);
    await pluginCall('NetworkDriver.DeleteNetwork', { NetworkID: netId }).catch(() => undefined);
    await waitFor('the network to go', async () => (await neutronNetworksOf(netId)).length === 0, 30_000);
    await kuryr.stop();
  });

  it('works end to end: one IPv6 subnet, ports ACTIVE, two namespaces ping each other', async () => {
    const pool = await ok('IpamDriver.RequestPool', {
      AddressSpace: 'LocalDefault',
      Pool: 'fd00:66::/64',
      SubPool: '',
      Options: {},
      V6: true,
    });
    poolId = String(pool.PoolID);
    const gw = await ok('IpamDriver.RequestAddress', {
      PoolID: poolId,
      Address: '',
      Options: { RequestAddressType: 'com.docker.network.gateway' },
    });
    await ok('NetworkDriver.CreateNetwork', {
      NetworkID: netId,
      Options: {
        'com.docker.network.enable_ipv4': false,
        'com.docker.network.enable_ipv6': true,
        'com.docker.network.generic': {},
      },
      IPv4Data: [],
      IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: 'fd00:66::/64', Gateway: gw.Address }],
    });
    const [net] = await neutronNetworksOf(netId);
    assert.ok(net);
    const subnets = await neutron.list('subnets', { network_id: net.id });
    assert.deepEqual(
      subnets.map((s) => [s.ip_version, s.cidr]),
      [[6, 'fd00:66::/64']],
      'one IPv6 subnet, no IPv4',
    );

    for (const [i, ep] of endpoints.entries()) {
      const addr = await ok('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} });
      addresses.push(String(addr.Address).split('/')[0] as string);
      const created = await ok('NetworkDriver.CreateEndpoint', {
        NetworkID: netId,
        EndpointID: ep,
        Interface: { Address: '', AddressIPv6: addr.Address, MacAddress: '' },
        Options: {},
      });
      const mac = (created.Interface as { MacAddress?: string } | undefined)?.MacAddress;
      assert.ok(mac, 'kuryr gives the port MAC');
      const join = (await ok('NetworkDriver.Join', {
        NetworkID: netId,
        EndpointID: ep,
        SandboxKey: `/var/run/docker/netns/${ep.slice(0, 12)}`,
        Options: {},
      })) as { InterfaceName: { SrcName: string }; GatewayIPv6?: string; Gateway?: string };
      assert.equal(join.Gateway, undefined, 'no IPv4 gateway');
      // What Docker does with the answer: the veth end into the sandbox, address and MAC on it.
      const ns = namespaces[i] as string;
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['link', 'set', join.InterfaceName.SrcName, 'netns', ns]);
      const ipns = (...args: string[]) => run('ip', ['netns', 'exec', ns, ...args]);
      await ipns('sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0');
      await ipns('ip', 'link', 'set', join.InterfaceName.SrcName, 'name', 'eth0');
      await ipns('ip', 'link', 'set', 'eth0', 'address', mac);
      await ipns('sysctl', '-qw', 'net.ipv6.conf.eth0.accept_dad=0');
      await ipns('ip', '-6', 'addr', 'add', String(addr.Address), 'dev', 'eth0', 'nodad');
      await ipns('ip', 'link', 'set', 'eth0', 'up');
      await ipns('ip', 'link', 'set', 'lo', 'up');
      const port = await portOfEndpoint(ep);
      assert.equal(port?.status, 'ACTIVE', 'Join returned with the port ACTIVE');
      assert.deepEqual(
        port?.fixed_ips.map((f) => f.ip_address),
        [addresses[i]],
        'the port has only its IPv6 address',
      );
    }
    await waitFor(
      'ping6 between the two namespaces',
      async () =>
        run('ip', [
          'netns',
          'exec',
          namespaces[0] as string,
          '/bin/busybox', // busybox-static's ping: the host may have no other
          'ping',
          '-6',
          '-c',
          '1',
          '-W',
          '1',
          addresses[1] as string,
        ]).then(
          () => true,
          () => false,
        ),
      30_000,
      200,
    );
  });

  it('a network with neither family is refused with what to add', async () => {
    const res = await pluginCall('NetworkDriver.CreateNetwork', {
      NetworkID: hex(),
      Options: { 'com.docker.network.enable_ipv4': false },
      IPv4Data: [],
      IPv6Data: [],
    });
    assert.notEqual(res.status, 200);
    assert.match(String(res.body.Err), /neither an IPv4 nor an IPv6 address pool.*--ipv6/);
    assert.doesNotMatch(String(res.body.Err), /use --ipam-driver kuryr/);
  });
});
