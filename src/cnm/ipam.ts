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
import { InvalidRequestError } from '../util/errors.js';
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
import { explained, explainNeutron } from './explain.js';
import {
  dockerIdTags,
  EXISTING_NET_TAG_PREFIX,
  EXISTING_POOL_TAG,
  EXISTING_PORT_TAG,
  IP_RANGE_MARK,
  isKuryrPortOwner,
  isKuryrSubnet,
  NET_TAG_LOW,
  subnetPoolName,
  UNBOUND_PORT_NAME,
} from './naming.js';
import { formatPoolId, type NeutronView, type PoolRef, parsePoolId } from './neutron-view.js';
import { parseNeutronOptions } from './options.js';
import type { PortBinding } from './port-binding.js';
import type { WarmPool } from './warm-pool.js';

export interface IpamSettings {
  localAddressSpace: string;
  globalAddressSpace: string;
  subnetpoolNamePrefix: string;
  defaultSubnetpools: { 4: string; 6: string };
  /** Tell Docker to replay RequestPool/RequestAddress after a daemon restart (and answer them idempotently). */
  requestReplay: boolean;
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

export class NeutronIpam implements IpamDriver {
  /** Carving from a shared pool is check-then-reserve: one at a time per pool. */
  private readonly carveLocks = new KeyedMutex();
  /** CIDRs handed to Docker from shared pools whose subnet may not exist yet. */
  private readonly reserved = new Map<string, Set<string>>();
  private warnedMacs = false;

  constructor(
    private readonly view: NeutronView,
    private readonly ports: PortBinding,
    private readonly pool: WarmPool,
    private readonly settings: IpamSettings,
    private readonly hooks: IpamHooks = { warn: () => undefined },
  ) {}

  private get neutron() {
    return this.view.neutron;
  }

  async getCapabilities(): Promise<IpamCapabilitiesResponse> {
    // With RequiresMACAddress Docker generates each endpoint's MAC before RequestAddress, so the
    // port gets it at creation (as with kuryr-libnetwork). A warm pool's ports exist before Docker
    // picks a MAC, and Neutron will not change the MAC of a bound port: with the pool on, Docker is
    // asked for none and takes the port's.
    return {
      RequiresMACAddress: !this.pool.enabled,
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
    }

    const subnetRef = opts.subnet[family];
    if (subnetRef) {
      if (ipRange)
        throw new InvalidRequestError(
          '--ip-range cannot be combined with neutron.subnet.*: the existing subnet has its own allocation pools',
        );
      const subnet = await this.view.findByRef('subnets', subnetRef);
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
    if (this.settings.requestReplay) {
      // Docker replays the same request after a restart: answer with the same pool.
      const same = (await this.neutron.list('subnetpools', { name })).filter(
        (p) => (p.description ?? '') === description,
      );
      if (same.length === 1 && same[0]) return { PoolID: same[0].id, Pool: poolCidr, Data: {} };
    }
    const pool = await explained(`creating a Neutron subnetpool for ${poolCidr}`, () =>
      this.neutron.create('subnetpools', {
        name,
        description,
        prefixes: [poolCidr],
        default_prefixlen: prefixLength(poolCidr),
        min_prefixlen: prefixLength(poolCidr),
        ...(opts.shared !== undefined ? { shared: opts.shared } : {}),
      }),
    );
    this.view.rememberOwnPool(poolCidr, pool);
    return { PoolID: pool.id, Pool: poolCidr, Data: {} };
  }

  private async sharedPool(
    ref: { uuid?: string; name?: string },
    family: 4 | 6,
    isDefault: boolean,
  ): Promise<SubnetPool> {
    let pool: SubnetPool;
    try {
      pool = await this.view.findByRef('subnetpools', ref);
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
    this.view.rememberSubnetpool(pool);
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

  async releasePool(req: PoolIdRequest): Promise<EmptyResponse> {
    const ref = parsePoolId(req.PoolID);
    const known = this.view.cachedPoolSubnet(req.PoolID);
    const own = ref.kind === 'own' && this.view.isOwnPool(ref.subnetpoolId);
    this.view.forgetPool(ref);
    // Warm ports with an address in the pool's subnet go first (they would keep it in use).
    const subnetId = ref.kind === 'subnet' ? ref.subnetId : known?.id;
    if (subnetId) await this.pool.drainSubnets([subnetId]);
    if (own && (!known || (known.subnetpool_id === ref.subnetpoolId && isKuryrSubnet(known)))) {
      // A pool this process made, whose one subnet it knows: no lookups needed.
      if (known) await this.deleteSubnet(known, req.PoolID);
      await explained(`deleting Neutron subnetpool ${ref.subnetpoolId}`, () =>
        this.neutron.delete('subnetpools', ref.subnetpoolId),
      );
      return {};
    }
    if (ref.kind === 'subnet') return {}; // the user's subnet: theirs to keep
    if (ref.kind === 'carved') this.reserved.get(ref.subnetpoolId)?.delete(ref.cidr);
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
      if (isKuryrSubnet(subnet)) await this.deleteSubnet(subnet, req.PoolID);
      else if (subnet.tags.includes(req.PoolID)) {
        await this.neutron
          .setTags(
            'subnets',
            subnet.id,
            subnet.tags.filter((t) => t !== req.PoolID),
          )
          .catch((err) => {
            if (!(err instanceof NeutronApiError && err.isNotFound)) throw err;
          });
      }
    }
    if (ref.kind === 'own') {
      const pool = await this.neutron.get('subnetpools', ref.subnetpoolId).catch(() => undefined);
      // kuryr-libnetwork marks user pools it used; those stay.
      if (pool && !pool.tags.includes(EXISTING_POOL_TAG)) {
        await explained(`deleting Neutron subnetpool ${pool.id}`, () =>
          this.neutron.delete('subnetpools', pool.id),
        );
      }
    }
    return {};
  }

  /**
   * Deletes a subnet kuryr made. Docker releases the pool only when no endpoint uses it, so kuryr
   * ports still on the subnet are leftovers of a crash: they go first.
   */
  private async deleteSubnet(subnet: Subnet, poolId: string): Promise<void> {
    try {
      await this.neutron.delete('subnets', subnet.id);
    } catch (err) {
      if (!(err instanceof NeutronApiError && err.type === 'SubnetInUse')) throw err;
      const ports = await this.neutron.list('ports', {
        network_id: subnet.network_id,
        fixed_ips: `subnet_id=${subnet.id}`,
      });
      for (const p of ports.filter((p) => isKuryrPortOwner(p.device_owner))) await this.ports.remove(p);
      await explained(`deleting Neutron subnet ${subnet.id} (${subnet.cidr}) of Docker pool ${poolId}`, () =>
        this.neutron.delete('subnets', subnet.id),
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
    const subnet = await this.view.subnetForPool(ref);
    if (!subnet) {
      // Before CreateNetwork the only addresses Docker asks for are --aux-address reservations:
      // CreateNetwork keeps them out of the subnet's allocation pools.
      const cidr = await this.view.poolCidr(ref);
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
        'Docker sends MAC addresses although the warm pool is on ([vif_pool] size > 0), so the pool ' +
          'cannot be used: Docker read the IPAM capabilities before the pool was turned on. Restart dockerd',
      );
    }
    const doing = `creating a Neutron port for ${wanted ?? 'an address'} in subnet ${subnet.id} (${subnet.cidr})`;
    // Docker asks once per address family for the same endpoint: the port it got for the first is
    // this endpoint's.
    const sibling = this.view.pendingSibling(subnet, mac);
    let port: Port | undefined;
    if (sibling) port = await this.addToSibling(sibling, subnet, wanted);
    // A warm port fits any request that names neither address nor MAC.
    else if (!wanted && !mac) {
      port = this.pool.take(subnet.id);
      // Join follows in milliseconds and needs the subnets: with no port to create, read them now.
      if (port) this.view.prefetchSubnets([...new Set(port.fixed_ips.map((f) => f.subnet_id))]);
      else this.startPoolFor(subnet);
    }
    port ??= await this.createPort(subnet, wanted, mac, doing);
    this.view.rememberPort(port);
    this.view.handOut(port, subnet.id);
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
      const net = await this.view.networkById(subnet.network_id);
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
  ): Promise<Port> {
    const others = (this.pool.specFor(subnet.id)?.subnetIds ?? []).filter((id) => id !== subnet.id);
    for (let attempt = 0; ; attempt++) {
      const mac = dockerMac ?? randomMac();
      try {
        // Created bound to this host, with its veth plugged right away: the L2 agent starts wiring
        // it while Docker is still on its way to CreateEndpoint and Join.
        const port = await this.neutron.create('ports', {
          network_id: subnet.network_id,
          name: UNBOUND_PORT_NAME,
          admin_state_up: true,
          ...this.ports.bindAttrs(),
          fixed_ips: [
            wanted ? { subnet_id: subnet.id, ip_address: wanted } : { subnet_id: subnet.id },
            ...others.map((subnet_id) => ({ subnet_id })),
          ],
          mac_address: mac,
        });
        await this.ports.plugHost(port).catch(async (err) => {
          await this.neutron.delete('ports', port.id).catch(() => undefined); // nothing half-made
          throw err;
        });
        return port;
      } catch (err) {
        if (err instanceof NeutronUnavailableError && err.timedOut) {
          // The POST may have reached Neutron: the MAC is unique, so it finds the port if it exists.
          return this.recoverTimedOutCreate(err, subnet, mac);
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
    const updated = await explained(
      `${current ? 'changing' : 'adding'} the address in subnet ${subnet.cidr} of dual-stack port ${sibling.id}`,
      () => this.neutron.update('ports', sibling.id, { fixed_ips: fixedIps }),
    );
    this.view.replacePort(sibling, updated);
    return updated;
  }

  /** After a POST that timed out: the port it created, plugged, or the timeout if there is none. */
  private async recoverTimedOutCreate(
    err: NeutronUnavailableError,
    subnet: Subnet,
    mac: string,
  ): Promise<Port> {
    const [port] = await this.neutron.list('ports', { network_id: subnet.network_id, mac_address: mac });
    if (!port || port.device_id || !isKuryrPortOwner(port.device_owner)) throw err;
    await this.ports.plugHost(port);
    return port;
  }

  /**
   * When the port cannot be created because its address or MAC is taken, the holder may be ours
   * to use: the unbound port of the same endpoint's other address family (dual stack: Docker asks
   * once per family with the same MAC), a user's free port handed over with --ip, or (replay mode)
   * the port Docker already got for this address before it restarted.
   */
  private async reuseHolder(
    err: NeutronApiError,
    subnet: Subnet,
    wanted?: string,
    mac?: string,
  ): Promise<Port | undefined> {
    if (err.type === 'MacAddressInUse' && mac) {
      const [sibling] = await this.neutron.list('ports', { network_id: subnet.network_id, mac_address: mac });
      if (!sibling || sibling.device_id || !isKuryrPortOwner(sibling.device_owner)) return undefined;
      return this.addToSibling(sibling, subnet, wanted);
    }
    if (err.type === 'IpAddressAlreadyAllocated' && wanted) {
      const [holder] = await this.view.portsWithAddress(subnet, wanted);
      if (!holder) return undefined;
      if (!holder.device_id && !holder.device_owner) {
        await this.neutron.setTags('ports', holder.id, [...holder.tags, EXISTING_PORT_TAG]);
        return { ...holder, tags: [...holder.tags, EXISTING_PORT_TAG] };
      }
      if (this.settings.requestReplay && isKuryrPortOwner(holder.device_owner)) return holder;
    }
    return undefined;
  }

  /** The gateway is the subnet's gateway_ip; before the subnet exists, the requested or first address. */
  private async gatewayAddress(ref: PoolRef, wanted: string | undefined): Promise<string> {
    const cidr = await this.view.poolCidr(ref);
    const len = prefixLength(cidr);
    if (wanted && !contains(cidr, wanted))
      throw new InvalidRequestError(`gateway ${wanted} is outside the subnet ${cidr}`);
    const subnet = await this.view.subnetForPool(ref);
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
    const subnet = await this.view.subnetForPool(ref);
    if (!subnet || (subnet.gateway_ip && sameIp(subnet.gateway_ip, ip))) return {}; // gone, or the gateway (no port)
    const cached = this.view.cachedPortAt(subnet.network_id, ip);
    for (const port of cached ? [cached] : await this.view.portsWithAddress(subnet, ip)) {
      await this.view.settled(port.id); // the endpoint's identity, still being written
      this.view.forgetPort(port);
      this.pool.discard(port.id); // a previous run's port Docker rolls back: not warm any more
      const doing = `releasing ${ip} (Neutron port ${port.id}) of Docker pool ${req.PoolID}`;
      if (port.tags.includes(EXISTING_PORT_TAG)) {
        // A user's port: hand it back as we found it.
        await explained(doing, async () => {
          await this.neutron.update('ports', port.id, {
            device_owner: '',
            device_id: '',
            'binding:host_id': '',
          });
          const ours = new Set([EXISTING_PORT_TAG, ...dockerIdTags(port.device_id)]);
          await this.neutron.setTags(
            'ports',
            port.id,
            port.tags.filter((t) => !ours.has(t)),
          );
        });
      } else if (!isKuryrPortOwner(port.device_owner)) {
        // not ours: never touch it
      } else if (port.fixed_ips.length > 1 && port.device_id) {
        // Dual stack: Docker releases each family separately; the port goes with the last one.
        // (A port no endpoint claimed is a rolled-back start: it goes whole, other family too.)
        const rest = port.fixed_ips.filter((f) => !(f.subnet_id === subnet.id && sameIp(f.ip_address, ip)));
        this.view.rememberPort(
          await explained(doing, () => this.neutron.update('ports', port.id, { fixed_ips: rest })),
        );
      } else {
        // Its veth is normally gone with DeleteEndpoint; not when Docker rolls back before that.
        await explained(doing, () => this.ports.remove(port));
      }
    }
    return {};
  }
}
