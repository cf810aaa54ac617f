// An in-process, stateful fake of the Neutron v2.0 API subset kuryr uses, on 127.0.0.1 (random
// port): networks, subnets (from subnetpools, with allocation pools and gateways), subnetpools,
// ports (IP allocation, MAC uniqueness, binding to a host and ACTIVE), security groups and rules,
// tags (PUT replaces the set, single-tag add/remove), list filters as Neutron applies them
// (repeated parameters = any of, `tags` = all of, `fixed_ips=subnet_id=..`/`ip_address=..`,
// `fields`), bulk port creation (all or none), and Neutron's error bodies and types. Every request
// is logged for assertions; `failNext` injects faults.
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import ipaddr from 'ipaddr.js';
import { pluralKey, singular } from '../../../src/neutron/types.js';

export const FAKE_PROJECT_ID = 'f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0';

// ------------------------------------------------------------------ address arithmetic
type Version = 4 | 6;

function version(ip: string): Version {
  return ipaddr.parse(ip).kind() === 'ipv4' ? 4 : 6;
}

function toBig(ip: string): bigint {
  return ipaddr
    .parse(ip)
    .toByteArray()
    .reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

function fromBig(n: bigint, v: Version): string {
  const bytes: number[] = [];
  for (let i = 0; i < (v === 4 ? 4 : 16); i++) {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

interface Range {
  first: bigint;
  last: bigint;
  version: Version;
  prefixLength: number;
}

function cidrRange(cidr: string): Range {
  const [addr, len] = ipaddr.parseCIDR(cidr);
  const v: Version = addr.kind() === 'ipv4' ? 4 : 6;
  const size = 1n << BigInt((v === 4 ? 32 : 128) - len);
  const first = (toBig(addr.toString()) / size) * size;
  return { first, last: first + size - 1n, version: v, prefixLength: len };
}

function canonicalCidr(cidr: string): string {
  const r = cidrRange(cidr);
  return `${fromBig(r.first, r.version)}/${r.prefixLength}`;
}

function inCidr(cidr: string, ip: string): boolean {
  const r = cidrRange(cidr);
  if (version(ip) !== r.version) return false;
  const n = toBig(ip);
  return n >= r.first && n <= r.last;
}

function overlap(a: string, b: string): boolean {
  const x = cidrRange(a);
  const y = cidrRange(b);
  return x.version === y.version && x.first <= y.last && y.first <= x.last;
}

function canonicalIp(ip: string): string {
  return ipaddr.parse(ip).toString();
}

/** Neutron's default allocation pools: the CIDR minus network (and v4 broadcast) and the gateway. */
function defaultPools(cidr: string, gateway: string | null): { start: string; end: string }[] {
  const r = cidrRange(cidr);
  let first = r.first + 1n;
  let last = r.last;
  if (r.version === 4 && r.prefixLength < 31) last -= 1n;
  if (r.prefixLength >= (r.version === 4 ? 31 : 127)) first = r.first;
  const pools: { start: string; end: string }[] = [];
  const gw = gateway ? toBig(gateway) : undefined;
  if (gw !== undefined && gw >= first && gw <= last) {
    if (gw > first) pools.push({ start: fromBig(first, r.version), end: fromBig(gw - 1n, r.version) });
    if (gw < last) pools.push({ start: fromBig(gw + 1n, r.version), end: fromBig(last, r.version) });
  } else if (first <= last) pools.push({ start: fromBig(first, r.version), end: fromBig(last, r.version) });
  return pools;
}

// ------------------------------------------------------------------ resources
type Json = Record<string, unknown>;

export interface FakeNetwork extends Json {
  id: string;
  name: string;
  tags: string[];
  subnets: string[];
  shared: boolean;
  mtu: number;
}

export interface FakeSubnet extends Json {
  id: string;
  name: string;
  network_id: string;
  ip_version: Version;
  cidr: string;
  gateway_ip: string | null;
  subnetpool_id: string | null;
  allocation_pools: { start: string; end: string }[];
  tags: string[];
}

export interface FakeSubnetPool extends Json {
  id: string;
  name: string;
  prefixes: string[];
  ip_version: Version;
  default_prefixlen: string;
  min_prefixlen: string;
  max_prefixlen: string;
  description: string;
  tags: string[];
}

export interface FakePort extends Json {
  id: string;
  name: string;
  network_id: string;
  mac_address: string;
  fixed_ips: { subnet_id: string; ip_address: string }[];
  device_id: string;
  device_owner: string;
  status: string;
  admin_state_up: boolean;
  'binding:host_id': string;
  'binding:vif_type': string;
  security_groups: string[];
  tags: string[];
}

interface Collections {
  networks: Map<string, FakeNetwork>;
  subnets: Map<string, FakeSubnet>;
  subnetpools: Map<string, FakeSubnetPool>;
  ports: Map<string, FakePort>;
  'security-groups': Map<string, Json>;
  'security-group-rules': Map<string, Json>;
}

type CollectionName = keyof Collections;
/** The stored type of one resource of a collection. */
export type Row<C extends CollectionName> = Collections[C] extends Map<string, infer R> ? R : never;

const SINGULAR: Record<CollectionName, string> = singular;
const PLURAL: Record<CollectionName, string> = pluralKey;
/** Neutron's 404 error types. */
const NOT_FOUND_TYPE: Record<CollectionName, [string, string]> = {
  networks: ['NetworkNotFound', 'Network'],
  subnets: ['SubnetNotFound', 'Subnet'],
  subnetpools: ['SubnetPoolNotFound', 'Subnet pool'],
  ports: ['PortNotFound', 'Port'],
  'security-groups': ['SecurityGroupNotFound', 'Security group'],
  'security-group-rules': ['SecurityGroupRuleNotFound', 'Security group rule'],
};

/** Attributes a client may send on POST (Zed: no `tags`, no `status`, no `created_at`). */
const CREATABLE: Record<CollectionName, string[]> = {
  networks: ['name', 'admin_state_up', 'shared', 'mtu', 'description', 'project_id', 'tenant_id'],
  subnets: [
    'name',
    'network_id',
    'ip_version',
    'cidr',
    'gateway_ip',
    'subnetpool_id',
    'prefixlen',
    'allocation_pools',
    'enable_dhcp',
    'host_routes',
    'dns_nameservers',
    'description',
    'ipv6_address_mode',
    'ipv6_ra_mode',
    'project_id',
    'tenant_id',
  ],
  subnetpools: [
    'name',
    'prefixes',
    'default_prefixlen',
    'min_prefixlen',
    'max_prefixlen',
    'shared',
    'description',
    'is_default',
    'address_scope_id',
    'project_id',
    'tenant_id',
  ],
  ports: [
    'name',
    'network_id',
    'mac_address',
    'fixed_ips',
    'device_id',
    'device_owner',
    'admin_state_up',
    'binding:host_id',
    'binding:profile',
    'binding:vnic_type',
    'security_groups',
    'description',
    'allowed_address_pairs',
    'port_security_enabled',
    'project_id',
    'tenant_id',
  ],
  'security-groups': ['name', 'description', 'project_id', 'tenant_id', 'stateful'],
  'security-group-rules': [
    'security_group_id',
    'direction',
    'ethertype',
    'protocol',
    'port_range_min',
    'port_range_max',
    'remote_ip_prefix',
    'remote_group_id',
    'description',
    'project_id',
    'tenant_id',
  ],
};
const UPDATABLE: Record<CollectionName, string[]> = {
  networks: ['name', 'admin_state_up', 'shared', 'mtu', 'description'],
  subnets: [
    'name',
    'gateway_ip',
    'allocation_pools',
    'enable_dhcp',
    'host_routes',
    'dns_nameservers',
    'description',
  ],
  subnetpools: [
    'name',
    'prefixes',
    'default_prefixlen',
    'min_prefixlen',
    'max_prefixlen',
    'description',
    'is_default',
  ],
  // Everything a port is created with except where it lives and whose it is.
  ports: CREATABLE.ports.filter((k) => !['network_id', 'project_id', 'tenant_id'].includes(k)),
  'security-groups': ['name', 'description'],
  'security-group-rules': ['description'],
};

const EXTENSIONS = [
  'standard-attr-tag',
  'tag-ext',
  'subnet_allocation',
  'binding',
  'binding-extended',
  'security-group',
  'standard-attr-timestamp',
  'port-security',
  'extra_dhcp_opt',
  'network-ip-availability',
  'default-subnetpools',
  'multi-provider',
  'net-mtu',
];

class NeutronFault extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

const fault = (status: number, type: string, message: string) => new NeutronFault(status, type, message);
const badRequest = (message: string, type = 'HTTPBadRequest') => fault(400, type, message);

export interface LoggedRequest {
  method: string;
  /** Path without the query string, e.g. /v2.0/ports/<id>. */
  path: string;
  query: URLSearchParams;
  body: unknown;
  status: number;
  /** The collection (networks, ports, ...) or collection/tags. */
  resource: string;
}

export interface FaultSpec {
  method?: string;
  /** Matches the path (without query): a substring or a regular expression. */
  path?: string | RegExp;
  /** Further condition on the request. */
  when?: (req: { method: string; path: string; query: URLSearchParams; body: unknown }) => boolean;
  status: number;
  type: string;
  message?: string;
  /** How many matching requests fail (default 1). */
  times?: number;
  /** Drop the connection instead of answering (a Neutron that went away mid-request). */
  hangUp?: boolean;
}

export interface FakeNeutronOptions {
  /**
   * When a port bound to a host (binding:host_id set) turns ACTIVE: 'bind' = at once (the agent
   * wired it instantly), 'manual' = only when the test calls activate(portId).
   */
  activeOn?: 'bind' | 'manual';
  /** binding:vif_type given to bound ports (ML2/linuxbridge: 'bridge'). */
  vifType?: string;
  /** Host of the alive L2 agent listed under /v2.0/agents. */
  agentHost?: string;
  /** Clock for created_at/updated_at (ms since epoch). */
  now?: () => number;
}

/** The stateful fake. Read `state` directly; write through the HTTP API (or the seed helpers). */
export class FakeNeutron {
  readonly state: Collections = {
    networks: new Map(),
    subnets: new Map(),
    subnetpools: new Map(),
    ports: new Map(),
    'security-groups': new Map(),
    'security-group-rules': new Map(),
  };
  readonly log: LoggedRequest[] = [];
  readonly faults: FaultSpec[] = [];
  /** Requests answered late (a busy neutron-server): matched like faults, answered normally. */
  private readonly slow: { method: string; path: string; ms: number }[] = [];
  readonly defaultSecurityGroupId: string;
  activeOn: 'bind' | 'manual';
  private readonly vifType: string;
  private readonly agentHost: string;
  private readonly now: () => number;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    opts: FakeNeutronOptions,
  ) {
    this.activeOn = opts.activeOn ?? 'bind';
    this.vifType = opts.vifType ?? 'bridge';
    this.agentHost = opts.agentHost ?? 'test-host';
    this.now = opts.now ?? Date.now;
    const sg = this.insertSecurityGroup({ name: 'default', description: 'Default security group' });
    this.defaultSecurityGroupId = sg.id as string;
  }

  static async start(opts: FakeNeutronOptions = {}): Promise<FakeNeutron> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const fake = new FakeNeutron(server, `http://127.0.0.1:${port}`, opts);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        fake.serve(req.method ?? 'GET', req.url ?? '/', text, res);
      });
    });
    return fake;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ------------------------------------------------------------------ test controls
  /** The next request(s) matching `spec` fail with the given Neutron error (or a dropped connection). */
  failNext(spec: FaultSpec): void {
    this.faults.push({ times: 1, ...spec });
  }

  /** Every request of `method` whose path includes `path` is answered normally, `ms` late. */
  slowDown(method: string, path: string, ms: number): void {
    this.slow.push({ method, path, ms });
  }

  /** Marks a bound port ACTIVE (activeOn 'manual'). */
  activate(portId: string): void {
    const port = this.state.ports.get(portId);
    if (!port) throw new Error(`no port ${portId}`);
    port.status = 'ACTIVE';
  }

  /** Requests logged so far that match method and resource (e.g. ('POST', 'ports')). */
  requests(method?: string, resource?: string): LoggedRequest[] {
    return this.log.filter((r) => (!method || r.method === method) && (!resource || r.resource === resource));
  }

  clearLog(): void {
    this.log.length = 0;
  }

  /** Deep copies of every resource of a collection, in creation order. */
  all<C extends CollectionName>(collection: C): Row<C>[] {
    return [...(this.state[collection] as Map<string, Row<C>>).values()].map((r) => structuredClone(r));
  }

  /** A deep copy of one resource, or undefined when it does not exist. */
  get<C extends CollectionName>(collection: C, id: string): Row<C> | undefined {
    const r = (this.state[collection] as Map<string, Row<C>>).get(id);
    return r === undefined ? undefined : structuredClone(r);
  }

  // ------------------------------------------------------------------ seeding without HTTP
  /** Creates a resource as a user would through the API (same validation), without logging it. */
  seed<C extends CollectionName>(collection: C, attrs: Json): Row<C> {
    return structuredClone(this.createOne(collection, attrs)) as Row<C>;
  }

  /** Sets a resource's tags directly (as `PUT .../tags` would). */
  seedTags(collection: CollectionName, id: string, tags: string[]): void {
    const r = this.state[collection].get(id);
    if (!r) throw new Error(`no ${collection} ${id}`);
    (r as Json).tags = [...new Set(tags)];
  }

  /** Changes attributes directly, bypassing API rules (to build states only a crash leaves). */
  seedUpdate(collection: CollectionName, id: string, attrs: Json): void {
    const r = this.state[collection].get(id);
    if (!r) throw new Error(`no ${collection} ${id}`);
    Object.assign(r, attrs);
  }

  // ------------------------------------------------------------------ HTTP
  private serve(method: string, rawUrl: string, text: string, res: ServerResponse): void {
    const u = new URL(rawUrl, this.url);
    const path = u.pathname.replace(/\/+$/, '');
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      this.respond(res, { method, path, query: u.searchParams, body: text, resource: '' }, 400, {
        NeutronError: { type: 'HTTPBadRequest', message: 'Malformed request body', detail: '' },
      });
      return;
    }
    const segments = path.split('/').filter(Boolean).map(decodeURIComponent);
    const resource =
      segments[0] === 'v2.0' ? (segments[3] === 'tags' ? `${segments[1]}/tags` : (segments[1] ?? '')) : '';
    const entry = { method, path, query: u.searchParams, body, resource };
    const injected = this.faults.find(
      (f) =>
        (f.times ?? 1) > 0 &&
        (!f.method || f.method === method) &&
        (!f.path || (typeof f.path === 'string' ? path.includes(f.path) : f.path.test(path))) &&
        (!f.when || f.when(entry)),
    );
    if (injected) {
      injected.times = (injected.times ?? 1) - 1;
      if (injected.times <= 0) this.faults.splice(this.faults.indexOf(injected), 1);
      if (injected.hangUp) {
        this.log.push({ ...entry, status: 0 });
        res.socket?.destroy();
        return;
      }
      this.respond(res, entry, injected.status, {
        NeutronError: { type: injected.type, message: injected.message ?? injected.type, detail: '' },
      });
      return;
    }
    // Answered now, or (slowDown) late, like a busy neutron-server: the state changes when it answers.
    const answer = () => {
      try {
        const { status, payload } = this.route(method, segments, u.searchParams, body);
        this.respond(res, entry, status, payload);
      } catch (err) {
        if (err instanceof NeutronFault) {
          this.respond(res, entry, err.status, {
            NeutronError: { type: err.type, message: err.message, detail: '' },
          });
        } else {
          this.respond(res, entry, 500, {
            NeutronError: { type: 'HTTPInternalServerError', message: String(err), detail: '' },
          });
        }
      }
    };
    const late = this.slow.find((x) => x.method === method && path.includes(x.path));
    if (late) setTimeout(answer, late.ms);
    else answer();
  }

  private respond(
    res: ServerResponse,
    entry: Omit<LoggedRequest, 'status'>,
    status: number,
    payload: unknown,
  ): void {
    this.log.push({ ...entry, status });
    if (payload === undefined) {
      res.writeHead(status, { 'content-length': 0 });
      res.end();
      return;
    }
    const text = JSON.stringify(payload);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private route(
    method: string,
    seg: string[],
    query: URLSearchParams,
    body: unknown,
  ): { status: number; payload: unknown } {
    if (seg[0] !== 'v2.0') throw fault(404, 'HTTPNotFound', 'The resource could not be found.');
    const name = seg[1] ?? '';
    if (name === 'extensions' && method === 'GET' && seg.length === 2) {
      return { status: 200, payload: { extensions: EXTENSIONS.map((alias) => ({ alias, name: alias })) } };
    }
    if (name === 'agents' && method === 'GET' && seg.length === 2) {
      const agent = {
        id: 'a9e1b6f4-0000-4000-8000-000000000001',
        agent_type: 'Linux bridge agent',
        binary: 'neutron-linuxbridge-agent',
        host: this.agentHost,
        alive: true,
        admin_state_up: true,
      };
      const host = query.getAll('host');
      return { status: 200, payload: { agents: host.length && !host.includes(agent.host) ? [] : [agent] } };
    }
    if (!(name in this.state)) throw fault(404, 'HTTPNotFound', 'The resource could not be found.');
    const collection = name as CollectionName;
    const id = seg[2];
    if (seg[3] === 'tags') {
      const r = this.require(collection, id ?? '');
      const tag = seg[4];
      if (tag === undefined) {
        if (method === 'PUT') {
          const tags = (body as { tags?: unknown })?.tags;
          if (!Array.isArray(tags)) throw badRequest("Invalid input: 'tags' must be a list");
          for (const t of tags) this.checkTag(t);
          r.tags = [...new Set(tags as string[])];
          this.touch(r);
          return { status: 200, payload: { tags: r.tags } };
        }
        if (method === 'GET') return { status: 200, payload: { tags: r.tags } };
        if (method === 'DELETE') {
          r.tags = [];
          return { status: 204, payload: undefined };
        }
      } else {
        if (method === 'PUT') {
          this.checkTag(tag);
          if (!r.tags.includes(tag)) r.tags = [...r.tags, tag];
          return { status: 201, payload: undefined };
        }
        if (method === 'GET') {
          if (!r.tags.includes(tag)) throw fault(404, 'TagNotFound', `Tag ${tag} could not be found.`);
          return { status: 204, payload: undefined };
        }
        if (method === 'DELETE') {
          if (!r.tags.includes(tag)) throw fault(404, 'TagNotFound', `Tag ${tag} could not be found.`);
          r.tags = r.tags.filter((t) => t !== tag);
          return { status: 204, payload: undefined };
        }
      }
      throw fault(405, 'HTTPMethodNotAllowed', 'Method not allowed');
    }
    if (seg.length > 3) throw fault(404, 'HTTPNotFound', 'The resource could not be found.');
    const one = SINGULAR[collection];
    const many = PLURAL[collection];
    if (id === undefined) {
      if (method === 'GET') return { status: 200, payload: { [many]: this.list(collection, query) } };
      if (method === 'POST') {
        const b = (body ?? {}) as Json;
        if (Array.isArray(b[many])) {
          if (collection !== 'ports' && collection !== 'networks' && collection !== 'subnets')
            throw badRequest(`bulk create of ${many} not supported`);
          return { status: 201, payload: { [many]: this.createBulk(collection, b[many] as Json[]) } };
        }
        const attrs = b[one];
        if (!attrs || typeof attrs !== 'object') throw badRequest(`Resource body required: '${one}'`);
        return {
          status: 201,
          payload: { [one]: structuredClone(this.createOne(collection, attrs as Json)) },
        };
      }
      throw fault(405, 'HTTPMethodNotAllowed', 'Method not allowed');
    }
    if (method === 'GET') {
      return {
        status: 200,
        payload: { [one]: project(this.require(collection, id), query.getAll('fields')) },
      };
    }
    if (method === 'PUT') {
      const attrs = ((body ?? {}) as Json)[one];
      if (!attrs || typeof attrs !== 'object') throw badRequest(`Resource body required: '${one}'`);
      return { status: 200, payload: { [one]: structuredClone(this.update(collection, id, attrs as Json)) } };
    }
    if (method === 'DELETE') {
      this.remove(collection, id);
      return { status: 204, payload: undefined };
    }
    throw fault(405, 'HTTPMethodNotAllowed', 'Method not allowed');
  }

  private checkTag(t: unknown): void {
    if (typeof t !== 'string' || t.length === 0 || t.length > 255 || t.includes(','))
      throw badRequest(`Invalid input for tags. Reason: '${String(t)}' is not a valid tag.`, 'InvalidInput');
  }

  private require<C extends CollectionName>(collection: C, id: string): Json & { tags: string[] } {
    const r = this.state[collection].get(id);
    if (!r) {
      const [type, what] = NOT_FOUND_TYPE[collection];
      throw fault(404, type, `${what} ${id} could not be found.`);
    }
    return r as Json & { tags: string[] };
  }

  private stamp(): string {
    return `${new Date(this.now()).toISOString().slice(0, 19)}Z`;
  }

  private touch(r: Json): void {
    r.updated_at = this.stamp();
    r.revision_number = Number(r.revision_number ?? 0) + 1;
  }

  private base(): Json & { id: string; tags: string[] } {
    const at = this.stamp();
    return {
      id: randomUUID(),
      tags: [],
      description: '',
      project_id: FAKE_PROJECT_ID,
      tenant_id: FAKE_PROJECT_ID,
      created_at: at,
      updated_at: at,
      revision_number: 0,
    };
  }

  // ------------------------------------------------------------------ list
  private list(collection: CollectionName, query: URLSearchParams): Json[] {
    const filters = new Map<string, string[]>();
    for (const [k, v] of query) filters.set(k, [...(filters.get(k) ?? []), v]);
    const fields = filters.get('fields') ?? [];
    for (const k of ['fields', 'limit', 'marker', 'sort_key', 'sort_dir']) filters.delete(k);
    const rows = [...(this.state[collection] as Map<string, Json>).values()];
    const sample = rows[0] ?? this.blank(collection);
    for (const key of filters.keys()) {
      if (['tags', 'tags-any', 'not-tags', 'not-tags-any'].includes(key)) continue;
      if (key === 'fixed_ips' && collection === 'ports') continue;
      if (!(key in sample)) throw badRequest(`${key} is invalid attribute for filtering`, 'HTTPBadRequest');
    }
    const out = rows.filter((r) => {
      for (const [key, values] of filters) {
        const tags = r.tags as string[];
        const listed = values.flatMap((v) => v.split(','));
        if (key === 'tags') {
          if (!listed.every((t) => tags.includes(t))) return false;
        } else if (key === 'tags-any') {
          if (!listed.some((t) => tags.includes(t))) return false;
        } else if (key === 'not-tags') {
          if (listed.every((t) => tags.includes(t))) return false;
        } else if (key === 'not-tags-any') {
          if (listed.some((t) => tags.includes(t))) return false;
        } else if (key === 'fixed_ips') {
          if (!matchFixedIps(r as FakePort, values)) return false;
        } else if (!values.some((v) => matchValue(r[key], v))) return false;
      }
      return true;
    });
    return out.map((r) => project(r, fields));
  }

  /** An object with every attribute of the collection, for validating filters on an empty one. */
  private blank(collection: CollectionName): Json {
    const keys: Record<CollectionName, string[]> = {
      networks: ['name', 'admin_state_up', 'shared', 'mtu', 'status', 'subnets'],
      subnets: ['name', 'network_id', 'ip_version', 'cidr', 'gateway_ip', 'subnetpool_id', 'enable_dhcp'],
      subnetpools: ['name', 'prefixes', 'ip_version', 'default_prefixlen', 'shared', 'is_default'],
      ports: [
        'name',
        'network_id',
        'mac_address',
        'device_id',
        'device_owner',
        'status',
        'admin_state_up',
        'binding:host_id',
        'binding:vif_type',
        'security_groups',
      ],
      'security-groups': ['name', 'stateful'],
      'security-group-rules': ['security_group_id', 'direction', 'ethertype', 'protocol'],
    };
    return Object.fromEntries([...Object.keys(this.base()), ...keys[collection]].map((k) => [k, null]));
  }

  // ------------------------------------------------------------------ create
  private createBulk(collection: CollectionName, items: Json[]): Json[] {
    const made: Json[] = [];
    try {
      for (const attrs of items) made.push(structuredClone(this.createOne(collection, attrs)));
    } catch (err) {
      // All or none, as Neutron's bulk create.
      for (const r of made) this.state[collection].delete(r.id as string);
      throw err;
    }
    return made;
  }

  private createOne(collection: CollectionName, attrs: Json): Json {
    const unknown = Object.keys(attrs).filter((k) => !CREATABLE[collection].includes(k));
    if (unknown.length) throw badRequest(`Unrecognized attribute(s) '${unknown.join(', ')}'`);
    switch (collection) {
      case 'networks':
        return this.createNetwork(attrs);
      case 'subnets':
        return this.createSubnet(attrs);
      case 'subnetpools':
        return this.createSubnetPool(attrs);
      case 'ports':
        return this.createPort(attrs);
      case 'security-groups':
        return this.insertSecurityGroup(attrs);
      case 'security-group-rules':
        return this.createRule(attrs);
    }
  }

  private createNetwork(attrs: Json): FakeNetwork {
    const net = {
      ...this.base(),
      name: '',
      admin_state_up: true,
      shared: false,
      mtu: 1450,
      status: 'ACTIVE',
      subnets: [],
      'router:external': false,
      ...attrs,
    } as FakeNetwork;
    this.state.networks.set(net.id, net);
    return net;
  }

  private createSubnetPool(attrs: Json): FakeSubnetPool {
    const prefixes = attrs.prefixes;
    if (!Array.isArray(prefixes) || prefixes.length === 0)
      throw badRequest(
        "Invalid input for prefixes. Reason: 'prefixes' must be a non-empty list.",
        'InvalidInput',
      );
    let canonical: string[];
    try {
      canonical = (prefixes as string[]).map(canonicalCidr);
    } catch {
      throw badRequest(`Invalid input for prefixes: ${JSON.stringify(prefixes)}`, 'InvalidInput');
    }
    const versions = new Set(canonical.map((p) => cidrRange(p).version));
    if (versions.size > 1) throw badRequest('Prefixes of mixed IP versions', 'PrefixVersionMismatch');
    const v = [...versions][0] as Version;
    const maxBits = v === 4 ? 32 : 128;
    const min = Number(attrs.min_prefixlen ?? (v === 4 ? 8 : 64));
    const max = Number(attrs.max_prefixlen ?? maxBits);
    const def = Number(attrs.default_prefixlen ?? min);
    if (def < min || def > max)
      throw badRequest(
        `Illegal prefix bounds: default_prefixlen=${def}, min_prefixlen=${min}, max_prefixlen=${max}.`,
        'IllegalSubnetPoolPrefixBounds',
      );
    const pool = {
      ...this.base(),
      name: '',
      shared: false,
      is_default: false,
      address_scope_id: null,
      ...attrs,
      prefixes: canonical,
      ip_version: v,
      default_prefixlen: String(def),
      min_prefixlen: String(min),
      max_prefixlen: String(max),
      description: String(attrs.description ?? ''),
    } as FakeSubnetPool;
    this.state.subnetpools.set(pool.id, pool);
    return pool;
  }

  private createSubnet(attrs: Json): FakeSubnet {
    const net = this.state.networks.get(String(attrs.network_id ?? ''));
    if (!net) throw fault(404, 'NetworkNotFound', `Network ${String(attrs.network_id)} could not be found.`);
    const v = Number(attrs.ip_version) as Version;
    if (v !== 4 && v !== 6)
      throw badRequest('Invalid input for ip_version. Reason: must be 4 or 6.', 'InvalidInput');
    const poolId = (attrs.subnetpool_id as string | null | undefined) ?? null;
    const pool = poolId ? this.state.subnetpools.get(poolId) : undefined;
    if (poolId && !pool) throw fault(404, 'SubnetPoolNotFound', `Subnet pool ${poolId} could not be found.`);
    let cidr: string;
    if (pool) {
      if (pool.ip_version !== v)
        throw badRequest(
          `Cannot allocate IPv${v} subnet from IPv${pool.ip_version} subnet pool`,
          'BadRequest',
        );
      cidr = this.allocateFromPool(pool, attrs.cidr as string | undefined, attrs.prefixlen);
    } else {
      if (typeof attrs.cidr !== 'string')
        throw badRequest('a cidr must be specified in the absence of a subnet pool', 'BadRequest');
      try {
        cidr = canonicalCidr(attrs.cidr);
      } catch {
        throw badRequest(
          `Invalid input for cidr. Reason: '${attrs.cidr}' is not a valid IP subnet.`,
          'InvalidInput',
        );
      }
      if (cidrRange(cidr).version !== v)
        throw badRequest(
          `Invalid input for operation: ip_version ${v} does not match cidr ${cidr}.`,
          'InvalidInput',
        );
    }
    const siblings = [...this.state.subnets.values()].filter((s) => s.network_id === net.id);
    // Every subnet of one family on a network comes from the same subnetpool (or none).
    const sameFamily = siblings.filter((s) => s.ip_version === v);
    if (sameFamily.some((s) => s.subnetpool_id !== (pool?.id ?? null)))
      throw badRequest(
        'Subnets hosted on the same network must be allocated from the same subnet pool.',
        'NetworkSubnetPoolAffinityError',
      );
    const clash = siblings.find((s) => overlap(s.cidr, cidr));
    if (clash)
      throw badRequest(
        `Invalid input for operation: Requested subnet with cidr: ${cidr} for network: ${net.id} overlaps with another subnet.`,
        'InvalidInput',
      );
    let gateway: string | null;
    if (attrs.gateway_ip === null) gateway = null;
    else if (attrs.gateway_ip === undefined) gateway = firstHostOf(cidr);
    else {
      gateway = canonicalIp(String(attrs.gateway_ip));
      if (!inCidr(cidr, gateway))
        throw badRequest(`Invalid input for operation: Gateway is not valid on subnet.`, 'InvalidInput');
    }
    let pools: { start: string; end: string }[];
    if (Array.isArray(attrs.allocation_pools)) {
      pools = (attrs.allocation_pools as { start: string; end: string }[]).map((p) => ({
        start: canonicalIp(p.start),
        end: canonicalIp(p.end),
      }));
      for (const p of pools) {
        if (!inCidr(cidr, p.start) || !inCidr(cidr, p.end) || toBig(p.start) > toBig(p.end))
          throw badRequest(
            `The allocation pool ${p.start}-${p.end} spans beyond the subnet cidr ${cidr}.`,
            'OutOfBoundsAllocationPool',
          );
        if (gateway && toBig(gateway) >= toBig(p.start) && toBig(gateway) <= toBig(p.end))
          throw fault(
            409,
            'GatewayConflictWithAllocationPools',
            `Gateway ip ${gateway} conflicts with allocation pool ${p.start}-${p.end}.`,
          );
      }
    } else pools = defaultPools(cidr, gateway);
    const subnet = {
      ...this.base(),
      name: '',
      enable_dhcp: true,
      host_routes: [],
      dns_nameservers: [],
      ipv6_address_mode: null,
      ipv6_ra_mode: null,
      ...attrs,
      ip_version: v,
      cidr,
      gateway_ip: gateway,
      subnetpool_id: pool?.id ?? null,
      allocation_pools: pools,
      network_id: net.id,
    } as FakeSubnet;
    delete (subnet as Json).prefixlen;
    this.state.subnets.set(subnet.id, subnet);
    net.subnets = [...net.subnets, subnet.id];
    return subnet;
  }

  private allocateFromPool(pool: FakeSubnetPool, wanted: string | undefined, prefixlen: unknown): string {
    const used = [...this.state.subnets.values()]
      .filter((s) => s.subnetpool_id === pool.id)
      .map((s) => s.cidr);
    const min = Number(pool.min_prefixlen);
    const max = Number(pool.max_prefixlen);
    if (wanted) {
      let cidr: string;
      try {
        cidr = canonicalCidr(wanted);
      } catch {
        throw badRequest(
          `Invalid input for cidr. Reason: '${wanted}' is not a valid IP subnet.`,
          'InvalidInput',
        );
      }
      const len = cidrRange(cidr).prefixLength;
      if (len < min || len > max)
        throw badRequest(
          `Unable to allocate subnet with prefix length ${len}, minimum allowed prefix is ${min}.`,
          len < min ? 'MinPrefixSubnetAllocationError' : 'MaxPrefixSubnetAllocationError',
        );
      const inside = pool.prefixes.some((p) => overlap(p, cidr) && cidrRange(p).prefixLength <= len);
      if (!inside || used.some((u) => overlap(u, cidr)))
        throw fault(
          500,
          'SubnetAllocationError',
          'Failed to allocate subnet: Cannot allocate requested subnet from the available set of prefixes.',
        );
      return cidr;
    }
    const len = Number(prefixlen ?? pool.default_prefixlen);
    for (const prefix of pool.prefixes) {
      const p = cidrRange(prefix);
      if (len < p.prefixLength) continue;
      const size = 1n << BigInt((p.version === 4 ? 32 : 128) - len);
      for (let start = p.first; start + size - 1n <= p.last; start += size) {
        const candidate = `${fromBig(start, p.version)}/${len}`;
        if (!used.some((u) => overlap(u, candidate))) return candidate;
      }
    }
    throw fault(
      500,
      'SubnetAllocationError',
      `Failed to allocate subnet: Insufficient prefix space to allocate subnet size /${len}.`,
    );
  }

  private insertSecurityGroup(attrs: Json): Json {
    const sg = { ...this.base(), name: '', stateful: true, security_group_rules: [], ...attrs };
    this.state['security-groups'].set(sg.id as string, sg);
    for (const ethertype of ['IPv4', 'IPv6'])
      this.createRule({ security_group_id: sg.id, direction: 'egress', ethertype });
    return sg;
  }

  private createRule(attrs: Json): Json {
    const sg = this.state['security-groups'].get(String(attrs.security_group_id ?? ''));
    if (!sg)
      throw fault(
        404,
        'SecurityGroupNotFound',
        `Security group ${String(attrs.security_group_id)} does not exist`,
      );
    const rule = {
      ...this.base(),
      direction: 'ingress',
      ethertype: 'IPv4',
      protocol: null,
      port_range_min: null,
      port_range_max: null,
      remote_ip_prefix: null,
      remote_group_id: null,
      ...attrs,
    };
    const key = (r: Json) =>
      JSON.stringify([
        r.security_group_id,
        r.direction,
        r.ethertype,
        r.protocol,
        r.port_range_min,
        r.port_range_max,
        r.remote_ip_prefix,
        r.remote_group_id,
      ]);
    const dup = [...this.state['security-group-rules'].values()].find((r) => key(r) === key(rule));
    if (dup)
      throw fault(
        409,
        'SecurityGroupRuleExists',
        `Security group rule already exists. Rule id is ${String(dup.id)}.`,
      );
    this.state['security-group-rules'].set(rule.id as string, rule);
    sg.security_group_rules = [...(sg.security_group_rules as Json[]), rule];
    return rule;
  }

  private createPort(attrs: Json): FakePort {
    const net = this.state.networks.get(String(attrs.network_id ?? ''));
    if (!net) throw fault(404, 'NetworkNotFound', `Network ${String(attrs.network_id)} could not be found.`);
    const mac =
      attrs.mac_address === undefined ? this.freeMac(net.id) : normalizeMac(String(attrs.mac_address));
    this.checkMac(net.id, mac, undefined);
    const fixed = this.allocateIps(net, attrs.fixed_ips as Json[] | undefined, undefined);
    const host = String(attrs['binding:host_id'] ?? '');
    const port = {
      ...this.base(),
      name: '',
      device_id: '',
      device_owner: '',
      admin_state_up: true,
      status: 'DOWN',
      'binding:host_id': '',
      'binding:profile': {},
      'binding:vnic_type': 'normal',
      'binding:vif_type': 'unbound',
      'binding:vif_details': {},
      allowed_address_pairs: [],
      port_security_enabled: true,
      security_groups: [this.defaultSecurityGroupId],
      ...attrs,
      mac_address: mac,
      fixed_ips: fixed,
      network_id: net.id,
    } as FakePort;
    this.applyBinding(port, host);
    this.checkGroups(port.security_groups);
    this.state.ports.set(port.id, port);
    return port;
  }

  private freeMac(networkId: string): string {
    for (;;) {
      const mac = ['fa', '16', '3e', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(
        ':',
      );
      if (![...this.state.ports.values()].some((p) => p.network_id === networkId && p.mac_address === mac))
        return mac;
    }
  }

  private checkMac(networkId: string, mac: string, self: string | undefined): void {
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac))
      throw badRequest(
        `Invalid input for mac_address. Reason: '${mac}' is not a valid MAC address.`,
        'InvalidInput',
      );
    const holder = [...this.state.ports.values()].find(
      (p) => p.network_id === networkId && p.mac_address === mac && p.id !== self,
    );
    if (holder)
      throw fault(
        409,
        'MacAddressInUse',
        `Unable to complete operation for network ${networkId}. The mac address ${mac} is in use.`,
      );
  }

  private checkGroups(ids: string[]): void {
    for (const id of ids)
      if (!this.state['security-groups'].has(id))
        throw fault(404, 'SecurityGroupNotFound', `Security group ${id} does not exist`);
  }

  /** ML2: a port with binding:host_id is bound (vif_type set), and the agent marks it ACTIVE. */
  private applyBinding(port: FakePort, host: string): void {
    port['binding:host_id'] = host;
    if (host) {
      port['binding:vif_type'] = this.vifType;
      port['binding:vif_details'] = { connectivity: 'l2', port_filter: true };
      port.status = this.activeOn === 'bind' && port.admin_state_up ? 'ACTIVE' : 'DOWN';
    } else {
      port['binding:vif_type'] = 'unbound';
      port['binding:vif_details'] = {};
      port.status = 'DOWN';
    }
  }

  /** IPs currently allocated on a subnet, except those of port `self`. */
  private usedIps(subnetId: string, self: string | undefined): Set<string> {
    const used = new Set<string>();
    for (const p of this.state.ports.values()) {
      if (p.id === self) continue;
      for (const f of p.fixed_ips) if (f.subnet_id === subnetId) used.add(f.ip_address);
    }
    return used;
  }

  /**
   * Neutron's IPAM for a port's fixed_ips: `{subnet_id}` = next free address of the subnet's
   * allocation pools, `{subnet_id, ip_address}` or `{ip_address}` = exactly that address (anywhere
   * in the subnet, pools or not), none given = one address from one subnet of each IP version.
   * Addresses the port already holds (`current`) stay its own.
   */
  private allocateIps(
    net: FakeNetwork,
    requested: Json[] | undefined,
    self: FakePort | undefined,
  ): { subnet_id: string; ip_address: string }[] {
    const subnets = [...this.state.subnets.values()].filter((s) => s.network_id === net.id);
    let wants: { subnet?: FakeSubnet; ip?: string }[];
    if (requested === undefined) {
      wants = [];
      for (const v of [4, 6] as const) {
        const s = subnets.find((x) => x.ip_version === v && this.hasFree(x, self?.id));
        if (s) wants.push({ subnet: s });
      }
    } else {
      if (!Array.isArray(requested))
        throw badRequest('Invalid input for fixed_ips. Reason: must be a list.', 'InvalidInput');
      wants = requested.map((r) => {
        const ip = r.ip_address === undefined ? undefined : canonicalIpOrThrow(String(r.ip_address));
        if (r.subnet_id !== undefined) {
          const s = this.state.subnets.get(String(r.subnet_id));
          if (!s) throw fault(404, 'SubnetNotFound', `Subnet ${String(r.subnet_id)} could not be found.`);
          if (s.network_id !== net.id)
            throw badRequest(
              `Invalid input for operation: Failed to create port on network ${net.id}, because fixed_ips included invalid subnet ${s.id}.`,
              'InvalidInput',
            );
          if (ip && !inCidr(s.cidr, ip))
            throw badRequest(
              `IP address ${ip} is not a valid IP for the specified subnet.`,
              'InvalidIpForSubnet',
            );
          return { subnet: s, ip };
        }
        if (!ip)
          throw badRequest('Invalid input for fixed_ips: subnet_id or ip_address required', 'InvalidInput');
        const s = subnets.find((x) => inCidr(x.cidr, ip));
        if (!s)
          throw badRequest(
            `IP address ${ip} is not a valid IP for any of the subnets on the specified network.`,
            'InvalidIpForNetwork',
          );
        return { subnet: s, ip };
      });
    }
    const out: { subnet_id: string; ip_address: string }[] = [];
    const taken = new Set<string>();
    for (const w of wants) {
      const s = w.subnet as FakeSubnet;
      const used = this.usedIps(s.id, self?.id);
      if (w.ip) {
        if (used.has(w.ip) || taken.has(`${s.id}|${w.ip}`))
          throw fault(
            409,
            'IpAddressAlreadyAllocated',
            `IP address ${w.ip} already allocated in subnet ${s.id}`,
          );
        out.push({ subnet_id: s.id, ip_address: w.ip });
        taken.add(`${s.id}|${w.ip}`);
        continue;
      }
      const kept = self?.fixed_ips.find(
        (f) => f.subnet_id === s.id && !out.some((o) => o.ip_address === f.ip_address),
      );
      if (kept) {
        out.push({ ...kept });
        continue;
      }
      const ip = this.nextFree(
        s,
        new Set([
          ...used,
          ...[...taken].filter((t) => t.startsWith(`${s.id}|`)).map((t) => t.slice(s.id.length + 1)),
        ]),
      );
      if (!ip)
        throw fault(
          409,
          'IpAddressGenerationFailure',
          `No more IP addresses available on network ${net.id}.`,
        );
      out.push({ subnet_id: s.id, ip_address: ip });
      taken.add(`${s.id}|${ip}`);
    }
    return out;
  }

  private hasFree(s: FakeSubnet, self: string | undefined): boolean {
    return this.nextFree(s, this.usedIps(s.id, self)) !== undefined;
  }

  private nextFree(s: FakeSubnet, used: Set<string>): string | undefined {
    for (const p of s.allocation_pools) {
      const last = toBig(p.end);
      for (let n = toBig(p.start); n <= last; n++) {
        const ip = fromBig(n, s.ip_version);
        if (!used.has(ip)) return ip;
      }
    }
    return undefined;
  }

  // ------------------------------------------------------------------ update
  private update(collection: CollectionName, id: string, attrs: Json): Json {
    const r = this.require(collection, id);
    const unknown = Object.keys(attrs).filter((k) => !UPDATABLE[collection].includes(k));
    if (unknown.length) throw badRequest(`Cannot update read-only attribute(s) '${unknown.join(', ')}'`);
    if (collection === 'ports') this.updatePort(r as FakePort, attrs);
    else if (collection === 'subnets') this.updateSubnet(r as FakeSubnet, attrs);
    else if (collection === 'subnetpools' && attrs.prefixes !== undefined) {
      Object.assign(r, attrs, { prefixes: (attrs.prefixes as string[]).map(canonicalCidr) });
    } else Object.assign(r, attrs);
    this.touch(r);
    return r;
  }

  private updateSubnet(s: FakeSubnet, attrs: Json): void {
    const next = { ...s, ...attrs } as FakeSubnet;
    if (attrs.gateway_ip !== undefined && attrs.gateway_ip !== null)
      next.gateway_ip = canonicalIp(String(attrs.gateway_ip));
    Object.assign(s, next);
  }

  private updatePort(port: FakePort, attrs: Json): void {
    const net = this.state.networks.get(port.network_id) as FakeNetwork;
    if (attrs.mac_address !== undefined) {
      const mac = normalizeMac(String(attrs.mac_address));
      if (mac !== port.mac_address) {
        if (!['unbound', 'binding_failed'].includes(port['binding:vif_type']))
          throw fault(
            409,
            'PortBound',
            `Unable to complete operation on port ${port.id}, port is already bound, port type: ${port['binding:vif_type']}, old_mac ${port.mac_address}, new_mac ${mac}.`,
          );
        this.checkMac(net.id, mac, port.id);
      }
    }
    if (attrs.security_groups !== undefined) this.checkGroups(attrs.security_groups as string[]);
    const fixed =
      attrs.fixed_ips !== undefined ? this.allocateIps(net, attrs.fixed_ips as Json[], port) : port.fixed_ips;
    const { 'binding:host_id': host, mac_address, fixed_ips, ...rest } = attrs;
    Object.assign(port, rest, { fixed_ips: fixed });
    if (mac_address !== undefined) port.mac_address = normalizeMac(String(mac_address));
    if (host !== undefined && String(host ?? '') !== port['binding:host_id'])
      this.applyBinding(port, String(host ?? ''));
    else if (attrs.admin_state_up === false) port.status = 'DOWN';
    else if (attrs.admin_state_up === true && port['binding:host_id'] && this.activeOn === 'bind')
      port.status = 'ACTIVE';
  }

  // ------------------------------------------------------------------ delete
  private remove(collection: CollectionName, id: string): void {
    const r = this.require(collection, id);
    if (collection === 'networks') {
      const inUse = [...this.state.ports.values()].filter(
        (p) => p.network_id === id && !p.device_owner.startsWith('network:'),
      );
      if (inUse.length)
        throw fault(
          409,
          'NetworkInUse',
          `Unable to complete operation on network ${id}. There are one or more ports still in use on the network.`,
        );
      for (const p of [...this.state.ports.values()]) if (p.network_id === id) this.state.ports.delete(p.id);
      for (const s of [...this.state.subnets.values()])
        if (s.network_id === id) this.state.subnets.delete(s.id);
    } else if (collection === 'subnets') {
      const inUse = [...this.state.ports.values()].some(
        (p) => !p.device_owner.startsWith('network:dhcp') && p.fixed_ips.some((f) => f.subnet_id === id),
      );
      if (inUse)
        throw fault(
          409,
          'SubnetInUse',
          `Unable to complete operation on subnet ${id}: One or more ports have an IP allocation from this subnet.`,
        );
      const net = this.state.networks.get((r as FakeSubnet).network_id);
      if (net) net.subnets = net.subnets.filter((s) => s !== id);
    } else if (collection === 'subnetpools') {
      if ([...this.state.subnets.values()].some((s) => s.subnetpool_id === id))
        throw fault(
          409,
          'SubnetPoolInUse',
          `Unable to complete operation on subnet pool ${id}. Subnet pool ${id} is in use.`,
        );
    } else if (collection === 'security-groups') {
      if ([...this.state.ports.values()].some((p) => p.security_groups.includes(id)))
        throw fault(409, 'SecurityGroupInUse', `Security Group ${id} in use.`);
      for (const rule of [...this.state['security-group-rules'].values()])
        if (rule.security_group_id === id) this.state['security-group-rules'].delete(rule.id as string);
    } else if (collection === 'security-group-rules') {
      const sg = this.state['security-groups'].get(String(r.security_group_id));
      if (sg) sg.security_group_rules = (sg.security_group_rules as Json[]).filter((x) => x.id !== id);
    }
    this.state[collection].delete(id);
  }
}

// ------------------------------------------------------------------ helpers
function firstHostOf(cidr: string): string {
  const r = cidrRange(cidr);
  return fromBig(r.first + 1n, r.version);
}

function normalizeMac(mac: string): string {
  return mac.toLowerCase();
}

function looksLikeIp(s: string): boolean {
  return s.includes(':') ? ipaddr.IPv6.isValid(s) : ipaddr.IPv4.isValidFourPartDecimal(s);
}

function canonicalIpOrThrow(ip: string): string {
  if (!looksLikeIp(ip))
    throw badRequest(`Invalid input for fixed_ips: '${ip}' is not a valid IP address.`, 'InvalidInput');
  return canonicalIp(ip);
}

/** Neutron's equality filter: booleans as true/false, numbers as text, null as an empty value. */
function matchValue(actual: unknown, wanted: string): boolean {
  if (actual === null || actual === undefined) return wanted === '' || wanted === 'None';
  if (typeof actual === 'boolean') return String(actual) === wanted.toLowerCase();
  if (Array.isArray(actual)) return actual.map(String).includes(wanted);
  if (typeof actual === 'string' && looksLikeIp(actual) && looksLikeIp(wanted))
    return canonicalIp(actual) === canonicalIp(wanted);
  if (typeof actual === 'string' && actual.includes('/') && wanted.includes('/')) {
    try {
      return canonicalCidr(actual) === canonicalCidr(wanted);
    } catch {
      return actual === wanted;
    }
  }
  return String(actual) === wanted;
}

/** `fixed_ips=subnet_id=X&fixed_ips=ip_address=Y`: one of the port's allocations matches them all. */
function matchFixedIps(port: FakePort, values: string[]): boolean {
  const subnetIds: string[] = [];
  const ips: string[] = [];
  for (const v of values) {
    const eq = v.indexOf('=');
    const key = v.slice(0, eq);
    const val = v.slice(eq + 1);
    if (key === 'subnet_id') subnetIds.push(val);
    else if (key === 'ip_address') ips.push(canonicalIpOrThrow(val));
    else throw badRequest(`Invalid fixed_ips filter ${v}`, 'InvalidInput');
  }
  return port.fixed_ips.some(
    (f) =>
      (!subnetIds.length || subnetIds.includes(f.subnet_id)) && (!ips.length || ips.includes(f.ip_address)),
  );
}

function project(r: Json, fields: string[]): Json {
  const copy = structuredClone(r);
  if (fields.length === 0) return copy;
  return Object.fromEntries(Object.entries(copy).filter(([k]) => fields.includes(k)));
}
