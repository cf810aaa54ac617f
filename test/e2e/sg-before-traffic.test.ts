// Security groups before traffic: a container's network works only once the backend has wired its
// port, security groups included, because Join waits for the port to turn ACTIVE (the agent or
// ovn-controller reports it up only after applying them). A driver that lets the container start
// before that (kuryr-libnetwork's default) opens a window in which traffic the port's groups
// forbid gets through. Here a peer pings a container's address from before its `docker run` until
// seconds after, and never gets a reply; then the group allows ICMP and replies come (the test can
// see them). CIDR 10.225.0.0/24 belongs to this file.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Port } from '../../src/neutron/types.js';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  IMAGE,
  type KuryrProcess,
  Made,
  networkId,
  neutron,
  neutronNetworksOf,
  pingUntilReply,
  startKuryr,
  uniqueName,
} from './harness.js';

describe("security groups apply before a container's first packet", () => {
  let kuryr: KuryrProcess;
  const made = new Made();
  const groups: string[] = [];
  const net = uniqueName('sg');
  const [peer, guarded] = [uniqueName('sg-peer'), uniqueName('sg-guarded')];

  before(async () => {
    // No warm pool: the guarded container's port is bound and wired during its start, the window
    // this test watches.
    kuryr = await startKuryr('[vif_pool]\nenabled = false');
  });
  after(async () => {
    // The user's ports go before the Docker network: a port kuryr did not make keeps its Neutron
    // network (as it should for a user's).
    await cleanupDocker([peer, guarded], []);
    await made.cleanup();
    await cleanupDocker([], [net]);
    for (const id of groups) await neutron.delete('security-groups', id).catch(() => false);
    await kuryr.stop();
  });

  it('a peer pinging the address from before docker run never gets a reply its security groups forbid', async () => {
    await createKuryrNetwork('--subnet', '10.225.0.0/24', net);
    const [n] = await neutronNetworksOf(await networkId(net));
    assert.ok(n);
    // A fresh group allows all egress and no ingress: the guarded port answers nothing, the peer's
    // pings go out (and their replies would come back through conntrack).
    const group = async (name: string) => {
      const g = await neutron.create('security-groups', { name: uniqueName(name) });
      groups.push(g.id);
      return g;
    };
    const [open, closed] = [await group('e2e-sg-peer'), await group('e2e-sg-closed')];
    const userPort = async (sg: string): Promise<Port> =>
      made.add(
        'ports',
        await neutron.create('ports', {
          network_id: n.id,
          name: uniqueName('e2e-sg-port'),
          security_groups: [sg],
        }),
      );
    const [peerPort, guardedPort] = [await userPort(open.id), await userPort(closed.id)];
    const ipOf = (p: Port) => p.fixed_ips[0]?.ip_address as string;
    await docker('run', '-d', '--name', peer, '--net', net, '--ip', ipOf(peerPort), IMAGE, 'sleep', '600');
    assert.equal((await containerNet(peer, net)).ip, ipOf(peerPort));

    // 60 pings, one every 0.2 s, from before the start until well after it.
    // (busybox ping exits 1 when nothing came back: `; true` keeps its summary.)
    const pings = docker('exec', peer, 'sh', '-c', `ping -c 60 -i 0.2 -W 1 ${ipOf(guardedPort)}; true`);
    await new Promise((r) => setTimeout(r, 1_000));
    const t0 = Date.now();
    await docker(
      'run',
      '-d',
      '--name',
      guarded,
      '--net',
      net,
      '--ip',
      ipOf(guardedPort),
      IMAGE,
      'sleep',
      '600',
    );
    const startedAfterMs = Date.now() - t0;
    const out = await pings;
    const sent = Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? Number.NaN);
    const received = Number(/(\d+) packets received/.exec(out)?.[1] ?? Number.NaN);
    assert.ok(sent >= 50, `the peer kept pinging through the start (${out.slice(-200)})`);
    assert.ok(
      startedAfterMs < sent * 200 - 3_000,
      'the start fell inside the pings, seconds before their end',
    );
    assert.equal(received, 0, `no reply the guarded port's security group forbids: ${out.slice(-200)}`);
    assert.equal((await neutron.get('ports', guardedPort.id)).status, 'ACTIVE');

    // The control: once the group allows ICMP, the same pings get replies.
    await neutron.create('security-group-rules', {
      security_group_id: closed.id,
      direction: 'ingress',
      ethertype: 'IPv4',
      protocol: 'icmp',
    });
    await pingUntilReply(peer, ipOf(guardedPort));
  });
});
