// Faults on one host of two: host2's kuryr SIGKILLed during container starts, host2's L2 agent
// stopped, host2 crashing with containers running. host1's containers keep working throughout; after
// recovery nothing is left in Neutron or on either host. CIDRs 10.213.9.0/24 belong to this file.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  attachment,
  cleanup,
  createSharedNetwork,
  hdocker,
  hexec,
  hkuryr,
  hosts,
  hostsUp,
  IMAGE,
  isIdleWarmPort,
  kuryrPortsOn,
  neutron,
  uniqueName,
  waitFor,
  waitPortActive,
} from './hosts.js';
import { pingFrom } from './traffic.js';

const net = uniqueName('faults');
const [a1, a2] = [uniqueName('a1'), uniqueName('a2')]; // host1
const b = Array.from({ length: 6 }, (_, i) => uniqueName(`b${i}`)); // host2
const ips: Record<string, string> = {};
let neutronNetId = '';

const runOn = async (host: string, name: string, ...opts: string[]) => {
  await hdocker(host, 'run', '-d', '--name', name, '--net', net, ...opts, IMAGE, 'sleep', '900');
  const at = await attachment(host, name, net);
  ips[name] = at.ip;
  return at;
};

/** host1's containers still talk to each other (and, when it is up, to host2's). */
async function host1Works(peerOnHost2?: string): Promise<void> {
  await pingFrom('host1', a1, ips[a2] ?? '', 10_000);
  if (peerOnHost2) await pingFrom('host1', a1, ips[peerOnHost2] ?? '', 20_000);
}

const taps = async (host: string) =>
  (await hexec(host, 'ip', '-o', 'link', 'show'))
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter((n) => n.startsWith('tap'));

/** Ports of host2 that no live host2 container holds (what a crash or kill could leave behind). */
async function strayPortsOn(host: string, live: string[]): Promise<string[]> {
  const endpoints = new Set<string>();
  for (const c of live) endpoints.add((await attachment(host, c, net)).endpointId);
  return (await kuryrPortsOn(host))
    .filter((p) => !endpoints.has(p.device_id) && !isIdleWarmPort(p))
    .map((p) => `${p.id} ${p.name}`);
}

describe('faults on host2 leave host1 working and nothing behind', () => {
  before(async () => {
    await hostsUp(2);
    neutronNetId = await createSharedNetwork(net, '10.213.9.0/24');
    for (const c of [a1, a2]) await waitPortActive((await runOn('host1', c)).endpointId);
    await waitPortActive((await runOn('host2', b[0] as string)).endpointId);
    await host1Works(b[0]);
  });
  after(async () => {
    await cleanup([a1, a2, ...b], [net]);
  });

  it("host2's kuryr SIGKILLed during starts: host1 unaffected, host2 recovers, no stray port", async () => {
    const starts = [b[1], b[2], b[3]].map((c) =>
      hdocker('host2', 'run', '-d', '--name', c as string, '--net', net, IMAGE, 'sleep', '900').then(
        () => 'ok',
        (e: Error) => e.message,
      ),
    );
    await new Promise((r) => setTimeout(r, 400));
    await hosts('kill', 'host2', 'kuryr');
    const outcomes = await Promise.all(starts);
    await host1Works();
    await hosts('start', 'host2', 'kuryr');
    // What started is kept; what failed is removed (Docker may have left a created container).
    const live: string[] = [b[0] as string];
    for (const [i, c] of [b[1], b[2], b[3]].entries()) {
      if (outcomes[i] === 'ok') live.push(c as string);
      else await hdocker('host2', 'rm', '-f', c as string).catch(() => undefined);
    }
    // host2 works again: a new container gets an ACTIVE port and reaches host1.
    const at = await runOn('host2', b[4] as string);
    await waitPortActive(at.endpointId);
    live.push(b[4] as string);
    await pingFrom('host2', b[4] as string, ips[a1] ?? '');
    // Ports made by RequestAddress before the kill, for starts Docker then rolled back without a
    // driver to tell: only host2's kuryr may remove them (gc, dry run first).
    // host2's restarted kuryr deletes them 35 s after it started (once Docker's retries of calls
    // the kill interrupted are over).
    let stray: string[] = [];
    await waitFor(
      'no stray port on host2',
      async () => {
        stray = await strayPortsOn('host2', live);
        return stray.length === 0;
      },
      60_000,
      1_000,
    ).catch(() => undefined);
    if (stray.length) {
      const gc = await hkuryr('host2', 'gc', '--min-age', '0');
      assert.fail(
        `stray ports on host2 after the kill (outcomes ${JSON.stringify(outcomes)}):\n${stray.join('\n')}\ngc dry run:\n${gc.out}`,
      );
    }
  });

  it("host2's agent stopped: host1 and existing cross-host traffic keep working; new host2 ports wait, then go ACTIVE", async () => {
    await hosts('stop', 'host2', 'agent');
    await host1Works(b[0]);
    const t0 = Date.now();
    // --ip: a port made now (a warm port would have been wired before the agent stopped), so an
    // address no port holds: Neutron gives warm ports random ones, and --ip of a warm port's
    // address gets that warm port.
    const held = new Set(
      (await neutron.list('ports', { network_id: neutronNetId })).flatMap((p) =>
        p.fixed_ips.map((f) => f.ip_address),
      ),
    );
    const free = Array.from({ length: 50 }, (_, i) => `10.213.9.${200 + i}`).find((a) => !held.has(a));
    assert.ok(free, 'a free address for --ip');
    const at = await runOn('host2', b[5] as string, '--ip', free);
    const startMs = Date.now() - t0;
    // The endpoint's identity (device_id) is written behind Docker's answer, once starts pause.
    const port = await waitFor(
      'the endpoint recorded on its port',
      async () => (await neutron.list('ports', { device_id: at.endpointId }))[0],
      35_000,
      200,
    );
    assert.ok(!isIdleWarmPort(port) && port.name !== 'kuryr-pool-port');
    assert.notEqual(port.status, 'ACTIVE', 'no agent wired it');
    // host1 still starts containers normally
    const extra = uniqueName('a3');
    await waitPortActive((await runOn('host1', extra)).endpointId);
    await hdocker('host1', 'rm', '-f', extra);
    await hosts('start', 'host2', 'agent');
    await waitPortActive(at.endpointId, 90_000);
    await pingFrom('host2', b[5] as string, ips[a1] ?? '');
    console.log(`# docker run on host2 with its agent down returned after ${startMs} ms`);
  });

  it('host2 crashes with containers running: host1 keeps working; after host2 is back, cleanup leaves nothing', async () => {
    await hosts('crash', 'host2');
    await host1Works();
    await assert.rejects(pingFrom('host1', a1, ips[b[0] as string] ?? '', 3_000));
    await hostsUp(2); // recovery: the same host comes back (its Docker state survived)
    await host1Works();
    // Docker's restart clean-up releases the dead containers' endpoints through the new kuryr.
    for (const c of b) await hdocker('host2', 'rm', '-f', c).catch(() => undefined);
    await hdocker('host2', 'network', 'rm', net);
    // The ports of the dead containers go in the background, behind Docker's ReleaseAddress.
    let stray: string[] = [];
    await waitFor(
      'the dead containers ports deleted',
      async () => {
        stray = await strayPortsOn('host2', []);
        return stray.length === 0;
      },
      30_000,
      500,
    ).catch(() => undefined);
    assert.deepEqual(stray, [], 'ports of host2 left in Neutron');
    assert.deepEqual(await taps('host2'), [], 'veths left on host2');
    // host1's network survived host2's departure and goes normally.
    assert.equal((await neutron.list('networks', { id: neutronNetId })).length, 1);
    await hdocker('host1', 'rm', '-f', a1, a2);
    await hdocker('host1', 'network', 'rm', net);
    // docker network rm returns before the Neutron teardown (warm ports, then the network).
    await waitFor(
      'the network and every kuryr port and veth of both hosts to go',
      async () =>
        (await neutron.list('networks', { id: neutronNetId })).length === 0 &&
        (await kuryrPortsOn('host1')).length + (await kuryrPortsOn('host2')).length === 0 &&
        (await taps('host1')).length + (await taps('host2')).length === 0,
      30_000,
      250,
    );
  });
});
