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
  JoinRequest,
  JoinResponse,
  NetworkCapabilitiesResponse,
  NetworkDriver,
  NetworkIdRequest,
} from '../docker/protocol.js';
import { OptionKeys } from '../docker/protocol.js';
import { type EndpointHooks, type EndpointSettings, Endpoints } from './endpoints.js';
import { ExposedPorts, exposedRanges } from './exposed-ports.js';
import { type NetworkSettings, Networks } from './networks.js';
import type { NeutronView } from './neutron-view.js';
import type { PortBinding } from './port-binding.js';
import type { WarmPool } from './warm-pool.js';

export interface DriverSettings extends NetworkSettings, EndpointSettings {
  processExternalConnectivity: boolean;
}

export class NeutronNetworkDriver implements NetworkDriver {
  private readonly networks: Networks;
  private readonly endpoints: Endpoints;
  private readonly exposed: ExposedPorts;

  constructor(
    view: NeutronView,
    ports: PortBinding,
    pool: WarmPool,
    private readonly settings: DriverSettings,
    hooks?: EndpointHooks,
  ) {
    this.networks = new Networks(view, ports, pool, settings);
    this.exposed = new ExposedPorts(view.neutron);
    this.endpoints = new Endpoints(view, ports, this.exposed, settings, hooks);
  }

  async getCapabilities(): Promise<NetworkCapabilitiesResponse> {
    return { Scope: this.settings.scope, ConnectivityScope: this.settings.scope };
  }

  async createNetwork(req: CreateNetworkRequest): Promise<EmptyResponse> {
    await this.networks.create(req);
    return {};
  }

  async deleteNetwork(req: NetworkIdRequest): Promise<EmptyResponse> {
    await this.networks.delete(req.NetworkID);
    return {};
  }

  /** Swarm managers allocate before workers create: the options travel to every CreateNetwork. */
  async allocateNetwork(req: AllocateNetworkRequest): Promise<AllocateNetworkResponse> {
    return { Options: req.Options ?? {} };
  }

  async freeNetwork(): Promise<EmptyResponse> {
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

  /** Exposed ports → a security group on the port (Docker calls this for the gateway endpoint). */
  async programExternalConnectivity(req: ExternalConnectivityRequest): Promise<EmptyResponse> {
    if (!this.settings.processExternalConnectivity) return {};
    const ranges = exposedRanges(req.Options?.[OptionKeys.exposedPorts]);
    if (ranges.length === 0) return {};
    await this.endpoints.expose(req.EndpointID, ranges);
    return {};
  }

  async revokeExternalConnectivity(req: ExternalConnectivityRequest): Promise<EmptyResponse> {
    if (!this.settings.processExternalConnectivity) return {};
    await this.endpoints.unexpose(req.EndpointID);
    return {};
  }
}
