// In-process fakes of the two driver halves: they record every request they receive and either
// return a canned answer or throw whatever a test queued for that method.
import { pino } from 'pino';
import type * as P from '../../../src/docker/protocol.js';
import { currentContext } from '../../../src/util/context.js';

export const silentLogger = pino({ level: 'silent' });

export interface RecordedCall {
  method: string;
  req: unknown;
  /** Handler name seen through the AsyncLocalStorage context while the call ran. */
  handler?: string;
}

class Recorder {
  readonly calls: RecordedCall[] = [];
  /** Method name -> error to throw instead of answering. */
  readonly failWith = new Map<string, unknown>();
  /** Method name -> answer overriding the canned one. */
  readonly answers = new Map<string, unknown>();

  protected async rec<T>(method: string, req: unknown, result: T): Promise<T> {
    this.calls.push({ method, req, handler: currentContext()?.handler });
    if (this.failWith.has(method)) throw this.failWith.get(method);
    return (this.answers.has(method) ? this.answers.get(method) : result) as T;
  }

  callsTo(method: string): RecordedCall[] {
    return this.calls.filter((c) => c.method === method);
  }
}

export class FakeNetworkDriver extends Recorder implements P.NetworkDriver {
  getCapabilities(): Promise<P.NetworkCapabilitiesResponse> {
    return this.rec('getCapabilities', undefined, { Scope: 'local', ConnectivityScope: 'global' });
  }
  createNetwork(req: P.CreateNetworkRequest): Promise<P.EmptyResponse> {
    return this.rec('createNetwork', req, {});
  }
  deleteNetwork(req: P.NetworkIdRequest): Promise<P.EmptyResponse> {
    return this.rec('deleteNetwork', req, {});
  }
  allocateNetwork(req: P.AllocateNetworkRequest): Promise<P.AllocateNetworkResponse> {
    return this.rec('allocateNetwork', req, { Options: null });
  }
  freeNetwork(req: P.NetworkIdRequest): Promise<P.EmptyResponse> {
    return this.rec('freeNetwork', req, {});
  }
  createEndpoint(req: P.CreateEndpointRequest): Promise<P.CreateEndpointResponse> {
    return this.rec('createEndpoint', req, { Interface: { MacAddress: 'fa:16:3e:00:00:01' } });
  }
  deleteEndpoint(req: P.EndpointRequest): Promise<P.EmptyResponse> {
    return this.rec('deleteEndpoint', req, {});
  }
  endpointOperInfo(req: P.EndpointRequest): Promise<P.EndpointOperInfoResponse> {
    return this.rec('endpointOperInfo', req, { Value: {} });
  }
  join(req: P.JoinRequest): Promise<P.JoinResponse> {
    return this.rec('join', req, {
      InterfaceName: { SrcName: 'tap0123', DstPrefix: 'eth' },
      Gateway: '10.0.0.1',
      DisableGatewayService: false,
    });
  }
  leave(req: P.EndpointRequest): Promise<P.EmptyResponse> {
    return this.rec('leave', req, {});
  }
}

/** A network driver that also implements the optional external-connectivity methods. */
export class FakeNetworkDriverWithExternal extends FakeNetworkDriver {
  programExternalConnectivity(req: P.ExternalConnectivityRequest): Promise<P.EmptyResponse> {
    return this.rec('programExternalConnectivity', req, {});
  }
  revokeExternalConnectivity(req: P.ExternalConnectivityRequest): Promise<P.EmptyResponse> {
    return this.rec('revokeExternalConnectivity', req, {});
  }
}

export class FakeIpamDriver extends Recorder implements P.IpamDriver {
  getCapabilities(): Promise<P.IpamCapabilitiesResponse> {
    return this.rec('getCapabilities', undefined, { RequiresMACAddress: true, RequiresRequestReplay: false });
  }
  getDefaultAddressSpaces(): Promise<P.AddressSpacesResponse> {
    return this.rec('getDefaultAddressSpaces', undefined, {
      LocalDefaultAddressSpace: 'no_address_space',
      GlobalDefaultAddressSpace: 'no_address_space',
    });
  }
  requestPool(req: P.RequestPoolRequest): Promise<P.RequestPoolResponse> {
    return this.rec('requestPool', req, { PoolID: 'pool-1', Pool: '10.10.0.0/24', Data: {} });
  }
  releasePool(req: P.PoolIdRequest): Promise<P.EmptyResponse> {
    return this.rec('releasePool', req, {});
  }
  requestAddress(req: P.RequestAddressRequest): Promise<P.RequestAddressResponse> {
    return this.rec('requestAddress', req, { Address: '10.10.0.5/24', Data: {} });
  }
  releaseAddress(req: P.ReleaseAddressRequest): Promise<P.EmptyResponse> {
    return this.rec('releaseAddress', req, {});
  }
}

/** Valid Docker IDs (64 lowercase hex characters). */
export const NET_ID = 'a1'.repeat(32);
export const EP_ID = 'b2'.repeat(32);
