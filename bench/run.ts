// `npm run bench`: measures kuryr against the real Docker daemon and Neutron that run now
// (scripts/kuryr-env.sh start first), side by side with Docker's own bridge network in the same
// run as the floor. Prints a Markdown report; `--json FILE` also stores the figures for
// bench/matrix.ts, which runs this once per backend and engine. A benchmark, not a test: it
// asserts nothing and prints what it measured.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const DOCKER = process.env.BENCH_DOCKER ?? '/usr/bin/docker';
const IMAGE = 'kuryr-test/busybox:latest';
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 20);
/** Each parallel scenario runs this many times (kuryr's on fresh networks each time); the median is reported. */
const BURSTS = Number(process.env.BENCH_BURSTS ?? 3);
const NEUTRON_URL = process.env.NEUTRON_URL ?? 'http://127.0.0.1:9696';
const METRICS = '127.0.0.1:23781';
const ROOT = new URL('..', import.meta.url).pathname;
const SOCKET = '/run/docker/plugins/kuryr.sock';
const STATE = process.env.KURYR_ENV_STATE ?? '/var/lib/kuryr-env';
/** kuryr.conf's default `[vif_pool] min_size`: warm ports a new network holds. */
const MIN_SIZE = 2;
const TEN_NETWORKS = '10 × docker network create, until their warm ports are ACTIVE';
const ONE_NETWORK = `${PARALLEL} × docker run -d, one network`;
const SPREAD = `${PARALLEL} × docker run -d, 10 networks`;

export interface Row {
  /** What was measured, e.g. "docker run -d". */
  op: string;
  /** Which setup: "Docker bridge", "kuryr defaults", "kuryr, no pool". */
  setup: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** Neutron requests Docker waited for (kuryr's per-call log), median; undefined for Docker's bridge. */
  waited?: number;
  failures?: number;
  /** Where the CPU went while it ran (parallel starts): see cpuSince. */
  cpu?: string;
}

export interface BenchResult {
  label: string;
  backend: string;
  docker: string;
  commit: string;
  at: string;
  rows: Row[];
  rssMb: { idle: number; after: number };
  startupMs: number;
}

function sh(cmd: string, args: string[], timeoutMs = 180_000): Promise<string> {
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

function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
  return { median, min: s[0] ?? Number.NaN, max: s.at(-1) ?? Number.NaN };
}

async function pingOnce(from: string, ip: string): Promise<boolean> {
  return docker('exec', from, 'ping', '-c', '1', '-W', '1', ip).then(
    (o) => o.includes('1 packets received'),
    () => false,
  );
}

async function ipOf(container: string, network: string): Promise<string> {
  return docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, container);
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** CPU time so far: the machine's busy time and each long-lived process's own, by name. */
interface CpuSample {
  busy: number;
  /** pid → [name, own ticks] */
  byPid: Map<string, [string, number]>;
}
const TICK_S = 0.01; // USER_HZ is 100 on Linux

/**
 * The kernel keeps 15 characters of a process's name: neutron-server's main process shows as
 * "/usr/bin/python" and its workers as "neutron-server:". Those two get their name from the
 * command line: the script ("neutron-server") or the title setproctitle gave ("neutron-server:
 * rpc worker").
 */
function readableName(pid: string, comm: string): string {
  if (!comm.startsWith('/') && !comm.endsWith(':')) return comm;
  let argv: string[];
  try {
    // NUL-separated, or one string once setproctitle has rewritten it
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\0 ]/).filter(Boolean);
  } catch {
    return comm;
  }
  if (comm.endsWith(':')) {
    const end = argv.findIndex((a) => a.startsWith('(')); // "(/usr/bin/python3 …)" follows the title
    return argv.slice(0, end < 0 ? argv.length : end).join(' ');
  }
  const script = argv.slice(1).find((a) => !a.startsWith('-'));
  return script ? (script.split('/').pop() ?? comm) : comm;
}

export function cpuSample(): CpuSample {
  // /proc/stat: "cpu user nice system idle iowait irq softirq steal ..."; busy = all but idle, iowait.
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const busy = f.reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0);
  const byPid = new Map<string, [string, number]>();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid ... utime(14) stime(15)"; comm may hold spaces: split after ')'.
    const name = readableName(pid, stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')));
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const own = Number(rest[11]) + Number(rest[12]);
    byPid.set(pid, [name, own]);
  }
  return { busy, byPid };
}

/**
 * "CPU 31.2 s busy (2 cores × 20.1 s = 40.2): neutron-server 9.1, dockerd 6.0, …": the processes
 * that ran throughout, largest first; "short-lived" is what the rest (runc, shims, the docker CLI,
 * `ip`) took.
 */
export function cpuSince(before: CpuSample, wallMs: number): string {
  const now = cpuSample();
  // Processes alive at both samples, summed by name (neutron-server's workers, …).
  const byName = new Map<string, number>();
  for (const [pid, [name, t]] of now.byPid) {
    const was = before.byPid.get(pid);
    if (was && was[0] === name) byName.set(name, (byName.get(name) ?? 0) + (t - was[1]) * TICK_S);
  }
  const named = [...byName].filter(([, s]) => s > 0).sort((a, b) => b[1] - a[1]);
  const busy = (now.busy - before.busy) * TICK_S;
  const shortLived = busy - named.reduce((a, [, s]) => a + s, 0);
  const cores = availableParallelism();
  const top = named.slice(0, 7).map(([n, s]) => `${n} ${s.toFixed(1)}`);
  return `CPU ${busy.toFixed(1)} s busy (${cores} cores × ${(wallMs / 1000).toFixed(1)} s = ${((cores * wallMs) / 1000).toFixed(1)}): ${top.join(', ')}, short-lived ${Math.max(0, shortLived).toFixed(1)}`;
}

/** The running kuryr daemon: the shipped executable on Docker's plugin socket. */
class Kuryr {
  private constructor(
    readonly proc: ReturnType<typeof spawn>,
    readonly logFile: string,
    readonly startupMs: number,
  ) {}

  static async start(dir: string, name: string, extra = ''): Promise<Kuryr> {
    if (existsSync(SOCKET))
      throw new Error(`${SOCKET} exists: stop the running kuryr (scripts/demo.sh stop) first`);
    const conf = join(dir, `${name}.conf`);
    const logFile = join(dir, `${name}.log`);
    writeFileSync(
      conf,
      `[DEFAULT]\nmetrics_listen = ${METRICS}\nlog_file = ${logFile}\n[neutron]\nauth_type = noauth\nendpoint_override = ${NEUTRON_URL}\n${extra}\n`,
    );
    const t0 = performance.now();
    const proc = spawn(join(ROOT, 'dist/kuryr.mjs'), ['--config-file', conf, 'serve'], { stdio: 'ignore' });
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
      if (proc.exitCode !== null) throw new Error(`kuryr exited, see ${logFile}`);
      await sleep(10);
    }
    return new Kuryr(proc, logFile, performance.now() - t0);
  }

  /**
   * From kuryr's metrics: the host's warm ports (all, and those the agent made ACTIVE) and the
   * clean-ups of removed networks still running.
   */
  async state(): Promise<{ ready: number; active: number; teardowns: number }> {
    const text = await sh('curl', ['-s', `http://${METRICS}/metrics`]);
    const gauge = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return {
      ready: gauge('kuryr_warm_pool_ports\\{state="ready"\\}'),
      active: gauge('kuryr_warm_pool_ports\\{state="active"\\}'),
      teardowns: gauge('kuryr_teardowns_pending'),
    };
  }

  /**
   * Waits until at least `atLeast` warm ports are ready, every one is ACTIVE and no removed
   * network's clean-up is still running, steadily for a second (a refill may be in flight between
   * two reads), so that starts are measured on settled networks, as Docker's bridge networks are.
   * Bounded: returns after `boundMs` whatever the state.
   */
  async settled(atLeast: number, boundMs = 120_000): Promise<void> {
    const until = performance.now() + boundMs;
    let steady = 0;
    while (steady < 4 && performance.now() < until) {
      const { ready, active, teardowns } = await this.state();
      steady = ready >= atLeast && active === ready && teardowns === 0 ? steady + 1 : 0;
      await sleep(250);
    }
  }

  /** Lines of kuryr's log so far (one JSON line per Docker call, with its Neutron requests). */
  lines(): string[] {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').split('\n') : [];
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    await exited;
  }
}

/** Neutron requests made inside the Docker calls logged after line `from`. */
function waitedSince(kuryr: Kuryr, from: number): number {
  let n = 0;
  for (const line of kuryr.lines().slice(from)) {
    if (!line.startsWith('{')) continue;
    const l = JSON.parse(line) as { handler?: string; neutron?: unknown[] };
    if (l.handler && Array.isArray(l.neutron)) n += l.neutron.length;
  }
  return n;
}

class Recorder {
  readonly rows: Row[] = [];
  private readonly samples = new Map<
    string,
    { ms: number[]; waited: number[]; failures: number; cpu?: string }
  >();

  private key(op: string, setup: string) {
    return `${op}\u0000${setup}`;
  }

  add(op: string, setup: string, ms: number, waited?: number, failures = 0, cpu?: string): void {
    const k = this.key(op, setup);
    const s = this.samples.get(k) ?? { ms: [], waited: [], failures: 0 };
    s.ms.push(ms);
    if (waited !== undefined) s.waited.push(waited);
    s.failures += failures;
    if (cpu) s.cpu = cpu;
    this.samples.set(k, s);
  }

  /** Times fn; with a kuryr, also the Neutron requests it waited for. */
  async time(op: string, setup: string, fn: () => Promise<unknown>, kuryr?: Kuryr): Promise<void> {
    const from = kuryr ? kuryr.lines().length - 1 : 0;
    const t0 = performance.now();
    await fn();
    const ms = performance.now() - t0;
    let waited: number | undefined;
    if (kuryr) {
      await sleep(200); // its log line is written after Docker got the answer
      waited = waitedSince(kuryr, Math.max(0, from));
    }
    this.add(op, setup, ms, waited);
  }

  finish(): Row[] {
    for (const [k, s] of this.samples) {
      const [op = '', setup = ''] = k.split('\u0000');
      const st = stats(s.ms);
      this.rows.push({
        op,
        setup,
        medianMs: st.median,
        minMs: st.min,
        maxMs: st.max,
        ...(s.waited.length ? { waited: stats(s.waited).median } : {}),
        ...(s.failures ? { failures: s.failures } : {}),
        ...(s.cpu ? { cpu: s.cpu } : {}),
      });
    }
    return this.rows;
  }
}

/** Starts `n` containers at once on networks `pick(i)`; records the total, then removes them. */
async function parallel(rec: Recorder, op: string, setup: string, n: number, pick: (i: number) => string) {
  const names = Array.from(
    { length: n },
    (_, i) => `bench-par-${process.pid}-${Math.random().toString(36).slice(2, 7)}-${i}`,
  );
  const cpu = cpuSample();
  const t0 = performance.now();
  const outcomes = await Promise.allSettled(
    names.map((c, i) => docker('run', '-d', '--name', c, '--net', pick(i), IMAGE, 'sleep', '600')),
  );
  const failed = outcomes.filter((o) => o.status === 'rejected').length;
  const ms = performance.now() - t0;
  rec.add(op, setup, ms, undefined, failed, cpuSince(cpu, ms));
  await Promise.allSettled(names.map((c) => docker('rm', '-f', c)));
}

/**
 * `docker network rm` once the containers of a parallel run are gone. Docker 20.10 sometimes keeps
 * counting an endpoint after every container is gone and every DeleteEndpoint was answered (OVS
 * runs on 2 cores, twice on 2026-12-03; its own bookkeeping): then the network is left (and said
 * so) rather than the whole matrix ended.
 */
async function removeNetwork(net: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await docker('network', 'rm', net);
      return;
    } catch (err) {
      if (!/active endpoints/.test(String(err))) throw err;
      if (attempt >= 5) {
        console.error(
          `[bench] left network ${net}: Docker still counts an endpoint on it (${String(err).trim()})`,
        );
        return;
      }
      const left = await docker('network', 'inspect', '-f', '{{range .Containers}}{{.Name}} {{end}}', net);
      for (const c of left.split(' ').filter(Boolean)) await docker('rm', '-f', c).catch(() => undefined);
      await sleep(2_000);
    }
  }
}

/** A peer and RUNS sequential starts, each timed to `docker run -d` returning and to its first ping. */
async function startsAndPings(rec: Recorder, setup: string, net: string, tag: string, kuryr?: Kuryr) {
  const peer = `${tag}-peer`;
  await docker('run', '-d', '--name', peer, '--net', net, IMAGE, 'sleep', '3600');
  const peerIp = await ipOf(peer, net);
  try {
    for (let i = 0; i < RUNS; i++) {
      const c = `${tag}-${i}`;
      const t0 = performance.now();
      await rec.time(
        'docker run -d',
        setup,
        () => docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600'),
        kuryr,
      );
      while (!(await pingOnce(c, peerIp))) await sleep(20);
      rec.add('docker run → first ping to a peer', setup, performance.now() - t0);
      await rec.time('docker rm -f', setup, () => docker('rm', '-f', c), kuryr);
      // Let the pool's refill (about a second after a take) land, as between real starts; the
      // same pause for Docker's bridge, so both start from a quiet host.
      await sleep(1_500);
    }
  } finally {
    await docker('rm', '-f', peer).catch(() => undefined);
  }
}

export async function bench(label: string): Promise<BenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'kuryr-bench-'));
  const rec = new Recorder();
  const tag = `b${process.pid}`;
  const nets: string[] = [];
  const bridgeNets: string[] = [];
  const BRIDGE = 'Docker bridge';
  const DEFAULTS = 'kuryr, defaults';
  const NO_POOL = 'kuryr, no pool';
  let kuryr = await Kuryr.start(dir, 'defaults');
  const startupMs = kuryr.startupMs;
  await sleep(1_000);
  const rssIdle = rssMb(kuryr.proc.pid as number);
  let rssAfter = Number.NaN;
  try {
    // ------------------------------------------------ the floor: Docker's own bridge, same run
    const bridgeT0 = performance.now();
    for (let i = 0; i < 10; i++) {
      await docker('network', 'create', '--subnet', `10.230.${i}.0/24`, `${tag}-br${i}`);
      bridgeNets.push(`${tag}-br${i}`);
    }
    rec.add(TEN_NETWORKS, BRIDGE, performance.now() - bridgeT0);
    await startsAndPings(rec, BRIDGE, `${tag}-br0`, `${tag}-bc`);
    for (let r = 0; r < BURSTS; r++) {
      await parallel(rec, ONE_NETWORK, BRIDGE, PARALLEL, () => `${tag}-br0`);
      await parallel(rec, SPREAD, BRIDGE, PARALLEL, (i) => `${tag}-br${i % 10}`);
    }
    for (let i = 0; i < RUNS; i++) {
      await rec.time('docker network create', BRIDGE, () =>
        docker('network', 'create', '--subnet', `10.231.${i}.0/24`, `${tag}-bx${i}`),
      );
      await rec.time('docker network rm', BRIDGE, () => docker('network', 'rm', `${tag}-bx${i}`));
    }

    // ------------------------------------------------ kuryr with its defaults (warm pool by demand)
    for (let i = 0; i < RUNS; i++) {
      const n = `${tag}-x${i}`;
      await rec.time(
        'docker network create',
        DEFAULTS,
        () => kuryrNetwork('--subnet', `10.232.${i}.0/24`, n),
        kuryr,
      );
      await sleep(1_000);
      await rec.time('docker network rm', DEFAULTS, () => docker('network', 'rm', n), kuryr);
    }
    const main = `${tag}-k0`;
    await kuryrNetwork('--subnet', '10.233.0.0/24', main);
    nets.push(main);
    await kuryr.settled(MIN_SIZE);
    await startsAndPings(rec, DEFAULTS, main, `${tag}-kc`, kuryr);
    // A burst on a new network that has only its idle pool, then a second one (the pool grew);
    // each time on a new network, removed afterwards.
    for (let r = 0; r < BURSTS; r++) {
      const burst = `${tag}-burst${r}`;
      await kuryrNetwork('--subnet', `10.233.${r + 1}.0/24`, burst);
      nets.push(burst);
      await kuryr.settled(2 * MIN_SIZE);
      await parallel(rec, `${ONE_NETWORK} (first burst)`, DEFAULTS, PARALLEL, () => burst);
      await sleep(5_000); // the burst's demand grows its pool a second after the starts pause
      await kuryr.settled(MIN_SIZE);
      await parallel(rec, `${ONE_NETWORK} (next burst)`, DEFAULTS, PARALLEL, () => burst);
      await removeNetwork(burst);
    }
    // Starts across 10 networks are measured once the networks have settled, as the bridge's have;
    // how long 10 new networks take to get there is its own row. New networks each time.
    for (let r = 0; r < BURSTS; r++) {
      await kuryr.settled(MIN_SIZE); // the last one's clean-up done
      const spread = Array.from({ length: 10 }, (_, i) => `${tag}-s${r}-${i}`);
      const spreadT0 = performance.now();
      for (const [i, n] of spread.entries()) {
        await kuryrNetwork('--subnet', `10.234.${r * 10 + i}.0/24`, n);
        nets.push(n);
      }
      await kuryr.settled(10 * MIN_SIZE);
      rec.add(TEN_NETWORKS, DEFAULTS, performance.now() - spreadT0);
      await parallel(rec, SPREAD, DEFAULTS, PARALLEL, (i) => spread[i % 10] as string);
      if (r < BURSTS - 1) for (const n of spread) await removeNetwork(n);
    }
    rssAfter = rssMb(kuryr.proc.pid as number);

    // ------------------------------------------------ kuryr without a pool
    await kuryr.stop();
    kuryr = await Kuryr.start(dir, 'nopool', '[vif_pool]\nenabled = false');
    await startsAndPings(rec, NO_POOL, main, `${tag}-nc`, kuryr);
  } finally {
    for (const n of [...nets, ...bridgeNets]) await docker('network', 'rm', n).catch(() => undefined);
    await kuryr.stop();
  }
  const backend = existsSync(join(STATE, 'run/backend'))
    ? readFileSync(join(STATE, 'run/backend'), 'utf8').trim()
    : (process.env.KURYR_ENV_BACKEND ?? 'unknown');
  return {
    label,
    backend,
    docker: await docker('version', '-f', '{{.Server.Version}}'),
    commit: await sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).catch(() => 'unknown'),
    at: new Date().toISOString(),
    rows: rec.finish(),
    rssMb: { idle: rssIdle, after: rssAfter },
    startupMs,
  };
}

export const fmt = (x: number) =>
  Number.isNaN(x) ? '–' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`;

/** One table per result: operations down, setups across (Docker's bridge first). */
export function report(r: BenchResult): string {
  const setups = [...new Set(r.rows.map((x) => x.setup))];
  const ops = [...new Set(r.rows.map((x) => x.op))];
  const cell = (op: string, setup: string) => {
    const row = r.rows.find((x) => x.op === op && x.setup === setup);
    if (!row) return '';
    const waited = row.waited !== undefined ? ` (${row.waited} req)` : '';
    const failures = row.failures ? `, ${row.failures} failed` : '';
    const range = op.includes('×') && row.maxMs > row.minMs ? ` [${fmt(row.minMs)}–${fmt(row.maxMs)}]` : '';
    return `${fmt(row.medianMs)}${range}${waited}${failures}`;
  };
  return [
    `### ${r.label}: ${r.backend}, Docker ${r.docker}`,
    '',
    `Commit ${r.commit}, ${r.at}; medians of ${RUNS} (parallel: medians of ${BURSTS} runs of ${PARALLEL}, range in brackets); "req" = Neutron requests Docker waited for.`,
    '',
    `| operation | ${setups.join(' | ')} |`,
    `|---|${setups.map(() => '---').join('|')}|`,
    ...ops.map((op) => `| ${op} | ${setups.map((s) => cell(op, s)).join(' | ')} |`),
    '',
    `kuryr: ready ${fmt(r.startupMs)} after start; RSS ${r.rssMb.idle.toFixed(0)} MB idle, ${r.rssMb.after.toFixed(0)} MB after the runs above.`,
    '',
    'Where the CPU went during the parallel starts (the last run of each; seconds; processes by name):',
    '',
    ...r.rows.filter((x) => x.cpu).map((x) => `- ${x.op}, ${x.setup}: ${x.cpu}`),
    '',
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const jsonAt = process.argv.indexOf('--json');
  const label = process.env.BENCH_LABEL ?? 'this machine';
  bench(label)
    .then((r) => {
      process.stdout.write(`${report(r)}\n`);
      if (jsonAt > 0 && process.argv[jsonAt + 1])
        writeFileSync(process.argv[jsonAt + 1] as string, JSON.stringify(r, null, 2));
    })
    .catch((err) => {
      process.stderr.write(`bench failed: ${(err as Error).message}\n`);
      process.exit(1);
    });
}
