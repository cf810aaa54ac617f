// Docker ≥ 28 asks (GwAllocCheck, before RequestPool) whether it may skip reserving a gateway
// address per address family. kuryr answers yes only where the Neutron subnet will have no gateway,
// so `docker network inspect` shows none and no address is held back for one:
//   * --internal (com.docker.network.internal): kuryr makes its subnets with gateway_ip null;
//   * -o neutron.subnet[.v6].uuid|name naming an existing subnet whose gateway_ip is null.
// Everywhere else the subnet gets a gateway (the --gateway given, or Neutron's default, the first
// address, which is also what our IPAM answers Docker's gateway request with), so Docker keeps
// reserving it: skipping would let Neutron default the gateway into a range kuryr computed without
// it (--ip-range, --aux-address). A --gateway the user gives is always requested by Docker anyway.
import type { GwAllocCheckRequest, GwAllocCheckResponse } from '../docker/protocol.js';
import { OptionKeys } from '../docker/protocol.js';
import type { Subnet } from '../neutron/types.js';
import { parseNeutronOptions, type ResourceRef } from './options.js';

/** Finds a subnet the user named (throws with a clear message when it does not exist). */
export type SubnetLookup = (ref: ResourceRef) => Promise<Pick<Subnet, 'gateway_ip'>>;

const isTrue = (v: unknown) => v === true || v === 'true';

export async function gatewaySkips(
  req: GwAllocCheckRequest,
  lookup: SubnetLookup,
): Promise<GwAllocCheckResponse> {
  const options = req.Options ?? {};
  if (isTrue(options[OptionKeys.internal])) return { SkipIPv4: true, SkipIPv6: true };
  // The same parse as CreateNetwork: a bad -o fails here, before Docker asks for pools.
  const opts = parseNeutronOptions(options[OptionKeys.generic] as Record<string, unknown> | undefined, '-o');
  const noGateway = async (ref: ResourceRef | undefined) => (ref ? !(await lookup(ref)).gateway_ip : false);
  const [SkipIPv4, SkipIPv6] = await Promise.all([noGateway(opts.subnet[4]), noGateway(opts.subnet[6])]);
  return { SkipIPv4, SkipIPv6 };
}
