// Docker endpoints → the Neutron ports our IPAM created, bound to this host, plus the host side
// (veth, plugged for the port's vif_type). Docker replays calls after restarts, so every step
// converges: what exists is reused, what is gone counts as removed.
import { setTimeout as sleep } from 'node:timers/promises';
import type { HostBinder } from '../binding/index.js';
import type {
  CreateEndpointRequest,
  CreateEndpointResponse,
  JoinResponse,
  StaticRoute,
} from '../docker/protocol.js';
import { RouteType } from '../docker/protocol.js';
import type { Network, Port } from '../neutron/types.js';
import { DriverError, InvalidRequestError, NotFoundError } from '../util/errors.js';
import { stripPrefix } from './addresses.js';
import { explained } from './explain.js';
import type { ExposedPorts } from './exposed-ports.js';
import { DEVICE_OWNER, dockerIdTags, endpointPortName } from './naming.js';
import type { NeutronView } from './neutron-view.js';

export interface EndpointSettings {
  host: string;
  vethDstPrefix: string;
  /** How long Join waits for the port to turn ACTIVE (0: not at all), and whether timing out fails Join. */
  activeWaitMs: number;
  activeWaitFatal: boolean;
}

export interface EndpointHooks {
  warn(message: string): void;
  /** How long a Join waited for ACTIVE (for metrics). */
  activeWaited(seconds: number): void;
}

const DEFAULT_MTU = 1500;
const ACTIVE_POLL_MS = 200;

export class Endpoints {
  constructor(
    private readonly view: NeutronView,
    private readonly binder: HostBinder,
    private readonly exposed: ExposedPorts,
    private readonly settings: EndpointSettings,
    private readonly hooks: EndpointHooks = { warn: () => undefined, activeWaited: () => undefined },
  ) {}

  private get neutron() {
    return this.view.neutron;
  }

  async create(req: CreateEndpointRequest): Promise<CreateEndpointResponse> {
    const iface = req.Interface ?? {};
    const net = await this.view.requireNetworkFor(req.NetworkID);
    const address = iface.Address || iface.AddressIPv6;
    if (!address) {
      throw new InvalidRequestError(
        'CreateEndpoint without Interface.Address or AddressIPv6: use --ipam-driver kuryr',
      );
    }
    const port = await this.portFor(req.EndpointID, net, stripPrefix(address));
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
  private async portFor(endpointId: string, net: Network, ip: string): Promise<Port> {
    const ports = await this.neutron.list('ports', { network_id: net.id, fixed_ips: `ip_address=${ip}` });
    const port = ports.find((p) => p.device_id === endpointId) ?? ports.find((p) => !p.device_id);
    if (!port) {
      const holder = ports[0];
      throw new NotFoundError(
        holder
          ? `address ${ip} belongs to Neutron port ${holder.id} of device ${holder.device_id}, not to endpoint ${endpointId.slice(0, 12)}`
          : `no Neutron port holds ${ip} on network ${net.id}: the kuryr network driver needs --ipam-driver kuryr`,
      );
    }
    return port;
  }

  async operInfo(endpointId: string): Promise<Record<string, unknown>> {
    const port = await this.view.portForEndpoint(endpointId);
    if (!port) return {};
    return {
      port_id: port.id,
      status: port.status,
      mac_address: port.mac_address,
      fixed_ips: port.fixed_ips.map((f) => f.ip_address).join(','),
      vif_type: port['binding:vif_type'] ?? '',
    };
  }

  async join(dockerNetworkId: string, endpointId: string): Promise<JoinResponse> {
    const port = await this.view.portForEndpoint(endpointId);
    if (!port)
      throw new NotFoundError(
        `endpoint ${endpointId.slice(0, 12)} has no Neutron port (device_id ${endpointId})`,
      );
    const [subnets, net] = await Promise.all([
      this.view.subnets(port.fixed_ips.map((f) => f.subnet_id)),
      this.view.requireNetworkFor(dockerNetworkId),
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
    const started = Date.now();
    const deadline = started + activeWaitMs;
    let status = port.status;
    while (Date.now() < deadline) {
      await sleep(ACTIVE_POLL_MS);
      status = (await this.neutron.get('ports', port.id, { fields: ['status'] })).status;
      if (status === 'ACTIVE') {
        this.hooks.activeWaited((Date.now() - started) / 1000);
        return;
      }
    }
    this.hooks.activeWaited((Date.now() - started) / 1000);
    const message =
      `Neutron port ${port.id} is still ${status} after ${activeWaitMs / 1000} s: the L2 agent on host ` +
      `'${this.settings.host}' has not wired it. Check the agent's log and 'openstack network agent list --host ${this.settings.host}'`;
    if (activeWaitFatal) throw new DriverError(message);
    this.hooks.warn(message);
  }

  async delete(endpointId: string): Promise<void> {
    const port = await this.view.portForEndpoint(endpointId);
    if (!port) return;
    await Promise.all([this.binder.unbind(port), this.exposed.remove(port)]);
    // The port itself is Docker's address: ReleaseAddress, which follows, deletes it.
  }
}
