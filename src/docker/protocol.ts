// The Docker libnetwork remote-driver and IPAM-driver wire protocol: one schema (and its static
// type) per request and response. Field names are Docker's, byte for byte. Schemas accept unknown
// extra fields because newer daemons add them; they only reject what we cannot work with.
import { type Static, type TSchema, Type } from '@sinclair/typebox';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** Docker network/endpoint IDs: 64 hex chars, or 25 lowercase alphanumerics in Swarm mode. */
export const DockerId = Type.String({ pattern: '^([0-9a-f]{64}|[0-9a-z]{25})$' });
const Cidr = Type.String({ minLength: 1, description: 'address/prefix' });
const OptionalCidr = Type.String({ description: 'address/prefix or empty' });
/** Option maps: values are strings, booleans, nested maps or arrays depending on the key. */
const AnyOptions = Nullable(Type.Record(Type.String(), Type.Unknown()));
const StringOptions = Nullable(Type.Record(Type.String(), Type.String()));

// ---------------------------------------------------------------- plugin handshake
export const ActivateResponse = Type.Object({
  Implements: Type.Array(Type.Union([Type.Literal('NetworkDriver'), Type.Literal('IpamDriver')])),
});

// ---------------------------------------------------------------- NetworkDriver
export const NetworkCapabilitiesResponse = Type.Object({
  Scope: Type.Union([Type.Literal('local'), Type.Literal('global')]),
  ConnectivityScope: Type.Union([Type.Literal('local'), Type.Literal('global')]),
  /** Docker ≥ 28: the driver answers GwAllocCheck (older engines ignore the field). */
  GwAllocChecker: Type.Optional(Type.Boolean()),
});

/** Docker ≥ 28, before RequestPool: may it skip reserving a gateway address per family? */
export const GwAllocCheckRequest = Type.Object({ Options: Type.Optional(AnyOptions) });
export const GwAllocCheckResponse = Type.Object({ SkipIPv4: Type.Boolean(), SkipIPv6: Type.Boolean() });

export const IpamData = Type.Object({
  AddressSpace: Type.Optional(Type.String()),
  Pool: Cidr,
  Gateway: Type.Optional(Type.String()),
  AuxAddresses: Type.Optional(Nullable(Type.Record(Type.String(), Type.String()))),
});

/** IPv4Data is `[]` on a network with IPv4 disabled (Docker ≥ 28 `--ipv4=false`). */
export const CreateNetworkRequest = Type.Object({
  NetworkID: DockerId,
  Options: AnyOptions,
  IPv4Data: Nullable(Type.Array(IpamData)),
  IPv6Data: Nullable(Type.Array(IpamData)),
});

export const NetworkIdRequest = Type.Object({ NetworkID: DockerId });

export const AllocateNetworkRequest = Type.Object({
  NetworkID: DockerId,
  Options: StringOptions,
  IPv4Data: Nullable(Type.Array(IpamData)),
  IPv6Data: Nullable(Type.Array(IpamData)),
});
export const AllocateNetworkResponse = Type.Object({ Options: StringOptions });

export const EndpointInterface = Type.Object({
  Address: Type.Optional(OptionalCidr),
  AddressIPv6: Type.Optional(OptionalCidr),
  MacAddress: Type.Optional(Type.String()),
});

export const CreateEndpointRequest = Type.Object({
  NetworkID: DockerId,
  EndpointID: DockerId,
  Interface: Nullable(EndpointInterface),
  Options: AnyOptions,
});
export const CreateEndpointResponse = Type.Object({ Interface: Nullable(EndpointInterface) });

export const EndpointRequest = Type.Object({ NetworkID: DockerId, EndpointID: DockerId });
export const EndpointOperInfoResponse = Type.Object({ Value: Type.Record(Type.String(), Type.Unknown()) });

export const JoinRequest = Type.Object({
  NetworkID: DockerId,
  EndpointID: DockerId,
  SandboxKey: Type.String({ minLength: 1 }),
  Options: AnyOptions,
});

export const RouteType = { NextHop: 0, Connected: 1 } as const;
export const StaticRoute = Type.Object({
  Destination: Cidr,
  RouteType: Type.Union([Type.Literal(RouteType.NextHop), Type.Literal(RouteType.Connected)]),
  NextHop: Type.Optional(Type.String()),
});

export const JoinResponse = Type.Object({
  InterfaceName: Type.Object({ SrcName: Type.String(), DstPrefix: Type.String() }),
  Gateway: Type.Optional(Type.String()),
  GatewayIPv6: Type.Optional(Type.String()),
  StaticRoutes: Type.Optional(Type.Array(StaticRoute)),
  DisableGatewayService: Type.Boolean(),
});

export const ExternalConnectivityRequest = Type.Object({
  NetworkID: DockerId,
  EndpointID: DockerId,
  Options: Type.Optional(AnyOptions),
});

export const DiscoveryRequest = Type.Object({
  DiscoveryType: Type.Integer(),
  DiscoveryData: Type.Optional(Type.Unknown()),
});

// ---------------------------------------------------------------- IpamDriver
export const IpamCapabilitiesResponse = Type.Object({
  RequiresMACAddress: Type.Boolean(),
  RequiresRequestReplay: Type.Boolean(),
});

export const AddressSpacesResponse = Type.Object({
  LocalDefaultAddressSpace: Type.String(),
  GlobalDefaultAddressSpace: Type.String(),
});

export const RequestPoolRequest = Type.Object({
  AddressSpace: Type.String(),
  Pool: Type.Optional(Type.String()),
  SubPool: Type.Optional(Type.String()),
  Options: StringOptions,
  V6: Type.Optional(Type.Boolean()),
});
export const RequestPoolResponse = Type.Object({
  PoolID: Type.String(),
  Pool: Cidr,
  Data: Type.Record(Type.String(), Type.String()),
});

export const PoolIdRequest = Type.Object({ PoolID: Type.String({ minLength: 1 }) });

export const RequestAddressRequest = Type.Object({
  PoolID: Type.String({ minLength: 1 }),
  Address: Type.Optional(Type.String()),
  Options: StringOptions,
});
export const RequestAddressResponse = Type.Object({
  Address: Cidr,
  Data: Type.Record(Type.String(), Type.String()),
});

export const ReleaseAddressRequest = Type.Object({
  PoolID: Type.String({ minLength: 1 }),
  Address: Type.String({ minLength: 1 }),
});

export const EmptyResponse = Type.Object({});

// ---------------------------------------------------------------- well-known option keys
export const OptionKeys = {
  generic: 'com.docker.network.generic',
  /** Docker ≥ 28 sends it with every network (false with --ipv4=false). */
  enableIPv4: 'com.docker.network.enable_ipv4',
  enableIPv6: 'com.docker.network.enable_ipv6',
  internal: 'com.docker.network.internal',
  requestAddressType: 'RequestAddressType',
  gatewayAddressType: 'com.docker.network.gateway',
  macAddress: 'com.docker.network.endpoint.macaddress',
  /** Docker ≥ 29: the endpoint's name in every endpoint RequestAddress. */
  endpointName: 'com.docker.network.endpoint.name',
  endpointSysctls: 'com.docker.network.endpoint.sysctls',
  endpointIfname: 'com.docker.network.endpoint.ifname',
  exposedPorts: 'com.docker.network.endpoint.exposedports',
  portMap: 'com.docker.network.portmap',
  /** Docker ≥ 29 in ProgramExternalConnectivity when another endpoint is the IPv6 gateway. */
  noProxy6To4: 'com.docker.network.driver.private.no_proxy_6to4',
} as const;

export type ActivateResponse = Static<typeof ActivateResponse>;
export type IpamData = Static<typeof IpamData>;
export type CreateNetworkRequest = Static<typeof CreateNetworkRequest>;
export type NetworkIdRequest = Static<typeof NetworkIdRequest>;
export type AllocateNetworkRequest = Static<typeof AllocateNetworkRequest>;
export type AllocateNetworkResponse = Static<typeof AllocateNetworkResponse>;
export type EndpointInterface = Static<typeof EndpointInterface>;
export type CreateEndpointRequest = Static<typeof CreateEndpointRequest>;
export type CreateEndpointResponse = Static<typeof CreateEndpointResponse>;
export type EndpointRequest = Static<typeof EndpointRequest>;
export type EndpointOperInfoResponse = Static<typeof EndpointOperInfoResponse>;
export type JoinRequest = Static<typeof JoinRequest>;
export type StaticRoute = Static<typeof StaticRoute>;
export type JoinResponse = Static<typeof JoinResponse>;
export type ExternalConnectivityRequest = Static<typeof ExternalConnectivityRequest>;
export type DiscoveryRequest = Static<typeof DiscoveryRequest>;
export type NetworkCapabilitiesResponse = Static<typeof NetworkCapabilitiesResponse>;
export type GwAllocCheckRequest = Static<typeof GwAllocCheckRequest>;
export type GwAllocCheckResponse = Static<typeof GwAllocCheckResponse>;
export type IpamCapabilitiesResponse = Static<typeof IpamCapabilitiesResponse>;
export type AddressSpacesResponse = Static<typeof AddressSpacesResponse>;
export type RequestPoolRequest = Static<typeof RequestPoolRequest>;
export type RequestPoolResponse = Static<typeof RequestPoolResponse>;
export type PoolIdRequest = Static<typeof PoolIdRequest>;
export type RequestAddressRequest = Static<typeof RequestAddressRequest>;
export type RequestAddressResponse = Static<typeof RequestAddressResponse>;
export type ReleaseAddressRequest = Static<typeof ReleaseAddressRequest>;
export type EmptyResponse = Static<typeof EmptyResponse>;

/** What the network-driver half of the plugin must implement (optional methods answer 404). */
export interface NetworkDriver {
  getCapabilities(): Promise<NetworkCapabilitiesResponse>;
  createNetwork(req: CreateNetworkRequest): Promise<EmptyResponse>;
  deleteNetwork(req: NetworkIdRequest): Promise<EmptyResponse>;
  allocateNetwork(req: AllocateNetworkRequest): Promise<AllocateNetworkResponse>;
  freeNetwork(req: NetworkIdRequest): Promise<EmptyResponse>;
  createEndpoint(req: CreateEndpointRequest): Promise<CreateEndpointResponse>;
  deleteEndpoint(req: EndpointRequest): Promise<EmptyResponse>;
  endpointOperInfo(req: EndpointRequest): Promise<EndpointOperInfoResponse>;
  join(req: JoinRequest): Promise<JoinResponse>;
  leave(req: EndpointRequest): Promise<EmptyResponse>;
  /** Docker ≥ 28, when getCapabilities says GwAllocChecker: true. */
  gwAllocCheck?(req: GwAllocCheckRequest): Promise<GwAllocCheckResponse>;
  programExternalConnectivity?(req: ExternalConnectivityRequest): Promise<EmptyResponse>;
  revokeExternalConnectivity?(req: ExternalConnectivityRequest): Promise<EmptyResponse>;
}

/** What the IPAM half of the plugin must implement. */
export interface IpamDriver {
  getCapabilities(): Promise<IpamCapabilitiesResponse>;
  getDefaultAddressSpaces(): Promise<AddressSpacesResponse>;
  requestPool(req: RequestPoolRequest): Promise<RequestPoolResponse>;
  releasePool(req: PoolIdRequest): Promise<EmptyResponse>;
  requestAddress(req: RequestAddressRequest): Promise<RequestAddressResponse>;
  releaseAddress(req: ReleaseAddressRequest): Promise<EmptyResponse>;
}
