// End-to-end harness: the real Docker CLI (Debian's /usr/bin/docker, matching the daemon), the
// real Neutron API, and the kuryr daemon built from this tree, serving on Docker's plugin socket.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dockerIdTags, POOL_PORT_NAME } from '../../src/cnm/naming.js';
import { MAX_DEFER_MS } from '../../src/cnm/write-behind.js';
import { DockerEngine } from '../../src/docker/engine.js';
import { NoAuth } from '../../src/neutron/auth.js';
import { NeutronClient } from '../../src/neutron/client.js';
import type { Network, Port } from '../../src/neutron/types.js';
import { findGarbage, type Garbage } from '../../src/ops/gc.js';

export const DOCKER = '/usr/bin/docker';
export const IMAGE = 'kuryr-test/busybox:latest';
export const NEUTRON_URL = process.env.NEUTRON_URL ?? 'http://127.0.0.1:9696';
export const SOCKET = '/run/docker/plugins/kuryr.sock';
export const HOST = hostname();
const ROOT = new URL('../..', import.meta.url).pathname;
/** What is shipped and run: the bundle, an executable whose #! line sets Node's flags. */
export const KURYR_BIN = join(ROOT, 'dist/kuryr.mjs');
const ENV_SCRIPT = join(ROOT, 'scripts/kuryr-env.sh');

const ENV_STATE = process.env.KURYR_ENV_STATE ?? '/var/lib/kuryr-env';

/** The Neutron backend kuryr-env.sh runs (KURYR_ENV_BACKEND, else what it recorded it started). */
export function envBackend(): string | undefined {
  if (process.env.KURYR_ENV_BACKEND) return process.env.KURYR_ENV_BACKEND;
  try {
    return readFileSync(join(ENV_STATE, 'run/backend'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts whatever part of the environment is not running (`kuryr-env.sh start`), on the backend
 * that runs now: a bare `start` would switch to the script's default backend.
 */
export const envStart = () => {
  const backend = envBackend();
  return run(ENV_SCRIPT, ['start'], 300_000, backend ? { KURYR_ENV_BACKEND: backend } : {});
};
/** Stops one service of the environment (`kuryr-env.sh stop NAME`). */
export const envStop = (service: string) => run(ENV_SCRIPT, ['stop', service], 120_000);

/** Docker reads a plugin's capabilities once per activation: a restart makes it ask again. */
export async function restartDockerd(): Promise<void> {
  await envStop('dockerd');
  await envStart();
}

export const neutron = new NeutronClient({ auth: new NoAuth(NEUTRON_URL), timeoutMs: 30_000 });

export function run(
  cmd: string,
  args: string[],
  timeoutMs = 120_000,
  env: Record<string, string> = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, maxBuffer: 16 << 20, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
        else resolve(stdout.trim());
      },
    );
  });
}

export type Backend = 'ovn' | 'ovs' | 'linuxbridge';

/** What each backend binds kuryr's ports as, and the MTU of its tenant networks (1500 underlay). */
export const BACKEND_FACTS: Record<Backend, { vifType: string; mtu: number; ovs: boolean }> = {
  ovn: { vifType: 'ovs', mtu: 1442, ovs: true }, // geneve, max_header_size 38
  ovs: { vifType: 'ovs', mtu: 1450, ovs: true }, // vxlan
  linuxbridge: { vifType: 'bridge', mtu: 1450, ovs: false }, // vxlan
};

let backendFound: Promise<Backend> | undefined;
/** The backend wiring this host's ports, from Neutron's agent list (alive agents on HOST). */
export function detectBackend(): Promise<Backend> {
  backendFound ??= (async () => {
    // What kuryr-env.sh runs now. (Neutron shows a stopped agent alive for 75 s after a switch.)
    const recorded = `${process.env.KURYR_ENV_STATE ?? '/var/lib/kuryr-env'}/run/backend`;
    const running = existsSync(recorded) ? readFileSync(recorded, 'utf8').trim() : '';
    if (running === 'ovn' || running === 'ovs' || running === 'linuxbridge') return running;
    const alive = (await neutron.list('agents', { host: HOST })).filter((a) => a.alive);
    const types = alive.map((a) => a.agent_type);
    if (types.some((t) => /^OVN Controller/.test(t))) return 'ovn';
    if (types.includes('Open vSwitch agent')) return 'ovs';
    if (types.includes('Linux bridge agent')) return 'linuxbridge';
    throw new Error(`no live L2 agent or OVN chassis on host ${HOST} (alive: ${types.join(', ') || 'none'})`);
  })();
  return backendFound;
}

/** ovs-vsctl on the host's Open vSwitch (the OVS backends). */
export const vsctl = (...args: string[]) => run('ovs-vsctl', ['--timeout=10', ...args]);

/** Names of the ports in an OVS bridge. */
export async function ovsPorts(bridge = 'br-int'): Promise<string[]> {
  return (await vsctl('list-ports', bridge)).split('\n').filter(Boolean);
}

/**
 * Runs Debian's docker CLI. `docker network rm` also waits until kuryr has removed the networks'
 * Neutron side, and `docker rm` until the containers' ports are deleted: kuryr does both in the
 * background once Docker has its answer.
 */
export async function docker(...args: string[]): Promise<string> {
  if (args[0] === 'rm') return removeContainers((a) => run(DOCKER, a), args);
  if (args[0] !== 'network' || args[1] !== 'rm') return run(DOCKER, args);
  const ids = await Promise.all(args.slice(2).map((n) => networkId(n).catch(() => undefined)));
  const out = await run(DOCKER, args);
  for (const id of ids) if (id) await teardownDone(id);
  return out;
}

/**
 * `docker rm ARGS` through `cli` (one Docker daemon's CLI), returning once kuryr has deleted the
 * containers' ports, which it does in the background.
 */
export async function removeContainers(
  cli: (args: string[]) => Promise<string>,
  args: string[],
): Promise<string> {
  const names = args.slice(1).filter((a) => !a.startsWith('-'));
  const held = (await Promise.all(names.map((c) => addressesOf(cli, c)))).flat();
  const out = await cli(args);
  await portsDeleted(held);
  return out;
}

/** A container's addresses on kuryr networks: [Neutron network, address] (none if it is gone). */
async function addressesOf(
  cli: (args: string[]) => Promise<string>,
  container: string,
): Promise<[string, string][]> {
  const out = await cli(['inspect', '-f', '{{json .NetworkSettings.Networks}}', container]).catch(() => '');
  if (!out) return [];
  const nets = JSON.parse(out) as Record<
    string,
    { NetworkID: string; IPAddress: string; GlobalIPv6Address: string }
  >;
  const held: [string, string][] = [];
  for (const n of Object.values(nets ?? {})) {
    for (const net of await neutronNetworksOf(n.NetworkID).catch(() => [])) {
      for (const ip of [n.IPAddress, n.GlobalIPv6Address]) if (ip) held.push([net.id, ip]);
    }
  }
  return held;
}

/**
 * Until no container's port holds these addresses: kuryr deletes its ports, or takes them back
 * into the host's warm pool (reset to an idle warm port behind); a user's port is handed back.
 */
async function portsDeleted(held: [string, string][]): Promise<void> {
  for (const [networkId, ip] of held) {
    await waitFor(
      `kuryr's port for ${ip} deleted or back in the warm pool after docker rm`,
      async () =>
        (
          await neutron.list('ports', {
            network_id: networkId,
            fixed_ips: `ip_address=${ip}`,
            device_owner: 'compute:kuryr',
          })
        ).every((p) => p.tags.includes('kuryr.port.existing') || isIdleWarmPort(p)),
      30_000,
      100,
    );
  }
}

/** Both halves of the plugin: `-d kuryr --ipam-driver kuryr`. */
export const KURYR_NET = ['-d', 'kuryr', '--ipam-driver', 'kuryr'];

/** `docker network create -d kuryr --ipam-driver kuryr ARGS...` */
export const createKuryrNetwork = (...args: string[]) => docker('network', 'create', ...KURYR_NET, ...args);

/** Runs docker and returns its error text; fails the test if docker succeeded. */
export async function dockerFails(...args: string[]): Promise<string> {
  try {
    await docker(...args);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`expected "docker ${args.join(' ')}" to fail, but it succeeded`);
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
      );
    await sleep(everyMs);
  }
}

export interface KuryrProcess {
  child: ChildProcess;
  /** The kuryr.conf it runs with (for CLI commands against the same setup). */
  conf: string;
  logFile: string;
  stop(): Promise<void>;
  log(): string;
}

/** Starts `kuryr serve` from dist/ with a noauth config on Docker's plugin socket. */
export async function startKuryr(extraConfig = '', ready?: () => Promise<boolean>): Promise<KuryrProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'kuryr-e2e-'));
  const conf = join(dir, 'kuryr.conf');
  writeFileSync(
    conf,
    // The test's own settings come last, so they win over these defaults (later keys win, as in oslo).
    `[neutron]\nauth_type = noauth\nendpoint_override = ${NEUTRON_URL}\n[DEFAULT]\ndebug = true\n${extraConfig}\n`,
  );
  const logFile = join(dir, 'kuryr.log');
  const child = spawn(KURYR_BIN, ['--config-file', conf, 'serve'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: string[] = [];
  // Also on disk as it comes: a daemon a test killed or replaced leaves its log behind.
  const keep = (d: unknown) => {
    chunks.push(String(d));
    appendFileSync(logFile, String(d));
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const log = () => chunks.join('');
  await waitFor(
    'kuryr to listen',
    async () => {
      if (child.exitCode !== null) throw new Error(`kuryr exited: ${log()}`);
      return ready ? ready() : existsSync(SOCKET) && (await pingSocket());
    },
    15_000,
    100,
  );
  return {
    child,
    conf,
    logFile,
    log,
    async stop() {
      const exited = () => child.exitCode !== null || child.signalCode !== null;
      if (!exited()) {
        child.kill('SIGTERM');
        await waitFor('kuryr to exit', async () => exited(), 15_000, 50).catch((err: Error) => {
          // What it was still doing: the newest lines of its log.
          err.message += `; its log ends with:\n${log().trimEnd().split('\n').slice(-15).join('\n')}`;
          throw err;
        });
      }
    },
  };
}

/** Runs the kuryr CLI from dist/; resolves with its exit code and output (never rejects on exit != 0). */
export function kuryrCli(
  conf: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(KURYR_BIN, ['--config-file', conf, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function pingSocket(): Promise<boolean> {
  const out = await run('curl', [
    '-s',
    '--unix-socket',
    SOCKET,
    '-X',
    'POST',
    'http://plugin/Plugin.Activate',
  ]).catch(() => '');
  return out.includes('NetworkDriver');
}

/** Raw plugin call over the socket, as Docker makes it. */
export async function pluginCall(
  method: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const out = await run('curl', [
    '-s',
    '-w',
    '\n%{http_code}',
    '--unix-socket',
    SOCKET,
    '-X',
    'POST',
    '-H',
    'Content-Type: application/json',
    '--data-binary',
    JSON.stringify(body),
    `http://plugin/${method}`,
  ]);
  const nl = out.lastIndexOf('\n');
  const res = { status: Number(out.slice(nl + 1)), body: JSON.parse(out.slice(0, nl) || '{}') };
  const id = (body as { NetworkID?: string } | null)?.NetworkID;
  if (method === 'NetworkDriver.DeleteNetwork' && res.status === 200 && id) await teardownDone(id);
  return res;
}

/**
 * kuryr removes a deleted network's Neutron side in the background, once Docker has its answer (a
 * Swarm network stays: a node's DeleteNetwork leaves it to the manager's FreeNetwork).
 */
async function teardownDone(dockerNetworkId: string): Promise<void> {
  await waitFor(
    `Neutron side of Docker network ${dockerNetworkId.slice(0, 12)} gone`,
    async () =>
      (await neutronNetworksOf(dockerNetworkId)).every((n) =>
        n.tags.includes(`kuryr.swarm:${dockerNetworkId.slice(0, 12)}`),
      ),
    30_000,
    100,
  );
}

export async function networkId(name: string): Promise<string> {
  return docker('network', 'inspect', '-f', '{{.Id}}', name);
}

export async function neutronNetworksOf(dockerNetworkId: string): Promise<Network[]> {
  return neutron.list('networks', { tags: dockerIdTags(dockerNetworkId).join(',') });
}

export interface ContainerNet {
  endpointId: string;
  ip: string;
  ipv6: string;
  mac: string;
}

export async function containerNet(container: string, network: string): Promise<ContainerNet> {
  const out = await docker(
    'inspect',
    '-f',
    `{{json (index .NetworkSettings.Networks "${network}")}}`,
    container,
  );
  const n = JSON.parse(out) as {
    EndpointID: string;
    IPAddress: string;
    GlobalIPv6Address: string;
    MacAddress: string;
  };
  return { endpointId: n.EndpointID, ip: n.IPAddress, ipv6: n.GlobalIPv6Address, mac: n.MacAddress };
}

/**
 * The endpoint's Neutron port. A warm-pool port gets its endpoint's identity (device_id) written
 * once starts on the host pause (about a second after a lone start, up to 6 s after a burst, never
 * more than 30 s), so this waits for it.
 */
export async function portOfEndpoint(endpointId: string, waitMs = 15_000): Promise<Port | undefined> {
  const end = Date.now() + waitMs;
  for (;;) {
    const [port] = await neutron.list('ports', { device_id: endpointId });
    if (port || Date.now() > end) return port;
    await sleep(100);
  }
}

/** A warm-pool port no container has taken (kuryr keeps a few per network by default). */
export const isIdleWarmPort = (p: Port) => p.name === POOL_PORT_NAME && !p.device_id;

/**
 * Waits for the endpoint's port to be recorded (device_id: written behind, up to MAX_DEFER_MS
 * after the start while the host stays busy) and ACTIVE: the default leaves room beyond that bound.
 */
export async function waitPortActive(endpointId: string, timeoutMs = MAX_DEFER_MS + 15_000): Promise<Port> {
  return waitFor(
    `port of endpoint ${endpointId.slice(0, 12)} to be ACTIVE`,
    async () => {
      const p = await portOfEndpoint(endpointId);
      if (p?.status === 'ACTIVE') return p;
      // What a timeout reports: the port as Neutron showed it last.
      throw new Error(
        p
          ? `port ${p.id} is ${p.status} (binding:host_id ${p['binding:host_id'] || '-'}, vif_type ${p['binding:vif_type'] ?? '-'})`
          : `no Neutron port has device_id ${endpointId}`,
      );
    },
    timeoutMs,
    300,
  );
}

/** Pings from a container until a reply comes (the first packets after ACTIVE may be lost). */
export async function pingUntilReply(
  container: string,
  ip: string,
  timeoutMs = 20_000,
  v6 = false,
): Promise<void> {
  await waitFor(
    `${container} to ping ${ip}`,
    async () => {
      const out = await docker('exec', container, 'ping', ...(v6 ? ['-6'] : []), '-c', '1', '-W', '1', ip);
      return out.includes('1 packets received');
    },
    timeoutMs,
    200,
  );
}

export async function hostLinks(prefix: string): Promise<string[]> {
  const out = await run('ip', ['-o', 'link', 'show']);
  return out
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/** Best-effort removal of test containers and networks, so one failed test does not poison the next. */
export async function cleanupDocker(containers: string[], networks: string[]): Promise<void> {
  for (const c of containers) await docker('rm', '-f', c).catch(() => undefined);
  for (const n of networks) await docker('network', 'rm', n).catch(() => undefined);
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
}
/** A Docker container or network named by uniqueName(). */
export const TEST_NAME = /-\d+-[0-9a-z]{5}$/;

/** Neutron resources tests make by hand (e2e-*), and the groups --expose makes. */
export const TEST_MADE_COLLECTIONS = [
  'ports',
  'subnets',
  'networks',
  'subnetpools',
  'security-groups',
] as const;
export const isTestMade = (r: { name: string }) =>
  r.name.startsWith('e2e-') || r.name.endsWith('-exposed_ports');

/** What kuryr's gc calls garbage on this host now (no minimum age: no call is in flight). */
export async function gcGarbage(): Promise<Garbage[]> {
  const engine = new DockerEngine();
  try {
    return await findGarbage(neutron, await engine.networks(), {
      host: HOST,
      subnetpoolPrefix: 'kuryrPool',
      minAgeMs: 0,
    });
  } finally {
    await engine.close();
  }
}

/** Where a host link is plugged: its Linux bridge, else the OVS bridge that has it as a port. */
export async function pluggedInto(link: string): Promise<string | undefined> {
  try {
    const master = readlinkSync(`/sys/class/net/${link}/master`).split('/').pop();
    if (master && master !== 'ovs-system') return master;
  } catch {
    // no kernel master: not in a Linux bridge (a netdev OVS bridge reads it with AF_PACKET)
  }
  return run('ovs-vsctl', ['--timeout=5', 'port-to-br', link]).catch(() => undefined);
}

/** Where the running backend plugs the taps of a network: brq<net-id[:11]>, or br-int with OVS. */
export async function expectedBridge(neutronNetworkId: string): Promise<string> {
  return BACKEND_FACTS[await detectBackend()].ovs ? 'br-int' : `brq${neutronNetworkId.slice(0, 11)}`;
}

type MadeKind = 'networks' | 'subnets' | 'subnetpools' | 'ports';

/** Neutron resources a test made itself ("the user's"), deleted in after() even when it fails. */
export class Made {
  private readonly items: { collection: MadeKind; id: string }[] = [];
  add<T extends { id: string }>(collection: MadeKind, r: T): T {
    this.items.push({ collection, id: r.id });
    return r;
  }
  async cleanup(): Promise<void> {
    for (const c of ['ports', 'subnets', 'networks', 'subnetpools'] as const)
      for (const i of this.items.filter((x) => x.collection === c))
        await neutron.delete(i.collection, i.id).catch(() => false);
  }
}

/** Adds `name` to `list` (containers or networks to clean up) and returns it. */
export function track(list: string[], name: string): string {
  list.push(name);
  return name;
}
