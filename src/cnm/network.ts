// The libnetwork NetworkDriver: Docker's calls, dispatched to networks, endpoints and exposed ports.
import type {
  AllocateNetworkRequest,
  AllocateNetworkResponse,
  CreateEndpointRequest,
  CreateEndpointResponse,
  CreateNetworkRequest,
  EmptyResponse,
  EndpointOperInfoResponse,
  EndpointRequest,
  ExternalConnectivityRequest,
  GwAllocCheckRequest,
  GwAllocCheckResponse,
  JoinRequest,
  JoinResponse,
  NetworkCapabilitiesResponse,
  NetworkDriver,
  NetworkIdRequest,
} from '../docker/protocol.js';
import { OptionKeys } from '../docker/protocol.js';
import type { Catalog } from './catalog.js';
import { type EndpointHooks, type EndpointSettings, Endpoints } from './endpoints.js';
import { type ExposedPorts, exposedRanges } from './exposed-ports.js';
import { gatewaySkips } from './gateway-check.js';
import { type NetworkSettings, Networks } from './networks.js';
import type { PortBinding } from './port-binding.js';
import type { Teardowns } from './teardowns.js';
import type { WarmPool } from './warm-pool.js';
import type { WriteBehind } from './write-behind.js';

export interface DriverSettings extends NetworkSettings, EndpointSettings {
  processExternalConnectivity: boolean;
}

export class NeutronNetworkDriver implements NetworkDriver {
  private readonly networks: Networks;
  private readonly endpoints: Endpoints;

  constructor(
    private readonly catalog: Catalog,
    ports: PortBinding,
    pool: WarmPool,
    writes: WriteBehind,
    teardowns: Teardowns,
    exposed: ExposedPorts,
    private readonly settings: DriverSettings,
    hooks?: EndpointHooks,
  ) {
    this.networks = new Networks(catalog, ports, pool, teardowns, settings);
    this.endpoints = new Endpoints(catalog, ports, writes, exposed, settings, hooks);
  }

  async getCapabilities(): Promise<NetworkCapabilitiesResponse> {
    return { Scope: this.settings.scope, ConnectivityScope: this.settings.scope, GwAllocChecker: true };
  }

  /** Docker ≥ 28: no gateway address reserved where the Neutron subnet will have none. */
  gwAllocCheck(req: GwAllocCheckRequest): Promise<GwAllocCheckResponse> {
    return gatewaySkips(req, (ref) => this.catalog.findByRef('subnets', ref));
  }

  async createNetwork(req: CreateNetworkRequest): Promise<EmptyResponse> {
    await this.networks.create(req);
    return {};
  }

  async deleteNetwork(req: NetworkIdRequest): Promise<EmptyResponse> {
    await this.networks.delete(req.NetworkID);
    return {};
  }

  /**
   * A Swarm manager, once per swarm-scoped network, before any node's CreateNetwork: the manager
   * hands out task addresses from then on, so the Neutron network and subnets are made now. The
   * driver options (`docker network create -o`) come flat here, nested in CreateNetwork; they
   * travel on to every node's CreateNetwork as they are.
   */
  async allocateNetwork(req: AllocateNetworkRequest): Promise<AllocateNetworkResponse> {
    const options = req.Options ?? {};
    await this.networks.create(
      {
        NetworkID: req.NetworkID,
        Options: { [OptionKeys.generic]: options },
        IPv4Data: req.IPv4Data,
        IPv6Data: req.IPv6Data,
      },
      true,
    );
    return { Options: options };
  }

  /** The Swarm network is gone from the whole Swarm (the manager, once). */
  async freeNetwork(req: NetworkIdRequest): Promise<EmptyResponse> {
    await this.networks.delete(req.NetworkID, true);
    return {};
  }

  createEndpoint(req: CreateEndpointRequest): Promise<CreateEndpointResponse> {
    return this.endpoints.create(req);
  }

  async deleteEndpoint(req: EndpointRequest): Promise<EmptyResponse> {
    await this.endpoints.delete(req.EndpointID);
    return {};
  }

  async endpointOperInfo(req: EndpointRequest): Promise<EndpointOperInfoResponse> {
    return { Value: await this.endpoints.operInfo(req.EndpointID) };
  }

  join(req: JoinRequest): Promise<JoinResponse> {
    return this.endpoints.join(req.NetworkID, req.EndpointID);
  }

  async leave(): Promise<EmptyResponse> {
    // Docker moves the interface back to the host; DeleteEndpoint removes it.
    return {};
  }

  /**
   * Exposed ports → a security group on the port. Docker ≤ 28 calls this once, after Join, for the
   * container's gateway endpoint, and Revoke before Leave. Docker 29 calls it whenever the
   * endpoint's gateway role changes (again when it becomes the IPv6 gateway as well: applying is
   * idempotent), sends Revoke when it stops being the gateway, and sends neither for an endpoint
   * it forgot when the plugin was registered again. DeleteEndpoint removes the group in every case.
   */
  async programExternalConnectivity(req: ExternalConnectivityRequest): Promise<EmptyResponse> {
    if (!this.settings.processExternalConnectivity) return {};
    const ranges = exposedRanges(req.Options?.[OptionKeys.exposedPorts]);
    if (ranges.length === 0) return {};
    await this.endpoints.expose(req.EndpointID, ranges);
    return {};
  }

  /** At start-up: see Endpoints.repairRecordedEndpoints. */
  repairRecordedEndpoints(): Promise<number> {
    return this.endpoints.repairRecordedEndpoints();
  }

  async revokeExternalConnectivity(req: ExternalConnectivityRequest): Promise<EmptyResponse> {
    if (!this.settings.processExternalConnectivity) return {};
    await this.endpoints.unexpose(req.EndpointID);
    return {};
  }
}
