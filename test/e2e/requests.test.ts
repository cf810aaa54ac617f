// Regression check of Neutron requests per Docker operation (counts, not times), read from kuryr's
// own log (one line per Docker call, with its Neutron requests). Join's wait for ACTIVE is off
// here: its polls depend on the agent's timing.
// CIDRs 10.91.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import {
  cleanupDocker,
  createKuryrNetwork,
  docker,
  IMAGE,
  type KuryrProcess,
  neutronNetworksOf,
  pluginCall,
  startKuryr,
  uniqueName,
  waitFor,
} from './harness.js';

const METRICS = '127.0.0.1:23791';
/**
 * The budget per operation, with the defaults (warm pool on): Neutron requests Docker waits for,
 * i.e. made inside the Docker call. What each is for is in the comment; the pool's refills, the
 * endpoint identity written behind and a removed network's teardown are not waited for.
 */
const BUDGET = {
  // POST subnetpool (RequestPool); POST network + PUT its tags + POST subnet (CreateNetwork)
  'docker network create': 4,
  // a warm port from memory (RequestAddress); the endpoint recorded on its veth, device_id,
  // name and tags written behind (CreateEndpoint); its subnets read ahead (Join)
  'docker run -d': 0,
  // none: the port goes back to the warm pool (its reset written behind), or is deleted behind
  // Docker's answer; everything else is known to this process
  'docker stop': 0,
  'docker rm (stopped)': 0,
  'docker rm -f (running)': 0,
  // GET the network's ports (is a user's port on it? then it stays); the rest in the background
  'docker network rm': 1,
  // Without a pool: POST port, bound, with its veth (RequestAddress); the endpoint recorded on
  // the veth, written behind (CreateEndpoint); GET the port's subnets for gateway and host routes (Join)
  'docker run -d, pool off': 2,
};

async function metric(name: string, metrics = METRICS): Promise<number> {
  const text = await (await request(`http://${metrics}/metrics`)).body.text();
  let total = 0;
  // `name` may carry labels: those are matched literally.
  const escaped = name.replace(/[{}"]/g, (c) => `\\${c}`);
  const labelled = name.includes('{') ? '' : '(?:\\{[^}]*\\})?';
  for (const m of text.matchAll(new RegExp(`^${escaped}${labelled} (\\d+)`, 'gm'))) total += Number(m[1]);
  return total;
}

/** Neutron requests made inside Docker's calls, from kuryr's one log line per call. */
function waitedRequests(kuryr: KuryrProcess, fromLine: number): { count: number; lines: number } {
  const lines = kuryr.log().split('\n');
  let count = 0;
  for (const line of lines.slice(fromLine)) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as { handler?: string; neutron?: unknown[] };
    if (entry.handler && Array.isArray(entry.neutron)) count += entry.neutron.length;
  }
  return { count, lines: lines.length };
}

async function counted(
  kuryr: KuryrProcess,
  op: keyof typeof BUDGET,
  fn: () => Promise<unknown>,
): Promise<void> {
  const start = waitedRequests(kuryr, 0).lines - 1;
  await fn();
  await sleep(300); // the call's log line travels through a pipe
  const { count } = waitedRequests(kuryr, start);
  assert.ok(count <= BUDGET[op], `${op}: ${count} Neutron requests Docker waited for, budget ${BUDGET[op]}`);
}

describe('Neutron requests per Docker operation', () => {
  let kuryr: KuryrProcess;
  const net = uniqueName('req');
  const cold = uniqueName('req-cold');
  const [c1, c2, c3] = [uniqueName('req-1'), uniqueName('req-2'), uniqueName('req-3')];

  before(async () => {
    kuryr = await startKuryr(`metrics_listen = ${METRICS}\n[binding]\nactive_wait_timeout = 0`);
  });
  after(async () => {
    await cleanupDocker([c1, c2, c3], [net, cold]);
    await kuryr.stop();
  });

  it('stay within budget for network create, run, stop, rm and network rm, with the defaults', async () => {
    await counted(kuryr, 'docker network create', () => createKuryrNetwork('--subnet', '10.91.0.0/24', net));
    // The pool of a new network fills in the background (min_size ports).
    await waitFor(
      'the warm pool to fill, wired by the agent',
      async () => (await metric('kuryr_warm_pool_ports{state="active"}')) >= 2,
      30_000,
    );
    await counted(kuryr, 'docker run -d', () =>
      docker('run', '-d', '--name', c1, '--net', net, IMAGE, 'sleep', '600'),
    );
    await counted(kuryr, 'docker run -d', () =>
      docker('run', '-d', '--name', c2, '--net', net, IMAGE, 'sleep', '600'),
    );
    await counted(kuryr, 'docker stop', () => docker('stop', '-t', '0', c1));
    await counted(kuryr, 'docker rm (stopped)', () => docker('rm', c1));
    await counted(kuryr, 'docker rm -f (running)', () => docker('rm', '-f', c2));
    await counted(kuryr, 'docker network rm', () => docker('network', 'rm', net));
  });

  it('without a pool, a start stays within its budget', async () => {
    await kuryr.stop();
    kuryr = await startKuryr(
      `metrics_listen = ${METRICS}\n[binding]\nactive_wait_timeout = 0\n[vif_pool]\nenabled = false`,
    );
    await createKuryrNetwork('--subnet', '10.91.2.0/24', cold);
    await counted(kuryr, 'docker run -d, pool off', () =>
      docker('run', '-d', '--name', c3, '--net', cold, IMAGE, 'sleep', '600'),
    );
    assert.equal(await metric('kuryr_warm_pool_ports'), 0);
  });

  it('a replayed CreateNetwork in local scope, which skips the lookup, still leaves one Neutron network', async () => {
    const id = randomBytes(32).toString('hex');
    const pool = await pluginCall('IpamDriver.RequestPool', {
      AddressSpace: 'x',
      Pool: '10.91.1.0/24',
      SubPool: '',
      Options: {},
      V6: false,
    });
    const body = {
      NetworkID: id,
      Options: {},
      IPv4Data: [{ AddressSpace: 'x', Pool: '10.91.1.0/24', Gateway: '10.91.1.1/24' }],
      IPv6Data: [],
    };
    assert.equal((await pluginCall('NetworkDriver.CreateNetwork', body)).status, 200);
    // A fresh daemon (nothing cached) gets the same call again.
    await kuryr.stop();
    kuryr = await startKuryr(`metrics_listen = ${METRICS}\n[binding]\nactive_wait_timeout = 0`);
    const replay = await pluginCall('NetworkDriver.CreateNetwork', body);
    assert.equal(replay.status, 200, JSON.stringify(replay.body));
    assert.equal((await neutronNetworksOf(id)).length, 1);
    await pluginCall('NetworkDriver.DeleteNetwork', { NetworkID: id });
    await pluginCall('IpamDriver.ReleasePool', { PoolID: pool.body.PoolID });
    // The network goes in the background, at once.
    await waitFor(
      'the Neutron network to go',
      async () => (await neutronNetworksOf(id)).length === 0,
      10_000,
    );
  });
});
