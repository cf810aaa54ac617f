// Docker endpoints → the Neutron ports our IPAM created, bound to this host, plus the host side
// (veth, plugged for the port's vif_type). Docker replays calls after restarts, so every step
// converges: what exists is reused, what is gone counts as removed.

import type {
  CreateEndpointRequest,
  CreateEndpointResponse,
  JoinResponse,
  StaticRoute,
} from '../docker/protocol.js';
import { RouteType } from '../docker/protocol.js';
import type { Network, Port } from '../neutron/types.js';
import { currentContext } from '../util/context.js';
import { DriverError, InvalidRequestError, NotFoundError } from '../util/errors.js';
import { stripPrefix } from './addresses.js';
import { explained } from './explain.js';
import type { ExposedPorts, PortRange } from './exposed-ports.js';
import { DEVICE_OWNER, dockerIdTags, endpointPortName } from './naming.js';
import type { NeutronView } from './neutron-view.js';
import { type PortBinding, UNBOUND } from './port-binding.js';

const WRITE_BEHIND_DELAY_MS = 1_000;

export interface EndpointSettings {
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

export class Endpoints {
  constructor(
    private readonly view: NeutronView,
    private readonly ports: PortBinding,
    private readonly exposed: ExposedPorts,
    private readonly settings: EndpointSettings,
    private readonly hooks: EndpointHooks = { warn: () => undefined, activeWaited: () => undefined },
  ) {}

  private get neutron() {
    return this.view.neutron;
  }

  /**
   * Gives the endpoint its port: normally the one our IPAM created, already bound to this host with
   * its veth plugged, so only the endpoint's identity is written; a port made elsewhere is bound here.
   */
  async create(req: CreateEndpointRequest): Promise<CreateEndpointResponse> {
    const iface = req.Interface ?? {};
    const net = await this.view.requireNetworkFor(req.NetworkID);
    const address = iface.Address || iface.AddressIPv6;
    if (!address) {
      throw new InvalidRequestError(
        'CreateEndpoint without Interface.Address or AddressIPv6: use --ipam-driver kuryr',
      );
    }
    let port = await this.portFor(req.EndpointID, net, stripPrefix(address));
    const mac = iface.MacAddress?.toLowerCase() || undefined;
    const macChange = mac !== undefined && mac !== port.mac_address.toLowerCase();
    const tags = [...new Set([...port.tags, ...dockerIdTags(req.EndpointID)])];
    const identity = { device_id: req.EndpointID, name: endpointPortName(req.EndpointID) };
    const ours = this.ports.isBoundHere(port) && port.device_owner === DEVICE_OWNER;
    if (ours && !macChange && port.status === 'ACTIVE' && this.ports.hasHostSide(port)) {
      // A warm port: bound, plugged, wired; only the endpoint's identity is missing. Docker need
      // not wait for that write: it goes on in the background (calls about the port wait for it),
      // so a container start with a warm port makes no Neutron request Docker waits for. If it
      // never lands (a crash, or Neutron failing all retries; logged), the container still works;
      // after a restart DeleteEndpoint finds no port by device_id, and ReleaseAddress, which finds
      // it by address, removes port and veth. A restarted daemon never adopts a port whose veth a
      // container holds.
      this.view.rememberPort({ ...port, ...identity, tags });
      this.view.writeBehind(
        port.id,
        `recording endpoint ${req.EndpointID.slice(0, 12)} on Neutron port ${port.id}`,
        () =>
          Promise.all([
            this.neutron.update('ports', port.id, identity),
            this.neutron.setTags('ports', port.id, tags),
          ]),
        (msg) => this.hooks.warn(msg),
        // Once the container is up: neutron-server's work for these writes would compete with
        // Docker's for the CPU while the container starts (measured: ~100 ms on 2 cores).
        WRITE_BEHIND_DELAY_MS,
      );
      return { Interface: mac ? {} : { MacAddress: port.mac_address } };
    }
    if (macChange && !UNBOUND.has(port['binding:vif_type'] ?? 'unbound')) {
      // --mac-address on a port made before Docker chose a MAC (warm pool): Neutron refuses a new
      // MAC on a bound port, so it is unbound first, and its veth made again with the new MAC.
      await this.ports.binder.unbind(port);
      const before = port;
      port = await explained(`unbinding Neutron port ${port.id} to give it MAC ${mac}`, () =>
        this.neutron.update('ports', before.id, { 'binding:host_id': '' }),
      );
    }
    const attrs = {
      ...identity,
      // Checked again, not `ours`: a MAC change has just unbound the port.
      ...(this.ports.isBoundHere(port) && port.device_owner === DEVICE_OWNER
        ? {}
        : { ...this.ports.bindAttrs(), admin_state_up: true }),
      ...(macChange ? { mac_address: mac } : {}),
    };
    const current = port;
    const [updated] = await Promise.all([
      explained(`binding Neutron port ${current.id} to host ${this.ports.host}`, () =>
        this.neutron.update('ports', current.id, attrs),
      ),
      this.neutron.setTags('ports', current.id, tags),
    ]);
    const bound = { ...updated, tags };
    await this.ports.ensureHost(bound);
    this.view.rememberPort(bound);
    return { Interface: mac ? {} : { MacAddress: bound.mac_address } };
  }

  /** The port our IPAM created for this address, or the one already bound to the endpoint (a replay). */
  private async portFor(endpointId: string, net: Network, ip: string): Promise<Port> {
    const cached = this.view.cachedPortAt(net.id, ip);
    if (cached && (!cached.device_id || cached.device_id === endpointId)) return cached;
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
    // Subnets are read fresh (their gateway and host routes may have changed in Neutron); for a
    // warm port the read started at RequestAddress.
    const [subnets] = await Promise.all([
      this.view.subnets(port.fixed_ips.map((f) => f.subnet_id)),
      this.view.requireNetworkFor(dockerNetworkId),
      // After a host reboot the veth is gone while Neutron still has the port: make it again.
      this.ports.ensureHost(port),
    ]);
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
      InterfaceName: {
        SrcName: this.ports.binder.containerIface(port),
        DstPrefix: this.settings.vethDstPrefix,
      },
      ...(v4?.gateway_ip ? { Gateway: v4.gateway_ip } : {}),
      ...(v6?.gateway_ip ? { GatewayIPv6: v6.gateway_ip } : {}),
      ...(routes.length ? { StaticRoutes: routes } : {}),
      // Neutron provides the gateway: no docker_gwbridge leg.
      DisableGatewayService: true,
    };
  }

  /** Waits (bounded) until the L2 agent has wired the port, so the container's network works at start. */
  private async waitActive(port: Port): Promise<void> {
    const { activeWaitMs, activeWaitFatal } = this.settings;
    if (activeWaitMs <= 0 || port.status === 'ACTIVE') return;
    const started = Date.now();
    const status = await this.ports.active.wait(port.id, activeWaitMs);
    const waited = Date.now() - started;
    this.hooks.activeWaited(waited / 1000);
    const ctx = currentContext();
    if (ctx) ctx.waitedMs = (ctx.waitedMs ?? 0) + waited;
    if (status === 'ACTIVE') {
      this.view.rememberPort({ ...port, status });
      return;
    }
    const message =
      `Neutron port ${port.id} is still ${status} after ${activeWaitMs / 1000} s: the L2 agent on host ` +
      `'${this.ports.host}' has not wired it. Check the agent's log and 'openstack network agent list --host ${this.ports.host}'`;
    if (activeWaitFatal) throw new DriverError(message);
    this.hooks.warn(message);
  }

  async delete(endpointId: string): Promise<void> {
    const port = await this.view.portForEndpoint(endpointId);
    if (!port) return;
    await this.view.settled(port.id);
    await Promise.all([this.ports.binder.unbind(port), this.exposed.remove(port)]);
    this.view.forgetEndpoint(endpointId);
    // The port itself is Docker's address: ReleaseAddress, which follows, deletes it.
  }

  /** Exposed ports → the port's security group; the cache keeps the port's groups current. */
  async expose(endpointId: string, ranges: PortRange[]): Promise<void> {
    const port = await this.view.portForEndpoint(endpointId);
    if (!port) throw new NotFoundError(`endpoint ${endpointId.slice(0, 12)} has no Neutron port`);
    const updated = await this.exposed.apply(port, ranges);
    if (updated) this.view.rememberPort({ ...port, security_groups: updated.security_groups });
  }

  async unexpose(endpointId: string): Promise<void> {
    const port = await this.view.portForEndpoint(endpointId);
    const left = port && (await this.exposed.remove(port));
    if (port && left) this.view.rememberPort({ ...port, security_groups: left });
  }
}
