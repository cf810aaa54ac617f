// vif_type "bridge" (ML2/linuxbridge): the tap goes into the network's bridge, brq<net-id[:11]>.
// The Linux bridge agent plugs only taps whose device_owner is not "compute:*" (those are Nova's,
// plugged by os-vif); kuryr-lib's ports are "compute:kuryr", so like os-vif we create the bridge
// if the agent has not yet and plug the tap ourselves. The agent adds the VXLAN/VLAN uplink.
import { HostNetworkError, linkExists, runIpBatch } from './ip.js';

/** Linux interface names: at most 15 characters, none of them space, '/' or ':'. */
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

export function bridgeName(networkId: string, vifDetails?: Record<string, unknown>): string {
  const named = vifDetails?.bridge_name;
  const name = typeof named === 'string' && named ? named : `brq${networkId.slice(0, 11)}`;
  if (!IFNAME.test(name))
    throw new HostNetworkError(`refusing bridge name ${JSON.stringify(name)}: not a Linux interface name`);
  return name;
}

async function ensureBridge(bridge: string): Promise<void> {
  if (linkExists(bridge)) return;
  try {
    await runIpBatch([
      `link add ${bridge} type bridge forward_delay 0 stp_state 0`,
      `link set dev ${bridge} up`,
    ]);
  } catch (err) {
    // The agent may have created it at the same moment: that is what we wanted.
    if (!(err instanceof HostNetworkError) || !linkExists(bridge)) throw err;
    await runIpBatch([`link set dev ${bridge} up`]);
  }
}

export async function plugIntoBridge(tap: string, bridge: string): Promise<void> {
  await ensureBridge(bridge);
  await runIpBatch([`link set dev ${tap} master ${bridge}`]);
}
