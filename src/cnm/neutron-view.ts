// Every lookup that maps a Docker object to its Neutron counterpart lives here, so handlers never
// repeat their own queries. Facts that cannot change while the Docker object exists (a Docker
// network's Neutron network ID and MTU, a pool's prefix, a pool's subnet) are remembered; anything
// else is read fresh. A cache miss always falls back to Neutron, so a restart loses nothing.
import type { NeutronClient } from '../neutron/client.js';
import { NeutronApiError } from '../neutron/errors.js';
import type { Collection, Network, Port, ResourceMap, Subnet, SubnetPool } from '../neutron/types.js';
import { runDetached } from '../util/context.js';
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

/** How long a hand-out waits for its CreateEndpoint (Docker's own plugin timeout is 30 s). */
const HANDED_OUT_KEEP_MS = 10 * 60_000;

/** A prefetched subnet read older than this is not used: Join reads again. */
const PREFETCH_FRESH_MS = 2_000;

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
  /** Ports whose addresses RequestAddress gave Docker, until CreateEndpoint claims them. */
  private readonly handedOut = new Map<string, { port: Port; given: Set<string>; at: number }>();
  /** Subnet reads started ahead of Join, by sorted IDs. */
  private readonly prefetched = new Map<string, { at: number; subnets: Promise<Subnet[]> }>();
  /** Background writes per port, in order, and how to start the waiting one early. */
  private readonly writes = new Map<string, Promise<void>>();
  private readonly startNow = new Map<string, () => void>();

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
    if (port.device_id) {
      this.portsByEndpoint.set(port.device_id, port);
      this.handedOut.delete(port.id);
    } else {
      const pending = this.handedOut.get(port.id);
      if (pending) pending.port = port;
    }
  }

  forgetPort(port: Pick<Port, 'id' | 'network_id' | 'fixed_ips' | 'device_id'>): void {
    this.handedOut.delete(port.id);
    for (const f of port.fixed_ips) this.portsByAddress.delete(`${port.network_id}|${f.ip_address}`);
    if (port.device_id) this.portsByEndpoint.delete(port.device_id);
  }

  /** A port of ours changed (its addresses): the cache follows, a pending hand-out stays pending. */
  replacePort(before: Port, after: Port): void {
    for (const f of before.fixed_ips) this.portsByAddress.delete(`${before.network_id}|${f.ip_address}`);
    this.rememberPort(after);
  }

  forgetEndpoint(endpointId: string): void {
    this.portsByEndpoint.delete(endpointId);
  }

  /**
   * Records that RequestAddress gave Docker this port's address in `subnetId`. Docker asks once per
   * address family for the same endpoint, then CreateEndpoint claims the port (device_id).
   */
  handOut(port: Port, subnetId: string): void {
    const given = this.handedOut.get(port.id)?.given ?? new Set<string>();
    given.add(subnetId);
    this.handedOut.delete(port.id); // re-insert: most recent last
    this.handedOut.set(port.id, { port, given, at: Date.now() });
    // Hand-outs Docker never followed up (it gave up between calls) do not pile up.
    for (const [id, e] of this.handedOut) {
      if (Date.now() - e.at < HANDED_OUT_KEEP_MS) break; // oldest first
      this.handedOut.delete(id);
    }
  }

  /**
   * The port already handed out for the endpoint whose next address Docker asks for: with a MAC
   * (RequiresMACAddress), the unclaimed port with that MAC; without one, the most recent unclaimed
   * port on the network that has an address in this subnet not yet given, or none of its family.
   * Without a MAC this relies on Docker serialising RequestAddress + CreateEndpoint per network.
   */
  pendingSibling(subnet: Pick<Subnet, 'id' | 'network_id' | 'ip_version'>, mac?: string): Port | undefined {
    const family = (ip: string) => (ip.includes(':') ? 6 : 4);
    const entries = [...this.handedOut.values()].reverse();
    for (const { port, given } of entries) {
      if (port.network_id !== subnet.network_id || port.device_id || given.has(subnet.id)) continue;
      if (mac) {
        if (port.mac_address.toLowerCase() === mac) return port;
        continue;
      }
      const inSubnet = port.fixed_ips.some((f) => f.subnet_id === subnet.id);
      const sameFamily = port.fixed_ips.some((f) => family(f.ip_address) === subnet.ip_version);
      if (inSubnet || !sameFamily) return port;
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

  /** Subnets by ID, read fresh (their gateway and host routes may change in Neutron). */
  async subnets(ids: string[]): Promise<Subnet[]> {
    if (ids.length === 0) return [];
    const key = [...new Set(ids)].sort().join(',');
    const early = this.prefetched.get(key);
    this.prefetched.delete(key);
    if (early && Date.now() - early.at < PREFETCH_FRESH_MS) {
      const subnets = await early.subnets.catch(() => undefined);
      if (subnets) return subnets;
    }
    return this.neutron.list('subnets', { id: ids });
  }

  /**
   * Starts reading subnets that a call about to come needs (Join, right after RequestAddress and
   * CreateEndpoint): read during this container's start, so as fresh as reading them in Join.
   */
  prefetchSubnets(ids: string[]): void {
    if (ids.length === 0) return;
    const subnets = runDetached(() => this.neutron.list('subnets', { id: ids }));
    subnets.catch(() => undefined); // Join reads again if this failed
    this.prefetched.set([...new Set(ids)].sort().join(','), { at: Date.now(), subnets });
    // Unused ones (Docker gave up between the calls) do not pile up.
    for (const [k, v] of this.prefetched)
      if (Date.now() - v.at > PREFETCH_FRESH_MS) this.prefetched.delete(k);
  }

  // ------------------------------------------------------------------ writes behind
  /**
   * Runs a Neutron write that Docker need not wait for (recording an endpoint's identity on a port
   * that is already bound and plugged), `delayMs` later, retried a little. Later calls about the
   * same port start it at once if it has not started, and wait for it, with `settled`.
   */
  writeBehind(
    portId: string,
    what: string,
    write: () => Promise<unknown>,
    onFail: (msg: string) => void,
    delayMs = 0,
  ): void {
    const previous = this.writes.get(portId) ?? Promise.resolve();
    const attempt = async () => {
      for (let i = 0; ; i++) {
        try {
          await write();
          return;
        } catch (err) {
          if (err instanceof NeutronApiError && err.isNotFound) return; // the port went meanwhile
          if (i >= 2 || (err instanceof NeutronApiError && err.httpStatus < 500)) {
            onFail(`${what} failed: ${err instanceof Error ? err.message : String(err)}`);
            return;
          }
          await new Promise((r) => setTimeout(r, 500 * (i + 1)));
        }
      }
    };
    const due = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delayMs);
      this.startNow.set(portId, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    const done: Promise<void> = runDetached(() => previous.then(() => due).then(attempt))
      .catch(() => undefined) // attempt() reports through onFail; nothing may reject unhandled
      .finally(() => {
        if (this.writes.get(portId) === done) {
          this.writes.delete(portId);
          this.startNow.delete(portId);
        }
      });
    this.writes.set(portId, done);
  }

  /** Starts this port's background writes now and resolves when they are done. */
  async settled(portId: string): Promise<void> {
    this.startNow.get(portId)?.();
    await this.writes.get(portId);
  }

  /** Starts all background writes now and resolves when they are done (shutdown). */
  async settleAll(): Promise<void> {
    for (const start of this.startNow.values()) start();
    await Promise.all(this.writes.values());
  }
}
