// Host-side plumbing chosen by the port's binding:vif_type, i.e. by what the Neutron mechanism
// driver that bound the port expects to find on this host.

import { existsSync } from 'node:fs';
import type { Port } from '../neutron/types.js';
import { DriverError } from '../util/errors.js';
import { deleteLink } from './ip.js';
import { bridgeName, plugIntoBridge } from './linux-bridge.js';
import { identifyOvsPort, plugOvs, unplugOvs } from './ovs.js';
import { hasScript, runBindScript, runUnbindScript } from './scripts.js';
import {
  containerIfaceName,
  ensureVeth,
  HOST_PREFIX,
  hostIfaceName,
  portOfRecordedEndpoint,
  recordEndpoint,
  recordedEndpoint,
  recordPool,
  removeVeth,
  type VethState,
  vethState,
} from './veth.js';

export interface BoundInterface {
  /** Interface left on the host, plugged by the agent. */
  host: string;
  /** Interface Docker moves into the container. */
  container: string;
}

export interface HostBinder {
  bind(port: Port, mtu: number): Promise<BoundInterface>;
  unbind(port: Port): Promise<void>;
  containerIface(port: Pick<Port, 'id'>): string;
  /**
   * Tells the host side which Docker endpoint holds the port, once Docker has named it (ports are
   * plugged at RequestAddress or ahead in the warm pool, before their endpoint exists): OVS
   * interfaces get external_ids:vm-uuid. Call it when the endpoint's device_id is written.
   */
  identify?(port: Port, endpointId: string): Promise<void>;
  /** Where the port's veth is (see VethState). */
  vethState(port: Pick<Port, 'id'>): VethState;
  /**
   * Records on the port's host side which endpoint holds it: a host-local write, so Docker need
   * not wait for Neutron's device_id (written behind). Survives a daemon crash with the veth.
   */
  recordEndpoint(port: Pick<Port, 'id'>, endpointId: string): Promise<void>;
  /**
   * Records on the port's host side that it is back in the warm pool (the endpoint record goes):
   * its veth stays plugged for the next container.
   */
  recordPool(port: Pick<Port, 'id'>): Promise<void>;
  /** The endpoint recorded on the port's host side, if any. */
  recordedEndpoint(port: Pick<Port, 'id'>): string | undefined;
  /** The port (ID) whose host side records this endpoint, if any. */
  portOfRecordedEndpoint(endpointId: string): string | undefined;
}

export interface BinderOptions {
  /** This host, as Neutron agents know it (binding:host_id). */
  host: string;
  /** kuryr-lib's script directory, for vif_types without built-in support. */
  bindir: string;
  ovsBridge: string;
  scriptTimeoutMs: number;
}

/** How the tap of a veth pair is plugged (and unplugged) for one vif_type. */
interface Plugger {
  plug(port: Port, tap: string): Promise<void>;
  unplug(port: Port, tap: string): Promise<void>;
  identify?(port: Port, tap: string, endpointId: string): Promise<void>;
}

export class BindingError extends DriverError {}

function builtInPluggers(opts: BinderOptions): Record<string, Plugger> {
  const endpointOf = (port: Port) => port.device_id;
  return {
    // ML2/linuxbridge. Deleting the veth takes the tap out of the bridge.
    bridge: {
      plug: (port, tap) => plugIntoBridge(tap, bridgeName(port.network_id, port['binding:vif_details'])),
      unplug: async () => undefined,
    },
    // ML2/OVS (and OVS hybrid with the iptables_hybrid firewall), and ML2/OVN.
    ovs: {
      plug: (port, tap) =>
        plugOvs(port, tap, {
          bridge: opts.ovsBridge,
          endpointId: endpointOf(port),
          containerIface: containerIfaceName(port.id),
        }),
      unplug: (port, tap) => unplugOvs(port, tap, { bridge: opts.ovsBridge }),
      identify: (port, tap, endpointId) => identifyOvsPort(port, tap, endpointId),
    },
    // The mechanism driver wants an unplugged tap and takes it from there.
    tap: { plug: async () => undefined, unplug: async () => undefined },
  };
}

/** Any other vif_type: kuryr-lib's external `<bindir>/<vif_type> bind|unbind ...` scripts. */
function scriptPlugger(opts: BinderOptions): Plugger {
  const scriptOpts = (port: Port) => ({
    bindir: opts.bindir,
    endpointId: port.device_id,
    timeoutMs: opts.scriptTimeoutMs,
  });
  return {
    plug: async (port, tap) => void (await runBindScript(port, tap, scriptOpts(port))),
    unplug: async (port, tap) => void (await runUnbindScript(port, tap, scriptOpts(port))),
  };
}

export function createHostBinder(opts: BinderOptions): HostBinder {
  const pluggers = builtInPluggers(opts);
  const scripts = scriptPlugger(opts);
  const pluggerFor = (vifType: string): Plugger | undefined =>
    pluggers[vifType] ?? (hasScript(opts.bindir, vifType) ? scripts : undefined);
  return {
    async bind(port, mtu) {
      const vifType = port['binding:vif_type'] ?? 'unbound';
      if (vifType === 'binding_failed' || vifType === 'unbound') {
        throw new BindingError(
          `Neutron could not bind port ${port.id} to host '${opts.host}' (binding:vif_type=${vifType}). ` +
            `Is a Neutron L2 agent alive on host '${opts.host}'? Check 'openstack network agent list --host ${opts.host}' ` +
            `and that [DEFAULT] host in kuryr.conf equals the agent's host`,
        );
      }
      const plugger = pluggerFor(vifType);
      if (!plugger) {
        throw new BindingError(
          `binding:vif_type '${vifType}' of port ${port.id} is not supported: built in are ${Object.keys(pluggers).join(', ')}, ` +
            `and there is no script ${opts.bindir}/${vifType} ([DEFAULT] bindir)`,
        );
      }
      const pair = await ensureVeth({ portId: port.id, mac: port.mac_address, mtu });
      try {
        await plugger.plug(port, pair.host);
      } catch (err) {
        await removeVeth(port.id).catch(() => undefined); // as kuryr-lib: no half-plugged veth
        throw err;
      }
      return pair;
    },
    async unbind(port) {
      const plugger = pluggerFor(port['binding:vif_type'] ?? 'unbound');
      if (plugger) await plugger.unplug(port, hostIfaceName(port.id));
      await removeVeth(port.id);
    },
    containerIface: (port) => containerIfaceName(port.id),
    vethState: (port) => vethState(port.id),
    recordEndpoint: (port, endpointId) => recordEndpoint(port.id, endpointId),
    recordedEndpoint: (port) => recordedEndpoint(port.id),
    recordPool: (port) => recordPool(port.id),
    portOfRecordedEndpoint,
    async identify(port, endpointId) {
      const plugger = pluggers[port['binding:vif_type'] ?? 'unbound'];
      await plugger?.identify?.(port, hostIfaceName(port.id), endpointId);
    },
  };
}

/** Where ovs-vsctl finds ovsdb-server by default: OVS runs on this host when it exists. */
const OVSDB_SOCKET = '/run/openvswitch/db.sock';

/**
 * Removes a leftover host end of a veth known only by name (`kuryr gc`, after a crash): out of any
 * OVS bridge that still has it as a port (with a hybrid plug's qbr/qvb/qvo), then the veth itself.
 * Deleting only the veth would leave a port row in br-int pointing at a missing device.
 */
export async function removeStrayHostIface(name: string, ovsdbSocket = OVSDB_SOCKET): Promise<void> {
  if (!name.startsWith(HOST_PREFIX)) {
    await deleteLink(name);
    return;
  }
  const portIdPrefix = name.slice(HOST_PREFIX.length); // what the tap/qvo/qbr names are made of
  if (existsSync(ovsdbSocket)) await unplugOvs({ id: portIdPrefix }, name, { bridge: '' });
  await removeVeth(portIdPrefix);
}
