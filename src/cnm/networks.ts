// Docker networks → Neutron networks and subnets. A new Docker network gets a new Neutron network;
// `-o neutron.net.uuid|name` joins an existing one, which is only tagged and, on removal, untagged.
import type { CreateNetworkRequest, IpamData } from '../docker/protocol.js';
import { OptionKeys } from '../docker/protocol.js';
import { NeutronApiError } from '../neutron/errors.js';
import type { Network, Subnet, SubnetPool } from '../neutron/types.js';
import { InvalidRequestError } from '../util/errors.js';
import { KeyedMutex } from '../util/keyed-mutex.js';
import { allocationPools, contains, networkOf, parseCidr, stripPrefix } from './addresses.js';
import { explained, explainNeutron } from './explain.js';
import {
  dockerIdTags,
  existingNetworkTag,
  IP_RANGE_MARK,
  isKuryrPortOwner,
  networkName,
  subnetName,
  subnetPoolName,
} from './naming.js';
import { formatPoolId, type NeutronView } from './neutron-view.js';
import { type NeutronOptions, parseNeutronOptions } from './options.js';
import type { PortBinding } from './port-binding.js';
import type { WarmPool } from './warm-pool.js';

export interface NetworkSettings {
  scope: 'local' | 'global';
  enableDhcp: boolean;
  subnetpoolNamePrefix: string;
  defaultSubnetpools: { 4: string; 6: string };
}

/** Subnetpool errors that mean "this pool cannot take this CIDR": try the next candidate. */
const POOL_REFUSED = new Set([
  'SubnetAllocationError',
  'NetworkSubnetPoolAffinityError',
  'IllegalSubnetPoolPrefixBounds',
]);

export class Networks {
  private readonly locks = new KeyedMutex();

  constructor(
    private readonly view: NeutronView,
    private readonly ports: PortBinding,
    private readonly pool: WarmPool,
    private readonly settings: NetworkSettings,
  ) {}

  private get neutron() {
    return this.view.neutron;
  }

  async create(req: CreateNetworkRequest): Promise<void> {
    const options = req.Options ?? {};
    const opts = parseNeutronOptions(
      options[OptionKeys.generic] as Record<string, unknown> | undefined,
      '-o',
    );
    const internal = options[OptionKeys.internal] === true || options[OptionKeys.internal] === 'true';
    const ipamData = [...(req.IPv4Data ?? []), ...(req.IPv6Data ?? [])].filter(
      (d) => d.Pool && d.Pool !== '0.0.0.0/0',
    );
    // Bad input is refused before anything is created.
    for (const [i, d] of ipamData.entries()) {
      parseCidr(d.Pool, `IPAMData[${i}].Pool`);
      if (d.Gateway) parseCidr(d.Gateway, `IPAMData[${i}].Gateway`);
      for (const [name, aux] of Object.entries(d.AuxAddresses ?? {}))
        parseCidr(aux, `IPAMData[${i}].AuxAddresses.${name}`);
    }
    await this.locks.run(req.NetworkID, async () => {
      // Global scope: every host creates the same Docker network, so look before creating. Local
      // scope: Docker creates a network once; a replay is caught below when Neutron refuses the
      // pool's CIDR a second time, so the common case needs no lookup.
      let net =
        this.settings.scope === 'global'
          ? await this.view.networkFor(req.NetworkID)
          : this.view.cachedNetworkFor(req.NetworkID);
      let created = false;
      if (!net) {
        if (opts.net) net = await this.adopt(req.NetworkID, opts);
        else {
          net = await this.createTagged(req.NetworkID, opts.shared);
          created = true;
        }
      }
      try {
        const subnets: Subnet[] = [];
        for (const data of ipamData)
          subnets.push(await this.ensureSubnet(net, data, opts, internal, created));
        // Warm ports for the network's containers start being made now, in the background.
        this.pool.register({ networkId: net.id, subnetIds: subnets.map((s) => s.id) }, req.NetworkID);
      } catch (err) {
        // Leave nothing behind for a network Docker will not know about.
        this.view.forgetNetwork(req.NetworkID);
        if (created) await this.neutron.delete('networks', net.id).catch(() => undefined);
        if (created && (await this.isReplay(req.NetworkID))) return;
        else await this.untag(net, req.NetworkID).catch(() => undefined);
        throw err;
      }
    });
  }

  /** After our new network was refused its subnet: does one for this Docker network exist already? */
  private async isReplay(dockerNetworkId: string): Promise<boolean> {
    const existing = await this.view.networkFor(dockerNetworkId).catch(() => undefined);
    return existing !== undefined;
  }

  private async createTagged(dockerNetworkId: string, shared?: boolean): Promise<Network> {
    const net = await explained(
      `creating the Neutron network for Docker network ${dockerNetworkId.slice(0, 12)}`,
      () =>
        this.neutron.create('networks', {
          name: networkName(dockerNetworkId),
          admin_state_up: true,
          ...(shared !== undefined ? { shared } : {}),
        }),
    );
    const tags = dockerIdTags(dockerNetworkId);
    try {
      // Neutron (Zed) does not accept tags in POST: a second call, undone if it fails.
      await this.neutron.setTags('networks', net.id, tags);
    } catch (err) {
      await this.neutron.delete('networks', net.id).catch(() => undefined);
      throw err;
    }
    let mine: Network = { ...net, tags };
    if (this.settings.scope === 'global') mine = await this.settleDuplicates(dockerNetworkId, mine);
    this.view.rememberNetwork(dockerNetworkId, mine);
    return mine;
  }

  /**
   * In global scope every host's daemon calls CreateNetwork for the same Docker network. Hosts that
   * raced past the lookup each made one: all keep the oldest, the others delete their own.
   */
  private async settleDuplicates(dockerNetworkId: string, mine: Network): Promise<Network> {
    const all = await this.view.taggedNetworks(dockerNetworkId);
    if (all.length <= 1) return mine;
    const key = (n: Network) => `${n.created_at ?? ''} ${n.id}`;
    const winner = all.reduce((a, b) => (key(a) <= key(b) ? a : b));
    if (winner.id !== mine.id) await this.neutron.delete('networks', mine.id);
    return winner;
  }

  private async adopt(dockerNetworkId: string, opts: NeutronOptions): Promise<Network> {
    const net = await this.view.findByRef('networks', opts.net ?? {});
    if (opts.shared !== undefined && Boolean(net.shared) !== opts.shared) {
      throw new InvalidRequestError(
        `-o neutron.net.shared=${opts.shared} conflicts with Neutron network ${net.id}, which has shared=${Boolean(net.shared)}`,
      );
    }
    const tags = [
      ...new Set([...net.tags, ...dockerIdTags(dockerNetworkId), existingNetworkTag(dockerNetworkId)]),
    ];
    await explained(`tagging existing Neutron network ${net.id}`, () =>
      this.neutron.setTags('networks', net.id, tags),
    );
    const tagged = { ...net, tags };
    this.view.rememberNetwork(dockerNetworkId, tagged);
    return tagged;
  }

  private async untag(net: Network, dockerNetworkId: string): Promise<void> {
    const ours = new Set([...dockerIdTags(dockerNetworkId), existingNetworkTag(dockerNetworkId)]);
    const current = await this.neutron.get('networks', net.id);
    await this.neutron.setTags(
      'networks',
      net.id,
      current.tags.filter((t) => !ours.has(t)),
    );
  }

  /**
   * The subnet for one Docker pool. IPAMData does not carry the PoolID, so the pool is found among
   * the candidates for this CIDR (user-named, kuryr's per-CIDR pools, the default pool); with the
   * same CIDR on several Docker networks there are several, and Neutron itself refuses the ones
   * already used, which makes the choice race-free.
   */
  private async ensureSubnet(
    net: Network,
    data: IpamData,
    opts: NeutronOptions,
    internal: boolean,
    fresh: boolean,
  ): Promise<Subnet> {
    const cidr = networkOf(data.Pool);
    const { version } = parseCidr(data.Pool, 'Pool');
    // A network we just made has no subnets; pools our IPAM just made need no lookup.
    const [existing] = fresh ? [] : await this.neutron.list('subnets', { network_id: net.id, cidr });
    const hinted = opts.pool[version] ? [] : this.view.ownPoolsFor(cidr);
    const candidates = hinted.length && !existing ? hinted : await this.candidatePools(cidr, version, opts);
    if (existing) return this.adoptSubnet(existing, candidates);
    if (opts.subnet[version]) {
      throw new InvalidRequestError(
        `the subnet named by neutron.subnet${version === 6 ? '.v6' : ''}.* is not on Neutron network ${net.id}`,
      );
    }
    if (candidates.length === 0) {
      throw new InvalidRequestError(
        `no kuryr pool for ${cidr}: the kuryr network driver needs --ipam-driver kuryr`,
      );
    }
    const gateway = data.Gateway ? stripPrefix(data.Gateway) : undefined;
    const aux = Object.values(data.AuxAddresses ?? {}).map(stripPrefix);
    const attrsFor = (pool: SubnetPool) => {
      const ipRange = pool.description?.startsWith(IP_RANGE_MARK)
        ? pool.description.slice(IP_RANGE_MARK.length)
        : undefined;
      const reserved = [...aux, ...(gateway ? [gateway] : [])];
      return {
        network_id: net.id,
        name: subnetName(cidr),
        ip_version: version,
        cidr,
        enable_dhcp: this.settings.enableDhcp,
        // --internal: no gateway, so containers get no default route out of the network.
        gateway_ip: internal ? null : (gateway ?? undefined),
        ...(ipRange || aux.length
          ? { allocation_pools: allocationPools(cidr, ipRange ?? cidr, reserved) }
          : {}),
      };
    };
    if (opts.net && !opts.pool[version]) {
      // Neutron wants all subnets of a family on one network from one subnetpool (or none). On a
      // network kuryr joined, other Docker networks or the user add subnets too: ours take none
      // and carry the Docker PoolID as a tag, which is how IPAM finds them.
      const poolId =
        (await this.unusedPoolKey(cidr, candidates)) ?? this.poolKey(candidates[0] as SubnetPool, cidr);
      const pool = candidates.find((p) => poolId.startsWith(p.id)) as SubnetPool;
      const subnet = await explained(`creating Neutron subnet ${cidr} on network ${net.id}`, () =>
        this.neutron.create('subnets', attrsFor(pool)),
      );
      await this.neutron.setTags('subnets', subnet.id, [poolId]);
      this.view.rememberPoolSubnet(poolId, { ...subnet, tags: [poolId] });
      return { ...subnet, tags: [poolId] };
    }
    let lastError: NeutronApiError | undefined;
    for (const pool of candidates) {
      try {
        const subnet = await this.neutron.create('subnets', { ...attrsFor(pool), subnetpool_id: pool.id });
        this.view.rememberPoolSubnet(this.poolKey(pool, cidr), subnet);
        return subnet;
      } catch (err) {
        if (!(err instanceof NeutronApiError)) throw err;
        if (!POOL_REFUSED.has(err.type))
          throw explainNeutron(err, `creating Neutron subnet ${cidr} on network ${net.id}`);
        lastError = err;
      }
    }
    throw explainNeutron(
      lastError as NeutronApiError,
      `creating Neutron subnet ${cidr}: every candidate subnetpool refused it`,
    );
  }

  private async candidatePools(cidr: string, version: 4 | 6, opts: NeutronOptions): Promise<SubnetPool[]> {
    const named = opts.pool[version];
    if (named) return [await this.view.findByRef('subnetpools', named)];
    const [own, defaults] = await Promise.all([
      this.neutron.list('subnetpools', { name: subnetPoolName(this.settings.subnetpoolNamePrefix, cidr) }),
      this.neutron.list('subnetpools', { name: this.settings.defaultSubnetpools[version] }),
    ]);
    const ip = cidr.split('/')[0] ?? '';
    return [...own, ...defaults.filter((p) => p.prefixes.some((prefix) => contains(prefix, ip)))];
  }

  /**
   * A subnet with this CIDR is already on the network: a replay, or an existing network's subnet.
   * A pre-existing subnet is tagged with the PoolID of the kuryr pool Docker got for it, so that
   * RequestAddress finds it.
   */
  private async adoptSubnet(subnet: Subnet, candidates: SubnetPool[]): Promise<Subnet> {
    if (subnet.subnetpool_id && candidates.some((p) => p.id === subnet.subnetpool_id)) return subnet;
    const key = await this.unusedPoolKey(subnet.cidr, candidates);
    if (!key || subnet.tags.includes(key)) return subnet;
    await this.neutron.setTags('subnets', subnet.id, [...subnet.tags, key]);
    return { ...subnet, tags: [...subnet.tags, key] };
  }

  /** The PoolID Docker got for `cidr` from this candidate pool: kuryr's own pool, or a carve. */
  private poolKey(pool: SubnetPool, cidr: string): string {
    const own = pool.name === subnetPoolName(this.settings.subnetpoolNamePrefix, cidr);
    return formatPoolId(
      own ? { kind: 'own', subnetpoolId: pool.id } : { kind: 'carved', subnetpoolId: pool.id, cidr },
    );
  }

  /** The first candidate's PoolID that no subnet serves yet (neither from the pool nor by tag). */
  private async unusedPoolKey(cidr: string, candidates: SubnetPool[]): Promise<string | undefined> {
    for (const pool of candidates) {
      const key = this.poolKey(pool, cidr);
      const carved = key.includes('/');
      const [fromPool, tagged] = await Promise.all([
        this.neutron.list('subnets', {
          subnetpool_id: pool.id,
          cidr: carved ? cidr : undefined,
          fields: ['id'],
        }),
        this.neutron.list('subnets', { tags: key, fields: ['id'] }),
      ]);
      if (fromPool.length === 0 && tagged.length === 0) return key;
    }
    return undefined;
  }

  async delete(dockerNetworkId: string): Promise<void> {
    await this.locks.run(dockerNetworkId, async () => {
      const net = await this.view.networkFor(dockerNetworkId);
      this.view.forgetNetwork(dockerNetworkId);
      if (!net) return;
      this.view.forgetSubnetsOf(net.id);
      const joined = net.tags.includes(existingNetworkTag(dockerNetworkId));
      // Warm ports go first; on a joined network only this Docker network's (others may share it).
      await this.pool.drainDockerNetwork(dockerNetworkId, joined ? undefined : net.id);
      if (joined) {
        // The user's network: it stays, with everything they made; only our marks go.
        await explained(`untagging existing Neutron network ${net.id}`, () =>
          this.untag(net, dockerNetworkId),
        );
        return;
      }
      await this.deleteOwn(net);
    });
  }

  private async deleteOwn(net: Network): Promise<void> {
    try {
      await this.neutron.delete('networks', net.id);
    } catch (err) {
      if (!(err instanceof NeutronApiError && err.type === 'NetworkInUse')) throw err;
      // Ports kuryr made that outlived their endpoints (a crash between calls) go too.
      const ports = await this.neutron.list('ports', { network_id: net.id });
      const foreign = ports.filter(
        (p) => !isKuryrPortOwner(p.device_owner) && !p.device_owner.startsWith('network:'),
      );
      if (foreign.length) {
        throw explainNeutron(
          err,
          `deleting Neutron network ${net.id}`,
          `Ports not made by kuryr use it: ${foreign.map((p) => p.id).join(', ')}`,
        );
      }
      for (const port of ports.filter((p) => isKuryrPortOwner(p.device_owner))) await this.ports.remove(port);
      await explained(`deleting Neutron network ${net.id}`, () => this.neutron.delete('networks', net.id));
    }
  }
}
