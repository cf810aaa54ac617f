// A veth pair per endpoint: the host end is named the way Neutron agents look for it
// (tap<port-id[:11]>, 14 chars, as nova and kuryr-lib do), the other end is handed to Docker,
// which moves it into the container and renames it eth<N>.
import { deleteLink, linkExists, runIpBatch } from './ip.js';

export const HOST_PREFIX = 'tap';
export const CONTAINER_PREFIX = 't_c';

export function hostIfaceName(portId: string): string {
  return HOST_PREFIX + portId.slice(0, 11);
}

export function containerIfaceName(portId: string): string {
  return CONTAINER_PREFIX + portId.slice(0, 11);
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
export async function ensureVeth(spec: VethSpec): Promise<{ host: string; container: string }> {
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
