// Docker IPAM → Neutron. A Docker pool is a Neutron subnetpool (one per `--subnet`, so the same
// CIDR can back several Docker networks, as Neutron allows overlapping IPs); an address is a Neutron
// port, created unbound here and bound to the host by the network driver's CreateEndpoint.
import type {
  AddressSpacesResponse,
  EmptyResponse,
  IpamCapabilitiesResponse,
  IpamDriver,
  PoolIdRequest,
  ReleaseAddressRequest,
  RequestAddressRequest,
  RequestAddressResponse,
  RequestPoolRequest,
  RequestPoolResponse,
} from '../docker/protocol.js';
import { OptionKeys } from '../docker/protocol.js';
import { InvalidRequestError } from '../util/errors.js';
import { contains, firstHost, networkOf, parseCidr, parseIp, prefixLength, sameIp } from './addresses.js';
import { explained } from './explain.js';
import { DEVICE_OWNER, isKuryrPortOwner, subnetPoolName, UNBOUND_PORT_NAME } from './naming.js';
import { formatPoolId, type NeutronView, parsePoolId } from './neutron-view.js';

export interface IpamSettings {
  localAddressSpace: string;
  globalAddressSpace: string;
  subnetpoolNamePrefix: string;
}

export class NeutronIpam implements IpamDriver {
  constructor(
    private readonly view: NeutronView,
    private readonly settings: IpamSettings,
  ) {}

  private get neutron() {
    return this.view.neutron;
  }

  async getCapabilities(): Promise<IpamCapabilitiesResponse> {
    // Docker then generates each endpoint's MAC up front, so the Neutron port gets it at creation.
    return { RequiresMACAddress: true, RequiresRequestReplay: false };
  }

  async getDefaultAddressSpaces(): Promise<AddressSpacesResponse> {
    return {
      LocalDefaultAddressSpace: this.settings.localAddressSpace,
      GlobalDefaultAddressSpace: this.settings.globalAddressSpace,
    };
  }

  async requestPool(req: RequestPoolRequest): Promise<RequestPoolResponse> {
    if (!req.Pool) {
      throw new InvalidRequestError(
        'no --subnet given: kuryr needs an explicit subnet, e.g. docker network create -d kuryr --ipam-driver kuryr --subnet 10.0.0.0/24 NAME',
      );
    }
    const parsed = parseCidr(req.Pool, 'Pool (--subnet)');
    if ((parsed.version === 6) !== Boolean(req.V6)) {
      throw new InvalidRequestError(
        `Pool ${req.Pool} is IPv${parsed.version} but Docker asked for an IPv${req.V6 ? 6 : 4} pool`,
      );
    }
    if (req.SubPool) {
      throw new InvalidRequestError('--ip-range is not supported yet: omit it; the whole --subnet is used');
    }
    const cidr = networkOf(req.Pool);
    const pool = await explained(`creating Neutron subnetpool for ${cidr}`, () =>
      this.neutron.create('subnetpools', {
        name: subnetPoolName(this.settings.subnetpoolNamePrefix, cidr),
        prefixes: [cidr],
        default_prefixlen: parsed.prefixLength,
        min_prefixlen: parsed.prefixLength,
      }),
    );
    this.view.rememberSubnetpool(pool);
    return { PoolID: pool.id, Pool: cidr, Data: {} };
  }

  async releasePool(req: PoolIdRequest): Promise<EmptyResponse> {
    const ref = parsePoolId(req.PoolID);
    const subnets = await this.neutron.list('subnets', { subnetpool_id: ref.subnetpoolId, cidr: ref.cidr });
    for (const subnet of subnets) {
      await explained(
        `deleting Neutron subnet ${subnet.id} (${subnet.cidr}) of Docker pool ${req.PoolID}`,
        () => this.neutron.delete('subnets', subnet.id),
      );
    }
    if (!ref.cidr) {
      await explained(`deleting Neutron subnetpool ${ref.subnetpoolId}`, () =>
        this.neutron.delete('subnetpools', ref.subnetpoolId),
      );
    }
    this.view.forgetPool(ref);
    return {};
  }

  async requestAddress(req: RequestAddressRequest): Promise<RequestAddressResponse> {
    const ref = parsePoolId(req.PoolID);
    const options = req.Options ?? {};
    const wanted = req.Address ? parseIp(req.Address, 'Address') : undefined;
    if (options[OptionKeys.requestAddressType] === OptionKeys.gatewayAddressType) {
      return { Address: await this.gatewayAddress(ref, wanted), Data: {} };
    }
    const subnet = await this.view.subnetForPool(ref);
    if (!subnet) {
      throw new InvalidRequestError(
        `Docker pool ${req.PoolID} has no Neutron subnet yet: its network was not created with -d kuryr`,
      );
    }
    if (wanted && !contains(subnet.cidr, wanted)) {
      throw new InvalidRequestError(`address ${wanted} is outside the network's subnet ${subnet.cidr}`);
    }
    const mac = options[OptionKeys.macAddress];
    const port = await explained(
      `creating a Neutron port for ${wanted ?? 'an address'} in subnet ${subnet.id} (${subnet.cidr})`,
      () =>
        this.neutron.create('ports', {
          network_id: subnet.network_id,
          name: UNBOUND_PORT_NAME,
          device_owner: DEVICE_OWNER,
          admin_state_up: true,
          fixed_ips: [wanted ? { subnet_id: subnet.id, ip_address: wanted } : { subnet_id: subnet.id }],
          ...(mac ? { mac_address: mac } : {}),
        }),
    );
    const ip = port.fixed_ips.find((f) => f.subnet_id === subnet.id)?.ip_address;
    if (!ip)
      throw new InvalidRequestError(
        `Neutron created port ${port.id} without an address in subnet ${subnet.id}`,
      );
    return { Address: `${ip}/${prefixLength(subnet.cidr)}`, Data: {} };
  }

  /** The gateway is the subnet's gateway_ip; before the subnet exists, the requested or first address. */
  private async gatewayAddress(
    ref: Parameters<NeutronView['poolCidr']>[0],
    wanted: string | undefined,
  ): Promise<string> {
    const cidr = await this.view.poolCidr(ref);
    const len = prefixLength(cidr);
    if (wanted && !contains(cidr, wanted))
      throw new InvalidRequestError(`gateway ${wanted} is outside the subnet ${cidr}`);
    const subnet = await this.view.subnetForPool(ref);
    if (subnet?.gateway_ip) {
      if (wanted && !sameIp(wanted, subnet.gateway_ip)) {
        throw new InvalidRequestError(
          `gateway ${wanted} differs from the Neutron subnet's gateway_ip ${subnet.gateway_ip}`,
        );
      }
      return `${subnet.gateway_ip}/${len}`;
    }
    return `${wanted ?? firstHost(cidr)}/${len}`;
  }

  async releaseAddress(req: ReleaseAddressRequest): Promise<EmptyResponse> {
    const ref = parsePoolId(req.PoolID);
    const ip = parseIp(req.Address.split('/')[0] ?? req.Address, 'Address');
    const subnet = await this.view.subnetForPool(ref);
    if (!subnet || (subnet.gateway_ip && sameIp(subnet.gateway_ip, ip))) return {}; // gone, or the gateway (no port)
    const ports = await this.view.portsWithAddress(subnet, ip);
    // Only ports kuryr made: never a port a user created and handed to Docker.
    for (const port of ports.filter((p) => isKuryrPortOwner(p.device_owner))) {
      await explained(`deleting Neutron port ${port.id} (${ip}) of Docker pool ${formatPoolId(ref)}`, () =>
        this.neutron.delete('ports', port.id),
      );
    }
    return {};
  }
}
