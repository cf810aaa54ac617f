// Multi-host harness: the simulated hosts of scripts/env/hosts.sh (host1, host2, ...), each with its
// own dockerd (`docker -H unix:///run/kuryr-hosts/<host>/docker.sock`), kuryr and L2 agent, on the
// shared Neutron. Run under the environment lock with KURYR_HOSTS_LOCKED=1 (npm run test:multihost).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Port } from '../../src/neutron/types.js';
import {
  DOCKER,
  IMAGE,
  isIdleWarmPort,
  neutron,
  portOfEndpoint,
  removeContainers,
  run,
  waitFor,
  waitPortActive,
} from '../e2e/harness.js';

export { IMAGE, isIdleWarmPort, neutron, portOfEndpoint, run, waitFor, waitPortActive };

const ROOT = new URL('../..', import.meta.url).pathname;
export const HOSTS_SH = join(ROOT, 'scripts/env/hosts.sh');
export const KURYR_BIN = join(ROOT, 'dist/kuryr.mjs');
export const STATE = process.env.KURYR_HOSTS_STATE ?? '/var/lib/kuryr-hosts';
export const HOSTS = ['host1', 'host2'] as const;
export type Host = (typeof HOSTS)[number];

/** The host's address on the underlay (scripts/env/hosts.sh: 169.254.100.N). */
export const underlayIp = (host: string) => `169.254.100.${host.replace('host', '')}`;
export const hostConf = (host: string) => join(STATE, 'hosts', host, 'etc/kuryr/kuryr.conf');
export const hostLog = (host: string, name: string) => join(STATE, 'hosts', host, 'log', `${name}.log`);

/** scripts/env/hosts.sh ARGS... */
export const hosts = (...args: string[]) => run(HOSTS_SH, args, 300_000);
/** Brings host1..hostN up (idempotent: running daemons are kept). */
export const hostsUp = (n = 2) => hosts('up', String(n));

/** `docker` against one host's daemon. */
export const hdocker = (host: string, ...args: string[]) => {
  const cli = (a: string[]) =>
    run(DOCKER, ['-H', `unix:///run/kuryr-hosts/${host}/docker.sock`, ...a], 180_000);
  // `docker rm` returns before kuryr has deleted the ports: wait for them, as on one host.
  return args[0] === 'rm' ? removeContainers(cli, args) : cli(args);
};

/** A command inside the host's namespaces. */
export const hexec = (host: string, ...cmd: string[]) => hosts('exec', host, ...cmd);

/** The kuryr CLI on a host (its config, its namespaces); never rejects on a non-zero exit. */
export function hkuryr(host: string, ...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      HOSTS_SH,
      ['exec', host, KURYR_BIN, '--config-file', hostConf(host), ...args],
      { timeout: 120_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, out: `${stdout}${stderr.replace(/^\[hosts\] ERROR.*\n?/gm, '')}` });
      },
    );
  });
}

/** One host's kuryr metrics (its own 127.0.0.1:23751). */
export const metrics = (host: string) =>
  hexec(host, 'curl', '-sf', '-m', '5', 'http://127.0.0.1:23751/metrics');

/** Sum of a Prometheus counter/histogram-count series whose labels match. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export interface Attachment {
  endpointId: string;
  ip: string;
}

export async function attachment(host: string, container: string, network: string): Promise<Attachment> {
  const out = await hdocker(
    host,
    'inspect',
    '-f',
    `{{json (index .NetworkSettings.Networks "${network}")}}`,
    container,
  );
  const n = JSON.parse(out) as { EndpointID: string; IPAddress: string };
  return { endpointId: n.EndpointID, ip: n.IPAddress };
}

/** Pings from a container on `host` until a reply comes. */
export async function pingFrom(
  host: string,
  container: string,
  ip: string,
  timeoutMs = 30_000,
): Promise<number> {
  const t0 = Date.now();
  await waitFor(
    `${container}@${host} to ping ${ip}`,
    async () =>
      (await hdocker(host, 'exec', container, 'ping', '-c', '1', '-W', '1', ip)).includes(
        '1 packets received',
      ),
    timeoutMs,
    100,
  );
  return Date.now() - t0;
}

/** The Neutron networks kuryr tagged for a Docker network ID (lh tag: the ID's first 32 chars). */
export async function neutronNetworksFor(dockerNetworkId: string) {
  return neutron.list('networks', { tags: `kuryr.net.uuid.lh:${dockerNetworkId.slice(0, 32)}` });
}

/**
 * One Neutron network for a Docker network on both hosts (local scope): host1's Docker creates it,
 * host2's joins it (-o neutron.net.uuid, the same CIDR adopted). Returns the Neutron network ID.
 */
export async function createSharedNetwork(name: string, cidr: string): Promise<string> {
  await hdocker(
    'host1',
    'network',
    'create',
    '-d',
    'kuryr',
    '--ipam-driver',
    'kuryr',
    '--subnet',
    cidr,
    name,
  );
  const [n] = await neutronNetworksFor(await hdocker('host1', 'network', 'inspect', '-f', '{{.Id}}', name));
  if (!n) throw new Error(`no Neutron network for host1's Docker network ${name}`);
  // As a user joins it: the network by ID, host1's subnet by the CIDR (docs/multihost.md, "CIDR
  // adoption across hosts").
  await hdocker(
    'host2',
    ...['network', 'create', '-d', 'kuryr', '--ipam-driver', 'kuryr', '--subnet', cidr],
    ...['-o', `neutron.net.uuid=${n.id}`, name],
  );
  const subnets = await neutron.list('subnets', { network_id: n.id });
  if (subnets.length !== 1) throw new Error(`Neutron network ${n.id} has ${subnets.length} subnets, not 1`);
  return n.id;
}

/** Ports kuryr made bound to a host. */
export async function kuryrPortsOn(host: string): Promise<Port[]> {
  return neutron.list('ports', { 'binding:host_id': host, device_owner: 'compute:kuryr' });
}

export function uniqueName(prefix: string): string {
  return `mh-${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
}

/** Best effort: containers, services and networks of a test, on every host. */
export async function cleanup(containers: string[], networks: string[], services: string[] = []) {
  for (const s of services) await hdocker('host1', 'service', 'rm', s).catch(() => undefined);
  for (const host of HOSTS) {
    for (const c of containers) await hdocker(host, 'rm', '-f', c).catch(() => undefined);
  }
  if (services.length) await sleep(3_000);
  for (const host of [...HOSTS].reverse()) {
    for (const n of networks) await hdocker(host, 'network', 'rm', n).catch(() => undefined);
  }
}

export const readLog = (host: string, name: string) => {
  try {
    return readFileSync(hostLog(host, name), 'utf8');
  } catch {
    return '';
  }
};
