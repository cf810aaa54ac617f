// End-to-end harness: the real Docker CLI (Debian's /usr/bin/docker, matching the daemon), the
// real Neutron API, and the kuryr daemon built from this tree, serving on Docker's plugin socket.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dockerIdTags } from '../../src/cnm/naming.js';
import { NoAuth } from '../../src/neutron/auth.js';
import { NeutronClient } from '../../src/neutron/client.js';
import type { Network, Port } from '../../src/neutron/types.js';

export const DOCKER = '/usr/bin/docker';
export const IMAGE = 'kuryr-test/busybox:latest';
export const NEUTRON_URL = process.env.NEUTRON_URL ?? 'http://127.0.0.1:9696';
export const SOCKET = '/run/docker/plugins/kuryr.sock';
export const HOST = hostname();
const ROOT = new URL('../..', import.meta.url).pathname;
/** What is shipped and run: the bundle, an executable whose #! line sets Node's flags. */
export const KURYR_BIN = join(ROOT, 'dist/kuryr.mjs');
const ENV_SCRIPT = join(ROOT, 'scripts/kuryr-env.sh');

/** Starts whatever part of the environment is not running (`kuryr-env.sh start`). */
export const envStart = () => run(ENV_SCRIPT, ['start'], 300_000);
/** Stops one service of the environment (`kuryr-env.sh stop NAME`). */
export const envStop = (service: string) => run(ENV_SCRIPT, ['stop', service], 120_000);

/** Docker reads a plugin's capabilities once per activation: a restart makes it ask again. */
export async function restartDockerd(): Promise<void> {
  await envStop('dockerd');
  await envStart();
}

export const neutron = new NeutronClient({ auth: new NoAuth(NEUTRON_URL), timeoutMs: 30_000 });

export function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout.trim());
    });
  });
}

export const docker = (...args: string[]) => run(DOCKER, args);

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
  child.stdout?.on('data', (d) => chunks.push(String(d)));
  child.stderr?.on('data', (d) => chunks.push(String(d)));
  const log = () => {
    writeFileSync(logFile, chunks.join(''));
    return readFileSync(logFile, 'utf8');
  };
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
        await waitFor('kuryr to exit', async () => exited(), 15_000, 50);
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
  return { status: Number(out.slice(nl + 1)), body: JSON.parse(out.slice(0, nl) || '{}') };
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

export async function portOfEndpoint(endpointId: string): Promise<Port | undefined> {
  return (await neutron.list('ports', { device_id: endpointId }))[0];
}

export async function waitPortActive(endpointId: string, timeoutMs = 30_000): Promise<Port> {
  return waitFor(
    `port of endpoint ${endpointId.slice(0, 12)} to be ACTIVE`,
    async () => {
      const p = await portOfEndpoint(endpointId);
      return p?.status === 'ACTIVE' ? p : undefined;
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
