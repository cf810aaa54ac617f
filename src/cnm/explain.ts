// Turns a Neutron failure into a message a Docker user can act on: what we were doing, Neutron's
// own error, and what to do about it.
import { NeutronApiError } from '../neutron/errors.js';

const HINTS: Record<string, string> = {
  IpAddressAlreadyAllocated: 'Choose another address (--ip/--ip6) or release the Neutron port that holds it',
  IpAddressGenerationFailure:
    'The subnet has no free addresses left: use a larger --subnet or remove unused containers',
  MacAddressInUse: 'Another Neutron port on this network has that MAC: choose another --mac-address',
  InvalidIpForNetwork: "The address is in none of the network's subnets: pick one inside --subnet",
  InvalidIpForSubnet: 'The address is outside the subnet: pick one inside --subnet',
  SubnetAllocationError:
    'The CIDR is already allocated from that Neutron subnetpool: choose another --subnet',
  OverQuota: 'The Neutron project is over quota: raise the quota or delete unused resources',
  NetworkInUse: 'Neutron ports still use the network: remove the containers attached to it first',
  SubnetInUse: 'Neutron ports still use the subnet: remove the containers attached to it first',
  NetworkSubnetPoolAffinityError:
    "The Neutron network's other subnets come from a subnetpool: carve from it with -o and --ipam-opt neutron.pool.uuid=<its id>",
  PolicyNotAuthorized: "kuryr's Neutron user needs the admin role (binding:host_id is admin-only)",
};

/** A Neutron error with what we were doing and, where we know one, what the user can do. */
export function explainNeutron(err: NeutronApiError, doing: string, hint?: string): NeutronApiError {
  return err.explain(doing, hint ?? HINTS[err.type]);
}

/** Runs a Neutron operation; on failure rethrows with context and a hint. */
export async function explained<T>(doing: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof NeutronApiError) throw explainNeutron(err, doing);
    throw err;
  }
}
