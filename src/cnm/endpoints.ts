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
import type { Catalog } from './catalog.js';
import { isExistingPort, isKuryrCreatedPort, macChangeTags } from './existing-ports.js';
import { explained } from './explain.js';
import type { ExposedPorts, PortRange } from './exposed-ports.js';
import { DEVICE_OWNER, dockerIdTags, endpointPortName } from './naming.js';
import { type PortBinding, UNBOUND } from './port-binding.js';
import type { WriteBehind } from './write-behind.js';

export interface EndpointSettings {
  vethDstPrefix: string;
  /** How long Join waits for the port to turn ACTIVE (0: not at all), and whether timing out fails Join. */
  activeWaitMs: number;
  activeWaitFatal: boolean;
  /** How long after the last start a behind-written identity goes to Neutron. */
  identityWriteDelayMs: number;
  /** Global (Swarm): no warm pool, and a task's address is the manager's to hand out. */
  scope: 'local' | 'global';
}

export interface EndpointHooks {
  warn(message: string): void;
  /** How long a Join waited for ACTIVE (for metrics). */
  activeWaited(seconds: number): void;
}

export class Endpoints {
  constructor(
    private readonly catalog: Catalog,
    private readonly ports: PortBinding,
    private readonly writes: WriteBehind,
    private readonly exposed: ExposedPorts,
    private readonly settings: EndpointSettings,
    private readonly hooks: EndpointHooks = { warn: () => undefined, activeWaited: () => undefined },
  ) {}

  /** Reads of what nobody remembers; every write goes through the catalog. */
  private get neutron() {
    return this.catalog.reader;
  }

  /**
   * Gives the endpoint its port: normally the one our IPAM created, already bound to this host with
   * its veth plugged, so only the endpoint's identity is written; a port made elsewhere is bound here.
   */
  async create(req: CreateEndpointRequest): Promise<CreateEndpointResponse> {
    const iface = req.Interface ?? {};
    const net = await this.catalog.requireNetworkFor(req.NetworkID);
    const address = iface.Address || iface.AddressIPv6;
    if (!address) {
      throw new InvalidRequestError(
        'CreateEndpoint without Interface.Address or AddressIPv6: use --ipam-driver kuryr',
      );
    }
    let port = await this.portFor(req.EndpointID, net, stripPrefix(address));
    const mac = iface.MacAddress?.toLowerCase() || undefined;
    const macChange = mac !== undefined && mac !== port.mac_address.toLowerCase();
    // A user's port kuryr took keeps its name; what else changes is recorded on it (its MAC).
    const existing = isExistingPort(port);
    const tags = [
      ...new Set([...port.tags, ...dockerIdTags(req.EndpointID), ...(macChange ? macChangeTags(port) : [])]),
    ];
    const identity = {
      device_id: req.EndpointID,
      ...(existing ? {} : { name: endpointPortName(req.EndpointID) }),
    };
    const ours = this.ports.isBoundHere(port) && port.device_owner === DEVICE_OWNER;
    if (ours && !macChange && this.ports.hasHostSide(port)) {
      // A port our IPAM made (a warm one, or one made just now): bound here, veth plugged; only the
      // endpoint's identity is missing (Join waits for ACTIVE if the agent is not done yet). It is
      // recorded on the veth's host end, a local write that outlives a crash of this daemon, and
      // written to Neutron behind Docker's answer: no request Docker waits for. (Written before the
      // answer, device_id cost a PUT per start, 0.3-0.5 s each on one busy API worker.) Neither a
      // restarted daemon nor `kuryr gc` takes a port whose veth records an endpoint or a
      // container holds.
      await this.ports.binder.recordEndpoint(port, req.EndpointID);
      this.identifyBehind(port, req.EndpointID, identity, tags);
      return { Interface: mac ? {} : { MacAddress: port.mac_address } };
    }
    if (macChange && !UNBOUND.has(port['binding:vif_type'] ?? 'unbound')) {
      // --mac-address on a port made before Docker chose a MAC (warm pool): Neutron refuses a new
      // MAC on a bound port, so it is unbound first, and its veth made again with the new MAC.
      await this.ports.binder.unbind(port);
      const before = port;
      port = await explained(`unbinding Neutron port ${port.id} to give it MAC ${mac}`, () =>
        this.catalog.updatePort(before, { 'binding:host_id': '' }),
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
    const bound = await explained(`binding Neutron port ${current.id} to host ${this.ports.host}`, () =>
      this.catalog.updatePort(current, attrs, tags),
    );
    await this.ports.ensureHost(bound);
    await this.ports.binder.identify?.(bound, req.EndpointID);
    return { Interface: mac ? {} : { MacAddress: bound.mac_address } };
  }

  /**
   * Remembers a port's endpoint identity (device_id, name, tags) at once and writes it to Neutron
   * in the background.
   */
  private identifyBehind(port: Port, endpointId: string, identity: Partial<Port>, tags: string[]): void {
    this.catalog.rememberPort({ ...port, ...identity, tags });
    this.writes.enqueue(
      port.id,
      `recording endpoint ${endpointId.slice(0, 12)} on Neutron port ${port.id}`,
      async () => {
        const identified = await this.catalog.writePortFields(port, identity, tags);
        // The host side learns the endpoint too (OVS: external_ids:vm-uuid).
        await this.ports.binder.identify?.(identified, endpointId);
      },
      (msg) => this.hooks.warn(msg),
      // Once the container is up: neutron-server's work for these writes would compete with
      // Docker's for the CPU while the container starts (measured: ~100 ms on 2 cores).
      this.settings.identityWriteDelayMs,
    );
  }

  /**
   * At start-up: ports a previous daemon gave to endpoints without living to write their
   * device_id (their veth records the endpoint) get it now; returns how many.
   */
  async repairRecordedEndpoints(): Promise<number> {
    const pending = await this.ports.recordedButUnwritten();
    for (const { port, endpointId } of pending) {
      const tags = [...new Set([...port.tags, ...dockerIdTags(endpointId)])];
      const identity = { device_id: endpointId, name: endpointPortName(endpointId) };
      this.identifyBehind(port, endpointId, identity, tags);
    }
    return pending.length;
  }

  /** The port our IPAM created for this address, or the one already bound to the endpoint (a replay). */
  private async portFor(endpointId: string, net: Network, ip: string): Promise<Port> {
    const cached = this.catalog.cachedPortAt(net.id, ip);
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
    const port = await this.catalog.portForEndpoint(endpointId);
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
    const port = await this.catalog.portForEndpoint(endpointId);
    if (!port)
      throw new NotFoundError(
        `endpoint ${endpointId.slice(0, 12)} has no Neutron port (device_id ${endpointId})`,
      );
    // Subnets are read fresh (their gateway and host routes may have changed in Neutron); for a
    // warm port the read started at RequestAddress.
    const [subnets] = await Promise.all([
      this.catalog.subnets(port.fixed_ips.map((f) => f.subnet_id)),
      this.catalog.requireNetworkFor(dockerNetworkId),
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
    if (activeWaitMs <= 0) return;
    // A port already ACTIVE (OVN often wires it between CreateEndpoint and Join) waited 0 s: the
    // histogram counts every Join, so its fast bucket shows how often the agent beat Docker.
    if (port.status === 'ACTIVE') {
      this.hooks.activeWaited(0);
      return;
    }
    const started = Date.now();
    const status = await this.ports.startWaitsActive(port.id, activeWaitMs);
    const waited = Date.now() - started;
    this.hooks.activeWaited(waited / 1000);
    const ctx = currentContext();
    if (ctx) ctx.waitedMs = (ctx.waitedMs ?? 0) + waited;
    if (status === 'ACTIVE') {
      this.catalog.rememberPort({ ...port, status });
      return;
    }
    const message =
      `Neutron port ${port.id} is still ${status} after ${activeWaitMs / 1000} s: the L2 agent on host ` +
      `'${this.ports.host}' has not wired it. Check the agent's log and 'openstack network agent list --host ${this.ports.host}'`;
    if (activeWaitFatal) throw new DriverError(message);
    this.hooks.warn(message);
  }

  async delete(endpointId: string): Promise<void> {
    const port = await this.catalog.portForEndpoint(endpointId);
    if (!port) return;
    // Its identity, if still queued, is not written: ReleaseAddress deletes the port (only ports
    // kuryr made have their identity written behind).
    await this.writes.cancel(port.id);
    // A port kuryr made keeps its veth (the container end is back on the host since Leave) until
    // ReleaseAddress, which follows: the warm pool takes it back plugged, or its deletion removes
    // the veth behind Docker's answer. A user's port, a dual-stack one, or a Swarm task's (global
    // scope has no pool) is unplugged now, as before.
    const keepsVeth =
      this.settings.scope === 'local' && isKuryrCreatedPort(port) && port.fixed_ips.length === 1;
    await Promise.all([keepsVeth ? undefined : this.ports.binder.unbind(port), this.exposed.remove(port)]);
    this.catalog.forgetEndpoint(endpointId);
  }

  /** Exposed ports → the port's security group; the cache keeps the port's groups current. */
  async expose(endpointId: string, ranges: PortRange[]): Promise<void> {
    const port = await this.catalog.portForEndpoint(endpointId);
    if (!port) throw new NotFoundError(`endpoint ${endpointId.slice(0, 12)} has no Neutron port`);
    await this.exposed.apply(port, ranges);
  }

  async unexpose(endpointId: string): Promise<void> {
    const port = await this.catalog.portForEndpoint(endpointId);
    if (port) await this.exposed.remove(port);
  }
}
