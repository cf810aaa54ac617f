// Every lookup that maps a Docker object to its Neutron counterpart lives here, so handlers never
// repeat their own queries. Facts that cannot change while the Docker object exists (a Docker
// network's Neutron network ID and MTU, a pool's prefix, a pool's subnet) are remembered; anything
// else is read fresh. A cache miss always falls back to Neutron, so a restart loses nothing.
import type { NeutronClient } from '../neutron/client.js';
import { NeutronApiError } from '../neutron/errors.js';
import type { Collection, Network, Port, ResourceMap, Subnet, SubnetPool } from '../neutron/types.js';
import { InvalidRequestError, NotFoundError } from '../util/errors.js';
import { dockerIdTags } from './naming.js';
import { describeRef, type ResourceRef } from './options.js';

/**
 * Docker's PoolID, one of:
 *  - `<subnetpool-id>`: a subnetpool kuryr made for one `--subnet` (also kuryr-libnetwork's form);
 *  - `<subnetpool-id>/<cidr>`: one subnet carved out of a shared subnetpool (default pools,
 *    `neutron.pool.*`);
 *  - `subnet:<subnet-id>`: an existing Neutron subnet (`neutron.subnet.*`).
 */
export type PoolRef =
  | { kind: 'own'; subnetpoolId: string }
  | { kind: 'carved'; subnetpoolId: string; cidr: string }
  | { kind: 'subnet'; subnetId: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SUBNET_PREFIX = 'subnet:';

export function parsePoolId(poolId: string): PoolRef {
  const bad = () => new InvalidRequestError(`PoolID '${poolId}' was not issued by kuryr`);
  if (poolId.startsWith(SUBNET_PREFIX)) {
    const subnetId = poolId.slice(SUBNET_PREFIX.length);
    if (!UUID.test(subnetId)) throw bad();
    return { kind: 'subnet', subnetId };
  }
  const slash = poolId.indexOf('/');
  const subnetpoolId = slash < 0 ? poolId : poolId.slice(0, slash);
  if (!UUID.test(subnetpoolId)) throw bad();
  return slash < 0
    ? { kind: 'own', subnetpoolId }
    : { kind: 'carved', subnetpoolId, cidr: poolId.slice(slash + 1) };
}

export function formatPoolId(ref: PoolRef): string {
  if (ref.kind === 'subnet') return SUBNET_PREFIX + ref.subnetId;
  return ref.kind === 'carved' ? `${ref.subnetpoolId}/${ref.cidr}` : ref.subnetpoolId;
}

function notFound(err: unknown, message: string): never {
  throw err instanceof NeutronApiError && err.isNotFound ? new NotFoundError(message) : err;
}

export class NeutronView {
  private readonly networks = new Map<string, Network>();
  private readonly networksById = new Map<string, Network>();
  private readonly pools = new Map<string, SubnetPool>();
  private readonly poolSubnets = new Map<string, Subnet>();
  /** Subnetpools this process created for one --subnet, by CIDR: no lookup needed to find them. */
  private readonly ownPools = new Map<string, SubnetPool[]>();
  /** PoolIDs known to have no subnet yet (created here, CreateNetwork not done). */
  private readonly poolsWithoutSubnet = new Set<string>();
  /** Ports this process created or bound, by "<network-id>|<ip>" and by endpoint. */
  private readonly portsByAddress = new Map<string, Port>();
  private readonly portsByEndpoint = new Map<string, Port>();

  constructor(readonly neutron: NeutronClient) {}

  // ------------------------------------------------------------------ user-named resources
  /** A network, subnet or subnetpool the user named with a neutron.* option: must exist, once. */
  async findByRef<C extends 'networks' | 'subnets' | 'subnetpools'>(
    collection: C,
    ref: ResourceRef,
  ): Promise<ResourceMap[C]> {
    const kind = collection.replace(/s$/, '');
    if (ref.uuid) {
      return this.neutron
        .get(collection, ref.uuid)
        .catch((err) => notFound(err, `${describeRef(kind, ref)} does not exist`));
    }
    const found = await this.neutron.list(collection as Collection, { name: ref.name });
    if (found.length !== 1) {
      throw new InvalidRequestError(
        found.length === 0
          ? `${describeRef(kind, ref)} does not exist`
          : `${found.length} Neutron ${kind}s are named '${ref.name}': use neutron.${kind === 'subnetpool' ? 'pool' : kind === 'network' ? 'net' : kind}.uuid`,
      );
    }
    return found[0] as ResourceMap[C];
  }

  // ------------------------------------------------------------------ networks
  /** The Neutron network tagged with this Docker network ID, if any. */
  async networkFor(dockerNetworkId: string): Promise<Network | undefined> {
    const cached = this.networks.get(dockerNetworkId);
    if (cached) return cached;
    const found = await this.taggedNetworks(dockerNetworkId);
    if (found.length > 1) {
      throw new NotFoundError(
        `Docker network ${dockerNetworkId.slice(0, 12)} maps to ${found.length} Neutron networks (${found.map((n) => n.id).join(', ')}); ` +
          'remove the kuryr.net.uuid tags from all but one',
      );
    }
    if (found[0]) this.rememberNetwork(dockerNetworkId, found[0]);
    return found[0];
  }

  cachedNetworkFor(dockerNetworkId: string): Network | undefined {
    return this.networks.get(dockerNetworkId);
  }

  taggedNetworks(dockerNetworkId: string): Promise<Network[]> {
    return this.neutron.list('networks', { tags: dockerIdTags(dockerNetworkId).join(',') });
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
    this.networksById.set(net.id, net);
  }

  /** A Neutron network by ID (its MTU, for binding); cached, as the MTU of a network in use is fixed. */
  async networkById(id: string): Promise<Network> {
    const cached = this.networksById.get(id);
    if (cached) return cached;
    const net = await this.neutron
      .get('networks', id)
      .catch((err) => notFound(err, `Neutron network ${id} no longer exists`));
    this.networksById.set(id, net);
    return net;
  }

  forgetNetwork(dockerNetworkId: string): void {
    const net = this.networks.get(dockerNetworkId);
    this.networks.delete(dockerNetworkId);
    // Another Docker network may share the Neutron network (neutron.net.*): keep its MTU then.
    if (net && ![...this.networks.values()].some((n) => n.id === net.id)) this.networksById.delete(net.id);
  }

  // ------------------------------------------------------------------ pools and their subnets
  async subnetpool(id: string): Promise<SubnetPool> {
    const cached = this.pools.get(id);
    if (cached) return cached;
    const pool = await this.neutron
      .get('subnetpools', id)
      .catch((err) => notFound(err, `Neutron subnetpool ${id} (a Docker PoolID) no longer exists`));
    this.pools.set(id, pool);
    return pool;
  }

  rememberSubnetpool(pool: SubnetPool): void {
    this.pools.set(pool.id, pool);
  }

  /** A subnetpool this process just made for `cidr`: it has no subnet until CreateNetwork. */
  rememberOwnPool(cidr: string, pool: SubnetPool): void {
    this.pools.set(pool.id, pool);
    this.ownPools.set(cidr, [...(this.ownPools.get(cidr) ?? []), pool]);
    this.poolsWithoutSubnet.add(pool.id);
  }

  ownPoolsFor(cidr: string): SubnetPool[] {
    return this.ownPools.get(cidr) ?? [];
  }

  isOwnPool(id: string): boolean {
    return [...this.ownPools.values()].some((pools) => pools.some((p) => p.id === id));
  }

  rememberPoolSubnet(poolId: string, subnet: Subnet): void {
    this.poolSubnets.set(poolId, subnet);
    this.poolsWithoutSubnet.delete(poolId);
  }

  cachedPoolSubnet(poolId: string): Subnet | undefined {
    return this.poolSubnets.get(poolId);
  }

  /** The CIDR Docker sees for this pool. */
  async poolCidr(ref: PoolRef): Promise<string> {
    if (ref.kind === 'subnet') return (await this.subnet(ref.subnetId)).cidr;
    if (ref.kind === 'carved') return ref.cidr;
    const prefix = (await this.subnetpool(ref.subnetpoolId)).prefixes[0];
    if (!prefix) throw new NotFoundError(`Neutron subnetpool ${ref.subnetpoolId} has no prefixes`);
    return prefix;
  }

  async subnet(id: string): Promise<Subnet> {
    return this.neutron
      .get('subnets', id)
      .catch((err) => notFound(err, `Neutron subnet ${id} no longer exists`));
  }

  /**
   * The Neutron subnet serving this Docker pool, once CreateNetwork has made (or adopted) it:
   * by subnetpool (kuryr's and kuryr-libnetwork's subnets), else by the PoolID tag that marks an
   * adopted pre-existing subnet.
   */
  async subnetForPool(ref: PoolRef): Promise<Subnet | undefined> {
    const key = formatPoolId(ref);
    const cached = this.poolSubnets.get(key);
    if (cached) return cached;
    if (this.poolsWithoutSubnet.has(key)) return undefined;
    let subnet: Subnet | undefined;
    if (ref.kind === 'subnet') {
      subnet = await this.neutron.get('subnets', ref.subnetId).catch((err) => {
        if (err instanceof NeutronApiError && err.isNotFound) return undefined;
        throw err;
      });
    } else {
      const cidr = ref.kind === 'carved' ? ref.cidr : undefined;
      subnet = (await this.neutron.list('subnets', { subnetpool_id: ref.subnetpoolId, cidr }))[0];
      subnet ??= (await this.neutron.list('subnets', { tags: key }))[0];
    }
    if (subnet) this.poolSubnets.set(key, subnet);
    return subnet;
  }

  forgetPool(ref: PoolRef): void {
    const key = formatPoolId(ref);
    this.poolSubnets.delete(key);
    this.poolsWithoutSubnet.delete(key);
    if (ref.kind === 'own') {
      this.pools.delete(ref.subnetpoolId);
      for (const [cidr, pools] of this.ownPools) {
        const rest = pools.filter((p) => p.id !== ref.subnetpoolId);
        if (rest.length) this.ownPools.set(cidr, rest);
        else this.ownPools.delete(cidr);
      }
    }
  }

  /** Drops cached subnets of a Neutron network (it is being deleted or released). */
  forgetSubnetsOf(networkId: string): void {
    for (const [key, subnet] of this.poolSubnets)
      if (subnet.network_id === networkId) this.poolSubnets.delete(key);
  }

  // ------------------------------------------------------------------ ports
  /** Remembers a port this process made or changed, under its addresses and its endpoint. */
  rememberPort(port: Port): void {
    for (const f of port.fixed_ips) this.portsByAddress.set(`${port.network_id}|${f.ip_address}`, port);
    if (port.device_id) this.portsByEndpoint.set(port.device_id, port);
  }

  forgetPort(port: Pick<Port, 'network_id' | 'fixed_ips' | 'device_id'>): void {
    for (const f of port.fixed_ips) this.portsByAddress.delete(`${port.network_id}|${f.ip_address}`);
    if (port.device_id) this.portsByEndpoint.delete(port.device_id);
  }

  forgetEndpoint(endpointId: string): void {
    this.portsByEndpoint.delete(endpointId);
  }

  /** A port this process made on the network with this MAC and no endpoint yet (dual stack's first half). */
  cachedUnboundPortWithMac(networkId: string, mac: string): Port | undefined {
    for (const port of this.portsByAddress.values()) {
      if (port.network_id === networkId && !port.device_id && port.mac_address.toLowerCase() === mac)
        return port;
    }
    return undefined;
  }

  cachedPortAt(networkId: string, ip: string): Port | undefined {
    return this.portsByAddress.get(`${networkId}|${ip}`);
  }

  /** The port bound to a Docker endpoint: kuryr (and kuryr-libnetwork) set device_id = endpoint ID. */
  async portForEndpoint(endpointId: string): Promise<Port | undefined> {
    const cached = this.portsByEndpoint.get(endpointId);
    if (cached) return cached;
    const ports = await this.neutron.list('ports', { device_id: endpointId });
    if (ports[0]) this.rememberPort(ports[0]);
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
