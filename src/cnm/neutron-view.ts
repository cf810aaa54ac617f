// Every lookup that maps a Docker object to its Neutron counterpart lives here, so handlers never
// repeat their own queries. Facts that cannot change while the Docker object exists (a Docker
// network's Neutron network ID and MTU, a pool's prefix, a pool's subnet) are remembered; anything
// else is read fresh. A cache miss always falls back to Neutron, so a restart loses nothing.
import type { NeutronClient } from '../neutron/client.js';
import type { Network, Port, Subnet, SubnetPool } from '../neutron/types.js';
import { InvalidRequestError, NotFoundError } from '../util/errors.js';
import { dockerIdTags } from './naming.js';

/**
 * Docker's PoolID: the Neutron subnetpool ID, plus "/<cidr>" when the Docker pool is one subnet
 * carved out of a larger, shared subnetpool (default pools, neutron.pool.* options).
 */
export interface PoolRef {
  subnetpoolId: string;
  cidr?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function parsePoolId(poolId: string): PoolRef {
  const slash = poolId.indexOf('/');
  const subnetpoolId = slash < 0 ? poolId : poolId.slice(0, slash);
  if (!UUID.test(subnetpoolId)) {
    throw new InvalidRequestError(
      `PoolID '${poolId}' was not issued by kuryr: expected a Neutron subnetpool ID`,
    );
  }
  return slash < 0 ? { subnetpoolId } : { subnetpoolId, cidr: poolId.slice(slash + 1) };
}

export function formatPoolId(ref: PoolRef): string {
  return ref.cidr ? `${ref.subnetpoolId}/${ref.cidr}` : ref.subnetpoolId;
}

export class NeutronView {
  private readonly networks = new Map<string, Network>();
  private readonly pools = new Map<string, SubnetPool>();
  private readonly poolSubnets = new Map<string, Subnet>();

  constructor(readonly neutron: NeutronClient) {}

  // ------------------------------------------------------------------ networks
  /** The Neutron network tagged with this Docker network ID, if any. */
  async networkFor(dockerNetworkId: string): Promise<Network | undefined> {
    const cached = this.networks.get(dockerNetworkId);
    if (cached) return cached;
    const found = await this.neutron.list('networks', { tags: dockerIdTags(dockerNetworkId).join(',') });
    if (found.length > 1) {
      throw new NotFoundError(
        `Docker network ${dockerNetworkId} maps to ${found.length} Neutron networks (${found.map((n) => n.id).join(', ')}); ` +
          'remove the extra kuryr.net.uuid tags so exactly one remains',
      );
    }
    if (found[0]) this.networks.set(dockerNetworkId, found[0]);
    return found[0];
  }

  async requireNetworkFor(dockerNetworkId: string): Promise<Network> {
    const net = await this.networkFor(dockerNetworkId);
    if (!net) {
      throw new NotFoundError(
        `Docker network ${dockerNetworkId.slice(0, 12)} has no Neutron network (no network tagged ${dockerIdTags(dockerNetworkId)[0]}). ` +
          'It was removed from Neutron behind Docker\'s back: remove it with "docker network rm" and create it again',
      );
    }
    return net;
  }

  rememberNetwork(dockerNetworkId: string, net: Network): void {
    this.networks.set(dockerNetworkId, net);
  }

  forgetNetwork(dockerNetworkId: string): void {
    this.networks.delete(dockerNetworkId);
  }

  // ------------------------------------------------------------------ pools and their subnets
  async subnetpool(id: string): Promise<SubnetPool> {
    const cached = this.pools.get(id);
    if (cached) return cached;
    const pool = await this.neutron.get('subnetpools', id).catch((err) => {
      throw (err as { isNotFound?: boolean }).isNotFound
        ? new NotFoundError(`Neutron subnetpool ${id} (Docker PoolID) no longer exists`)
        : err;
    });
    this.pools.set(id, pool);
    return pool;
  }

  rememberSubnetpool(pool: SubnetPool): void {
    this.pools.set(pool.id, pool);
  }

  /** The CIDR Docker sees for this pool. */
  async poolCidr(ref: PoolRef): Promise<string> {
    if (ref.cidr) return ref.cidr;
    const pool = await this.subnetpool(ref.subnetpoolId);
    const prefix = pool.prefixes[0];
    if (!prefix) throw new NotFoundError(`Neutron subnetpool ${pool.id} has no prefixes`);
    return prefix;
  }

  /** The Neutron subnet created for this Docker pool, once CreateNetwork has made it. */
  async subnetForPool(ref: PoolRef): Promise<Subnet | undefined> {
    const key = formatPoolId(ref);
    const cached = this.poolSubnets.get(key);
    if (cached) return cached;
    const subnets = await this.neutron.list('subnets', { subnetpool_id: ref.subnetpoolId, cidr: ref.cidr });
    // A pool we created holds one subnet; a shared pool is narrowed by cidr.
    const subnet = subnets[0];
    if (subnet) this.poolSubnets.set(key, subnet);
    return subnet;
  }

  forgetPool(ref: PoolRef): void {
    this.poolSubnets.delete(formatPoolId(ref));
    if (!ref.cidr) this.pools.delete(ref.subnetpoolId);
  }

  /** Drops cached subnets of a Neutron network (it is being deleted). */
  forgetSubnetsOf(networkId: string): void {
    for (const [key, subnet] of this.poolSubnets)
      if (subnet.network_id === networkId) this.poolSubnets.delete(key);
  }

  // ------------------------------------------------------------------ ports
  /** The port bound to a Docker endpoint: kuryr (and kuryr-libnetwork) set device_id = endpoint ID. */
  async portForEndpoint(endpointId: string): Promise<Port | undefined> {
    const ports = await this.neutron.list('ports', { device_id: endpointId });
    return ports[0];
  }

  async portsWithAddress(subnet: Pick<Subnet, 'id' | 'network_id'>, ip: string): Promise<Port[]> {
    return this.neutron.list('ports', {
      network_id: subnet.network_id,
      fixed_ips: [`subnet_id=${subnet.id}`, `ip_address=${ip}`],
    });
  }

  async subnets(ids: string[]): Promise<Subnet[]> {
    if (ids.length === 0) return [];
    return this.neutron.list('subnets', { id: ids });
  }
}
