// Docker networks → Neutron networks and subnets. A new Docker network gets a new Neutron network;
// `-o neutron.net.uuid|name` joins an existing one, which is only tagged and, on removal, untagged.
import type { CreateNetworkRequest, IpamData } from '../docker/protocol.js';
import { OptionKeys } from '../docker/protocol.js';
import { NeutronApiError } from '../neutron/errors.js';
import type { Network, Subnet, SubnetPool } from '../neutron/types.js';
import { InvalidRequestError } from '../util/errors.js';
import { KeyedMutex } from '../util/keyed-mutex.js';
import { allocationPools, contains, networkOf, parseCidr, stripPrefix } from './addresses.js';
import type { Catalog } from './catalog.js';
import { isExistingPort, isKuryrCreatedPort } from './existing-ports.js';
import { explained, explainNeutron } from './explain.js';
import {
  dockerIdTags,
  existingNetworkTag,
  HOST_TAG_PREFIX,
  hostTag,
  IP_RANGE_MARK,
  networkName,
  subnetName,
  subnetPoolName,
  swarmTag,
} from './naming.js';
import { type NeutronOptions, parseNeutronOptions } from './options.js';
import { formatPoolId } from './pool-id.js';
import type { PortBinding } from './port-binding.js';
import type { Teardowns } from './teardowns.js';
import type { WarmPool } from './warm-pool.js';

export interface NetworkSettings {
  scope: 'local' | 'global';
  /** This host (binding:host_id): networks kuryr makes or joins here carry it as a tag. */
  host: string;
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
    private readonly catalog: Catalog,
    private readonly ports: PortBinding,
    private readonly pool: WarmPool,
    private readonly teardowns: Teardowns,
    private readonly settings: NetworkSettings,
  ) {}

  /** Reads of what nobody remembers; every write goes through the catalog. */
  private get neutron() {
    return this.catalog.reader;
  }

  /**
   * CreateNetwork, or (`swarm`) a Swarm manager's AllocateNetwork: in Swarm the manager hands out
   * task addresses before any node creates the network, so the Neutron network and subnets are
   * made then, marked as the Swarm network's, and every node's CreateNetwork finds them.
   */
  async create(req: CreateNetworkRequest, swarm = false): Promise<void> {
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
    if (ipamData.length === 0) {
      throw new InvalidRequestError(
        'the network has neither an IPv4 nor an IPv6 address pool (--ipv4=false without --ipv6?): a kuryr network needs at least one. ' +
          "Add --ipv6, with --subnet <IPv6 CIDR> or a default IPv6 subnetpool ('kuryr6', [neutron] default_subnetpool_v6)",
      );
    }
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
          ? await this.catalog.networkFor(req.NetworkID)
          : this.catalog.cachedNetworkFor(req.NetworkID);
      let created = false;
      const marks = swarm ? [swarmTag(req.NetworkID)] : [];
      // Global scope: another host (or the manager) made it, and a failure here must not take it
      // from them. Marked as used here too (one write, the first time; a replayed AllocateNetwork
      // adds its mark the same way).
      const shared = net !== undefined && this.settings.scope === 'global';
      if (net && shared) {
        net = await this.catalog.adoptNetwork(req.NetworkID, net, [
          hostTag(this.settings.host, req.NetworkID),
          ...marks,
        ]);
      }
      if (!net) {
        if (opts.net) net = await this.adopt(req.NetworkID, opts, marks);
        else {
          net = await this.createTagged(req.NetworkID, opts.shared, marks);
          created = true;
        }
      }
      try {
        const subnets: Subnet[] = [];
        for (const data of ipamData)
          subnets.push(await this.ensureSubnet(net, data, opts, internal, created));
        // Swarm: the nodes' RequestPool finds the manager's pools by this mark.
        if (swarm)
          for (const s of subnets)
            if (s.subnetpool_id && this.catalog.isOwnPool(s.subnetpool_id))
              await this.catalog.markPool(s.subnetpool_id, swarmTag(req.NetworkID));
        // Warm ports for the network's containers start being made now, in the background.
        this.pool.register({ networkId: net.id, subnetIds: subnets.map((s) => s.id) }, req.NetworkID);
      } catch (err) {
        // Leave nothing behind for a network Docker will not know about.
        this.catalog.forgetNetwork(req.NetworkID);
        if (created) await this.catalog.deleteNetwork(net.id).catch(() => undefined);
        if (created && (await this.isReplay(req.NetworkID))) return;
        else if (!shared) await this.untag(net, req.NetworkID).catch(() => undefined);
        throw err;
      }
    });
  }

  /** After our new network was refused its subnet: does one for this Docker network exist already? */
  private async isReplay(dockerNetworkId: string): Promise<boolean> {
    const existing = await this.catalog.networkFor(dockerNetworkId).catch(() => undefined);
    return existing !== undefined;
  }

  private async createTagged(
    dockerNetworkId: string,
    shared?: boolean,
    marks: string[] = [],
  ): Promise<Network> {
    const mine = await explained(
      `creating the Neutron network for Docker network ${dockerNetworkId.slice(0, 12)}`,
      () =>
        this.catalog.createNetwork(
          dockerNetworkId,
          {
            name: networkName(dockerNetworkId),
            admin_state_up: true,
            ...(shared !== undefined ? { shared } : {}),
          },
          [hostTag(this.settings.host, dockerNetworkId), ...marks],
        ),
    );
    return this.settings.scope === 'global' ? this.settleDuplicates(dockerNetworkId, mine) : mine;
  }

  /**
   * In global scope every host's daemon calls CreateNetwork for the same Docker network. Hosts that
   * raced past the lookup each made one: all keep the oldest, the others delete their own.
   */
  private async settleDuplicates(dockerNetworkId: string, mine: Network): Promise<Network> {
    const all = await this.catalog.taggedNetworks(dockerNetworkId);
    if (all.length <= 1) return mine;
    const key = (n: Network) => `${n.created_at ?? ''} ${n.id}`;
    const winner = all.reduce((a, b) => (key(a) <= key(b) ? a : b));
    if (winner.id === mine.id) return mine;
    await this.catalog.deleteNetwork(mine.id);
    return this.catalog.adoptNetwork(dockerNetworkId, winner, []);
  }

  private async adopt(dockerNetworkId: string, opts: NeutronOptions, marks: string[]): Promise<Network> {
    const net = await this.catalog.findByRef('networks', opts.net ?? {});
    if (opts.shared !== undefined && Boolean(net.shared) !== opts.shared) {
      throw new InvalidRequestError(
        `-o neutron.net.shared=${opts.shared} conflicts with Neutron network ${net.id}, which has shared=${Boolean(net.shared)}`,
      );
    }
    return explained(`tagging existing Neutron network ${net.id}`, () =>
      this.catalog.adoptNetwork(dockerNetworkId, net, [
        ...dockerIdTags(dockerNetworkId),
        existingNetworkTag(dockerNetworkId),
        hostTag(this.settings.host, dockerNetworkId),
        ...marks,
      ]),
    );
  }

  /**
   * Takes this Docker network's marks off a network that stays (a user's): its IDs, and every
   * host's mark for it (in Swarm, other nodes' too: the network is gone from the whole Swarm).
   */
  private untag(net: Network, dockerNetworkId: string): Promise<void> {
    const ours = new Set([
      ...dockerIdTags(dockerNetworkId),
      existingNetworkTag(dockerNetworkId),
      swarmTag(dockerNetworkId),
    ]);
    const hostMark = (t: string) =>
      t.startsWith(HOST_TAG_PREFIX) && t.endsWith(`:${dockerNetworkId.slice(0, 12)}`);
    return this.catalog.untagNetwork(net.id, (tags) => tags.filter((t) => !ours.has(t) && !hostMark(t)));
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
    const hinted = opts.pool[version] ? [] : this.catalog.ownPoolsFor(cidr);
    const candidates = hinted.length && !existing ? hinted : await this.candidatePools(cidr, version, opts);
    if (existing && opts.subnet[version]) {
      // The subnet the user named (neutron.subnet.*): Docker's PoolID names it, no tag needed.
      const named = await this.catalog.findByRef('subnets', opts.subnet[version]);
      if (named.id !== existing.id) {
        throw new InvalidRequestError(
          `the subnet named by neutron.subnet${version === 6 ? '.v6' : ''}.* (${named.id}) is not network ${net.id}'s ${cidr} subnet (${existing.id})`,
        );
      }
      return this.catalog.adoptSubnet(formatPoolId({ kind: 'subnet', subnetId: named.id }), existing, false);
    }
    if (existing) return this.adoptSubnet(existing, candidates, hinted);
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
      return explained(`creating Neutron subnet ${cidr} on network ${net.id}`, () =>
        this.catalog.createSubnet(poolId, attrsFor(pool), true),
      );
    }
    let lastError: NeutronApiError | undefined;
    for (const pool of candidates) {
      try {
        return await this.catalog.createSubnet(
          this.poolKey(pool, cidr),
          { ...attrsFor(pool), subnetpool_id: pool.id },
          false,
        );
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
    if (named) return [await this.catalog.findByRef('subnetpools', named)];
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
  private async adoptSubnet(subnet: Subnet, candidates: SubnetPool[], hinted: SubnetPool[]): Promise<Subnet> {
    // The subnet came from a pool Docker got here, or (nothing hinted: after a restart) from one of
    // kuryr's. Another host's kuryr makes the subnet from its own pool of the same name: then
    // the pool Docker just got here is a different one, and tags the subnet instead.
    const fromPool = candidates.find((p) => p.id === subnet.subnetpool_id);
    if (fromPool && (hinted.length === 0 || hinted.some((p) => p.id === fromPool.id)))
      return this.catalog.adoptSubnet(this.poolKey(fromPool, subnet.cidr), subnet, false);
    const pools = [...hinted, ...candidates.filter((c) => !hinted.some((h) => h.id === c.id))];
    // Already ours (a replay), or the PoolID of the pool Docker got for this CIDR.
    const key =
      pools.map((p) => this.poolKey(p, subnet.cidr)).find((k) => subnet.tags.includes(k)) ??
      (await this.unusedPoolKey(subnet.cidr, pools));
    if (!key) {
      throw new InvalidRequestError(
        `Neutron subnet ${subnet.id} (${subnet.cidr}) is already on network ${subnet.network_id} and every kuryr pool for ${subnet.cidr} serves another subnet: ` +
          'pass --subnet with a CIDR not used on that network',
      );
    }
    return explained(`tagging existing Neutron subnet ${subnet.id} with Docker pool ${key}`, () =>
      this.catalog.adoptSubnet(key, subnet, true),
    );
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

  /**
   * DeleteNetwork, or (`freeing`) a Swarm manager's FreeNetwork. A node's DeleteNetwork of a Swarm
   * network only means its last task there ended: the network stays for the rest of the Swarm,
   * without this host's mark and its warm ports.
   */
  async delete(dockerNetworkId: string, freeing = false): Promise<void> {
    await this.locks.run(dockerNetworkId, async () => {
      const net = await this.catalog.networkFor(dockerNetworkId);
      this.catalog.forgetNetwork(dockerNetworkId);
      if (!net) return;
      if (!freeing && net.tags.includes(swarmTag(dockerNetworkId))) {
        const mine = hostTag(this.settings.host, dockerNetworkId);
        this.teardowns.queueAfter(
          `leaving Swarm network ${net.id}`,
          this.pool.drainDockerNetwork(dockerNetworkId),
          () => this.catalog.untagNetwork(net.id, (tags) => tags.filter((t) => t !== mine)),
        );
        return;
      }
      const joined = net.tags.includes(existingNetworkTag(dockerNetworkId));
      if (joined) {
        // The user's network: it stays, with everything they made; only this Docker network's
        // warm ports (others may share the network) and our marks go, in the background after
        // the pools Docker released just before.
        this.teardowns.queueAfter(
          `untagging existing Neutron network ${net.id}`,
          this.pool.drainDockerNetwork(dockerNetworkId),
          () => this.untag(net, dockerNetworkId),
        );
        return;
      }
      // Ours. A user's port on it keeps it: refused now, so Docker keeps the network as well.
      // Otherwise Docker need not wait: the warm ports and the network (with its subnets) are
      // deleted in the background, after the pools Docker released just before.
      const ports = await this.neutron.list('ports', {
        network_id: net.id,
        fields: ['id', 'device_owner', 'tags'],
      });
      const foreign = ports.filter(
        (p) => !isKuryrCreatedPort(p) && !isExistingPort(p) && !p.device_owner.startsWith('network:'),
      );
      if (foreign.length) {
        throw new InvalidRequestError(
          `Neutron network ${net.id} of this Docker network holds ports kuryr did not make (${foreign.map((p) => p.id).join(', ')}): ` +
            'delete them, or move them to another network, and retry',
        );
      }
      this.teardowns.queueAfter(
        `deleting Neutron network ${net.id} of Docker network ${dockerNetworkId.slice(0, 12)}`,
        this.pool.drainDockerNetwork(dockerNetworkId, net.id),
        () => this.deleteOwn(net),
      );
    });
  }

  private async deleteOwn(net: Network): Promise<void> {
    try {
      await this.catalog.deleteNetwork(net.id);
    } catch (err) {
      if (!(err instanceof NeutronApiError && err.type === 'NetworkInUse')) throw err;
      // Ports that outlived their endpoints (a crash between calls): kuryr's go, a user's port
      // kuryr took is handed back (and, being the user's, keeps the network in use).
      const ports = await this.neutron.list('ports', { network_id: net.id });
      for (const port of ports.filter((p) => isKuryrCreatedPort(p) || isExistingPort(p)))
        await this.ports.release(port);
      const foreign = ports.filter((p) => !isKuryrCreatedPort(p) && !p.device_owner.startsWith('network:'));
      if (foreign.length) {
        throw explainNeutron(
          err,
          `deleting Neutron network ${net.id}`,
          `Ports not made by kuryr use it: ${foreign.map((p) => p.id).join(', ')}. Delete them, or move them to another network, and retry`,
        );
      }
      await explained(`deleting Neutron network ${net.id}`, () => this.catalog.deleteNetwork(net.id));
    }
  }
}
