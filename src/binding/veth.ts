// A veth pair per endpoint: the host end is named the way Neutron agents look for it
// (tap<port-id[:11]>, 14 chars, as nova and kuryr-lib do), the other end is handed to Docker,
// which moves it into the container and renames it eth<N>.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { deleteLink, HostNetworkError, linkExists, runIp, runIpBatch } from './ip.js';

export const HOST_PREFIX = 'tap';
export const CONTAINER_PREFIX = 't_c';

export function hostIfaceName(portId: string): string {
  return HOST_PREFIX + portId.slice(0, 11);
}

export function containerIfaceName(portId: string): string {
  return CONTAINER_PREFIX + portId.slice(0, 11);
}

/**
 * Where a port's veth is: `absent`, `on-host` (both ends here: made for a start that has not
 * reached Join, or given back by Docker at Leave), or `in-container` (its container end has left
 * the host: a container holds it). File-system checks, no `ip` process.
 */
export type VethState = 'absent' | 'on-host' | 'in-container';

export function vethState(portId: string): VethState {
  if (!linkExists(hostIfaceName(portId))) return 'absent';
  return linkExists(containerIfaceName(portId)) ? 'on-host' : 'in-container';
}

export function vethInContainer(portId: string): boolean {
  return vethState(portId) === 'in-container';
}

export interface VethSpec {
  portId: string;
  mac: string;
  mtu: number;
}

/**
 * Creates the pair (container end with the port's MAC, both ends with the network's MTU) and sets
 * the host end up. Idempotent: when the host end exists the pair is already made (its peer may
 * already be inside a container), so only the host end's state is ensured.
 */
const PORT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/**
 * Every value that reaches an `ip -batch` line is checked first: a stray newline or space would
 * be another command or argument. (They come from Neutron, but we do not bet the host on that.)
 */
function checkSpec(spec: VethSpec): void {
  if (!PORT_ID.test(spec.portId))
    throw new HostNetworkError(`refusing to plug port id ${JSON.stringify(spec.portId)}: not a UUID`);
  if (!MAC.test(spec.mac))
    throw new HostNetworkError(
      `refusing MAC ${JSON.stringify(spec.mac)} of port ${spec.portId}: not aa:bb:cc:dd:ee:ff`,
    );
  if (!Number.isInteger(spec.mtu) || spec.mtu < 68 || spec.mtu > 65535) {
    throw new HostNetworkError(`refusing MTU ${spec.mtu} of port ${spec.portId}: not between 68 and 65535`);
  }
}

export async function ensureVeth(spec: VethSpec): Promise<{ host: string; container: string }> {
  checkSpec(spec);
  const host = hostIfaceName(spec.portId);
  const container = containerIfaceName(spec.portId);
  const mac = spec.mac.toLowerCase();
  if (linkExists(host)) {
    await runIpBatch([`link set dev ${host} mtu ${spec.mtu} up`]);
  } else {
    if (linkExists(container)) await deleteLink(container); // half-made pair from a crash
    await runIpBatch([
      `link add ${host} mtu ${spec.mtu} type veth peer name ${container} address ${mac} mtu ${spec.mtu}`,
      `link set dev ${host} up`,
    ]);
  }
  return { host, container };
}

/** Deletes the pair (deleting one end deletes both); missing is fine. */
export async function removeVeth(portId: string): Promise<void> {
  await deleteLink(hostIfaceName(portId));
  await deleteLink(containerIfaceName(portId));
}

// The endpoint a warm port was given, written on its veth's host end (the interface alias) at
// CreateEndpoint: a local write where Neutron's device_id would cost a request Docker waits for.
// device_id follows in the background; until it lands, this is how a restarted daemon finds the
// endpoint's port. Format: "kuryr-endpoint <endpoint-id> port <port-id>".
const ALIAS = /^kuryr-endpoint ([0-9a-f]{64}) port ([0-9a-f-]{36})$/;

/** Records on the host end which endpoint holds the port (sysfs; `ip` where /sys is read-only). */
export async function recordEndpoint(portId: string, endpointId: string): Promise<void> {
  if (!PORT_ID.test(portId) || !/^[0-9a-f]{64}$/.test(endpointId))
    throw new HostNetworkError(`refusing endpoint record ${JSON.stringify(endpointId)} on port ${portId}`);
  await writeAlias(portId, `kuryr-endpoint ${endpointId} port ${portId}`);
}

async function writeAlias(portId: string, alias: string): Promise<void> {
  const host = hostIfaceName(portId);
  try {
    writeFileSync(`/sys/class/net/${host}/ifalias`, alias);
  } catch {
    await runIp(['link', 'set', 'dev', host, 'alias', alias]);
  }
}

const POOL_ALIAS = /^kuryr-pool port ([0-9a-f-]{36})$/;

/**
 * Records on the host end that the port is back in this host's warm pool (a container had it):
 * it replaces the endpoint record, and tells `kuryr gc` the port is kept while Neutron still
 * shows the old endpoint (its reset is written behind).
 */
export async function recordPool(portId: string): Promise<void> {
  if (!PORT_ID.test(portId)) throw new HostNetworkError(`refusing pool record on port ${portId}`);
  await writeAlias(portId, `kuryr-pool port ${portId}`);
}

/** The port's host end says it is a warm port (recordPool). */
export function recordedPool(portId: string): boolean {
  return POOL_ALIAS.exec(readAlias(hostIfaceName(portId)))?.[1] === portId;
}

/** The endpoint recorded on a port's host end, if any. */
export function recordedEndpoint(portId: string): string | undefined {
  return ALIAS.exec(readAlias(hostIfaceName(portId)))?.[1];
}

/** The port whose host end records this endpoint (a scan of this host's tap interfaces). */
export function portOfRecordedEndpoint(endpointId: string): string | undefined {
  let names: string[];
  try {
    names = readdirSync('/sys/class/net').filter((n) => n.startsWith(HOST_PREFIX));
  } catch {
    return undefined;
  }
  for (const name of names) {
    const m = ALIAS.exec(readAlias(name));
    if (m?.[1] === endpointId && hostIfaceName(m[2] as string) === name) return m[2];
  }
  return undefined;
}

function readAlias(name: string): string {
  try {
    return readFileSync(`/sys/class/net/${name}/ifalias`, 'utf8').trim();
  } catch {
    return '';
  }
}
