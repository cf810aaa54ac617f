// What kuryr remembers about Neutron, and the one way to change it. Every lookup that maps a Docker
// object to its Neutron counterpart lives here, and so does every Neutron write that changes a
// remembered fact (creating, adopting, tagging, deleting networks, subnets, subnetpools and
// ports): a write and the memory of it cannot part. Facts that cannot change while the Docker
// object exists (a Docker network's Neutron network and MTU, a pool's prefix and subnet) are kept;
// anything else is read fresh. A miss always falls back to Neutron, so a restart loses nothing.
import type { NeutronClient } from '../neutron/client.js';
import { NeutronApiError } from '../neutron/errors.js';
import type { Collection, Network, Port, ResourceMap, Subnet, SubnetPool } from '../neutron/types.js';
import { runDetached } from '../util/context.js';
import { InvalidRequestError, NotFoundError } from '../util/errors.js';
import { handBack, takenTags } from './existing-ports.js';
import { dockerIdTags } from './naming.js';
import { describeRef, type ResourceRef } from './options.js';
import { formatPoolId, type PoolRef } from './pool-id.js';

/** Reads of what nobody remembers (candidate pools, ports by filter): no cache to keep true. */
export type NeutronReader = Pick<NeutronClient, 'get' | 'list'>;

/**
 * A subnet read started less than this ago serves every Join that needs those subnets (in flight
 * or answered; a start's own prefetch joins only one in flight); an older one is not used.
 */
const SUBNET_READ_FRESH_MS = 2_000;

/** A subnet read shared by the starts that need it, when it started, and whether it answered. */
interface SubnetRead {
  at: number;
  answered: boolean;
  subnets: Promise<Subnet[]>;
}

function notFound(err: unknown, message: string): never {
  throw err instanceof NeutronApiError && err.isNotFound ? new NotFoundError(message) : err;
}

const tolerateNotFound = (err: unknown) => {
  if (!(err instanceof NeutronApiError && err.isNotFound)) throw err;
};

/**
 * Where else a port's endpoint is written: on its host side (the binder), at CreateEndpoint,
 * ahead of Neutron's device_id, which is written behind Docker's answer.
 */
export interface EndpointRecords {
  portOfRecordedEndpoint(endpointId: string): string | undefined;
}

export class Catalog {
  private readonly networks = new Map<string, Network>();
  private readonly networksById = new Map<string, Network>();
  private readonly pools = new Map<string, SubnetPool>();
  /** PoolID → the subnet serving it. */
  private readonly poolSubnets = new Map<string, Subnet>();
  /** Subnetpools this process created for one --subnet, by CIDR: no lookup needed to find them. */
  private readonly ownPools = new Map<string, SubnetPool[]>();
  /** PoolIDs known to have no subnet yet (created here, CreateNetwork not done). */
  private readonly poolsWithoutSubnet = new Set<string>();
  /** Ports this process created, took or changed, by ID, with indexes by address and endpoint. */
  private readonly ports = new Map<string, Port>();
  private readonly portsByAddress = new Map<string, string>();
  private readonly portsByEndpoint = new Map<string, string>();
  /**
   * Recent subnet reads, by sorted IDs, shared by the starts that need them: a burst of 20 starts
   * on one network used to send 20 identical reads to a Neutron API worker busy with the burst,
   * and each Join waited 1-4 s for its own.
   */
  private readonly subnetReads = new Map<string, SubnetRead>();

  constructor(
    private readonly neutron: NeutronClient,
    private readonly records?: EndpointRecords,
  ) {}

  get reader(): NeutronReader {
    return this.neutron;
  }

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

  private rememberNetwork(dockerNetworkId: string, net: Network): void {
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

  /** A new Neutron network for a Docker network, tagged with its ID (undone if tagging fails). */
  async createNetwork(
    dockerNetworkId: string,
    attrs: Record<string, unknown>,
    extraTags: string[] = [],
  ): Promise<Network> {
    const net = await this.neutron.create('networks', attrs);
    const tags = [...dockerIdTags(dockerNetworkId), ...extraTags];
    try {
      // Neutron (Zed) does not accept tags in POST: a second call.
      await this.neutron.setTags('networks', net.id, tags);
    } catch (err) {
      await this.neutron.delete('networks', net.id).catch(() => undefined);
      throw err;
    }
    const tagged = { ...net, tags };
    this.rememberNetwork(dockerNetworkId, tagged);
    return tagged;
  }

  /** Marks an existing (or another host's) network as this Docker network's. */
  async adoptNetwork(dockerNetworkId: string, net: Network, addTags: string[]): Promise<Network> {
    const tags = [...new Set([...net.tags, ...addTags])];
    if (tags.length !== net.tags.length) await this.neutron.setTags('networks', net.id, tags);
    const tagged = { ...net, tags };
    this.rememberNetwork(dockerNetworkId, tagged);
    return tagged;
  }

  /** Rewrites the tags of a network that stays (a user's), from its tags read fresh. */
  async untagNetwork(networkId: string, keep: (tags: string[]) => string[]): Promise<void> {
    const current = await this.neutron.get('networks', networkId);
    const tags = keep(current.tags);
    if (tags.length !== current.tags.length) await this.neutron.setTags('networks', networkId, tags);
  }

  /** Deletes a network kuryr made; everything remembered about it goes with it. */
  async deleteNetwork(networkId: string): Promise<void> {
    await this.neutron.delete('networks', networkId);
    this.networksById.delete(networkId);
    for (const [key, subnet] of this.poolSubnets)
      if (subnet.network_id === networkId) this.poolSubnets.delete(key);
  }

  /** This Docker network is gone (or never made): forget its mapping and subnets' cache. */
  forgetNetwork(dockerNetworkId: string): void {
    const net = this.networks.get(dockerNetworkId);
    this.networks.delete(dockerNetworkId);
    if (!net) return;
    // Another Docker network may share the Neutron network (neutron.net.*): keep its facts then.
    if ([...this.networks.values()].some((n) => n.id === net.id)) return;
    this.networksById.delete(net.id);
    for (const [key, subnet] of this.poolSubnets)
      if (subnet.network_id === net.id) this.poolSubnets.delete(key);
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

  /** A subnetpool for one `--subnet` (PoolID = its ID): it has no subnet until CreateNetwork. */
  async createOwnPool(cidr: string, attrs: Record<string, unknown>): Promise<SubnetPool> {
    const pool = await this.neutron.create('subnetpools', attrs);
    this.pools.set(pool.id, pool);
    this.ownPools.set(cidr, [...(this.ownPools.get(cidr) ?? []), pool]);
    this.poolsWithoutSubnet.add(pool.id);
    return pool;
  }

  ownPoolsFor(cidr: string): SubnetPool[] {
    return this.ownPools.get(cidr) ?? [];
  }

  isOwnPool(id: string): boolean {
    return [...this.ownPools.values()].some((pools) => pools.some((p) => p.id === id));
  }

  /** Adds a tag to a subnetpool (kuryr's: a Swarm network's pools are marked so). */
  async markPool(id: string, tag: string): Promise<void> {
    const pool = await this.subnetpool(id);
    if (pool.tags.includes(tag)) return;
    await this.neutron.setTags('subnetpools', id, [...pool.tags, tag]);
    this.pools.set(id, { ...pool, tags: [...pool.tags, tag] });
  }

  async deleteSubnetpool(id: string): Promise<void> {
    await this.neutron.delete('subnetpools', id);
    this.forgetPool({ kind: 'own', subnetpoolId: id });
  }

  /**
   * A new subnet serving Docker pool `poolId`. `tagged`: marked with the PoolID (a subnet made
   * without its subnetpool, on a joined network), which is how it is found again.
   */
  async createSubnet(poolId: string, attrs: Record<string, unknown>, tagged: boolean): Promise<Subnet> {
    let subnet = await this.neutron.create('subnets', attrs);
    if (tagged) {
      try {
        await this.neutron.setTags('subnets', subnet.id, [poolId]);
      } catch (err) {
        await this.neutron.delete('subnets', subnet.id).catch(() => undefined);
        throw err;
      }
      subnet = { ...subnet, tags: [poolId] };
    }
    this.attach(poolId, subnet);
    return subnet;
  }

  /** An existing subnet now serves Docker pool `poolId` (tagged with it unless its subnetpool says so). */
  async adoptSubnet(poolId: string, subnet: Subnet, tag: boolean): Promise<Subnet> {
    let adopted = subnet;
    if (tag && !subnet.tags.includes(poolId)) {
      adopted = { ...subnet, tags: [...subnet.tags, poolId] };
      await this.neutron.setTags('subnets', subnet.id, adopted.tags);
    }
    this.attach(poolId, adopted);
    return adopted;
  }

  private attach(poolId: string, subnet: Subnet): void {
    this.poolSubnets.set(poolId, subnet);
    this.poolsWithoutSubnet.delete(poolId);
  }

  /** Hands a user's subnet back: it stays, without the PoolID tag. */
  async untagSubnet(subnet: Subnet, poolId: string): Promise<void> {
    this.detach(subnet.id);
    await this.neutron
      .setTags(
        'subnets',
        subnet.id,
        subnet.tags.filter((t) => t !== poolId),
      )
      .catch(tolerateNotFound);
  }

  async deleteSubnet(subnet: Subnet): Promise<void> {
    await this.neutron.delete('subnets', subnet.id);
    this.detach(subnet.id);
  }

  private detach(subnetId: string): void {
    for (const [key, s] of this.poolSubnets) if (s.id === subnetId) this.poolSubnets.delete(key);
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
    if (subnet) this.attach(key, subnet);
    return subnet;
  }

  /** Docker released the pool: nothing about it is remembered any more. */
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

  /**
   * Subnets by ID, read fresh (their gateway and host routes may change in Neutron): by a read
   * that started less than 2 s ago (never before this start began: see prefetchSubnets), shared
   * with the other starts that need them, or now.
   */
  async subnets(ids: string[]): Promise<Subnet[]> {
    if (ids.length === 0) return [];
    // A failed read is dropped: the second try is a new shared read (one for all the waiting starts).
    const shared = await this.sharedSubnetRead(ids).subnets.catch(() => undefined);
    return shared ?? this.sharedSubnetRead(ids).subnets;
  }

  /**
   * Starts reading subnets that a call about to come needs (Join, right after RequestAddress and
   * CreateEndpoint): read during this container's start, so as fresh as reading them in Join.
   */
  prefetchSubnets(ids: string[]): void {
    if (ids.length === 0) return;
    // A start joins a read still on its way, never one answered before it began: every start
    // learns that Neutron answers now (one during an outage fails, as it should).
    this.sharedSubnetRead(ids, false).subnets.catch(() => undefined); // Join reads again if this failed
  }

  private sharedSubnetRead(ids: string[], answeredWillDo = true): SubnetRead {
    const key = [...new Set(ids)].sort().join(',');
    const now = Date.now();
    const recent = this.subnetReads.get(key);
    if (recent && now - recent.at < SUBNET_READ_FRESH_MS && (answeredWillDo || !recent.answered))
      return recent;
    // Detached: its Neutron call belongs to no one Docker call (several starts may wait on it).
    const read: SubnetRead = {
      at: now,
      answered: false,
      subnets: runDetached(() => this.neutron.list('subnets', { id: ids })),
    };
    this.subnetReads.set(key, read);
    read.subnets.then(
      () => {
        read.answered = true;
      },
      () => {
        if (this.subnetReads.get(key) === read) this.subnetReads.delete(key); // the next start tries again
      },
    );
    // Old ones (networks nobody starts on now) do not pile up.
    for (const [k, v] of this.subnetReads) if (now - v.at >= SUBNET_READ_FRESH_MS) this.subnetReads.delete(k);
    return read;
  }

  // ------------------------------------------------------------------ ports
  /** Remembers a port this process made, took or changed, under its addresses and its endpoint. */
  rememberPort(port: Port): void {
    const before = this.ports.get(port.id);
    if (before) this.unindex(before);
    this.ports.set(port.id, port);
    for (const f of port.fixed_ips) this.portsByAddress.set(`${port.network_id}|${f.ip_address}`, port.id);
    if (port.device_id) this.portsByEndpoint.set(port.device_id, port.id);
  }

  private unindex(port: Port): void {
    for (const f of port.fixed_ips) {
      const key = `${port.network_id}|${f.ip_address}`;
      if (this.portsByAddress.get(key) === port.id) this.portsByAddress.delete(key);
    }
    if (port.device_id && this.portsByEndpoint.get(port.device_id) === port.id)
      this.portsByEndpoint.delete(port.device_id);
  }

  forgetPort(portId: string): void {
    const port = this.ports.get(portId);
    if (port) this.unindex(port);
    this.ports.delete(portId);
  }

  /** The endpoint is gone; its port (Docker's address until ReleaseAddress) is still known by address. */
  forgetEndpoint(endpointId: string): void {
    this.portsByEndpoint.delete(endpointId);
  }

  cachedPort(portId: string): Port | undefined {
    return this.ports.get(portId);
  }

  cachedPortAt(networkId: string, ip: string): Port | undefined {
    const id = this.portsByAddress.get(`${networkId}|${ip}`);
    return id ? this.ports.get(id) : undefined;
  }

  /** The port bound to a Docker endpoint: kuryr (and kuryr-libnetwork) set device_id = endpoint ID. */
  async portForEndpoint(endpointId: string): Promise<Port | undefined> {
    const id = this.portsByEndpoint.get(endpointId);
    const cached = id ? this.ports.get(id) : undefined;
    if (cached) return cached;
    const [port] = await this.neutron.list('ports', { device_id: endpointId });
    if (port) {
      this.rememberPort(port);
      return port;
    }
    // A warm port given to the endpoint by a daemon that died before its device_id reached
    // Neutron: its host side names the endpoint (the write is repaired at start-up).
    const recorded = this.records?.portOfRecordedEndpoint(endpointId);
    if (!recorded) return undefined;
    const found = await this.neutron.get('ports', recorded).catch((err) => void tolerateNotFound(err));
    if (!found || (found.device_id && found.device_id !== endpointId)) return undefined;
    const claimed = { ...found, device_id: endpointId };
    this.rememberPort(claimed);
    return claimed;
  }

  async portsWithAddress(subnet: Pick<Subnet, 'id' | 'network_id'>, ip: string): Promise<Port[]> {
    return this.neutron.list('ports', {
      network_id: subnet.network_id,
      fixed_ips: [`subnet_id=${subnet.id}`, `ip_address=${ip}`],
    });
  }

  /** A new port (not remembered until it is handed out). */
  createPort(attrs: Record<string, unknown>): Promise<Port> {
    return this.neutron.create('ports', attrs);
  }

  /** New ports in one request (the warm pool). */
  createPorts(attrs: Record<string, unknown>[]): Promise<Port[]> {
    return this.neutron.createMany('ports', attrs);
  }

  /** Updates a port (and its tags, when given) and remembers the result. */
  async updatePort(port: Port, attrs: Record<string, unknown>, tags?: string[]): Promise<Port> {
    const [updated] = await Promise.all([
      this.neutron.update('ports', port.id, attrs),
      tags ? this.neutron.setTags('ports', port.id, tags) : undefined,
    ]);
    const result = { ...updated, tags: tags ?? updated.tags };
    this.rememberPort(result);
    return result;
  }

  /**
   * Writes fields nothing else changes (an endpoint's identity, behind Docker's answer) and its
   * tags. What the process learnt of the port meanwhile (its security groups, exposed after Join)
   * is kept: the PUT's answer may predate it.
   */
  async writePortFields(port: Port, attrs: Partial<Port>, tags: string[]): Promise<Port> {
    const [updated] = await Promise.all([
      this.neutron.update('ports', port.id, attrs),
      this.neutron.setTags('ports', port.id, tags),
    ]);
    const current = this.ports.get(port.id);
    const result = current ? { ...current, ...attrs, tags } : { ...updated, tags };
    this.rememberPort(result);
    return result;
  }

  /**
   * Writes a port's identity back to a warm port's (it went back to the pool). Not remembered:
   * the pool holds it, and the start that takes it next remembers its own identity.
   */
  async resetPortIdentity(portId: string, attrs: Partial<Port>, tags: string[]): Promise<void> {
    // A container gone before its identity was written (the write is dropped at DeleteEndpoint)
    // left nothing to reset: a GET instead of two writes, which cost neutron-server far more.
    const now = await this.neutron.get('ports', portId);
    const fields = Object.entries(attrs).some(([k, v]) => now[k as keyof Port] !== v);
    const sameTags = now.tags.length === tags.length && tags.every((t) => now.tags.includes(t));
    await Promise.all([
      fields ? this.neutron.update('ports', portId, attrs) : undefined,
      sameTags ? undefined : this.neutron.setTags('ports', portId, tags),
    ]);
  }

  /** Replaces a port's tags and remembers them. */
  async setPortTags(port: Port, tags: string[]): Promise<Port> {
    await this.neutron.setTags('ports', port.id, tags);
    const tagged = { ...(this.ports.get(port.id) ?? port), tags };
    this.rememberPort(tagged);
    return tagged;
  }

  /** Marks a user's free port as taken by kuryr, recording what binding it will change. */
  async takePort(port: Port): Promise<Port> {
    const tags = takenTags(port);
    await this.neutron.setTags('ports', port.id, tags);
    const taken = { ...port, tags };
    this.rememberPort(taken);
    return taken;
  }

  /** Hands a user's port back as kuryr found it (it stays in Neutron). */
  async handBackPort(port: Port): Promise<void> {
    this.forgetPort(port.id);
    await handBack(this.neutron, port).catch(tolerateNotFound);
  }

  async deletePort(portId: string): Promise<void> {
    this.forgetPort(portId);
    await this.neutron.delete('ports', portId);
  }
}
