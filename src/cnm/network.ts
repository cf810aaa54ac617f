// Docker networks and endpoints → Neutron networks, subnets and ports, plus the host side of each
// endpoint. Docker replays calls after restarts, so every handler converges: what already exists is
// reused, what is already gone counts as removed.

import { setTimeout as sleep } from 'node:timers/promises';
import type { HostBinder } from '../binding/index.js';
import type {
  AllocateNetworkRequest,
  AllocateNetworkResponse,
  CreateEndpointRequest,
  CreateEndpointResponse,
  CreateNetworkRequest,
  EmptyResponse,
  EndpointOperInfoResponse,
  EndpointRequest,
  IpamData,
  JoinRequest,
  JoinResponse,
  NetworkCapabilitiesResponse,
  NetworkDriver,
  NetworkIdRequest,
  StaticRoute,
} from '../docker/protocol.js';
import { RouteType } from '../docker/protocol.js';
import { NeutronApiError } from '../neutron/errors.js';
import type { Network, Port, Subnet } from '../neutron/types.js';
import { DriverError, InvalidRequestError, NotFoundError } from '../util/errors.js';
import { KeyedMutex } from '../util/keyed-mutex.js';
import { networkOf, parseCidr, stripPrefix } from './addresses.js';
import { explained } from './explain.js';
import {
  DEVICE_OWNER,
  dockerIdTags,
  endpointPortName,
  isKuryrPortOwner,
  networkName,
  subnetName,
  subnetPoolName,
} from './naming.js';
import type { NeutronView } from './neutron-view.js';

export interface NetworkSettings {
  scope: 'local' | 'global';
  host: string;
  vethDstPrefix: string;
  enableDhcp: boolean;
  subnetpoolNamePrefix: string;
  /** How long Join waits for the port to turn ACTIVE (0: not at all), and whether timing out fails Join. */
  activeWaitMs: number;
  activeWaitFatal: boolean;
}

const DEFAULT_MTU = 1500;
const ACTIVE_POLL_MS = 200;

export class NeutronNetworkDriver implements NetworkDriver {
  private readonly networkLocks = new KeyedMutex();

  constructor(
    private readonly view: NeutronView,
    private readonly binder: HostBinder,
    private readonly settings: NetworkSettings,
    private readonly onWarning?: (message: string) => void,
  ) {}

  private get neutron() {
    return this.view.neutron;
  }

  async getCapabilities(): Promise<NetworkCapabilitiesResponse> {
    return { Scope: this.settings.scope, ConnectivityScope: this.settings.scope };
  }

  // ------------------------------------------------------------------ networks
  async createNetwork(req: CreateNetworkRequest): Promise<EmptyResponse> {
    const ipamData = [...(req.IPv4Data ?? []), ...(req.IPv6Data ?? [])].filter(
      (d) => d.Pool && d.Pool !== '0.0.0.0/0',
    );
    return this.networkLocks.run(req.NetworkID, async () => {
      let net = await this.view.networkFor(req.NetworkID);
      let created = false;
      if (!net) {
        net = await this.createTaggedNetwork(req.NetworkID);
        created = true;
      }
      try {
        for (const data of ipamData) await this.ensureSubnet(net, data);
      } catch (err) {
        // Leave nothing behind for a network Docker will not know about.
        if (created) {
          this.view.forgetNetwork(req.NetworkID);
          await this.neutron.delete('networks', net.id).catch(() => undefined);
        }
        throw err;
      }
      return {};
    });
  }

  private async createTaggedNetwork(dockerNetworkId: string): Promise<Network> {
    const net = await explained(
      `creating the Neutron network for Docker network ${dockerNetworkId.slice(0, 12)}`,
      () => this.neutron.create('networks', { name: networkName(dockerNetworkId), admin_state_up: true }),
    );
    const tags = dockerIdTags(dockerNetworkId);
    try {
      // Neutron (Zed) does not accept tags in POST: a second call, undone if it fails.
      await this.neutron.setTags('networks', net.id, tags);
    } catch (err) {
      await this.neutron.delete('networks', net.id).catch(() => undefined);
      throw err;
    }
    const tagged = { ...net, tags };
    this.view.rememberNetwork(dockerNetworkId, tagged);
    return tagged;
  }

  /**
   * Creates the subnet for one Docker pool. IPAMData does not carry the PoolID, so the pool is found
   * by its name; with the same CIDR on several Docker networks there are several such pools, and
   * Neutron itself refuses the ones already used, which makes the choice race-free.
   */
  private async ensureSubnet(net: Network, data: IpamData): Promise<Subnet> {
    const cidr = networkOf(data.Pool);
    const { version } = parseCidr(data.Pool, 'Pool');
    const existing = await this.neutron.list('subnets', { network_id: net.id, cidr });
    if (existing[0]) return existing[0];
    const gateway = data.Gateway ? stripPrefix(data.Gateway) : undefined;
    const pools = await this.neutron.list('subnetpools', {
      name: subnetPoolName(this.settings.subnetpoolNamePrefix, cidr),
    });
    const attrs = {
      network_id: net.id,
      name: subnetName(cidr),
      ip_version: version,
      cidr,
      enable_dhcp: this.settings.enableDhcp,
      ...(gateway ? { gateway_ip: gateway } : {}),
    };
    if (pools.length === 0) {
      throw new InvalidRequestError(
        `no kuryr pool for ${cidr}: use --ipam-driver kuryr with the kuryr network driver`,
      );
    }
    let lastError: unknown;
    for (const pool of pools) {
      try {
        return await this.neutron.create('subnets', { ...attrs, subnetpool_id: pool.id });
      } catch (err) {
        if (
          !(err instanceof NeutronApiError) ||
          !['SubnetAllocationError', 'NetworkSubnetPoolAffinityError'].includes(err.type)
        ) {
          throw (
            (err as NeutronApiError).explain?.(`creating Neutron subnet ${cidr} on network ${net.id}`) ?? err
          );
        }
        lastError = err;
      }
    }
    throw (lastError as NeutronApiError).explain(
      `creating Neutron subnet ${cidr}: every kuryr subnetpool for ${cidr} is already used by another network`,
    );
  }

  async deleteNetwork(req: NetworkIdRequest): Promise<EmptyResponse> {
    return this.networkLocks.run(req.NetworkID, async () => {
      const net = await this.view.networkFor(req.NetworkID);
      if (!net) return {};
      this.view.forgetNetwork(req.NetworkID);
      this.view.forgetSubnetsOf(net.id);
      try {
        await this.neutron.delete('networks', net.id);
      } catch (err) {
        if (!(err instanceof NeutronApiError && err.type === 'NetworkInUse')) throw err;
        // Ports kuryr made that outlived their endpoints (a crash between calls): they go too.
        const ports = await this.neutron.list('ports', { network_id: net.id });
        const foreign = ports.filter(
          (p) => !isKuryrPortOwner(p.device_owner) && !p.device_owner.startsWith('network:'),
        );
        if (foreign.length) {
          throw err.explain(
            `deleting Neutron network ${net.id}`,
            `Ports not made by kuryr use it: ${foreign.map((p) => p.id).join(', ')}`,
          );
        }
        for (const port of ports.filter((p) => isKuryrPortOwner(p.device_owner)))
          await this.neutron.delete('ports', port.id);
        await explained(`deleting Neutron network ${net.id}`, () => this.neutron.delete('networks', net.id));
      }
      return {};
    });
  }

  async allocateNetwork(req: AllocateNetworkRequest): Promise<AllocateNetworkResponse> {
    return { Options: req.Options ?? {} };
  }

  async freeNetwork(): Promise<EmptyResponse> {
    return {};
  }

  // ------------------------------------------------------------------ endpoints
  async createEndpoint(req: CreateEndpointRequest): Promise<CreateEndpointResponse> {
    const iface = req.Interface ?? {};
    const net = await this.view.requireNetworkFor(req.NetworkID);
    const address = iface.Address || iface.AddressIPv6;
    if (!address) {
      throw new InvalidRequestError(
        'CreateEndpoint without Interface.Address or AddressIPv6: use --ipam-driver kuryr',
      );
    }
    const port = await this.endpointPort(req.EndpointID, net, stripPrefix(address));
    const mac = iface.MacAddress?.toLowerCase();
    const bound = await explained(`binding Neutron port ${port.id} to host ${this.settings.host}`, () =>
      this.neutron.update('ports', port.id, {
        'binding:host_id': this.settings.host,
        device_owner: DEVICE_OWNER,
        device_id: req.EndpointID,
        name: endpointPortName(req.EndpointID),
        admin_state_up: true,
        ...(mac && mac !== port.mac_address.toLowerCase() ? { mac_address: mac } : {}),
      }),
    );
    const tags = [...new Set([...port.tags, ...dockerIdTags(req.EndpointID)])];
    await Promise.all([
      this.neutron.setTags('ports', port.id, tags),
      this.binder.bind(bound, net.mtu ?? DEFAULT_MTU),
    ]);
    return { Interface: mac ? {} : { MacAddress: bound.mac_address } };
  }

  /** The port our IPAM created for this address, or the one already bound to the endpoint (a replay). */
  private async endpointPort(endpointId: string, net: Network, ip: string): Promise<Port> {
    const ports = await this.neutron.list('ports', { network_id: net.id, fixed_ips: `ip_address=${ip}` });
    const port = ports.find((p) => p.device_id === endpointId) ?? ports.find((p) => !p.device_id);
    if (!port) {
      const holder = ports[0];
      throw new NotFoundError(
        holder
          ? `address ${ip} belongs to Neutron port ${holder.id} of device ${holder.device_id}, not to endpoint ${endpointId.slice(0, 12)}`
          : `no Neutron port holds ${ip} on network ${net.id}: the network driver kuryr needs --ipam-driver kuryr`,
      );
    }
    return port;
  }

  private async requireEndpointPort(endpointId: string): Promise<Port> {
    const port = await this.view.portForEndpoint(endpointId);
    if (!port)
      throw new NotFoundError(
        `endpoint ${endpointId.slice(0, 12)} has no Neutron port (device_id ${endpointId})`,
      );
    return port;
  }

  async endpointOperInfo(req: EndpointRequest): Promise<EndpointOperInfoResponse> {
    const port = await this.view.portForEndpoint(req.EndpointID);
    if (!port) return { Value: {} };
    return {
      Value: {
        port_id: port.id,
        status: port.status,
        mac_address: port.mac_address,
        fixed_ips: port.fixed_ips.map((f) => f.ip_address).join(','),
        vif_type: port['binding:vif_type'] ?? '',
      },
    };
  }

  async join(req: JoinRequest): Promise<JoinResponse> {
    const port = await this.requireEndpointPort(req.EndpointID);
    const [subnets, net] = await Promise.all([
      this.view.subnets(port.fixed_ips.map((f) => f.subnet_id)),
      this.view.requireNetworkFor(req.NetworkID),
    ]);
    // After a host reboot the veth is gone while Neutron still has the port: make it again.
    await this.binder.bind(port, net.mtu ?? DEFAULT_MTU);
    await this.waitActive(port);
    const v4 = subnets.find((s) => s.ip_version === 4);
    const v6 = subnets.find((s) => s.ip_version === 6);
    const routes: StaticRoute[] = subnets.flatMap((s) =>
      s.host_routes.map((r) => ({
        Destination: r.destination,
        RouteType: RouteType.NextHop,
        NextHop: r.nexthop,
      })),
    );
    return {
      InterfaceName: { SrcName: this.binder.containerIface(port), DstPrefix: this.settings.vethDstPrefix },
      ...(v4?.gateway_ip ? { Gateway: v4.gateway_ip } : {}),
      ...(v6?.gateway_ip ? { GatewayIPv6: v6.gateway_ip } : {}),
      ...(routes.length ? { StaticRoutes: routes } : {}),
      // Neutron provides the gateway: no docker_gwbridge leg.
      DisableGatewayService: true,
    };
  }

  /** Polls the port until the L2 agent has wired it (ACTIVE), within the configured bound. */
  private async waitActive(port: Port): Promise<void> {
    const { activeWaitMs, activeWaitFatal } = this.settings;
    if (activeWaitMs <= 0 || port.status === 'ACTIVE') return;
    const deadline = Date.now() + activeWaitMs;
    let status = port.status;
    while (Date.now() < deadline) {
      await sleep(ACTIVE_POLL_MS);
      status = (await this.neutron.get('ports', port.id, { fields: ['status'] })).status;
      if (status === 'ACTIVE') return;
    }
    const message =
      `Neutron port ${port.id} is still ${status} after ${activeWaitMs / 1000} s: the L2 agent on host ` +
      `'${this.settings.host}' has not wired it. Check the agent's log and 'openstack network agent list --host ${this.settings.host}'`;
    if (activeWaitFatal) throw new DriverError(message);
    this.onWarning?.(message);
  }

  async leave(): Promise<EmptyResponse> {
    // Docker moves the interface back to the host; DeleteEndpoint removes it.
    return {};
  }

  async deleteEndpoint(req: EndpointRequest): Promise<EmptyResponse> {
    const port = await this.view.portForEndpoint(req.EndpointID);
    if (!port) return {};
    await this.binder.unbind(port);
    // The port itself is Docker's address: ReleaseAddress, which follows, deletes it.
    return {};
  }
}
