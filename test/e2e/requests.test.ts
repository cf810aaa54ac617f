// Regression check of Neutron requests per Docker operation (counts, not times), read from kuryr's
// own metrics. Join's wait for ACTIVE is off here: its polls depend on the agent's timing.
// CIDRs 10.91.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
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
/** The budget per operation: what each Neutron call is for is in the comment. */
const BUDGET = {
  // POST subnetpool (RequestPool); POST network + PUT its tags + POST subnet (CreateNetwork)
  'docker network create': 4,
  // POST port, bound, with its veth (RequestAddress); PUT device_id/name + PUT tags (CreateEndpoint);
  // GET the port's subnets for gateway and host routes (Join)
  'docker run -d': 4,
  // DELETE port (ReleaseAddress); everything else is known to this process
  'docker stop': 1,
  'docker rm (stopped)': 0,
  'docker rm -f (running)': 1,
  // DELETE subnet + DELETE subnetpool (ReleasePool), DELETE network (DeleteNetwork)
  'docker network rm': 3,
};

async function neutronRequests(): Promise<number> {
  const text = await (await request(`http://${METRICS}/metrics`)).body.text();
  let total = 0;
  for (const m of text.matchAll(/^kuryr_neutron_request_duration_seconds_count\{[^}]*\} (\d+)/gm))
    total += Number(m[1]);
  return total;
}

async function counted(op: keyof typeof BUDGET, fn: () => Promise<unknown>): Promise<void> {
  const before = await neutronRequests();
  await fn();
  const used = (await neutronRequests()) - before;
  assert.ok(used <= BUDGET[op], `${op}: ${used} Neutron requests, budget ${BUDGET[op]}`);
}

describe('Neutron requests per Docker operation', () => {
  let kuryr: KuryrProcess;
  const net = uniqueName('req');
  const [c1, c2] = [uniqueName('req-1'), uniqueName('req-2')];

  before(async () => {
    kuryr = await startKuryr(`metrics_listen = ${METRICS}\n[binding]\nactive_wait_timeout = 0`);
    // The daemon's own start-up requests (extensions check, warm-pool leftovers) are not Docker's.
    await waitFor(
      'kuryr start-up requests to finish',
      async () => {
        const before = await neutronRequests();
        await new Promise((r) => setTimeout(r, 300));
        return before > 0 && (await neutronRequests()) === before;
      },
      15_000,
      0,
    );
  });
  after(async () => {
    await cleanupDocker([c1, c2], [net]);
    await kuryr.stop();
  });

  it('stay within budget for network create, run, stop, rm and network rm', async () => {
    await counted('docker network create', () => createKuryrNetwork('--subnet', '10.91.0.0/24', net));
    await counted('docker run -d', () =>
      docker('run', '-d', '--name', c1, '--net', net, IMAGE, 'sleep', '600'),
    );
    await counted('docker run -d', () =>
      docker('run', '-d', '--name', c2, '--net', net, IMAGE, 'sleep', '600'),
    );
    await counted('docker stop', () => docker('stop', '-t', '0', c1));
    await counted('docker rm (stopped)', () => docker('rm', c1));
    await counted('docker rm -f (running)', () => docker('rm', '-f', c2));
    await counted('docker network rm', () => docker('network', 'rm', net));
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
    await pluginCall('IpamDriver.ReleasePool', { PoolID: pool.body.PoolID });
    await pluginCall('NetworkDriver.DeleteNetwork', { NetworkID: id });
    assert.deepEqual(await neutronNetworksOf(id), []);
  });
});
