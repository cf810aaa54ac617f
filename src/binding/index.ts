// Host-side plumbing chosen by the port's binding:vif_type, i.e. by what the Neutron mechanism
// driver that bound the port expects to find on this host.
import type { Port } from '../neutron/types.js';
import { DriverError } from '../util/errors.js';
import { bridgeName, plugIntoBridge } from './linux-bridge.js';
import { containerIfaceName, ensureVeth, removeVeth } from './veth.js';

export interface BoundInterface {
  /** Interface left on the host, plugged by the agent. */
  host: string;
  /** Interface Docker moves into the container. */
  container: string;
}

export interface HostBinder {
  bind(port: Port, mtu: number): Promise<BoundInterface>;
  unbind(port: Pick<Port, 'id' | 'binding:vif_type'>): Promise<void>;
  containerIface(port: Pick<Port, 'id'>): string;
}

/** vif_types whose host side is a tap on a veth pair, and how each is plugged. */
const PLUGGERS: Record<string, (port: Port, tap: string) => Promise<void>> = {
  bridge: (port, tap) => plugIntoBridge(tap, bridgeName(port.network_id, port['binding:vif_details'])),
  // "tap": the mechanism driver wants an unplugged tap and takes it from there.
  tap: async () => undefined,
};

export class BindingError extends DriverError {}

export function createHostBinder(host: string): HostBinder {
  return {
    async bind(port, mtu) {
      const vifType = port['binding:vif_type'] ?? 'unbound';
      if (vifType === 'binding_failed' || vifType === 'unbound') {
        throw new BindingError(
          `Neutron could not bind port ${port.id} to host '${host}' (binding:vif_type=${vifType}). ` +
            `Is a Neutron L2 agent alive on host '${host}'? Check 'openstack network agent list --host ${host}' ` +
            `and that [DEFAULT] host in kuryr.conf equals the agent's host`,
        );
      }
      const plug = PLUGGERS[vifType];
      if (!plug) {
        throw new BindingError(
          `binding:vif_type '${vifType}' of port ${port.id} is not supported (supported: ${Object.keys(PLUGGERS).join(', ')})`,
        );
      }
      const pair = await ensureVeth({ portId: port.id, mac: port.mac_address, mtu });
      await plug(port, pair.host);
      return pair;
    },
    async unbind(port) {
      await removeVeth(port.id);
    },
    containerIface: (port) => containerIfaceName(port.id),
  };
}
