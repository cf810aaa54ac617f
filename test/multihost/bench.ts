// Multi-host figures for docs/scale.md (run: node --import tsx test/multihost/bench.ts, under the
// environment lock with KURYR_HOSTS_LOCKED=1; hosts from scripts/env/hosts.sh are brought up):
//   - cross-host `docker run -d` -> first ping (new container on host2 pings one on host1, and back)
//   - 20 parallel starts spread over two hosts vs 20 on one host
//   - Neutron requests per container start and per network (kuryr's /metrics on each host), their
//     latency under that load, and the Join wait for ACTIVE (the agent's reaction)
// CIDRs 10.213.20.0/22 belong to this file.
import { setTimeout as sleep } from 'node:timers/promises';
import {
  attachment,
  cleanup,
  createSharedNetwork,
  hdocker,
  hostsUp,
  IMAGE,
  metricSum,
  metrics,
  pingFrom,
  uniqueName,
  waitPortActive,
} from './hosts.js';

const HOSTS = ['host1', 'host2'];
const ms = (t0: number) => Date.now() - t0;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

interface Snapshot {
  requests: number;
  seconds: number;
  byCall: Record<string, { n: number; s: number }>;
  activeWaits: number;
  activeSeconds: number;
}

async function snapshot(host: string): Promise<Snapshot> {
  const text = await metrics(host);
  const byCall: Record<string, { n: number; s: number }> = {};
  for (const line of text.split('\n')) {
    const m = /^kuryr_neutron_request_duration_seconds_(count|sum)\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]),
    );
    const key = `${labels.method} ${labels.resource}`;
    byCall[key] ??= { n: 0, s: 0 };
    if (m[1] === 'count') byCall[key].n += Number(m[3]);
    else byCall[key].s += Number(m[3]);
  }
  return {
    requests: metricSum(text, 'kuryr_neutron_request_duration_seconds_count'),
    seconds: metricSum(text, 'kuryr_neutron_request_duration_seconds_sum'),
    byCall,
    activeWaits: metricSum(text, 'kuryr_port_active_wait_seconds_count'),
    activeSeconds: metricSum(text, 'kuryr_port_active_wait_seconds_sum'),
  };
}

function delta(a: Snapshot, b: Snapshot) {
  const calls: Record<string, { n: number; meanMs: number }> = {};
  for (const [k, v] of Object.entries(b.byCall)) {
    const n = v.n - (a.byCall[k]?.n ?? 0);
    if (n > 0) calls[k] = { n, meanMs: Math.round(((v.s - (a.byCall[k]?.s ?? 0)) / n) * 1000) };
  }
  const requests = b.requests - a.requests;
  const waits = b.activeWaits - a.activeWaits;
  return {
    requests,
    meanMs: requests ? Math.round(((b.seconds - a.seconds) / requests) * 1000) : 0,
    activeWaitMeanMs: waits ? Math.round(((b.activeSeconds - a.activeSeconds) / waits) * 1000) : 0,
    calls,
  };
}

async function snapAll() {
  return Object.fromEntries(await Promise.all(HOSTS.map(async (h) => [h, await snapshot(h)] as const)));
}

async function main() {
  await hostsUp(2);
  const net = uniqueName('bench');
  const containers: string[] = [];
  const run = async (host: string, name: string) => {
    containers.push(name);
    await hdocker(host, 'run', '-d', '--name', name, '--net', net, IMAGE, 'sleep', '900');
  };
  const out: Record<string, unknown> = {};
  try {
    // Networks: host1 creates, host2 joins.
    let s0 = await snapAll();
    let t0 = Date.now();
    await createSharedNetwork(net, '10.213.20.0/22');
    const createAndJoinMs = ms(t0);
    let s1 = await snapAll();
    out.network = {
      createAndJoinMs,
      host1: delta(s0.host1 as Snapshot, s1.host1 as Snapshot),
      host2: delta(s0.host2 as Snapshot, s1.host2 as Snapshot),
    };

    // Cross-host run -> first ping, 5 rounds.
    const anchor = uniqueName('anchor');
    await run('host1', anchor);
    const anchorIp = (await attachment('host1', anchor, net)).ip;
    await waitPortActive((await attachment('host1', anchor, net)).endpointId);
    const toHost1: number[] = [];
    const fromHost1: number[] = [];
    const runMs: number[] = [];
    s0 = await snapAll();
    for (let i = 0; i < 5; i++) {
      const c = uniqueName(`x${i}`);
      t0 = Date.now();
      await run('host2', c);
      runMs.push(ms(t0));
      await pingFrom('host2', c, anchorIp, 30_000);
      toHost1.push(ms(t0));
      const ip = (await attachment('host2', c, net)).ip;
      const t1 = Date.now();
      await pingFrom('host1', anchor, ip, 30_000);
      fromHost1.push(ms(t1));
    }
    s1 = await snapAll();
    out.crossHost = {
      runMs,
      runToFirstPingMs: toHost1,
      medianRunMs: median(runMs),
      medianRunToFirstPingMs: median(toHost1),
      thenHost1ToNewMs: fromHost1,
      perStartHost2: delta(s0.host2 as Snapshot, s1.host2 as Snapshot),
    };

    // 20 parallel starts: 10 + 10 over two hosts, then 20 on host1.
    for (const [label, plan] of [
      ['spread', [...Array(10).fill('host1'), ...Array(10).fill('host2')]],
      ['oneHost', Array(20).fill('host1')],
    ] as const) {
      s0 = await snapAll();
      const names = plan.map((_, i) => uniqueName(`${label}${i}`));
      t0 = Date.now();
      const done = await Promise.all(
        plan.map(async (h, i) => {
          const t = Date.now();
          await run(h, names[i] as string);
          return ms(t);
        }),
      );
      const allMs = ms(t0);
      s1 = await snapAll();
      out[`parallel20_${label}`] = {
        allMs,
        medianRunMs: median(done),
        maxRunMs: Math.max(...done),
        host1: delta(s0.host1 as Snapshot, s1.host1 as Snapshot),
        host2: delta(s0.host2 as Snapshot, s1.host2 as Snapshot),
      };
      for (const [i, c] of names.entries()) await hdocker(plan[i] as string, 'rm', '-f', c);
      await sleep(2_000);
    }
  } finally {
    await cleanup(containers, [net]);
  }
  console.log(JSON.stringify(out, null, 2));
}

await main();
