// A user's Neutron port that kuryr uses for an endpoint (`--ip` on an address the port holds): it
// is taken as it is (never renamed, never deleted) and, on release, handed back exactly as it was.
// What kuryr changes on it is recorded on the port itself, as tags, so that a restarted daemon or
// `kuryr gc` can still hand it back: kuryr keeps no state of its own.
import type { NeutronClient } from '../neutron/client.js';
import type { Port } from '../neutron/types.js';
import { InvalidRequestError } from '../util/errors.js';
import { exposedGroupName } from './exposed-ports.js';
import { EXISTING_PORT_TAG, isKuryrPortOwner, NET_TAG_HIGH, NET_TAG_LOW } from './naming.js';

/** What the port had before kuryr changed it; absent tags mean the default ('' / true). */
const ORIG_HOST = 'kuryr.orig.host:';
const ORIG_MAC = 'kuryr.orig.mac:';
const ORIG_ADMIN_DOWN = 'kuryr.orig.admin-down';
/** Neutron's limit on one tag (Zed: 255 characters; measured). */
const MAX_TAG_LENGTH = 255;

export function isExistingPort(port: Pick<Port, 'tags'>): boolean {
  return port.tags.includes(EXISTING_PORT_TAG);
}

/** Ports kuryr created (and so may delete), as opposed to a user's port kuryr took. */
export function isKuryrCreatedPort(port: Pick<Port, 'tags' | 'device_owner'>): boolean {
  return isKuryrPortOwner(port.device_owner) && !isExistingPort(port);
}

/** A free port of the user's (no device uses it) can be taken; anything else is refused. */
export function canTake(port: Pick<Port, 'device_id' | 'device_owner'>): boolean {
  return !port.device_id && !port.device_owner;
}

/** The port's tags once taken: the mark, and what binding will change (host, admin state). */
export function takenTags(port: Port): string[] {
  const tags = [...port.tags, EXISTING_PORT_TAG];
  const host = port['binding:host_id'] ?? '';
  if (host) tags.push(record(port, ORIG_HOST + host));
  if (port.admin_state_up === false) tags.push(ORIG_ADMIN_DOWN);
  return [...new Set(tags)];
}

/** Tags to add before giving a taken port another MAC (Docker's): the MAC it had, once. */
export function macChangeTags(port: Port): string[] {
  if (!isExistingPort(port) || port.tags.some((t) => t.startsWith(ORIG_MAC))) return [];
  return [record(port, ORIG_MAC + port.mac_address)];
}

function record(port: Pick<Port, 'id'>, tag: string): string {
  if (tag.length > MAX_TAG_LENGTH) {
    throw new InvalidRequestError(
      `Neutron port ${port.id} cannot be used: kuryr could not record its previous state ('${tag}' is longer than Neutron's ${MAX_TAG_LENGTH}-character tag limit). Unbind it first (openstack port unset --host ${port.id})`,
    );
  }
  return tag;
}

/** kuryr's tags on a taken port: its marks, and the endpoint tags CreateEndpoint added. */
function isKuryrTag(tag: string): boolean {
  return (
    tag === EXISTING_PORT_TAG ||
    tag === ORIG_ADMIN_DOWN ||
    tag.startsWith(ORIG_HOST) ||
    tag.startsWith(ORIG_MAC) ||
    tag.startsWith(NET_TAG_LOW) ||
    tag.startsWith(NET_TAG_HIGH)
  );
}

export type PortWriter = Pick<NeutronClient, 'update' | 'setTags' | 'list'>;

/**
 * Hands a taken port back as it was: no device, its own binding host, MAC and admin state, without
 * kuryr's exposed-ports group and tags. The caller has removed the host side (veth) already.
 */
export async function handBack(neutron: PortWriter, port: Port): Promise<Port> {
  const value = (prefix: string) => port.tags.find((t) => t.startsWith(prefix))?.slice(prefix.length);
  const host = value(ORIG_HOST) ?? '';
  const mac = value(ORIG_MAC);
  const [group] = await neutron.list('security-groups', { name: exposedGroupName(port.id), fields: ['id'] });
  const restored = {
    device_owner: '',
    device_id: '',
    'binding:host_id': host,
    admin_state_up: !port.tags.includes(ORIG_ADMIN_DOWN),
    ...(group ? { security_groups: (port.security_groups ?? []).filter((g) => g !== group.id) } : {}),
  };
  let back: Port;
  if (mac && mac !== port.mac_address) {
    // Neutron changes no MAC of a bound port: unbind, then restore MAC and binding together.
    await neutron.update('ports', port.id, { 'binding:host_id': '' });
    back = await neutron.update('ports', port.id, { ...restored, mac_address: mac });
  } else back = await neutron.update('ports', port.id, restored);
  const tags = port.tags.filter((t) => !isKuryrTag(t));
  await neutron.setTags('ports', port.id, tags);
  return { ...back, tags };
}
