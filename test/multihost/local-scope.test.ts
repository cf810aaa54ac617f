// One Docker network on two hosts, local scope: host1's Docker creates it, host2's joins the same
// Neutron network (-o neutron.net.uuid, the same CIDR adopted); containers on both reach each other
// over the backend's tunnels, each port bound to its own host. Then per-host ownership: each kuryr
// plugs and unplugs only its own ports, `kuryr status` counts per host, `kuryr gc` on host2 never
// touches host1's resources. CIDRs 10.213.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  attachment,
  cleanup,
  createSharedNetwork,
  hdocker,
  hexec,
  hkuryr,
  hostsUp,
  IMAGE,
  isIdleWarmPort,
  kuryrPortsOn,
  neutron,
  neutronNetworksFor,
  uniqueName,
  waitFor,
  waitPortActive,
} from './hosts.js';
import { pingFrom, serveTcp, tcpGet, udpReaches } from './traffic.js';

const tapOf = (portId: string) => `tap${portId.slice(0, 11)}`;
const links = async (host: string) => (await hexec(host, 'ip', '-o', 'link', 'show')).split('\n');
const hasLink = async (host: string, name: string) => (await links(host)).some((l) => l.includes(` ${name}`));

describe('one Docker network on two hosts (local scope)', () => {
  const net = uniqueName('local');
  const [c1, c2] = [uniqueName('c1'), uniqueName('c2')];
  let neutronNetId = '';
  const at: Record<string, { endpointId: string; ip: string; portId: string }> = {};

  before(async () => {
    await hostsUp(2);
  });
  after(async () => {
    await cleanup([c1, c2], [net]);
  });

  it('host1 creates the network, host2 joins the same Neutron network and subnet', async () => {
    neutronNetId = await createSharedNetwork(net, '10.213.1.0/24');
    const id1 = await hdocker('host1', 'network', 'inspect', '-f', '{{.Id}}', net);
    const n = { id: neutronNetId };
    const id2 = await hdocker('host2', 'network', 'inspect', '-f', '{{.Id}}', net);
    assert.notEqual(id1, id2, 'two Docker networks (one per host, local scope)');
    assert.deepEqual(
      (await neutronNetworksFor(id2)).map((x) => x.id),
      [n.id],
      'host2 maps onto the same network',
    );
    const subnets = await neutron.list('subnets', { network_id: n.id });
    assert.equal(subnets.length, 1, 'one subnet, adopted by host2');
  });

  it('containers on both hosts get ports bound to their own host, ACTIVE', async () => {
    await hdocker('host1', 'run', '-d', '--name', c1, '--net', net, IMAGE, 'sleep', '900');
    await hdocker('host2', 'run', '-d', '--name', c2, '--net', net, IMAGE, 'sleep', '900');
    for (const [host, c] of [
      ['host1', c1],
      ['host2', c2],
    ] as const) {
      const a = await attachment(host, c, net);
      const port = await waitPortActive(a.endpointId);
      assert.equal(port['binding:host_id'], host);
      assert.equal(port.network_id, neutronNetId);
      at[host] = { ...a, portId: port.id };
    }
  });

  it('ICMP, TCP and UDP pass between the hosts, both ways', async () => {
    const [a, b] = [at.host1, at.host2];
    assert.ok(a && b);
    await pingFrom('host1', c1, b.ip);
    await pingFrom('host2', c2, a.ip);
    await serveTcp('host1', c1, 'hello-from-host1');
    await serveTcp('host2', c2, 'hello-from-host2');
    assert.equal(await tcpGet('host2', c2, a.ip), 'hello-from-host1');
    assert.equal(await tcpGet('host1', c1, b.ip), 'hello-from-host2');
    assert.ok(await udpReaches({ host: 'host1', container: c1 }, { host: 'host2', container: c2, ip: b.ip }));
    assert.ok(
      await udpReaches({ host: 'host2', container: c2 }, { host: 'host1', container: c1, ip: a.ip }, 5002),
    );
  });

  it('each kuryr plugged only its own port', async () => {
    const [a, b] = [at.host1, at.host2];
    assert.ok(a && b);
    assert.ok(await hasLink('host1', tapOf(a.portId)));
    assert.ok(!(await hasLink('host1', tapOf(b.portId))));
    assert.ok(await hasLink('host2', tapOf(b.portId)));
    assert.ok(!(await hasLink('host2', tapOf(a.portId))));
  });

  it('kuryr status counts ports per host', async () => {
    for (const host of ['host1', 'host2']) {
      const { out } = await hkuryr(host, 'status');
      const here = (await kuryrPortsOn(host)).length;
      assert.match(out, new RegExp(`\\(${here} on this host\\)`), out);
      assert.ok(here >= 1);
    }
  });

  it("kuryr gc on host2 proposes nothing of host1's (dry run; applied only when clean)", async () => {
    const { out } = await hkuryr('host2', 'gc', '--min-age', '0');
    const foreign = out
      .split('\n')
      .filter(
        (l) => l.startsWith('found') && (l.includes(neutronNetId) || l.includes(at.host1?.portId ?? '-')),
      );
    // Never applied when it would touch host1: it would untag or delete what host1 uses.
    assert.deepEqual(foreign, [], `host2's gc would touch host1's network or port:\n${out}`);
    const applied = await hkuryr('host2', 'gc', '--apply', '--min-age', '0');
    assert.ok(applied.code === 0 || applied.code === 3, applied.out);
    const port = (await neutron.list('ports', { id: at.host1?.portId ?? '' }))[0];
    assert.equal(port?.status, 'ACTIVE');
    await pingFrom('host2', c2, at.host1?.ip ?? '');
  });

  it("removing host2's container releases only host2's port; host1's stays ACTIVE", async () => {
    await hdocker('host2', 'rm', '-f', c2);
    const id2 = at.host2?.portId ?? '';
    const [p2] = await neutron.list('ports', { id: id2 });
    if (p2) {
      // Back in host2's warm pool: still bound to host2, its veth kept there, no endpoint.
      assert.ok(isIdleWarmPort(p2), `${p2.name} ${p2.device_id}`);
      assert.equal(p2['binding:host_id'], 'host2');
      assert.ok(await hasLink('host2', tapOf(id2)));
    } else assert.ok(!(await hasLink('host2', tapOf(id2))), 'deleted with its veth');
    assert.ok(!(await hasLink('host1', tapOf(id2))), "never on host1's side");
    assert.equal((await neutron.list('ports', { id: at.host1?.portId ?? '' }))[0]?.status, 'ACTIVE');
    assert.ok(await hasLink('host1', tapOf(at.host1?.portId ?? '')));
  });

  it('host2 leaves the network (untagged, kept), host1 removes it (deleted)', async () => {
    await hdocker('host2', 'network', 'rm', net);
    assert.equal((await neutron.list('networks', { id: neutronNetId })).length, 1);
    await hdocker('host1', 'rm', '-f', c1);
    await hdocker('host1', 'network', 'rm', net);
    // docker network rm returns before the Neutron teardown (warm ports, then the network).
    await waitFor(
      "host1's network and every kuryr port of both hosts to go",
      async () =>
        (await neutron.list('networks', { id: neutronNetId })).length === 0 &&
        (await kuryrPortsOn('host1')).length + (await kuryrPortsOn('host2')).length === 0,
      30_000,
      250,
    );
  });
});
