// IPAM's hand-outs: which addresses of which port RequestAddress gave Docker for an endpoint that
// CreateEndpoint has not claimed yet. Docker asks once per address family for the same endpoint,
// and the second request must land on the port of the first. The ports themselves are the
// catalog's facts: only the port IDs and the subnets given live here.
import type { Port, Subnet } from '../neutron/types.js';
import { sameIp } from './addresses.js';
import { isExistingPort } from './existing-ports.js';

/** How long a hand-out waits for its CreateEndpoint (Docker's own plugin timeout is 30 s). */
const KEEP_MS = 10 * 60_000;

export class HandOuts {
  private readonly given = new Map<string, { subnets: Set<string>; at: number }>();

  constructor(private readonly portById: (id: string) => Port | undefined) {}

  /** RequestAddress gave Docker this port's address in `subnetId`. */
  record(portId: string, subnetId: string): void {
    const subnets = this.given.get(portId)?.subnets ?? new Set<string>();
    subnets.add(subnetId);
    this.given.delete(portId); // re-insert: most recent last
    this.given.set(portId, { subnets, at: Date.now() });
    // Hand-outs Docker never followed up (it gave up between calls) do not pile up.
    for (const [id, e] of this.given) {
      if (Date.now() - e.at < KEEP_MS) break; // oldest first
      this.given.delete(id);
    }
  }

  forget(portId: string): void {
    this.given.delete(portId);
  }

  /**
   * The port already handed out for the endpoint whose next address Docker asks for: with a MAC
   * (RequiresMACAddress), the unclaimed port with that MAC, or a user's port holding `wanted`
   * (its MAC is its own, not Docker's); without a MAC, the most recent unclaimed port on the
   * network that has an address in this subnet not yet given, or none of its family. Without a
   * MAC this relies on Docker serialising RequestAddress + CreateEndpoint per network.
   */
  pendingSibling(
    subnet: Pick<Subnet, 'id' | 'network_id' | 'ip_version'>,
    mac?: string,
    wanted?: string,
  ): Port | undefined {
    const family = (ip: string) => (ip.includes(':') ? 6 : 4);
    for (const [id, { subnets }] of [...this.given].reverse()) {
      const port = this.portById(id);
      if (!port || port.device_id) {
        this.given.delete(id); // claimed by CreateEndpoint, or gone
        continue;
      }
      if (port.network_id !== subnet.network_id || subnets.has(subnet.id)) continue;
      if (mac) {
        const holdsWanted =
          wanted !== undefined &&
          isExistingPort(port) &&
          port.fixed_ips.some((f) => f.subnet_id === subnet.id && sameIp(f.ip_address, wanted));
        if (port.mac_address.toLowerCase() === mac || holdsWanted) return port;
        continue;
      }
      const inSubnet = port.fixed_ips.some((f) => f.subnet_id === subnet.id);
      const sameFamily = port.fixed_ips.some((f) => family(f.ip_address) === subnet.ip_version);
      if (inSubnet || !sameFamily) return port;
    }
    return undefined;
  }
}
