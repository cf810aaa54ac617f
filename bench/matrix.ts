// `npm run bench`: bench/run.ts once per Neutron backend and Docker engine, switching the local
// environment between them (scripts/kuryr-env.sh with KURYR_ENV_BACKEND / KURYR_ENV_DOCKER), and
// one report with all of them side by side. `--write` stores it in docs/performance.md (notes
// after its `<!-- notes -->` line are kept). BENCH_MATRIX picks the combinations, e.g.
// "ovn:26,ovs:20.10"; then two simulated hosts on linuxbridge (BENCH_MULTIHOST=<backend>, or 0 to
// skip). Run it under the environment lock (flock -o /run/kuryr-env.lock npm run bench). The
// environment is left on its default afterwards.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BenchResult, bench, fmt, report } from './run.js';

const ROOT = new URL('..', import.meta.url).pathname;
const ENV = join(ROOT, 'scripts/kuryr-env.sh');
const MATRIX = (process.env.BENCH_MATRIX ?? 'ovn:20.10,ovs:20.10,linuxbridge:20.10,ovn:26')
  .split(',')
  .map((c) => {
    const [backend = 'ovn', engine = '20.10'] = c.split(':');
    return { backend, engine };
  });

function envStart(backend: string, engine: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      ENV,
      ['start'],
      {
        env: {
          ...process.env,
          ...(backend ? { KURYR_ENV_BACKEND: backend } : {}),
          ...(engine ? { KURYR_ENV_DOCKER: engine } : {}),
        },
        timeout: 900_000,
      },
      (err, stdout, stderr) =>
        err
          ? reject(new Error(`${ENV} start (${backend}, Docker ${engine}): ${stderr.slice(-2000)}`))
          : resolve(stdout),
    );
  });
}

/** Runs a command with the environment lock already held (by whoever runs the bench). */
function sh(cmd: string, args: string[], timeoutMs = 900_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env: { ...process.env, KURYR_HOSTS_LOCKED: '1' }, timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.slice(-2000)}`)) : resolve(stdout),
    );
  });
}

interface HostsFigures {
  crossHost: { medianRunMs: number; medianRunToFirstPingMs: number; thenHost1ToNewMs: number[] };
  parallel20_spread: { allMs: number; medianRunMs: number };
  parallel20_oneHost: { allMs: number; medianRunMs: number };
}

/**
 * Two simulated hosts (scripts/env/hosts.sh) on the backend BENCH_MULTIHOST names (linuxbridge by
 * default; "0" skips): cross-host run → first ping, 20 parallel starts spread over both hosts
 * against 20 on one (test/multihost/bench.ts, which also gives docs/scale.md its figures).
 */
async function twoHosts(backend: string): Promise<string> {
  await envStart(backend, '20.10');
  const hosts = join(ROOT, 'scripts/env/hosts.sh');
  let out: string;
  try {
    await sh(hosts, ['up', '2']);
    out = await sh('node', ['--import', 'tsx', join(ROOT, 'test/multihost/bench.ts')]);
  } finally {
    await sh(hosts, ['down']).catch((err) => process.stderr.write(`${(err as Error).message}\n`));
  }
  const f = JSON.parse(out.slice(out.indexOf('{'))) as HostsFigures;
  return [
    `### Two hosts: ${backend} · Docker 20.10 (scripts/env/hosts.sh; warm pool on, defaults)`,
    '',
    '| operation | figure |',
    '|---|---|',
    `| docker run -d on host2, cross-host network (median of 5) | ${fmt(f.crossHost.medianRunMs)} |`,
    `| docker run on host2 → first ping to host1's container (median of 5) | ${fmt(f.crossHost.medianRunToFirstPingMs)} |`,
    `| then host1's container → the new one (first reply) | ${f.crossHost.thenHost1ToNewMs.map(fmt).join(', ')} |`,
    `| 20 × docker run -d, 10 on each host | ${fmt(f.parallel20_spread.allMs)} (median start ${fmt(f.parallel20_spread.medianRunMs)}) |`,
    `| 20 × docker run -d, all on host1 | ${fmt(f.parallel20_oneHost.allMs)} (median start ${fmt(f.parallel20_oneHost.medianRunMs)}) |`,
    '',
  ].join('\n');
}

/** The headline: each operation, Docker's bridge against kuryr's defaults, per combination. */
function summary(results: BenchResult[]): string {
  const ops = [
    'docker run -d',
    'docker run → first ping to a peer',
    'docker network rm',
    ...[...new Set(results.flatMap((r) => r.rows.map((x) => x.op)))].filter((op) => op.includes('×')),
  ].filter((op) => results.some((r) => r.rows.some((x) => x.op === op && x.setup === 'kuryr, defaults')));
  const head = results.map((r) => `${r.backend} · Docker ${r.docker.split('+')[0]}`);
  const cell = (r: BenchResult, op: string) => {
    const k = r.rows.find((x) => x.op === op && x.setup === 'kuryr, defaults');
    const b = r.rows.find(
      (x) => x.op === op.replace(/ \((first|next) burst\)/, '') && x.setup === 'Docker bridge',
    );
    if (!k) return '';
    return b
      ? `${fmt(k.medianMs)} (bridge ${fmt(b.medianMs)}, ${(k.medianMs / b.medianMs).toFixed(1)}×)`
      : fmt(k.medianMs);
  };
  return [
    `| kuryr, defaults (Docker bridge, ratio) | ${head.join(' | ')} |`,
    `|---|${head.map(() => '---').join('|')}|`,
    ...ops.map((op) => `| ${op} | ${results.map((r) => cell(r, op)).join(' | ')} |`),
    `| RSS after the runs | ${results.map((r) => `${r.rssMb.after.toFixed(0)} MB`).join(' | ')} |`,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const results: BenchResult[] = [];
  let hostsReport = '';
  try {
    for (const { backend, engine } of MATRIX) {
      process.stderr.write(`[bench] ${backend}, Docker ${engine}: starting the environment\n`);
      await envStart(backend, engine);
      process.stderr.write(`[bench] ${backend}, Docker ${engine}: measuring\n`);
      const r = await bench(`${backend} · Docker ${engine}`);
      results.push(r);
      process.stdout.write(`${report(r)}\n`);
    }
    const multihost = process.env.BENCH_MULTIHOST ?? 'linuxbridge';
    if (multihost !== '0') {
      process.stderr.write(`[bench] two hosts on ${multihost}: measuring\n`);
      hostsReport = await twoHosts(multihost);
      process.stdout.write(`${hostsReport}\n`);
    }
  } finally {
    // Back to the local default (no KURYR_ENV_* variables).
    await envStart('', '').catch((err) => process.stderr.write(`${(err as Error).message}\n`));
  }
  const text = [
    '# kuryr performance',
    '',
    `Measured by \`npm run bench\` on this machine (2 cores), real Docker and Neutron (noauth), every combination in one run, each next to Docker's own bridge network measured in the same run.`,
    '',
    summary(results),
    ...results.map(report),
    hostsReport,
  ].join('\n');
  process.stdout.write(`\n${summary(results)}\n`);
  if (process.argv.includes('--write')) {
    const path = join(ROOT, 'docs/performance.md');
    const notes = existsSync(path) ? (readFileSync(path, 'utf8').split('\n<!-- notes -->\n')[1] ?? '') : '';
    writeFileSync(path, `${text}\n<!-- notes -->\n${notes}`);
    process.stderr.write(`written to ${path}\n`);
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).message}\n`);
  process.exit(1);
});
