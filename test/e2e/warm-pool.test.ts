// The warm port pool against real Docker, Neutron and the Linux bridge agent: ports made ahead,
// bound, plugged and ACTIVE; containers get them with one Neutron request Docker waits for, and
// ping at once; --mac-address, --ip and dual stack; adoption after SIGKILL; draining on network
// rm and on SIGTERM. kuryr's IPAM capabilities do not depend on the pool (Docker reads them once
// per plugin activation), so turning the pool on needs no dockerd restart: this file does none.
// CIDRs 10.88.0.0/16 and fd00:88::/32 belong to this file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { Port } from '../../src/neutron/types.js';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  DOCKER,
  docker,
  expectedBridge,
  gcGarbage,
  HOST,
  hostLinks,
  IMAGE,
  isIdleWarmPort,
  type KuryrProcess,
  kuryrCli,
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

const SIZE = 3;
const METRICS = '127.0.0.1:23788';
const CONFIG = `metrics_listen = ${METRICS}\n[vif_pool]\nsize = ${SIZE}\nbatch = 2\n`;

const poolPorts = (networkId: string) =>
  neutron.list('ports', { network_id: networkId, name: 'kuryr-pool-port' });

/** The pool of a Neutron network once it holds SIZE ports, all ACTIVE. */
function fullPool(neutronNetworkId: string): Promise<Port[]> {
  return waitFor(
    `${SIZE} ACTIVE warm-pool ports on ${neutronNetworkId}`,
    async () => {
      const ports = await poolPorts(neutronNetworkId);
      return ports.length === SIZE && ports.every((p) => p.status === 'ACTIVE') ? ports : undefined;
    },
    60_000,
    300,
  );
}

async function metric(name: string, at = METRICS): Promise<string> {
  return (await (await request(`http://${at}/metrics`)).body.text())
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n');
}

/** kuryr's log lines for one handler, parsed. */
function calls(kuryr: KuryrProcess, handler: string): { neutron: unknown[] }[] {
  return kuryr
    .log()
    .split('\n')
    .filter((l) => l.includes(`"handler":"${handler}"`))
    .map((l) => JSON.parse(l) as { neutron: unknown[] });
}

describe('warm port pool ([vif_pool] size = 3)', () => {
  let kuryr: KuryrProcess;
  const net = uniqueName('pool');
  const dual = uniqueName('pool6');
  const name = (c: string) => uniqueName(`pool-${c}`);
  const [ca, cb, cmac, cip, cipw] = [name('a'), name('b'), name('mac'), name('ip'), name('ipw')];
  const [cd1, cd2, clate, clate2] = [name('d1'), name('d2'), name('late'), name('late2')];
  const ckill = name('kill');
  const containers = [ca, cb, cmac, cip, cipw, cd1, cd2, clate, clate2];
  let neutronNet: string;

  before(async () => {
    kuryr = await startKuryr(CONFIG);
  });
  after(async () => {
    await cleanupDocker(containers, [net, dual]);
    await kuryr?.stop();
  });

  it('tells Docker it needs no MAC addresses (the pool makes ports before Docker would choose one)', async () => {
    const caps = await pluginCall('IpamDriver.GetCapabilities', {});
    assert.equal(caps.body.RequiresMACAddress, false);
  });

  it('docker network create fills the pool: bound to this host, plugged into the bridge, ACTIVE', async () => {
    await createKuryrNetwork('--subnet', '10.88.1.0/24', net);
    const [n] = await neutronNetworksOf(await networkId(net));
    assert.ok(n);
    neutronNet = n.id;
    const ports = await fullPool(neutronNet);
    for (const p of ports) {
      assert.equal(p['binding:host_id'], HOST);
      assert.equal(p.device_id, '');
      assert.equal(p.device_owner, 'compute:kuryr');
      assert.deepEqual(await hostLinks(`tap${p.id.slice(0, 11)}`), [`tap${p.id.slice(0, 11)}`]);
      assert.equal(await pluggedInto(`tap${p.id.slice(0, 11)}`), await expectedBridge(neutronNet));
    }
  });

  it('containers get warm ports with no Neutron request Docker waits for, ping at once, and the pool refills', async () => {
    const warm = new Set((await fullPool(neutronNet)).map((p) => p.id));
    const start = ['IpamDriver.RequestAddress', 'NetworkDriver.CreateEndpoint', 'NetworkDriver.Join'];
    const before = start.map((h) => calls(kuryr, h).length);
    for (const c of [ca, cb]) await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
    const [a, b] = [await containerNet(ca, net), await containerNet(cb, net)];
    // First ping: no waiting for the agent, the ports were ACTIVE before the containers existed.
    const out = await docker('exec', ca, 'ping', '-c', '1', '-W', '2', b.ip);
    assert.match(out, /1 packets received/);
    for (const ep of [a, b]) {
      // CreateEndpoint records the endpoint on the veth; device_id, name and tags follow behind.
      const port = await waitFor(
        `port of ${ep.endpointId.slice(0, 12)} recorded and tagged`,
        async () =>
          (await neutron.list('ports', { device_id: ep.endpointId })).find((p) =>
            p.tags.some((t) => ep.endpointId.startsWith(t.split(':')[1] ?? '-')),
          ),
        10_000,
        100,
      );
      assert.ok(warm.has(port.id), `port ${port.id} came from the pool`);
      assert.equal(port.mac_address, ep.mac, 'eth0 carries the port MAC');
      assert.equal(port.status, 'ACTIVE');
      assert.equal(port.name, `${ep.endpointId}-port`);
      assert.ok(port.tags.some((t) => ep.endpointId.startsWith(t.split(':')[1] ?? '-')));
      assert.equal(
        readFileSync(`/sys/class/net/tap${port.id.slice(0, 11)}/ifalias`, 'utf8').trim(),
        `kuryr-endpoint ${ep.endpointId} port ${port.id}`,
        'the host end of the veth records the endpoint',
      );
    }
    // Request-count regression check: a warm start makes no Neutron request Docker waits for.
    for (const [i, h] of start.entries()) {
      const made = calls(kuryr, h).slice(before[i]);
      assert.equal(made.length, 2, h);
      const expected: string[] = [];
      for (const c of made)
        assert.deepEqual(
          (c.neutron as { method: string; resource: string }[]).map((n) => `${n.method} ${n.resource}`),
          expected,
          `${h}'s Neutron requests`,
        );
    }
    const refilled = await fullPool(neutronNet);
    assert.ok(refilled.every((p) => !warm.has(p.id) || p.device_id === ''));
    assert.match(await metric('kuryr_warm_pool_takes_total'), /result="hit"} [2-9]/);
  });

  it('--mac-address gets its MAC on a warm port (unbound, re-MACed, bound again) and works', async () => {
    const mac = '02:88:00:00:00:01';
    await docker('run', '-d', '--name', cmac, '--net', net, '--mac-address', mac, IMAGE, 'sleep', '600');
    const ep = await containerNet(cmac, net);
    assert.equal(ep.mac, mac);
    const port = await waitFor(
      'the port to be ACTIVE with the MAC',
      async () => {
        const p = await portOfEndpoint(ep.endpointId);
        return p?.status === 'ACTIVE' && p.mac_address === mac ? p : undefined;
      },
      30_000,
      300,
    );
    assert.equal(port['binding:host_id'], HOST);
    await pingUntilReply(cmac, (await containerNet(ca, net)).ip);
  });

  it('--ip gets a port with that address: its own, or the warm port that drew it (never one with another)', async () => {
    const warm = await fullPool(neutronNet);
    // Neutron gives warm ports random addresses: one may hold the address asked for. It is free.
    const drawn = warm[0]?.fixed_ips[0]?.ip_address;
    assert.ok(drawn);
    // Free: held by no port of the network (the earlier tests' containers drew theirs at random
    // too, so one of theirs could hold a fixed pick). Its few ports cannot hold fifty candidates.
    const held = new Set(
      (await neutron.list('ports', { network_id: neutronNet })).flatMap((p) =>
        p.fixed_ips.map((f) => f.ip_address),
      ),
    );
    const free = Array.from({ length: 50 }, (_, i) => `10.88.1.${200 + i}`).find((a) => !held.has(a));
    assert.ok(free);
    const runs: [string, string][] = [
      [cip, free],
      [cipw, drawn],
    ];
    for (const [c, ip] of runs) {
      // A failure here is random (which address a warm port drew): say what kuryr saw.
      const seen = () =>
        `\nwarm ports listed: ${warm.map((p) => `${p.id} ${p.fixed_ips[0]?.ip_address}`).join(', ')}` +
        `\nkuryr's RequestAddress calls and warnings:\n${kuryr
          .log()
          .split('\n')
          .filter(
            (l) =>
              l.includes('"handler":"IpamDriver.RequestAddress"') ||
              l.includes('"level":40') ||
              l.includes('"level":50'),
          )
          .slice(-6)
          .join('\n')}`;
      try {
        await docker('run', '-d', '--name', c, '--net', net, '--ip', ip, IMAGE, 'sleep', '600');
        const ep = await containerNet(c, net);
        assert.equal(ep.ip, ip);
        const port = await portOfEndpoint(ep.endpointId);
        assert.ok(port, `no port recorded for endpoint ${ep.endpointId}`);
        const holder = warm.find((p) => p.fixed_ips[0]?.ip_address === ip);
        if (holder) assert.equal(port.id, holder.id, `${ip}: the warm port that drew it`);
        else assert.ok(!warm.some((p) => p.id === port.id), `${ip}: a port of its own, not a warm one`);
        await pingUntilReply(c, (await containerNet(ca, net)).ip);
      } catch (err) {
        throw new Error(`docker run --ip ${ip}: ${(err as Error).message}${seen()}`, { cause: err });
      }
    }
  });

  it('dual stack: warm ports carry both addresses; each container gets one port with both, and ping6 works', async () => {
    await createKuryrNetwork('--ipv6', '--subnet', '10.88.2.0/24', '--subnet', 'fd00:88:2::/64', dual);
    const [n] = await neutronNetworksOf(await networkId(dual));
    assert.ok(n);
    const ports = await fullPool(n.id);
    for (const p of ports) assert.equal(p.fixed_ips.length, 2, 'one IPv4 and one IPv6 address');
    for (const c of [cd1, cd2]) await docker('run', '-d', '--name', c, '--net', dual, IMAGE, 'sleep', '600');
    const [d1, d2] = [await containerNet(cd1, dual), await containerNet(cd2, dual)];
    for (const ep of [d1, d2]) {
      assert.ok(ep.ip && ep.ipv6, 'both families');
      const port = await waitFor(
        'endpoint recorded',
        async () => (await neutron.list('ports', { device_id: ep.endpointId }))[0],
        10_000,
        100,
      );
      assert.deepEqual(port.fixed_ips.map((f) => f.ip_address).sort(), [ep.ip, ep.ipv6].sort());
    }
    await fullPool(n.id); // refilled (a moment after the takes)
    const all = await neutron.list('ports', { network_id: n.id, device_owner: 'compute:kuryr' });
    assert.equal(all.length, 2 + SIZE, 'two endpoints plus a full pool: nothing extra');
    await pingUntilReply(cd1, d2.ipv6, 20_000, true);
  });

  it('a SIGKILLed driver leaves its pool, gc keeps it, and the restarted driver adopts it instead of making more', async () => {
    const before = new Set((await fullPool(neutronNet)).map((p) => p.id));
    kuryr.child.kill('SIGKILL');
    await waitFor('kuryr gone', async () => kuryr.child.signalCode !== null, 5000, 50);
    const gc = await kuryrCli(kuryr.conf, 'gc', '--min-age', '0', '--json');
    const garbage = JSON.parse(gc.stdout || '[]') as { id: string }[];
    assert.ok(!garbage.some((g) => before.has(g.id)), 'warm ports of a live network are not garbage');
    kuryr = await startKuryr(CONFIG);
    await waitFor(
      'adoption logged',
      async () => kuryr.log().includes('warm-pool ports from a previous run'),
      10_000,
      100,
    );
    const after = await fullPool(neutronNet);
    assert.deepEqual(new Set(after.map((p) => p.id)), before, 'the same ports, none made or lost');
    // And they are handed out again.
    await docker('run', '-d', '--name', clate, '--net', net, IMAGE, 'sleep', '600');
    const ep = await containerNet(clate, net);
    const port = await waitFor(
      'endpoint recorded',
      async () => (await neutron.list('ports', { device_id: ep.endpointId }))[0],
      10_000,
      100,
    );
    assert.ok(before.has(port.id));
  });

  it('a driver SIGKILLed right after a start, before device_id reached Neutron: the restarted one finds the port by its veth and writes it', async () => {
    // Identities are written 5 s after the last start here (1 s by default): the kill lands first.
    // (SIGKILL, not stop: SIGTERM would drain the pools the next tests use; a killed one's are adopted.)
    kuryr.child.kill('SIGKILL');
    await waitFor('kuryr gone', async () => kuryr.child.signalCode !== null, 5000, 50);
    kuryr = await startKuryr(`${CONFIG}[binding]\nidentity_write_delay = 5\n`);
    containers.push(ckill);
    await docker('run', '-d', '--name', ckill, '--net', net, IMAGE, 'sleep', '600');
    kuryr.child.kill('SIGKILL');
    await waitFor('kuryr gone', async () => kuryr.child.signalCode !== null, 5000, 50);
    const ep = await containerNet(ckill, net);
    assert.deepEqual(
      await neutron.list('ports', { device_id: ep.endpointId }),
      [],
      'killed before the write: Neutron does not know the endpoint yet',
    );
    kuryr = await startKuryr(CONFIG);
    const port = await waitFor(
      'device_id written by the restarted driver',
      async () => (await neutron.list('ports', { device_id: ep.endpointId }))[0],
      15_000,
      100,
    );
    assert.equal(port.name, `${ep.endpointId}-port`);
    await waitFor(
      'the repair logged',
      async () => kuryr.log().includes("writing endpoints' device_id a previous run left unwritten"),
      10_000,
      100,
    );
    await docker('rm', '-f', ckill);
    assert.deepEqual(await neutron.list('ports', { id: port.id }), [], 'docker rm -f deleted it');
    assert.deepEqual(await hostLinks(`tap${port.id.slice(0, 11)}`), []);
  });

  it('docker network rm drains the pool: its ports and veths are gone', async () => {
    const [n] = await neutronNetworksOf(await networkId(dual));
    assert.ok(n);
    const warm = await fullPool(n.id);
    await cleanupDocker([cd1, cd2], []);
    await docker('network', 'rm', dual);
    assert.deepEqual(await neutron.list('networks', { id: n.id }), []);
    for (const p of warm) assert.deepEqual(await hostLinks(`tap${p.id.slice(0, 11)}`), []);
  });

  it('SIGTERM drains the pool of every network', async () => {
    const warm = await fullPool(neutronNet);
    await kuryr.stop();
    assert.deepEqual(await poolPorts(neutronNet), []);
    for (const p of warm) {
      assert.deepEqual(await hostLinks(`tap${p.id.slice(0, 11)}`), []);
      assert.deepEqual(await hostLinks(`t_c${p.id.slice(0, 11)}`), []);
    }
  });

  it('a network made before the daemon started gets its pool at its first container', async () => {
    kuryr = await startKuryr(CONFIG);
    assert.deepEqual(await poolPorts(neutronNet), [], 'nothing to adopt after SIGTERM');
    await docker('run', '-d', '--name', clate2, '--net', net, IMAGE, 'sleep', '600');
    await fullPool(neutronNet);
    assert.match(await metric('kuryr_warm_pool_takes_total'), /result="miss"} 1/);
  });
});

const RECYCLE_METRICS = '127.0.0.1:23789';

describe('the default pool (sized by demand): docker rm gives the port back to it', () => {
  let kuryr: KuryrProcess;
  const net = uniqueName('recycle');
  const [c1, c2, c3] = ['1', '2', '3'].map((c) => uniqueName(`recycle-${c}`)) as [string, string, string];
  before(async () => {
    // Resets and identities are written 5 s after the last start (1 s by default): long enough
    // to look at the port before its reset lands.
    kuryr = await startKuryr(`metrics_listen = ${RECYCLE_METRICS}\n[binding]\nidentity_write_delay = 5\n`);
  });
  after(async () => {
    await cleanupDocker([c1, c2, c3], [net]);
    await kuryr?.stop();
  });

  it('bound, plugged and ACTIVE all along, kept by gc, reset behind; --ip of its address gets it again, and traffic flows', async () => {
    await createKuryrNetwork('--subnet', '10.88.9.0/24', net);
    const [n] = await neutronNetworksOf(await networkId(net));
    assert.ok(n);
    await docker('run', '-d', '--name', c1, '--net', net, IMAGE, 'sleep', '600');
    const ep = await containerNet(c1, net);
    const port = await waitFor(
      'the endpoint written to its port',
      async () => (await neutron.list('ports', { device_id: ep.endpointId }))[0],
      20_000,
      200,
    );
    const tap = `tap${port.id.slice(0, 11)}`;
    await run(DOCKER, ['rm', '-f', c1]); // not the harness's docker(): it would wait for the reset
    // Docker moved the container end back to the host at Leave: the pair stays, plugged.
    assert.deepEqual(await hostLinks(tap), [tap]);
    assert.deepEqual(await hostLinks(`t_c${port.id.slice(0, 11)}`), [`t_c${port.id.slice(0, 11)}`]);
    assert.equal(await pluggedInto(tap), await expectedBridge(n.id));
    assert.equal(readFileSync(`/sys/class/net/${tap}/ifalias`, 'utf8').trim(), `kuryr-pool port ${port.id}`);
    assert.match(await metric('kuryr_warm_pool_returns_total', RECYCLE_METRICS), /result="kept"} 1/);
    const [early] = await neutron.list('ports', { id: port.id });
    assert.equal(
      early?.device_id,
      ep.endpointId,
      'Neutron still shows the old endpoint (the reset is behind)',
    );
    assert.ok(
      !(await gcGarbage()).some((g) => g.id === port.id),
      'gc keeps it: its veth says it is a warm port',
    );
    const back = await waitFor(
      'the port reset to an idle warm port',
      async () => (await neutron.list('ports', { id: port.id })).find(isIdleWarmPort),
      20_000,
      200,
    );
    assert.equal(back.status, 'ACTIVE');
    assert.equal(back['binding:host_id'], HOST);
    assert.ok(!back.tags.some((t) => ep.endpointId.startsWith(t.split(':')[1] ?? '-')), 'endpoint tags gone');
    // The address is free for Docker: --ip of it is served by the warm port that holds it.
    await docker('run', '-d', '--name', c2, '--net', net, '--ip', ep.ip, IMAGE, 'sleep', '600');
    const ep2 = await containerNet(c2, net);
    const again = await waitFor(
      'the new endpoint written',
      async () => (await neutron.list('ports', { device_id: ep2.endpointId }))[0],
      20_000,
      200,
    );
    assert.equal(again.id, port.id, 'the same port');
    assert.equal(ep2.mac, port.mac_address, 'eth0 carries the port MAC');
    await docker('run', '-d', '--name', c3, '--net', net, IMAGE, 'sleep', '600');
    await pingUntilReply(c3, ep2.ip);
    await pingUntilReply(c2, (await containerNet(c3, net)).ip);
  });
});
