// `kuryr gc`: finds what kuryr left in Neutron (and on this host) for Docker objects that no longer
// exist, e.g. after the driver was killed between Docker's calls or Docker removed a network while
// the driver was down. Only what kuryr created is ever deleted: a user's network or subnet kuryr
// adopted is untagged, a user's port kuryr took is handed back as it was, a user's subnetpool is
// left alone. Young unbound resources are left alone too: they may belong to a call in flight.
import { readdirSync } from 'node:fs';
import { removeStrayHostIface } from '../binding/index.js';
import {
  CONTAINER_PREFIX,
  HOST_PREFIX,
  recordedEndpoint,
  recordedPool,
  vethInContainer,
} from '../binding/veth.js';
import { handBack, isExistingPort, isKuryrCreatedPort } from '../cnm/existing-ports.js';
import { exposedGroupName } from '../cnm/exposed-ports.js';
import {
  EXISTING_NET_TAG_PREFIX,
  EXISTING_POOL_TAG,
  HOST_TAG_PREFIX,
  isKuryrSubnet,
  NET_TAG_HIGH,
  NET_TAG_LOW,
  POOL_PORT_NAME,
  SWARM_TAG_PREFIX,
} from '../cnm/naming.js';
import type { EngineNetwork } from '../docker/engine.js';
import type { NeutronClient } from '../neutron/client.js';
import { createdAtMs } from '../neutron/types.js';

export interface Garbage {
  /** `port-handback`: a user's port kuryr took, to be handed back (never deleted). */
  kind:
    | 'network'
    | 'network-tags'
    | 'subnet-tags'
    | 'port'
    | 'port-handback'
    | 'subnetpool'
    | 'security-group'
    | 'veth';
  id: string;
  name: string;
  why: string;
  /** For network-tags and subnet-tags: the tags to remove. */
  tags?: string[];
}

export interface GcOptions {
  host: string;
  subnetpoolPrefix: string;
  /** Unbound ports and empty pools younger than this may belong to calls in flight. */
  minAgeMs: number;
  now?: number;
}

/** A Docker PoolID as kuryr tags subnets with: `<subnetpool-id>` or `<subnetpool-id>/<cidr>`. */
const POOL_ID_TAG = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\/.+)?$/i;

const age = (createdAt: string | undefined, now: number) =>
  createdAt ? now - createdAtMs(createdAt) : Infinity;

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
  /** User networks no live Docker network uses any more: kuryr's marks on their subnets go too. */
  const releasedNetworks = new Set<string>();
  // Swarm networks are the Swarm manager's to free (FreeNetwork), whichever nodes run tasks on
  // them now (a node's Docker lists one only while it has a task there), with the addresses the
  // manager reserved for tasks.
  const swarmNetworks = new Set(
    networks.filter((n) => n.tags.some((t) => t.startsWith(SWARM_TAG_PREFIX))).map((n) => n.id),
  );
  for (const net of networks) {
    const low = net.tags.filter((t) => t.startsWith(NET_TAG_LOW));
    if (low.length === 0) continue;
    // Used by kuryr on another host too: its Docker networks are not this Docker's to judge.
    const mine = `${HOST_TAG_PREFIX}${opts.host}:`;
    if (net.tags.some((t) => t.startsWith(HOST_TAG_PREFIX) && !t.startsWith(mine))) continue;
    if (swarmNetworks.has(net.id)) continue;
    const deadTags = net.tags.filter(
      (t) =>
        (t.startsWith(NET_TAG_LOW) && !isLiveLow(t)) ||
        (t.startsWith(NET_TAG_HIGH) && !isLiveHigh(t)) ||
        (t.startsWith(EXISTING_NET_TAG_PREFIX) && !isLiveExisting(t)) ||
        (t.startsWith(mine) && !liveNetworks.some((id) => id.startsWith(t.slice(mine.length)))),
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
      const released = low.every((t) => !isLiveLow(t));
      if (released) releasedNetworks.add(net.id);
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
    const taken = isExistingPort(port);
    if (!isKuryrCreatedPort(port) && !taken) continue;
    const host = port['binding:host_id'] ?? '';
    if (taken) {
      // A user's port: handed back once no live endpoint holds it (on any network).
      const dead = port.device_id
        ? host === opts.host && !liveEndpoints.has(port.device_id)
        : age(port.created_at, now) > opts.minAgeMs || doomedNetworks.has(port.network_id);
      if (dead)
        garbage.push({
          kind: 'port-handback',
          id: port.id,
          name: port.name,
          why: port.device_id
            ? `a user's port kuryr took for endpoint ${port.device_id.slice(0, 12)}, which Docker no longer has: handed back`
            : "a user's port kuryr took for an endpoint never created: handed back",
        });
      else livePorts.add(port.id);
      continue;
    }
    if (doomedNetworks.has(port.network_id)) {
      garbage.push({ kind: 'port', id: port.id, name: port.name, why: 'on a network that goes' });
      continue;
    }
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
      // A warm port back from its container shows its old endpoint until its reset is written.
      if (host !== opts.host || liveEndpoints.has(port.device_id) || recordedPool(port.id)) {
        livePorts.add(port.id);
        continue;
      }
      garbage.push({
        kind: 'port',
        id: port.id,
        name: port.name,
        why: `bound to endpoint ${port.device_id.slice(0, 12)}, which Docker no longer has`,
      });
    } else if (!host && swarmNetworks.has(port.network_id)) {
      // A Swarm manager's reservation for a task: the node that runs it binds it.
      livePorts.add(port.id);
    } else if (
      host === opts.host &&
      (vethInContainer(port.id) || liveEndpoints.has(recordedEndpoint(port.id) ?? ''))
    ) {
      // Its veth is in a container, or records an endpoint Docker has: a start whose endpoint
      // identity has not reached Neutron yet (written behind, or the daemon died first).
      livePorts.add(port.id);
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
  // A user's subnet adopted for a Docker pool carries its PoolID: on a released network, it goes.
  const deadPoolTags = new Set<string>();
  for (const subnet of subnets) {
    if (!releasedNetworks.has(subnet.network_id) || isKuryrSubnet(subnet)) continue;
    const tags = (subnet.tags ?? []).filter((t) => POOL_ID_TAG.test(t));
    if (tags.length === 0) continue;
    for (const t of tags) deadPoolTags.add(t);
    garbage.push({
      kind: 'subnet-tags',
      id: subnet.id,
      name: subnet.name,
      why: 'Docker pool marks on a user subnet of a removed Docker network',
      tags,
    });
  }
  for (const pool of pools) {
    // A user's pool that kuryr (or kuryr-libnetwork) used is never a candidate, whatever its name.
    if (!pool.name.startsWith(`${opts.subnetpoolPrefix}-`) || pool.tags.includes(EXISTING_POOL_TAG)) continue;
    const used = subnets.some(
      (s) =>
        (s.subnetpool_id === pool.id || s.tags?.some((t) => t.startsWith(pool.id) && !deadPoolTags.has(t))) &&
        !doomedNetworks.has(s.network_id),
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
    'port-handback',
    'security-group',
    'subnet-tags',
    'network-tags',
    'network',
    'subnetpool',
  ];
  for (const kind of order) {
    for (const item of items.filter((g) => g.kind === kind)) {
      try {
        // (On Open vSwitch its br-int row goes too.)
        if (kind === 'veth') await removeStrayHostIface(item.id);
        else if (kind === 'port') await neutron.delete('ports', item.id);
        else if (kind === 'port-handback') await handBack(neutron, await neutron.get('ports', item.id));
        else if (kind === 'security-group') await neutron.delete('security-groups', item.id);
        else if (kind === 'network-tags' || kind === 'subnet-tags') {
          const collection = kind === 'network-tags' ? 'networks' : 'subnets';
          const current = await neutron.get(collection, item.id);
          await neutron.setTags(
            collection,
            item.id,
            current.tags.filter((t) => !item.tags?.includes(t)),
          );
        } else if (kind === 'network') {
          // kuryr's ports go; a user's port kuryr took is handed back (and keeps the network).
          for (const p of await neutron.list('ports', { network_id: item.id })) {
            if (isKuryrCreatedPort(p)) await neutron.delete('ports', p.id);
            else if (isExistingPort(p)) await handBack(neutron, p);
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
