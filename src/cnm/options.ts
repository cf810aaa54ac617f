// User options: `docker network create -o key=value` (network driver) and `--ipam-opt key=value`
// (IPAM), with kuryr-libnetwork's `neutron.*` names. Anything else is rejected with the list of
// what is supported, so a typo never silently does the wrong thing.
import { InvalidRequestError } from '../util/errors.js';

export interface ResourceRef {
  uuid?: string;
  name?: string;
}

export interface NeutronOptions {
  net?: ResourceRef;
  shared?: boolean;
  pool: { 4?: ResourceRef; 6?: ResourceRef };
  subnet: { 4?: ResourceRef; 6?: ResourceRef };
}

export const NEUTRON_OPTION_KEYS = [
  'neutron.net.uuid',
  'neutron.net.name',
  'neutron.net.shared',
  'neutron.pool.uuid',
  'neutron.pool.name',
  'neutron.pool.v6.uuid',
  'neutron.pool.v6.name',
  'neutron.subnet.uuid',
  'neutron.subnet.name',
  'neutron.subnet.v6.uuid',
  'neutron.subnet.v6.name',
] as const;

/** Docker driver options that other drivers take but that Neutron decides for kuryr. */
const DECIDED_BY_NEUTRON: Record<string, string> = {
  'com.docker.network.driver.mtu': 'the MTU comes from the Neutron network (openstack network set --mtu N)',
  'com.docker.network.bridge.name': "kuryr creates no Docker bridge; Neutron's agent owns the host bridges",
};

function ref(map: Record<string, string>, prefix: string, where: string): ResourceRef | undefined {
  const uuid = map[`${prefix}.uuid`];
  const name = map[`${prefix}.name`];
  if (uuid && name)
    throw new InvalidRequestError(`${where} ${prefix}.uuid and ${prefix}.name are exclusive: give one`);
  if (uuid) return { uuid };
  if (name) return { name };
  return undefined;
}

/** Keys Docker itself reads and leaves among the `-o` driver options (27: enable_ipv6, 28: enable_ipv4). */
const DOCKER_OWN = new Set(['com.docker.network.enable_ipv4', 'com.docker.network.enable_ipv6']);

export function parseNeutronOptions(
  raw: Record<string, unknown> | null | undefined,
  where: '-o' | '--ipam-opt',
): NeutronOptions {
  const map: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw ?? {})) {
    // Docker (27+) reads these itself and leaves them among the driver options.
    if (where === '-o' && DOCKER_OWN.has(key)) continue;
    if (!(NEUTRON_OPTION_KEYS as readonly string[]).includes(key)) {
      const why = DECIDED_BY_NEUTRON[key];
      throw new InvalidRequestError(
        why
          ? `${where} ${key} is not supported by kuryr: ${why}`
          : `unknown option ${where} ${key}; kuryr supports ${NEUTRON_OPTION_KEYS.join(', ')}`,
      );
    }
    map[key] = String(value);
  }
  let shared: boolean | undefined;
  const s = map['neutron.net.shared'];
  if (s !== undefined) {
    if (!['true', 'false'].includes(s.toLowerCase())) {
      throw new InvalidRequestError(`${where} neutron.net.shared=${s}: use true or false`);
    }
    shared = s.toLowerCase() === 'true';
  }
  return {
    net: ref(map, 'neutron.net', where),
    shared,
    pool: { 4: ref(map, 'neutron.pool', where), 6: ref(map, 'neutron.pool.v6', where) },
    subnet: { 4: ref(map, 'neutron.subnet', where), 6: ref(map, 'neutron.subnet.v6', where) },
  };
}

export function describeRef(kind: string, r: ResourceRef): string {
  return r.uuid ? `Neutron ${kind} ${r.uuid}` : `Neutron ${kind} named '${r.name}'`;
}
