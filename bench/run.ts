// `npm run bench`: measures kuryr against the real Docker daemon and Neutron (scripts/kuryr-env.sh
// start first), next to Docker's built-in bridge and --net none as the floor. Prints a Markdown
// report; with --write also stores it in docs/performance.md. A benchmark, not a test: it asserts
// nothing and prints what it measured.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';

const DOCKER = '/usr/bin/docker';
const IMAGE = 'kuryr-test/busybox:latest';
const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const PARALLEL = (process.env.BENCH_PARALLEL ?? '10,20,50').split(',').map(Number);
const NEUTRON_URL = process.env.NEUTRON_URL ?? 'http://127.0.0.1:9696';
const NEUTRON_LOG = process.env.NEUTRON_LOG ?? '/var/lib/kuryr-env/log/neutron-server.log';
const METRICS = '127.0.0.1:23781';
const ROOT = new URL('..', import.meta.url).pathname;
const SOCKET = '/run/docker/plugins/kuryr.sock';

function sh(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`))
        : resolve(stdout.trim()),
    );
  });
}
const docker = (...args: string[]) => sh(DOCKER, args);
const kuryrNetwork = (...args: string[]) =>
  docker('network', 'create', '-d', 'kuryr', '--ipam-driver', 'kuryr', ...args);

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

function stats(xs: number[]): { median: number; min: number; max: number; p99: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  const median = s.length % 2 ? at(0.5) : ((s[s.length / 2 - 1] ?? 0) + (s[s.length / 2] ?? 0)) / 2;
  return { median, min: s[0] ?? Number.NaN, max: s.at(-1) ?? Number.NaN, p99: at(0.99) };
}

// ------------------------------------------------------------ counting Neutron requests
async function ourNeutronCount(): Promise<number> {
  const text = await (await request(`http://${METRICS}/metrics`)).body.text();
  let total = 0;
  for (const m of text.matchAll(/^kuryr_neutron_request_duration_seconds_count\{[^}]*\} (\d+)/gm))
    total += Number(m[1]);
  return total;
}
function neutronLogOffset(): number {
  return existsSync(NEUTRON_LOG) ? statSync(NEUTRON_LOG).size : 0;
}
/** REST requests neutron-server logged since `offset` (its access log lines). */
function neutronLogCount(offset: number): number {
  if (!existsSync(NEUTRON_LOG)) return Number.NaN;
  const text = readFileSync(NEUTRON_LOG).subarray(offset).toString();
  return (text.match(/"(GET|POST|PUT|DELETE) \/v2\.0\//g) ?? []).length;
}

interface OpResult {
  name: string;
  ms: number[];
  requests: number[];
  serverRequests: number[];
}
const results: OpResult[] = [];
function record(name: string): OpResult {
  let r = results.find((x) => x.name === name);
  if (!r) {
    r = { name, ms: [], requests: [], serverRequests: [] };
    results.push(r);
  }
  return r;
}

/** Times one Docker operation and counts the Neutron requests it caused (ours and the server's). */
async function measure(name: string, fn: () => Promise<unknown>, countRequests = true): Promise<number> {
  const before = countRequests ? await ourNeutronCount() : 0;
  const offset = neutronLogOffset();
  const { ms } = await timed(fn);
  const r = record(name);
  r.ms.push(ms);
  if (countRequests) {
    await sleep(150); // let neutron-server flush its log line
    r.requests.push((await ourNeutronCount()) - before);
    r.serverRequests.push(neutronLogCount(offset));
  }
  return ms;
}

async function pingOnce(from: string, ip: string, v6 = false): Promise<boolean> {
  return docker('exec', from, 'ping', ...(v6 ? ['-6'] : []), '-c', '1', '-W', '1', ip).then(
    (o) => o.includes('1 packets received'),
    () => false,
  );
}

async function ipOf(container: string, network: string, v6 = false): Promise<string> {
  return docker(
    'inspect',
    '-f',
    `{{(index .NetworkSettings.Networks "${network}").${v6 ? 'GlobalIPv6Address' : 'IPAddress'}}}`,
    container,
  );
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function main(): Promise<void> {
  const write = process.argv.includes('--write');
  const dir = mkdtempSync(join(tmpdir(), 'kuryr-bench-'));
  const conf = join(dir, 'kuryr.conf');
  const logFile = join(dir, 'kuryr.log');
  writeFileSync(
    conf,
    `[DEFAULT]\nmetrics_listen = ${METRICS}\nlog_file = ${logFile}\n[neutron]\nauth_type = noauth\nendpoint_override = ${NEUTRON_URL}\n`,
  );
  if (existsSync(SOCKET))
    throw new Error(`${SOCKET} exists: stop the running kuryr (scripts/demo.sh stop) first`);

  // Startup: process start → answering Plugin.Activate.
  const launch = async (file: string) => {
    const t0 = performance.now();
    const proc = spawn(process.execPath, [join(ROOT, 'dist/cli/main.js'), '--config-file', file, 'serve'], {
      stdio: 'ignore',
    });
    for (;;) {
      const ok = await sh('curl', [
        '-s',
        '--unix-socket',
        SOCKET,
        '-X',
        'POST',
        'http://p/Plugin.Activate',
      ]).catch(() => '');
      if (ok.includes('IpamDriver')) break;
      await sleep(10);
    }
    return { proc, ms: performance.now() - t0 };
  };
  const stop = async (proc: ReturnType<typeof spawn>) => {
    proc.kill('SIGTERM');
    while (existsSync(SOCKET)) await sleep(20);
  };
  const first = await launch(conf);
  let child = first.proc;
  const startupMs = first.ms;
  const pid = child.pid as number;
  await sleep(1000);
  const rssIdle = rssMb(pid);
  const tag = `b${process.pid}`;
  const nets: string[] = [];
  const containers: string[] = [];
  try {
    // ------------------------------------------------ floors: --net none and Docker's bridge
    for (let i = 0; i < RUNS; i++)
      await measure(
        'floor: docker run --rm --net none',
        () => docker('run', '--rm', '--net', 'none', IMAGE, 'true'),
        false,
      );
    await docker('network', 'create', '--subnet', '10.201.0.0/24', `${tag}-bridge`);
    nets.push(`${tag}-bridge`);
    for (let i = 0; i < RUNS; i++) {
      const c = `${tag}-br${i}`;
      await measure(
        'floor: docker run -d (bridge)',
        () => docker('run', '-d', '--name', c, '--net', `${tag}-bridge`, IMAGE, 'sleep', '600'),
        false,
      );
      await measure('floor: docker rm -f (bridge)', () => docker('rm', '-f', c), false);
    }

    // ------------------------------------------------ kuryr, sequential
    for (let i = 0; i < RUNS; i++) {
      const net = `${tag}-n${i}`;
      await measure('docker network create', () => kuryrNetwork('--subnet', `10.202.${i}.0/24`, net));
      nets.push(net);
    }
    const main = `${tag}-n0`;
    const peer = `${tag}-peer`;
    await docker('run', '-d', '--name', peer, '--net', main, IMAGE, 'sleep', '3600');
    containers.push(peer);
    const peerIp = await ipOf(peer, main);
    for (let i = 0; i < RUNS; i++) {
      const c = `${tag}-c${i}`;
      containers.push(c);
      const start = performance.now();
      await measure('docker run -d', () =>
        docker('run', '-d', '--name', c, '--net', main, IMAGE, 'sleep', '600'),
      );
      while (!(await pingOnce(c, peerIp))) await sleep(20);
      record('docker run → first ping to a peer succeeds').ms.push(performance.now() - start);
      if (i % 2 === 0) await measure('docker stop', () => docker('stop', '-t', '0', c));
      await measure(i % 2 === 0 ? 'docker rm (stopped)' : 'docker rm -f (running)', () =>
        docker('rm', '-f', c),
      );
    }
    for (let i = 1; i < RUNS; i++)
      await measure('docker network rm', () => docker('network', 'rm', `${tag}-n${i}`));
    nets.splice(nets.indexOf(`${tag}-n1`), RUNS - 1);

    // ------------------------------------------------ dual stack
    for (let i = 0; i < RUNS; i++) {
      const net = `${tag}-d${i}`;
      await measure('dual stack: docker network create', () =>
        kuryrNetwork('--ipv6', '--subnet', `10.203.${i}.0/24`, '--subnet', `fd00:203:${i}::/64`, net),
      );
      const c = `${tag}-dc${i}`;
      await measure('dual stack: docker run -d', () =>
        docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600'),
      );
      await measure('dual stack: docker rm -f', () => docker('rm', '-f', c));
      await measure('dual stack: docker network rm', () => docker('network', 'rm', net));
    }

    // ------------------------------------------------ parallel starts
    const spread: string[] = [];
    for (let i = 0; i < 10; i++) {
      const net = `${tag}-p${i}`;
      await kuryrNetwork('--subnet', `10.204.${i}.0/24`, net);
      nets.push(net);
      spread.push(net);
    }
    const parallel: string[] = [];
    for (const n of PARALLEL) {
      for (const [label, pick] of [
        ['one network', () => main],
        ['10 networks', (i: number) => spread[i % spread.length] as string],
      ] as const) {
        const names = Array.from({ length: n }, (_, i) => `${tag}-par${n}-${label.length}-${i}`);
        const before = await ourNeutronCount();
        const t = performance.now();
        const outcomes = await Promise.allSettled(
          names.map((c, i) => docker('run', '-d', '--name', c, '--net', pick(i), IMAGE, 'sleep', '600')),
        );
        const total = performance.now() - t;
        const failed = outcomes.filter((o) => o.status === 'rejected').length;
        const reqs = (await ourNeutronCount()) - before;
        await Promise.allSettled(names.map((c) => docker('rm', '-f', c)));
        const leaked =
          Number(
            await sh('sh', [
              '-c',
              `curl -s '${NEUTRON_URL}/v2.0/ports?device_owner=compute:kuryr&fields=id' | grep -o '"id"' | wc -l`,
            ]),
          ) - 1; // the peer
        parallel.push(
          `| ${n} × docker run -d, ${label} | ${(total / 1000).toFixed(2)} s | ${failed} | ${reqs} | ${leaked} |`,
        );
      }
    }
    const rssLoaded = rssMb(pid);

    // ------------------------------------------------ without waiting for ACTIVE in Join
    await stop(child);
    const noWait = join(dir, 'nowait.conf');
    writeFileSync(
      noWait,
      `${readFileSync(conf, 'utf8')}[binding]\nactive_wait_timeout = 0\n`.replace(
        `log_file = ${logFile}`,
        `log_file = ${logFile}.nowait`,
      ),
    );
    child = (await launch(noWait)).proc;
    for (let i = 0; i < RUNS; i++) {
      const c = `${tag}-nw${i}`;
      containers.push(c);
      const t = performance.now();
      await measure('active_wait_timeout = 0: docker run -d', () =>
        docker('run', '-d', '--name', c, '--net', main, IMAGE, 'sleep', '600'),
      );
      while (!(await pingOnce(c, peerIp))) await sleep(20);
      record('active_wait_timeout = 0: docker run → first ping').ms.push(performance.now() - t);
      await docker('rm', '-f', c);
    }

    // ------------------------------------------------ plugin overhead per call (excluding Neutron time)
    const overhead: Record<string, number[]> = {};
    for (const line of readFileSync(logFile, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      const l = JSON.parse(line) as {
        handler?: string;
        ms?: number;
        waitedMs?: number;
        neutron?: { ms: number }[];
      };
      if (!l.handler || l.ms === undefined || !l.neutron) continue;
      // Neither Neutron's time nor the wait for its agent (port ACTIVE) is the plugin's own work.
      const own = l.ms - l.neutron.reduce((a, c) => a + c.ms, 0) - (l.waitedMs ?? 0);
      for (const key of [l.handler, 'all calls']) {
        const list = overhead[key] ?? [];
        list.push(Math.max(0, own));
        overhead[key] = list;
      }
    }

    // ------------------------------------------------ report
    const commit = await sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).catch(() => 'unknown');
    const fmt = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`);
    const lines: string[] = [
      `# kuryr performance`,
      '',
      `Measured ${new Date().toISOString()} at commit ${commit} by \`npm run bench\` on this machine (2 cores), real Docker ` +
        `(${await docker('version', '-f', '{{.Server.Version}}')}) and Neutron (noauth, ML2/linuxbridge, agent polling_interval 2 s); ${RUNS} runs each.`,
      '',
      '| operation | median | min – max | Neutron requests (ours / neutron-server log) |',
      '|---|---|---|---|',
      ...results.map((r) => {
        const s = stats(r.ms);
        const req = r.requests.length
          ? `${stats(r.requests).median} / ${stats(r.serverRequests).median}`
          : '–';
        return `| ${r.name} | ${fmt(s.median)} | ${fmt(s.min)} – ${fmt(s.max)} | ${req} |`;
      }),
      '',
      '| parallel starts | total | failures | Neutron requests | leaked ports after rm -f |',
      '|---|---|---|---|---|',
      ...parallel,
      '',
      '| plugin time per call, excluding Neutron | calls | p50 | p99 |',
      '|---|---|---|---|',
      ...Object.entries(overhead)
        .sort(([a], [b]) => (a === 'all calls' ? -1 : b === 'all calls' ? 1 : a.localeCompare(b)))
        .map(
          ([h, xs]) =>
            `| ${h} | ${xs.length} | ${stats(xs).median.toFixed(1)} ms | ${stats(xs).p99.toFixed(1)} ms |`,
        ),
      '',
      `Driver startup (process start → answering Plugin.Activate): ${fmt(startupMs)}. RSS: ${rssIdle.toFixed(0)} MB idle, ${rssLoaded.toFixed(0)} MB after the load above.`,
      '',
    ];
    const report = lines.join('\n');
    process.stdout.write(`${report}\n`);
    if (write) {
      const path = join(ROOT, 'docs/performance.md');
      const notes = existsSync(path) ? (readFileSync(path, 'utf8').split('\n<!-- notes -->\n')[1] ?? '') : '';
      writeFileSync(path, `${report}\n<!-- notes -->\n${notes}`);
      process.stderr.write(`written to ${path}\n`);
    }
  } finally {
    for (const c of containers) await docker('rm', '-f', c).catch(() => undefined);
    for (const n of nets) await docker('network', 'rm', n).catch(() => undefined);
    child.kill('SIGTERM');
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).message}\n`);
  process.exit(1);
});
