// `kuryr gc`: finds what kuryr left in Neutron (and on this host) for Docker objects that no longer
// exist, e.g. after the driver was killed between Docker's calls or Docker removed a network while
// the driver was down. Only kuryr's own resources are candidates; a user's network is untagged,
// never deleted. Young unbound resources are left alone: they may belong to a call in flight.
import { readdirSync } from 'node:fs';
import { deleteLink } from '../binding/ip.js';
import { CONTAINER_PREFIX, HOST_PREFIX } from '../binding/veth.js';
import { exposedGroupName } from '../cnm/exposed-ports.js';
import {
  EXISTING_NET_TAG_PREFIX,
  isKuryrPortOwner,
  NET_TAG_HIGH,
  NET_TAG_LOW,
  POOL_PORT_NAME,
} from '../cnm/naming.js';
import type { EngineNetwork } from '../docker/engine.js';
import type { NeutronClient } from '../neutron/client.js';

export interface Garbage {
  kind: 'network' | 'network-tags' | 'port' | 'subnetpool' | 'security-group' | 'veth';
  id: string;
  name: string;
  why: string;
  /** For network-tags: the tags to remove. */
  tags?: string[];
}

export interface GcOptions {
  host: string;
  subnetpoolPrefix: string;
  /** Unbound ports and empty pools younger than this may belong to calls in flight. */
  minAgeMs: number;
  now?: number;
}

const age = (createdAt: string | undefined, now: number) =>
  createdAt ? now - Date.parse(createdAt.endsWith('Z') ? createdAt : `${createdAt}Z`) : Infinity;

export async function findGarbage(
  neutron: NeutronClient,
  docker: EngineNetwork[],
  opts: GcOptions,
): Promise<Garbage[]> {
  const now = opts.now ?? Date.now();
  const liveNetworks = docker.map((n) => n.Id);
  const liveEndpoints = new Set(
    docker.flatMap((n) => Object.values(n.Containers ?? {}).map((c) => c.EndpointID)),
  );
  const isLiveLow = (tag: string) => liveNetworks.some((id) => id.startsWith(tag.slice(NET_TAG_LOW.length)));
  const isLiveHigh = (tag: string) =>
    liveNetworks.some((id) => id.slice(32) === tag.slice(NET_TAG_HIGH.length));
  const isLiveExisting = (tag: string) =>
    liveNetworks.some((id) => id.startsWith(tag.slice(EXISTING_NET_TAG_PREFIX.length)));
  const garbage: Garbage[] = [];

  const [networks, ports, pools, groups] = await Promise.all([
    neutron.list('networks'),
    neutron.list('ports'),
    neutron.list('subnetpools'),
    neutron.list('security-groups'),
  ]);
  const doomedNetworks = new Set<string>();
  for (const net of networks) {
    const low = net.tags.filter((t) => t.startsWith(NET_TAG_LOW));
    if (low.length === 0) continue;
    const deadTags = net.tags.filter(
      (t) =>
        (t.startsWith(NET_TAG_LOW) && !isLiveLow(t)) ||
        (t.startsWith(NET_TAG_HIGH) && !isLiveHigh(t)) ||
        (t.startsWith(EXISTING_NET_TAG_PREFIX) && !isLiveExisting(t)),
    );
    if (deadTags.length === 0) continue;
    const userNetwork = net.tags.some((t) => t.startsWith(EXISTING_NET_TAG_PREFIX));
    if (!userNetwork && low.every((t) => !isLiveLow(t))) {
      doomedNetworks.add(net.id);
      garbage.push({
        kind: 'network',
        id: net.id,
        name: net.name,
        why: 'tagged for Docker networks that no longer exist',
      });
    } else {
      garbage.push({
        kind: 'network-tags',
        id: net.id,
        name: net.name,
        why: 'kuryr tags of removed Docker networks',
        tags: deadTags,
      });
    }
  }
  const servesLiveNetwork = new Set(
    networks.filter((n) => n.tags.some((t) => t.startsWith(NET_TAG_LOW) && isLiveLow(t))).map((n) => n.id),
  );
  const livePorts = new Set<string>();
  for (const port of ports) {
    if (!isKuryrPortOwner(port.device_owner)) continue;
    if (doomedNetworks.has(port.network_id)) {
      garbage.push({ kind: 'port', id: port.id, name: port.name, why: 'on a network that goes' });
      continue;
    }
    const host = port['binding:host_id'] ?? '';
    if (port.name === POOL_PORT_NAME && !port.device_id) {
      // A warm-pool port: its daemon keeps it (or adopts it at start) while the network is used.
      if (servesLiveNetwork.has(port.network_id)) livePorts.add(port.id);
      else
        garbage.push({
          kind: 'port',
          id: port.id,
          name: port.name,
          why: 'warm-pool port of a removed network',
        });
    } else if (port.device_id) {
      if (host !== opts.host || liveEndpoints.has(port.device_id)) {
        livePorts.add(port.id);
        continue;
      }
      garbage.push({
        kind: 'port',
        id: port.id,
        name: port.name,
        why: `bound to endpoint ${port.device_id.slice(0, 12)}, which Docker no longer has`,
      });
    } else if (age(port.created_at, now) > opts.minAgeMs) {
      garbage.push({
        kind: 'port',
        id: port.id,
        name: port.name,
        why: 'address reserved but never given to an endpoint',
      });
    } else livePorts.add(port.id);
  }
  const subnets = await neutron.list('subnets', {
    fields: ['id', 'subnetpool_id', 'tags', 'name', 'network_id'],
  });
  for (const pool of pools) {
    if (!pool.name.startsWith(`${opts.subnetpoolPrefix}-`)) continue;
    const used = subnets.some(
      (s) => (s.subnetpool_id === pool.id || s.tags?.includes(pool.id)) && !doomedNetworks.has(s.network_id),
    );
    if (!used && age(pool.created_at, now) > opts.minAgeMs) {
      garbage.push({
        kind: 'subnetpool',
        id: pool.id,
        name: pool.name,
        why: 'no subnet uses it: its Docker network is gone',
      });
    }
  }
  const allPortIds = new Set(ports.map((p) => p.id));
  const deadPorts = new Set(garbage.filter((g) => g.kind === 'port').map((g) => g.id));
  for (const group of groups) {
    const m = /^([0-9a-f-]{36})-exposed_ports$/.exec(group.name);
    if (m?.[1] && group.name === exposedGroupName(m[1]) && (!allPortIds.has(m[1]) || deadPorts.has(m[1]))) {
      garbage.push({
        kind: 'security-group',
        id: group.id,
        name: group.name,
        why: 'exposed-ports group of a removed endpoint',
      });
    }
  }
  for (const link of hostVeths()) {
    const prefix = link.slice(HOST_PREFIX.length);
    const owner = ports.find((p) => p.id.startsWith(prefix));
    if (!owner || !livePorts.has(owner.id)) {
      garbage.push({
        kind: 'veth',
        id: link,
        name: link,
        why: owner ? `its port ${owner.id} is garbage` : 'no Neutron port',
      });
    }
  }
  return garbage;
}

/** tap<11> whose peer t_c<11> is still in the host namespace: a pair no container holds. */
function hostVeths(): string[] {
  let names: string[] = [];
  try {
    names = readdirSync('/sys/class/net');
  } catch {
    return [];
  }
  return names.filter((n) => {
    if (!n.startsWith(HOST_PREFIX) || n.length !== HOST_PREFIX.length + 11) return false;
    return names.includes(CONTAINER_PREFIX + n.slice(HOST_PREFIX.length));
  });
}

export async function removeGarbage(
  neutron: NeutronClient,
  items: Garbage[],
): Promise<{ removed: Garbage[]; failed: { item: Garbage; error: string }[] }> {
  const removed: Garbage[] = [];
  const failed: { item: Garbage; error: string }[] = [];
  const order: Garbage['kind'][] = [
    'veth',
    'port',
    'security-group',
    'network-tags',
    'network',
    'subnetpool',
  ];
  for (const kind of order) {
    for (const item of items.filter((g) => g.kind === kind)) {
      try {
        if (kind === 'veth') await deleteLink(item.id);
        else if (kind === 'port') await neutron.delete('ports', item.id);
        else if (kind === 'security-group') await neutron.delete('security-groups', item.id);
        else if (kind === 'network-tags') {
          const net = await neutron.get('networks', item.id);
          await neutron.setTags(
            'networks',
            item.id,
            net.tags.filter((t) => !item.tags?.includes(t)),
          );
        } else if (kind === 'network') {
          for (const p of await neutron.list('ports', { network_id: item.id })) {
            if (isKuryrPortOwner(p.device_owner)) await neutron.delete('ports', p.id);
          }
          await neutron.delete('networks', item.id);
        } else await neutron.delete('subnetpools', item.id);
        removed.push(item);
      } catch (err) {
        failed.push({ item, error: (err as Error).message });
      }
    }
  }
  return { removed, failed };
}
