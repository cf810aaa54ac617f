// Docker IPAM → Neutron. A Docker pool is a Neutron subnetpool made for one `--subnet` (so the
// same CIDR can back several Docker networks, as Neutron allows overlapping IPs), a subnet carved
// out of a shared subnetpool (no `--subnet`: the default pools `kuryr`/`kuryr6`; or
// `neutron.pool.*`), or an existing subnet (`neutron.subnet.*`). An address is a Neutron port,
// created unbound here and bound to the host by the network driver's CreateEndpoint.
import { randomBytes } from 'node:crypto';
import type {
  AddressSpacesResponse,
  EmptyResponse,
  IpamCapabilitiesResponse,
  IpamDriver,
  PoolIdRequest,
  ReleaseAddressRequest,
  RequestAddressRequest,
  RequestAddressResponse,
  RequestPoolRequest,
  RequestPoolResponse,
} from '../docker/protocol.js';
import { OptionKeys } from '../docker/protocol.js';
import { NeutronApiError, NeutronUnavailableError } from '../neutron/errors.js';
import type { Port, Subnet, SubnetPool } from '../neutron/types.js';
import { InvalidRequestError, NotFoundError } from '../util/errors.js';
import { KeyedMutex } from '../util/keyed-mutex.js';
import {
  contains,
  firstFreeBlock,
  firstHost,
  networkOf,
  parseCidr,
  parseIp,
  prefixLength,
  sameIp,
} from './addresses.js';
import type { Catalog } from './catalog.js';
import { canTake, isExistingPort, isKuryrCreatedPort } from './existing-ports.js';
import { explained, explainNeutron } from './explain.js';
import { HandOuts } from './hand-outs.js';
import {
  DEVICE_OWNER,
  EXISTING_NET_TAG_PREFIX,
  EXISTING_POOL_TAG,
  IP_RANGE_MARK,
  isKuryrPortOwner,
  isKuryrSubnet,
  NET_TAG_LOW,
  SWARM_TAG_PREFIX,
  subnetPoolName,
  UNBOUND_PORT_NAME,
} from './naming.js';
import { parseNeutronOptions } from './options.js';
import { formatPoolId, type PoolRef, parsePoolId } from './pool-id.js';
import type { PortBinding } from './port-binding.js';
import type { Teardowns } from './teardowns.js';
import type { WarmPool } from './warm-pool.js';
import type { WriteBehind } from './write-behind.js';

/** `undefined` for something gone (Neutron 404, or the catalog's NotFound); other errors go on. */
function onlyNotFound(err: unknown): undefined {
  if ((err instanceof NeutronApiError && err.isNotFound) || err instanceof NotFoundError) return undefined;
  throw err;
}

export interface IpamSettings {
  localAddressSpace: string;
  globalAddressSpace: string;
  subnetpoolNamePrefix: string;
  defaultSubnetpools: { 4: string; 6: string };
  /** Tell Docker to replay RequestPool/RequestAddress after a daemon restart (and answer them idempotently). */
  requestReplay: boolean;
  /**
   * What `--ip-range` becomes: `allocation_pool` (Docker's meaning: the subnet is --subnet, its
   * allocation pool the range) or `subnet` (kuryr-libnetwork's: subnet and subnetpool are the range).
   */
  ipRangeMode: 'allocation_pool' | 'subnet';
  /**
   * `global` (Swarm): a manager hands out every task's address for whichever node runs it, so an
   * address request without an address reserves an unbound port (the node binds it at
   * CreateEndpoint), and every node's requests for the same pool and address find the manager's.
   */
  scope: 'local' | 'global';
}

export interface IpamHooks {
  warn(message: string): void;
}

/**
 * A MAC for a port when Docker gives none (warm pool on): chosen here rather than by Neutron so a
 * POST that timed out can still be recognised by it. Neutron's default base (fa:16:3e), random rest.
 */
function randomMac(): string {
  return ['fa', '16', '3e', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** How long a start that found the warm pool empty waits for the batch being made. */
const BURST_WAIT_MS = 5_000;

/** The port has an address in the subnet (the wanted one, if given). */
function holdsAddress(port: Port, subnetId: string, wanted?: string): boolean {
  return port.fixed_ips.some((f) => f.subnet_id === subnetId && (!wanted || sameIp(f.ip_address, wanted)));
}

export class NeutronIpam implements IpamDriver {
  /** Carving from a shared pool is check-then-reserve: one at a time per pool. */
  private readonly carveLocks = new KeyedMutex();
  /** CIDRs handed to Docker from shared pools whose subnet may not exist yet. */
  private readonly reserved = new Map<string, Set<string>>();
  /** Own subnetpools being deleted in the background (after a network rm). */
  private readonly releasing = new Set<string>();
  /** Addresses given to Docker for endpoints CreateEndpoint has not claimed yet. */
  private readonly handOuts: HandOuts;
  private warnedMacs = false;

  constructor(
    private readonly catalog: Catalog,
    private readonly ports: PortBinding,
    private readonly pool: WarmPool,
    private readonly writes: WriteBehind,
    private readonly teardowns: Teardowns,
    private readonly settings: IpamSettings,
    private readonly hooks: IpamHooks = { warn: () => undefined },
  ) {
    this.handOuts = new HandOuts((id) => catalog.cachedPort(id));
  }

  /** Reads of what nobody remembers; every write goes through the catalog. */
  private get neutron() {
    return this.catalog.reader;
  }

  async getCapabilities(): Promise<IpamCapabilitiesResponse> {
    // Docker is never asked for a MAC (kuryr-libnetwork asks): a warm port exists before Docker
    // would pick one, and Neutron changes no MAC of a bound port, so containers take their port's
    // MAC. Docker reads this once per plugin activation: answering the same whatever the pool's
    // settings means turning the pool on, off or resizing it needs no Docker restart.
    // `--mac-address` still works: CreateEndpoint carries it, and the port is given it there.
    return {
      RequiresMACAddress: false,
      RequiresRequestReplay: this.settings.requestReplay,
    };
  }

  async getDefaultAddressSpaces(): Promise<AddressSpacesResponse> {
    return {
      LocalDefaultAddressSpace: this.settings.localAddressSpace,
      GlobalDefaultAddressSpace: this.settings.globalAddressSpace,
    };
  }

  // ------------------------------------------------------------------ pools
  async requestPool(req: RequestPoolRequest): Promise<RequestPoolResponse> {
    const opts = parseNeutronOptions(req.Options, '--ipam-opt');
    const family = req.V6 ? 6 : 4;
    let cidr: string | undefined;
    if (req.Pool) {
      const parsed = parseCidr(req.Pool, 'Pool (--subnet)');
      if (parsed.version !== family) {
        throw new InvalidRequestError(
          `--subnet ${req.Pool} is IPv${parsed.version} but Docker asked for an IPv${family} pool`,
        );
      }
      cidr = networkOf(req.Pool);
    }
    let ipRange: string | undefined;
    if (req.SubPool) {
      if (
        !cidr ||
        parseCidr(req.SubPool, 'SubPool (--ip-range)').version !== family ||
        !contains(cidr, req.SubPool.split('/')[0] ?? '')
      ) {
        throw new InvalidRequestError(`--ip-range ${req.SubPool} must lie inside --subnet ${req.Pool}`);
      }
      ipRange = networkOf(req.SubPool);
      if (this.settings.ipRangeMode === 'subnet') {
        // kuryr-libnetwork's layout: the range is the pool, and the Neutron subnet, Docker gets.
        cidr = ipRange;
        ipRange = undefined;
      }
    }

    const subnetRef = opts.subnet[family];
    if (subnetRef) {
      if (ipRange)
        throw new InvalidRequestError(
          '--ip-range cannot be combined with neutron.subnet.*: the existing subnet has its own allocation pools',
        );
      const subnet = await this.catalog.findByRef('subnets', subnetRef);
      if (subnet.ip_version !== family)
        throw new InvalidRequestError(
          `Neutron subnet ${subnet.id} is IPv${subnet.ip_version}, not IPv${family}`,
        );
      if (cidr && cidr !== subnet.cidr)
        throw new InvalidRequestError(
          `--subnet ${cidr} differs from Neutron subnet ${subnet.id}'s CIDR ${subnet.cidr}`,
        );
      return { PoolID: formatPoolId({ kind: 'subnet', subnetId: subnet.id }), Pool: subnet.cidr, Data: {} };
    }

    const sharedRef =
      opts.pool[family] ?? (cidr ? undefined : { name: this.settings.defaultSubnetpools[family] });
    if (sharedRef) {
      if (ipRange) throw new InvalidRequestError('--ip-range cannot be combined with neutron.pool.*');
      const pool = await this.sharedPool(sharedRef, family, !opts.pool[family]);
      const carved = cidr ?? (await this.carve(pool));
      if (
        cidr &&
        !pool.prefixes.some(
          (p) => contains(p, cidr.split('/')[0] ?? '') && prefixLength(cidr) >= prefixLength(p),
        )
      ) {
        throw new InvalidRequestError(
          `--subnet ${cidr} is not inside Neutron subnetpool ${pool.name} (${pool.prefixes.join(', ')})`,
        );
      }
      return {
        PoolID: formatPoolId({ kind: 'carved', subnetpoolId: pool.id, cidr: carved }),
        Pool: carved,
        Data: {},
      };
    }

    const poolCidr = cidr as string;
    const name = subnetPoolName(this.settings.subnetpoolNamePrefix, poolCidr);
    const description = ipRange ? `${IP_RANGE_MARK}${ipRange}` : '';
    if (this.settings.requestReplay || this.settings.scope === 'global') {
      // Docker replays the same request after a restart: answer with the same pool. (A pool whose
      // release is still going on in the background is not the one.) In Swarm every node asks for
      // the pool the manager made for the network: marked by AllocateNetwork, never a
      // local-scope host's pool of the same CIDR.
      const named = (await this.neutron.list('subnetpools', { name })).filter(
        (p) => (p.description ?? '') === description,
      );
      const swarms = named.filter((p) => p.tags.some((t) => t.startsWith(SWARM_TAG_PREFIX)));
      const replays = named.filter((p) => !this.releasing.has(p.id));
      const [same] = this.settings.scope === 'global' && swarms.length === 1 ? swarms : [];
      const [replayed] = this.settings.requestReplay && replays.length === 1 ? replays : [];
      const found = same ?? replayed;
      if (found) return { PoolID: found.id, Pool: poolCidr, Data: {} };
    }
    const pool = await explained(`creating a Neutron subnetpool for ${poolCidr}`, () =>
      this.catalog.createOwnPool(poolCidr, {
        name,
        description,
        prefixes: [poolCidr],
        default_prefixlen: prefixLength(poolCidr),
        min_prefixlen: prefixLength(poolCidr),
        ...(opts.shared !== undefined ? { shared: opts.shared } : {}),
      }),
    );
    return { PoolID: pool.id, Pool: poolCidr, Data: {} };
  }

  private async sharedPool(
    ref: { uuid?: string; name?: string },
    family: 4 | 6,
    isDefault: boolean,
  ): Promise<SubnetPool> {
    let pool: SubnetPool;
    try {
      pool = await this.catalog.findByRef('subnetpools', ref);
    } catch (err) {
      if (!isDefault || !(err instanceof InvalidRequestError)) throw err;
      const example =
        family === 4
          ? '--pool-prefix 10.10.0.0/16 --default-prefix-length 24'
          : '--pool-prefix fd00:10::/48 --default-prefix-length 64';
      throw new InvalidRequestError(
        `no --subnet given and the default Neutron subnetpool '${ref.name}' does not exist. Create it ` +
          `(openstack subnet pool create ${example} ${ref.name}), set [neutron] default_subnetpool_v${family}, or pass --subnet`,
      );
    }
    if (Number(pool.ip_version) !== family) {
      throw new InvalidRequestError(
        `Neutron subnetpool ${pool.name} is IPv${pool.ip_version}, not IPv${family}`,
      );
    }
    this.catalog.rememberSubnetpool(pool);
    return pool;
  }

  /** A free block of the pool's default prefix length, reserved until ReleasePool. */
  private carve(pool: SubnetPool): Promise<string> {
    return this.carveLocks.run(pool.id, async () => {
      const used = (await this.neutron.list('subnets', { subnetpool_id: pool.id, fields: ['cidr'] })).map(
        (s) => s.cidr,
      );
      const reserved = this.reserved.get(pool.id) ?? new Set<string>();
      const cidr = firstFreeBlock(pool.prefixes, Number(pool.default_prefixlen), [...used, ...reserved]);
      if (!cidr) {
        throw new InvalidRequestError(
          `Neutron subnetpool ${pool.name} has no free /${pool.default_prefixlen} left (${pool.prefixes.join(', ')}): add a prefix or pass --subnet`,
        );
      }
      this.reserved.set(pool.id, reserved.add(cidr));
      return cidr;
    });
  }

  /**
   * Docker releases a pool when its network goes (before DeleteNetwork) or a network create is
   * rolled back, and only logs what fails. What the process remembers of the pool is forgotten at
   * once (a new pool for the same CIDR is never mistaken for it); the Neutron side (its warm
   * ports, its subnet, its subnetpool) is deleted in the background, and DeleteNetwork's own
   * teardown queues behind it.
   */
  async releasePool(req: PoolIdRequest): Promise<EmptyResponse> {
    const ref = parsePoolId(req.PoolID);
    const known = this.catalog.cachedPoolSubnet(req.PoolID);
    const own = ref.kind === 'own' && this.catalog.isOwnPool(ref.subnetpoolId);
    this.catalog.forgetPool(ref);
    if (ref.kind === 'carved') this.reserved.get(ref.subnetpoolId)?.delete(ref.cidr);
    // No more takes from its warm ports; they are deleted with the rest.
    const subnetId = ref.kind === 'subnet' ? ref.subnetId : known?.id;
    const drained = subnetId ? this.pool.drainSubnets([subnetId]) : Promise.resolve();
    if (ref.kind === 'own') this.releasing.add(ref.subnetpoolId);
    this.teardowns.queueAfter(`releasing Docker pool ${req.PoolID}`, drained, () =>
      this.releaseInNeutron(req.PoolID, ref, known, own).finally(() => {
        if (ref.kind === 'own') this.releasing.delete(ref.subnetpoolId);
      }),
    );
    return {};
  }

  private async releaseInNeutron(
    poolId: string,
    ref: PoolRef,
    known: Subnet | undefined,
    own: boolean,
  ): Promise<void> {
    const req = { PoolID: poolId };
    // A node of a Swarm releases the pool when its last task on the network ends: the subnet and
    // the pool stay the Swarm network's until the manager frees it (FreeNetwork, then this).
    if (this.settings.scope === 'global' && (await this.isSwarmPool(ref, known))) return;
    if (
      ref.kind === 'own' &&
      own &&
      (!known || (known.subnetpool_id === ref.subnetpoolId && isKuryrSubnet(known)))
    ) {
      // A pool this process made, whose one subnet it knows: no lookups needed.
      if (known) await this.deleteSubnet(known, req.PoolID);
      await explained(`deleting Neutron subnetpool ${ref.subnetpoolId}`, () =>
        this.catalog.deleteSubnetpool(ref.subnetpoolId),
      );
      return;
    }
    if (ref.kind === 'subnet') return; // the user's subnet: theirs to keep
    const cidr = ref.kind === 'carved' ? ref.cidr : undefined;
    // Subnets from the pool, and subnets tagged with the PoolID (made without a pool on a joined
    // network, or a user's subnet kuryr adopted; kuryr-libnetwork tags its own subnets too).
    const [fromPool, tagged] = await Promise.all([
      this.neutron.list('subnets', { subnetpool_id: ref.subnetpoolId, cidr }),
      this.neutron.list('subnets', { tags: req.PoolID }),
    ]);
    const subnets = new Map([...fromPool, ...tagged].map((s) => [s.id, s]));
    await this.pool.drainSubnets([...subnets.keys()]);
    for (const subnet of subnets.values()) {
      // Made for this pool: from it, or without a pool on a joined network.
      const made =
        isKuryrSubnet(subnet) && (!subnet.subnetpool_id || subnet.subnetpool_id === ref.subnetpoolId);
      if (made) await this.deleteSubnet(subnet, req.PoolID);
      // A user's subnet kuryr adopted, or one another host's kuryr made from its own pool for the
      // same CIDR: it stays, without the PoolID.
      else if (subnet.tags.includes(req.PoolID)) await this.catalog.untagSubnet(subnet, req.PoolID);
    }
    if (ref.kind === 'own') {
      const pool = await this.neutron.get('subnetpools', ref.subnetpoolId).catch(() => undefined);
      // kuryr-libnetwork marks user pools it used; those stay.
      if (pool && !pool.tags.includes(EXISTING_POOL_TAG)) {
        await explained(`deleting Neutron subnetpool ${pool.id}`, () =>
          this.catalog.deleteSubnetpool(pool.id),
        );
      }
    }
  }

  /**
   * The pool the Swarm network's subnet came from. Any doubt (Neutron unreachable) keeps it: a
   * Swarm subnet holds other hosts' task ports. A node's own pool tagged onto the Swarm subnet is
   * released the normal way (the subnet, not made from it, is only untagged).
   */
  private async isSwarmPool(ref: PoolRef, known: Subnet | undefined): Promise<boolean> {
    const subnet = known ?? (await this.catalog.subnetForPool(ref).catch(onlyNotFound));
    if (!subnet || ref.kind === 'subnet' || subnet.subnetpool_id !== ref.subnetpoolId) return false;
    const net = await this.neutron.get('networks', subnet.network_id).catch(onlyNotFound);
    return net?.tags.some((t) => t.startsWith(SWARM_TAG_PREFIX)) ?? false;
  }

  /**
   * Deletes a subnet kuryr made. Docker releases the pool only when no endpoint uses it, so kuryr
   * ports still on the subnet are leftovers of a crash: they go first (a user's port kuryr took is
   * handed back, and keeps the subnet in use).
   */
  private async deleteSubnet(subnet: Subnet, poolId: string): Promise<void> {
    try {
      await this.catalog.deleteSubnet(subnet);
    } catch (err) {
      if (!(err instanceof NeutronApiError && err.type === 'SubnetInUse')) throw err;
      const ports = await this.neutron.list('ports', {
        network_id: subnet.network_id,
        fixed_ips: `subnet_id=${subnet.id}`,
      });
      for (const p of ports.filter((p) => isKuryrCreatedPort(p) || isExistingPort(p)))
        await this.ports.release(p);
      await explained(`deleting Neutron subnet ${subnet.id} (${subnet.cidr}) of Docker pool ${poolId}`, () =>
        this.catalog.deleteSubnet(subnet),
      );
    }
  }

  // ------------------------------------------------------------------ addresses
  async requestAddress(req: RequestAddressRequest): Promise<RequestAddressResponse> {
    const ref = parsePoolId(req.PoolID);
    const options = req.Options ?? {};
    const wanted = req.Address ? parseIp(req.Address, 'Address') : undefined;
    if (options[OptionKeys.requestAddressType] === OptionKeys.gatewayAddressType) {
      return { Address: await this.gatewayAddress(ref, wanted), Data: {} };
    }
    const subnet = await this.catalog.subnetForPool(ref);
    if (!subnet) {
      // Before CreateNetwork the only addresses Docker asks for are --aux-address reservations:
      // CreateNetwork keeps them out of the subnet's allocation pools.
      const cidr = await this.catalog.poolCidr(ref);
      if (wanted && contains(cidr, wanted)) return { Address: `${wanted}/${prefixLength(cidr)}`, Data: {} };
      throw new InvalidRequestError(
        `Docker pool ${req.PoolID} has no Neutron subnet: its network was not created with -d kuryr`,
      );
    }
    if (wanted && !contains(subnet.cidr, wanted)) {
      throw new InvalidRequestError(`address ${wanted} is outside the network's subnet ${subnet.cidr}`);
    }
    const mac = options[OptionKeys.macAddress]?.toLowerCase();
    if (mac && this.pool.enabled && !this.warnedMacs) {
      this.warnedMacs = true;
      this.hooks.warn(
        'Docker sends MAC addresses, so the warm pool cannot be used: Docker read the IPAM capabilities ' +
          'of a kuryr that asked for them (kuryr-libnetwork, or kuryr before 0.2). Restart dockerd once',
      );
    }
    const doing = `creating a Neutron port for ${wanted ?? 'an address'} in subnet ${subnet.id} (${subnet.cidr})`;
    // A Swarm manager reserving a task's address: the task may run on any node, so the port is
    // bound to none (the node that runs it binds it at CreateEndpoint), and no sibling or warm port
    // of this host fits it.
    const reserve = this.settings.scope === 'global' && !wanted && !mac;
    // Docker asks once per address family for the same endpoint: the port it got for the first is
    // this endpoint's.
    const sibling = reserve ? undefined : this.handOuts.pendingSibling(subnet, mac, wanted);
    let port: Port | undefined;
    if (sibling) port = await this.addToSibling(sibling, subnet, wanted);
    // A warm port fits any request that names neither address nor MAC.
    else if (!wanted && !mac && !reserve) {
      // A burst finds the pool empty: its starts share the batch being made.
      port = await this.pool.takeOrWait(subnet.id, BURST_WAIT_MS);
      // Join follows in milliseconds and needs the subnets: with no port to create, read them now.
      if (port) this.catalog.prefetchSubnets([...new Set(port.fixed_ips.map((f) => f.subnet_id))]);
      else this.startPoolFor(subnet);
    }
    port ??= await this.createPort(subnet, wanted, mac, doing, !reserve);
    this.catalog.rememberPort(port);
    if (!reserve) this.handOuts.record(port.id, subnet.id);
    const ip = port.fixed_ips.find((f) => f.subnet_id === subnet.id)?.ip_address;
    if (!ip) throw new InvalidRequestError(`Neutron port ${port.id} has no address in subnet ${subnet.id}`);
    return { Address: `${ip}/${prefixLength(subnet.cidr)}`, Data: {} };
  }

  /**
   * A warm pool for a network made before this process started. A network kuryr made serves one
   * Docker network, so all its subnets are that network's; on a joined one only this subnet is
   * known to be.
   */
  private startPoolFor(subnet: Subnet): void {
    this.pool.registerLater(subnet.id, async () => {
      const net = await this.catalog.networkById(subnet.network_id);
      const own =
        net.tags.some((t) => t.startsWith(NET_TAG_LOW)) &&
        !net.tags.some((t) => t.startsWith(EXISTING_NET_TAG_PREFIX));
      const subnetIds = own
        ? (await this.neutron.list('subnets', { network_id: net.id, fields: ['id'] })).map((s) => s.id)
        : [subnet.id];
      return { networkId: net.id, subnetIds };
    });
  }

  /**
   * A new port for the address, bound to this host, with its veth plugged (or the holder we may
   * reuse). On a dual-stack network with a warm pool the port gets its other-family address too,
   * which the endpoint's next request then finds.
   */
  private async createPort(
    subnet: Subnet,
    wanted: string | undefined,
    dockerMac: string | undefined,
    doing: string,
    bind = true,
  ): Promise<Port> {
    const others = (this.pool.specFor(subnet.id)?.subnetIds ?? []).filter((id) => id !== subnet.id);
    // Unbound (a Swarm reservation): kuryr's port all the same, with no host and no veth yet.
    const binding = bind ? this.ports.bindAttrs() : { device_owner: DEVICE_OWNER };
    const plug = async (port: Port) => {
      if (bind) await this.ports.plugHost(port);
    };
    // Docker may hand out an address it released a moment ago, whose port is still being deleted.
    if (wanted) await this.teardowns.addressFreed(subnet.network_id, wanted);
    for (let attempt = 0; ; attempt++) {
      const mac = dockerMac ?? randomMac();
      try {
        // Created bound to this host, with its veth plugged right away (a reservation aside): the L2
        // agent starts wiring it while Docker is still on its way to CreateEndpoint and Join.
        const port = await this.catalog.createPort({
          network_id: subnet.network_id,
          name: UNBOUND_PORT_NAME,
          admin_state_up: true,
          ...binding,
          fixed_ips: [
            wanted ? { subnet_id: subnet.id, ip_address: wanted } : { subnet_id: subnet.id },
            ...others.map((subnet_id) => ({ subnet_id })),
          ],
          mac_address: mac,
        });
        await plug(port).catch(async (err) => {
          await this.catalog.deletePort(port.id).catch(() => undefined); // nothing half-made
          throw err;
        });
        return port;
      } catch (err) {
        if (err instanceof NeutronUnavailableError && err.timedOut) {
          // The POST may have reached Neutron: the MAC is unique, so it finds the port if it exists.
          return this.recoverTimedOutCreate(err, subnet, mac, plug);
        }
        if (!(err instanceof NeutronApiError)) throw err;
        // Our own random MAC collided with another port's: draw again.
        if (!dockerMac && err.type === 'MacAddressInUse' && attempt < 2) continue;
        const reused = await this.reuseHolder(err, subnet, wanted, dockerMac);
        if (!reused) throw explainNeutron(err, doing);
        return reused;
      }
    }
  }

  /** Dual stack: the endpoint's other-family address goes onto the port it already has. */
  private async addToSibling(sibling: Port, subnet: Subnet, wanted?: string): Promise<Port> {
    const current = sibling.fixed_ips.find((f) => f.subnet_id === subnet.id);
    if (current && (!wanted || sameIp(current.ip_address, wanted))) return sibling;
    const fixedIps = [
      ...sibling.fixed_ips.filter((f) => f.subnet_id !== subnet.id),
      wanted ? { subnet_id: subnet.id, ip_address: wanted } : { subnet_id: subnet.id },
    ];
    return explained(
      `${current ? 'changing' : 'adding'} the address in subnet ${subnet.cidr} of dual-stack port ${sibling.id}`,
      () => this.catalog.updatePort(sibling, { fixed_ips: fixedIps }),
    );
  }

  /** After a POST that timed out: the port it created, plugged, or the timeout if there is none. */
  private async recoverTimedOutCreate(
    err: NeutronUnavailableError,
    subnet: Subnet,
    mac: string,
    plug: (port: Port) => Promise<void>,
  ): Promise<Port> {
    const [port] = await this.neutron.list('ports', { network_id: subnet.network_id, mac_address: mac });
    if (!port || port.device_id || !isKuryrPortOwner(port.device_owner)) throw err;
    await plug(port);
    return port;
  }

  /**
   * When the port cannot be created because its address or MAC is taken, the holder may be ours
   * to use: the unbound port of the same endpoint's other address family (dual stack: Docker asks
   * once per family with the same MAC), a user's free port handed over with --ip (or
   * --mac-address), taken as it is and handed back on release, or (replay mode) the port Docker
   * already got for this address before it restarted.
   */
  private async reuseHolder(
    err: NeutronApiError,
    subnet: Subnet,
    wanted?: string,
    mac?: string,
  ): Promise<Port | undefined> {
    let holder: Port | undefined;
    if (err.type === 'MacAddressInUse' && mac) {
      [holder] = await this.neutron.list('ports', { network_id: subnet.network_id, mac_address: mac });
      if (holder && !holder.device_id && (isKuryrPortOwner(holder.device_owner) || isExistingPort(holder)))
        // A warm port with that MAC (a container's, recycled) leaves the pool first: never two holders.
        return this.addToSibling(this.pool.takeById(holder.id) ?? holder, subnet, wanted);
    } else if (err.type === 'IpAddressAlreadyAllocated' && wanted) {
      [holder] = await this.catalog.portsWithAddress(subnet, wanted);
      if (holder && this.settings.requestReplay && isKuryrCreatedPort(holder)) return holder;
      // Swarm: the address the manager reserved for the task this node now runs.
      if (holder && this.settings.scope === 'global' && isKuryrCreatedPort(holder) && !holder.device_id)
        return holder;
      // One of this host's warm ports drew the address (Neutron picks them at random), maybe one
      // still being made: it is free, so it is this start's. (With a MAC of Docker's, the port's
      // would differ: not that one.)
      const warm = holder && !mac ? await this.pool.takeByIdOnceMade(holder, BURST_WAIT_MS) : undefined;
      if (warm) return warm;
    }
    // A user's port is taken only as it is: its addresses are not kuryr's to change.
    if (!holder || !canTake(holder) || !holdsAddress(holder, subnet.id, wanted)) return undefined;
    const free = holder;
    return explained(`taking existing Neutron port ${free.id}`, () => this.catalog.takePort(free));
  }

  /** The gateway is the subnet's gateway_ip; before the subnet exists, the requested or first address. */
  private async gatewayAddress(ref: PoolRef, wanted: string | undefined): Promise<string> {
    const cidr = await this.catalog.poolCidr(ref);
    const len = prefixLength(cidr);
    if (wanted && !contains(cidr, wanted))
      throw new InvalidRequestError(`gateway ${wanted} is outside the subnet ${cidr}`);
    const subnet = await this.catalog.subnetForPool(ref);
    if (subnet?.gateway_ip) {
      if (wanted && !sameIp(wanted, subnet.gateway_ip)) {
        throw new InvalidRequestError(
          `--gateway ${wanted} differs from the Neutron subnet's gateway_ip ${subnet.gateway_ip}`,
        );
      }
      return `${subnet.gateway_ip}/${len}`;
    }
    return `${wanted ?? firstHost(cidr)}/${len}`;
  }

  async releaseAddress(req: ReleaseAddressRequest): Promise<EmptyResponse> {
    const ref = parsePoolId(req.PoolID);
    const ip = parseIp(req.Address.split('/')[0] ?? req.Address, 'Address');
    const subnet = await this.catalog.subnetForPool(ref);
    if (!subnet || (subnet.gateway_ip && sameIp(subnet.gateway_ip, ip))) return {}; // gone, or the gateway (no port)
    const cached = this.catalog.cachedPortAt(subnet.network_id, ip);
    for (const port of cached ? [cached] : await this.catalog.portsWithAddress(subnet, ip)) {
      await this.writes.settled(port.id); // the endpoint's identity, still being written
      this.handOuts.forget(port.id);
      const doing = `releasing ${ip} (Neutron port ${port.id}) of Docker pool ${req.PoolID}`;
      // A warm port back from its container goes back to the pool, veth and all (not dual stack:
      // Docker releases its families one by one).
      if (isKuryrCreatedPort(port) && port.fixed_ips.length === 1 && this.pool.recycle(port)) continue;
      this.pool.discard(port.id); // a previous run's port Docker rolls back: not warm any more
      if (!isKuryrCreatedPort(port) && !isExistingPort(port)) {
        // not ours: never touch it
      } else if (isKuryrCreatedPort(port) && port.fixed_ips.length > 1 && port.device_id) {
        // Dual stack: Docker releases each family separately; the port goes with the last one.
        // (A port no endpoint claimed is a rolled-back start: it goes whole, other family too.)
        const rest = port.fixed_ips.filter((f) => !(f.subnet_id === subnet.id && sameIp(f.ip_address, ip)));
        await explained(doing, () => this.catalog.updatePort(port, { fixed_ips: rest }));
      } else if (isKuryrCreatedPort(port)) {
        // Deleted in the background: Docker need not wait for the DELETE (0.4-0.7 s on a busy
        // neutron-server; `docker rm` took 1.1 s with it). A start asking for this address waits
        // for it (createPort). Its veth is normally gone with DeleteEndpoint; not when Docker
        // rolls back before that: it goes too.
        this.teardowns.deletePort(port, doing, () => this.ports.release(port));
      } else {
        // A user's port: handed back as kuryr found it, addresses and all, before Docker's answer.
        await explained(doing, () => this.ports.release(port));
      }
    }
    return {};
  }
}
