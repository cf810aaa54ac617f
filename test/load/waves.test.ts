// Load: 200 containers over 10 kuryr networks, started and removed in waves of 50 with at most
// 10 Docker commands at a time. Zero failures, zero leaked Neutron resources or host interfaces,
// driver memory stable from wave to wave (RSS printed per wave). CIDRs 10.99.0.0/16.
// Runs on demand: npm run test:load (about 5 minutes here).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { DockerEngine } from '../../src/docker/engine.js';
import { findGarbage } from '../../src/ops/gc.js';
import {
  cleanupDocker,
  createKuryrNetwork,
  docker,
  HOST,
  hostLinks,
  IMAGE,
  type KuryrProcess,
  neutron,
  startKuryr,
  uniqueName,
} from '../e2e/harness.js';

const NETWORKS = 10;
const WAVES = 4;
const PER_WAVE = 50;
const PARALLEL = 10;

async function pool<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<unknown>,
): Promise<PromiseSettledResult<unknown>[]> {
  const results: PromiseSettledResult<unknown>[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i] as T).then(
          (value) => ({ status: 'fulfilled', value }) as const,
          (reason) => ({ status: 'rejected', reason }) as const,
        );
      }
    }),
  );
  return results;
}

const rssMb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

describe(`${WAVES * PER_WAVE} containers over ${NETWORKS} networks in waves`, () => {
  let kuryr: KuryrProcess;
  const nets = Array.from({ length: NETWORKS }, (_, i) => uniqueName(`load${i}`));
  const all: string[] = [];

  before(async () => {
    kuryr = await startKuryr();
    for (const [i, n] of nets.entries()) await createKuryrNetwork('--subnet', `10.99.${i}.0/24`, n);
  });
  after(async () => {
    await cleanupDocker(all, nets);
    await kuryr.stop();
  });

  it('zero failures, zero leaks, stable memory', async () => {
    const rss: number[] = [];
    for (let w = 0; w < WAVES; w++) {
      const names = Array.from({ length: PER_WAVE }, (_, i) => `${uniqueName(`w${w}`)}-${i}`);
      all.push(...names);
      const t0 = Date.now();
      const started = await pool(names, PARALLEL, (n) =>
        docker(
          'run',
          '-d',
          '--name',
          n,
          '--net',
          nets[names.indexOf(n) % NETWORKS] as string,
          IMAGE,
          'sleep',
          '600',
        ),
      );
      const startS = (Date.now() - t0) / 1000;
      const removed = await pool(names, PARALLEL, (n) => docker('rm', '-f', n));
      const failures = [...started, ...removed].filter((r) => r.status === 'rejected');
      rss.push(rssMb(kuryr.child.pid as number));
      process.stdout.write(
        `wave ${w + 1}: ${PER_WAVE} started in ${startS.toFixed(1)} s, ${failures.length} failures, driver RSS ${rss.at(-1)?.toFixed(0)} MB\n`,
      );
      assert.deepEqual(
        failures.map((f) => String((f as PromiseRejectedResult).reason).slice(0, 300)),
        [],
      );
    }
    const engine = new DockerEngine();
    try {
      assert.deepEqual(
        await findGarbage(neutron, await engine.networks(), {
          host: HOST,
          subnetpoolPrefix: 'kuryrPool',
          minAgeMs: 0,
        }),
        [],
      );
    } finally {
      await engine.close();
    }
    assert.deepEqual((await neutron.list('ports', { device_owner: 'compute:kuryr' })).length, 0);
    assert.deepEqual(await hostLinks('tap'), []);
    // Memory is stable: the last wave ends no more than 25% above the first.
    assert.ok(
      (rss.at(-1) ?? 0) <= (rss[0] ?? 0) * 1.25,
      `RSS per wave: ${rss.map((r) => r.toFixed(0)).join(', ')} MB`,
    );
  });
});
