// `--expose` / `-p` → a Neutron security group on the container's port, one ingress rule per
// contiguous port range and protocol, removed with the endpoint. Named as kuryr-libnetwork names
// it, but found through the port itself (kuryr-libnetwork looks the port up by a name its IPAM
// never gives, so its version never fires).
import { OptionKeys } from '../docker/protocol.js';
import type { NeutronClient } from '../neutron/client.js';
import { NeutronApiError } from '../neutron/errors.js';
import type { Port, SecurityGroup } from '../neutron/types.js';
import { InvalidRequestError } from '../util/errors.js';
import type { Catalog } from './catalog.js';
import { explained } from './explain.js';

/** IANA protocol numbers Docker uses → Neutron protocol names. */
const PROTOCOLS: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 132: 'sctp' };
export const EXPOSED_SG_DESCRIPTION = 'Docker exposed ports created by Kuryr.';

export function exposedGroupName(portId: string): string {
  return `${portId}-exposed_ports`;
}

export interface PortRange {
  protocol: string;
  min?: number;
  max?: number;
}

/** Docker's `[{"Proto":6,"Port":80}, ...]` → merged ranges per protocol. */
export function exposedRanges(raw: unknown): PortRange[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw))
    throw new InvalidRequestError(`${OptionKeys.exposedPorts} must be a list of {Proto, Port}`);
  const byProto = new Map<string, number[]>();
  for (const item of raw as { Proto?: number; Port?: number }[]) {
    const protocol = PROTOCOLS[Number(item.Proto)];
    if (!protocol)
      throw new InvalidRequestError(
        `exposed port ${JSON.stringify(item)}: protocol ${item.Proto} is not one of tcp, udp, sctp, icmp`,
      );
    const ports = byProto.get(protocol) ?? [];
    if (protocol !== 'icmp') ports.push(Number(item.Port));
    byProto.set(protocol, ports);
  }
  const ranges: PortRange[] = [];
  for (const [protocol, ports] of byProto) {
    if (protocol === 'icmp') {
      ranges.push({ protocol });
      continue;
    }
    const sorted = [...new Set(ports)].sort((a, b) => a - b);
    for (const p of sorted) {
      const last = ranges.at(-1);
      if (last && last.protocol === protocol && last.max !== undefined && p === last.max + 1) last.max = p;
      else ranges.push({ protocol, min: p, max: p });
    }
  }
  return ranges;
}

export class ExposedPorts {
  /** Security groups are nobody's memory; the port's groups are the catalog's, and change through it. */
  constructor(
    private readonly neutron: Pick<NeutronClient, 'list' | 'create' | 'delete'>,
    private readonly catalog: Catalog,
  ) {}

  /** Creates (or completes) the port's exposed-ports group and attaches it. Idempotent. Returns the port as updated. */
  async apply(port: Port, ranges: PortRange[]): Promise<Port | undefined> {
    if (ranges.length === 0) return undefined;
    const name = exposedGroupName(port.id);
    const group =
      (await this.neutron.list('security-groups', { name }))[0] ??
      (await explained(`creating security group ${name}`, () =>
        this.neutron.create('security-groups', {
          name,
          description: EXPOSED_SG_DESCRIPTION,
          project_id: port.project_id,
        }),
      ));
    const families = [...new Set(port.fixed_ips.map((f) => (f.ip_address.includes(':') ? 'IPv6' : 'IPv4')))];
    try {
      for (const r of ranges) {
        for (const ethertype of families) await this.addRule(group, r, ethertype);
      }
      if (!port.security_groups?.includes(group.id)) {
        return await explained(`attaching security group ${name} to port ${port.id}`, () =>
          this.catalog.updatePort(port, { security_groups: [...(port.security_groups ?? []), group.id] }),
        );
      }
      return port;
    } catch (err) {
      await this.neutron.delete('security-groups', group.id).catch(() => undefined);
      throw err;
    }
  }

  private async addRule(group: SecurityGroup, r: PortRange, ethertype: string): Promise<void> {
    try {
      await this.neutron.create('security-group-rules', {
        security_group_id: group.id,
        direction: 'ingress',
        ethertype,
        protocol: r.protocol,
        ...(r.min !== undefined ? { port_range_min: r.min, port_range_max: r.max } : {}),
      });
    } catch (err) {
      if (!(err instanceof NeutronApiError && err.type === 'SecurityGroupRuleExists')) throw err;
    }
  }

  /**
   * Detaches and deletes the port's exposed-ports group, if it has one; returns the port's groups
   * left, or undefined when there was none. A port with one group (its default) has none: no
   * Neutron call then.
   */
  async remove(port: Port): Promise<string[] | undefined> {
    const others = port.security_groups ?? [];
    if (others.length <= 1) return undefined;
    const [group] = await this.neutron.list('security-groups', {
      id: others,
      name: exposedGroupName(port.id),
    });
    if (!group) return undefined;
    await this.catalog
      .updatePort(port, { security_groups: others.filter((id) => id !== group.id) })
      .catch((err) => {
        if (!(err instanceof NeutronApiError && err.isNotFound)) throw err;
      });
    await this.neutron.delete('security-groups', group.id);
    return others.filter((id) => id !== group.id);
  }
}
