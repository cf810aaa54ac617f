// How Docker objects are recognised in Neutron. Tags and names follow kuryr-libnetwork so that
// networks and ports it made are found by us, and ours by it.

/** Neutron tags are at most 255 chars and kuryr-libnetwork splits 64-char IDs into two halves. */
export const NET_TAG_LOW = 'kuryr.net.uuid.lh:';
export const NET_TAG_HIGH = 'kuryr.net.uuid.uh:';
/** kuryr-lib's device_owner for container ports (it was `kuryr:container` before). */
export const DEVICE_OWNER = 'compute:kuryr';
export const LEGACY_DEVICE_OWNER = 'kuryr:container';
export const UNBOUND_PORT_NAME = 'kuryr-unbound-port';
/** Ports of the warm pool: made ahead of containers, bound to a host, not yet an endpoint's. */
export const POOL_PORT_NAME = 'kuryr-pool-port';

/** Tags that identify a Docker network (or endpoint: kuryr-libnetwork uses the same prefixes). */
export function dockerIdTags(dockerId: string): string[] {
  const tags = [NET_TAG_LOW + dockerId.slice(0, 32)];
  if (dockerId.length > 32) tags.push(NET_TAG_HIGH + dockerId.slice(32, 64));
  return tags;
}

export function networkName(dockerNetworkId: string): string {
  return `kuryr-net-${dockerNetworkId.slice(0, 8)}`;
}

export function subnetName(cidr: string): string {
  return `${SUBNET_NAME_PREFIX}${cidr}`;
}

export function subnetPoolName(prefix: string, cidr: string): string {
  return `${prefix}-${cidr}`;
}

export function endpointPortName(endpointId: string): string {
  return `${endpointId}-port`;
}

export function isKuryrPortOwner(owner: string): boolean {
  return owner === DEVICE_OWNER || owner === LEGACY_DEVICE_OWNER;
}

/** kuryr-libnetwork's marks for user resources it used but must not delete. */
export const EXISTING_NET_TAG_PREFIX = 'kuryr.net.existing:';
export const EXISTING_PORT_TAG = 'kuryr.port.existing';
export const EXISTING_POOL_TAG = 'kuryr.subnetpool.existing';

/**
 * Marks a network as used by a Docker network on a host (`kuryr.host:<host>:<docker-id[:12]>`):
 * the host that made it and every host that joined it. `kuryr gc` on one host never judges a
 * network another host uses, whose Docker networks it cannot see.
 */
export const HOST_TAG_PREFIX = 'kuryr.host:';

export function hostTag(host: string, dockerNetworkId: string): string {
  return `${HOST_TAG_PREFIX}${host}:${dockerNetworkId.slice(0, 12)}`;
}

/**
 * Marks a Neutron network a Swarm manager made for a swarm-scoped Docker network
 * (`kuryr.swarm:<docker-id[:12]>`, written by AllocateNetwork). Nodes create and delete their
 * local copies as tasks come and go; only the manager's FreeNetwork removes the network.
 */
export const SWARM_TAG_PREFIX = 'kuryr.swarm:';

export function swarmTag(dockerNetworkId: string): string {
  return SWARM_TAG_PREFIX + dockerNetworkId.slice(0, 12);
}

export function existingNetworkTag(dockerNetworkId: string): string {
  return EXISTING_NET_TAG_PREFIX + dockerNetworkId.slice(0, 12);
}

/** Subnetpool description marking the Docker --ip-range (Docker's CreateNetwork does not carry it). */
export const IP_RANGE_MARK = 'kuryr:ip-range=';

const SUBNET_NAME_PREFIX = 'kuryr-subnet-';

/** Subnets kuryr (or kuryr-libnetwork) created, as opposed to a user's. */
export function isKuryrSubnet(subnet: { name: string }): boolean {
  return subnet.name.startsWith(SUBNET_NAME_PREFIX);
}
