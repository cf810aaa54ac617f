// kuryr.conf: kuryr-libnetwork's INI file, option names and defaults, read once at start-up.
// Environment variables override the file (KURYR_<SECTION>_<KEY>, e.g. KURYR_NEUTRON_PASSWORD,
// plus kuryr-libnetwork's own CAPABILITY_SCOPE and OS_KURYR_URI). Unknown keys are reported as
// warnings; a value of the wrong kind is an error naming the key, the value and what is allowed.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { IniSyntaxError, parseOsloIni } from './ini.js';

type Kind = 'string' | 'bool' | 'int' | 'float' | { choices: readonly string[] };

interface OptionSpec {
  kind: Kind;
  default: string | number | boolean;
  secret?: boolean;
  /** Extra environment variable names honoured for compatibility. */
  env?: readonly string[];
}

const AUTH_TYPES = [
  'noauth',
  'password',
  'v3password',
  'token',
  'v3token',
  'v3applicationcredential',
] as const;

/** Every option we understand, by section. Names and defaults follow kuryr-libnetwork/kuryr-lib. */
export const OPTIONS = {
  DEFAULT: {
    kuryr_uri: { kind: 'string', default: 'http://127.0.0.1:23750', env: ['OS_KURYR_URI'] },
    capability_scope: { kind: { choices: ['local', 'global'] }, default: 'local', env: ['CAPABILITY_SCOPE'] },
    local_default_address_space: { kind: 'string', default: 'no_address_space' },
    global_default_address_space: { kind: 'string', default: 'no_address_space' },
    process_external_connectivity: { kind: 'bool', default: true },
    bindir: { kind: 'string', default: '/usr/libexec/kuryr' },
    subnetpool_name_prefix: { kind: 'string', default: 'kuryrPool' },
    debug: { kind: 'bool', default: false },
    log_file: { kind: 'string', default: '' },
    enable_ssl: { kind: 'bool', default: false },
    ssl_cert_file: { kind: 'string', default: '/var/lib/kuryr/certs/cert.pem' },
    ssl_key_file: { kind: 'string', default: '/var/lib/kuryr/certs/key.pem' },
    ssl_ca_file: { kind: 'string', default: '' },
    // Ours: mutual TLS. Clients must present a certificate from ssl_client_ca_file; the spec file
    // tells Docker to use ssl_client_cert_file / ssl_client_key_file.
    ssl_client_ca_file: { kind: 'string', default: '' },
    ssl_client_cert_file: { kind: 'string', default: '' },
    ssl_client_key_file: { kind: 'string', default: '' },
    // Ours: where Docker finds us. The unix socket needs no spec file; TCP is opt-in.
    plugin_socket: { kind: 'string', default: '/run/docker/plugins/kuryr.sock' },
    listen_tcp: { kind: 'bool', default: false },
    spec_dir: { kind: 'string', default: '/etc/docker/plugins' },
    // The driver name Docker knows a TCP listener by: the spec file is <spec_name>.spec / .json.
    spec_name: { kind: 'string', default: 'kuryr' },
    host: { kind: 'string', default: '' },
    // Ours: set IpamDriver RequiresRequestReplay, so Docker replays pool and address requests
    // after it restarts. Two Docker networks then cannot share one CIDR (replays are keyed by it).
    ipam_request_replay: { kind: 'bool', default: false },
    // Ours: what `--ip-range` becomes. allocation_pool (Docker's meaning): the subnet is --subnet,
    // its allocation pool the range. subnet (kuryr-libnetwork's layout): the subnet, and its
    // subnetpool, are the range's CIDR.
    ip_range_mode: { kind: { choices: ['allocation_pool', 'subnet'] }, default: 'allocation_pool' },
    // Ours: Prometheus /metrics and /healthz, on a unix socket path or host:port ('' = off).
    metrics_listen: { kind: 'string', default: '127.0.0.1:23751' },
  },
  neutron: {
    auth_type: { kind: { choices: AUTH_TYPES }, default: 'password' },
    auth_url: { kind: 'string', default: '' },
    username: { kind: 'string', default: '' },
    user_domain_name: { kind: 'string', default: 'Default' },
    user_domain_id: { kind: 'string', default: '' },
    password: { kind: 'string', default: '', secret: true },
    project_name: { kind: 'string', default: '' },
    project_id: { kind: 'string', default: '' },
    project_domain_name: { kind: 'string', default: 'Default' },
    project_domain_id: { kind: 'string', default: '' },
    token: { kind: 'string', default: '', secret: true },
    application_credential_id: { kind: 'string', default: '' },
    application_credential_secret: { kind: 'string', default: '', secret: true },
    endpoint_override: { kind: 'string', default: '' },
    region_name: { kind: 'string', default: '' },
    endpoint_type: { kind: { choices: ['public', 'internal', 'admin'] }, default: 'public' },
    cafile: { kind: 'string', default: '' },
    insecure: { kind: 'bool', default: false },
    timeout: { kind: 'float', default: 30 },
    enable_dhcp: { kind: 'bool', default: true },
    default_subnetpool_v4: { kind: 'string', default: 'kuryr' },
    default_subnetpool_v6: { kind: 'string', default: 'kuryr6' },
    vif_plugging_is_fatal: { kind: 'bool', default: false },
    vif_plugging_timeout: { kind: 'float', default: 0 },
  },
  binding: {
    veth_dst_prefix: { kind: 'string', default: 'eth' },
    default_driver: { kind: 'string', default: 'kuryr.lib.binding.drivers.veth' },
    enabled_drivers: { kind: 'string', default: 'kuryr.lib.binding.drivers.veth' },
    link_iface: { kind: 'string', default: '' },
    // Ours: Join waits (bounded) for Neutron to report the port ACTIVE, so the container's network
    // works when its process starts. 0 = do not wait. [neutron] vif_plugging_timeout > 0 overrides.
    active_wait_timeout: { kind: 'float', default: 20 },
    // Ours: the OVS integration bridge for vif_type ovs (vif_details.bridge_name wins), and the
    // deadline for kuryr-lib style bind/unbind scripts in [DEFAULT] bindir.
    ovs_bridge: { kind: 'string', default: 'br-int' },
    script_timeout: { kind: 'float', default: 30 },
    // Ours: seconds after the last container start before endpoints' device_id, name and tags
    // (recorded on the veth at once) are written to Neutron; at most 10 s after the start.
    identity_write_delay: { kind: 'float', default: 1 },
  },
  // Ours: a warm pool of ports per Docker network on this host, bound, plugged and ACTIVE before a
  // container asks, so `docker run` needs no port creation and no wait for the L2 agent.
  // size = ports kept ready per network (0 = off); batch = most ports made per bulk request.
  // With the pool on, kuryr tells Docker it does not need MAC addresses (restart dockerd after
  // turning it on: Docker reads IPAM capabilities once).
  vif_pool: {
    // Ours: warm ports per Docker network on this host. On by default, sized by demand: an idle
    // network holds min_size ports, each take in the last demand_window seconds asks for one
    // more (up to max_size) until its port comes back, a network nobody took from for
    // idle_timeout seconds gives back all but min_size; max_ports bounds the host. `size = N`
    // fixes the size instead.
    enabled: { kind: 'bool', default: true },
    size: { kind: 'int', default: 0 },
    min_size: { kind: 'int', default: 2 },
    max_size: { kind: 'int', default: 20 },
    max_ports: { kind: 'int', default: 64 },
    demand_window: { kind: 'int', default: 120 },
    idle_timeout: { kind: 'int', default: 600 },
    batch: { kind: 'int', default: 10 },
  },
} as const satisfies Record<string, Record<string, OptionSpec>>;

type Sections = typeof OPTIONS;
type ValueOf<S extends OptionSpec> = S['kind'] extends 'bool'
  ? boolean
  : S['kind'] extends 'int' | 'float'
    ? number
    : S['kind'] extends { choices: readonly (infer C)[] }
      ? C
      : string;

export type Config = {
  -readonly [S in keyof Sections]: {
    -readonly [K in keyof Sections[S]]: Sections[S][K] extends OptionSpec ? ValueOf<Sections[S][K]> : never;
  };
} & {
  /** Where values came from, for `kuryr config check`. */
  sources: Record<string, 'default' | 'file' | 'env'>;
  warnings: string[];
};

// Deprecated names kuryr-libnetwork still accepts, mapped to their current name.
const ALIASES: Record<string, Record<string, string>> = {
  binding: { driver: 'default_driver' },
};

/** Keys oslo/keystoneauth accept that we read but do not need; they must not cause warnings. */
const IGNORED = new Set([
  'DEFAULT.pybasedir',
  'DEFAULT.port_driver',
  'DEFAULT.default_port_driver',
  'DEFAULT.enabled_port_drivers',
  'DEFAULT.deployment_type',
  'DEFAULT.log_dir',
  'DEFAULT.use_stderr',
  'DEFAULT.verbose',
  'neutron.auth_section',
  'neutron.certfile',
  'neutron.keyfile',
  'neutron.collect_timing',
  'neutron.split_loggers',
]);

export class ConfigError extends Error {}

function parseValue(section: string, key: string, spec: OptionSpec, raw: string): string | number | boolean {
  const where = `[${section}] ${key} = ${JSON.stringify(raw)}`;
  const kind = spec.kind;
  if (kind === 'bool') {
    const v = raw.trim().toLowerCase();
    if (['true', 'yes', 'on', '1'].includes(v)) return true;
    if (['false', 'no', 'off', '0'].includes(v)) return false;
    throw new ConfigError(`${where}: not a boolean; use true or false`);
  }
  if (kind === 'int' || kind === 'float') {
    const n = Number(raw.trim());
    if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || (kind === 'int' && !Number.isInteger(n))) {
      throw new ConfigError(`${where}: not a non-negative ${kind === 'int' ? 'integer' : 'number'}`);
    }
    return n;
  }
  if (typeof kind === 'object') {
    const v = raw.trim();
    if (!kind.choices.includes(v))
      throw new ConfigError(`${where}: must be one of ${kind.choices.join(', ')}`);
    return v;
  }
  return raw.trim();
}

export interface LoadOptions {
  /** Path of kuryr.conf; a missing default file is fine, a missing explicit one is an error. */
  file?: string;
  explicitFile?: boolean;
  env?: NodeJS.ProcessEnv;
}

export const DEFAULT_CONFIG_FILE = '/etc/kuryr/kuryr.conf';

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? DEFAULT_CONFIG_FILE;
  let fileSections: Record<string, Record<string, string>> = { DEFAULT: {} };
  try {
    fileSections = { DEFAULT: {}, ...parseOsloIni(readFileSync(file, 'utf8'), file) };
  } catch (err) {
    if (err instanceof IniSyntaxError) throw new ConfigError(err.message);
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' || opts.explicitFile) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
  }
  const warnings: string[] = [];
  const sources: Config['sources'] = {};
  const out: Record<string, Record<string, unknown>> = {};

  for (const [section, values] of Object.entries(fileSections)) {
    const specs = (OPTIONS as Record<string, Record<string, OptionSpec>>)[section];
    for (const rawKey of Object.keys(values)) {
      const key = ALIASES[section]?.[rawKey] ?? rawKey;
      if (!specs) {
        warnings.push(`unknown section [${section}] in ${file} is ignored`);
        break;
      }
      if (!(key in specs) && !IGNORED.has(`${section}.${key}`))
        warnings.push(`unknown option [${section}] ${rawKey} in ${file} is ignored`);
    }
  }

  for (const [section, specs] of Object.entries(OPTIONS as Record<string, Record<string, OptionSpec>>)) {
    const target: Record<string, unknown> = {};
    out[section] = target;
    const fromFile = fileSections[section] ?? {};
    for (const [key, spec] of Object.entries(specs)) {
      const envNames = [`KURYR_${section.toUpperCase()}_${key.toUpperCase()}`, ...(spec.env ?? [])];
      // An empty variable counts as unset (managed plugins declare every variable, most left empty).
      const envName = envNames.find((n) => env[n] !== undefined && env[n] !== '');
      const aliasKey = Object.entries(ALIASES[section] ?? {}).find(([, to]) => to === key)?.[0];
      const fileValue = fromFile[key] ?? (aliasKey ? fromFile[aliasKey] : undefined);
      let value: string | number | boolean = spec.default;
      let source: 'default' | 'file' | 'env' = 'default';
      if (envName) {
        value = parseValue(section, key, spec, String(env[envName]));
        source = 'env';
      } else if (fileValue !== undefined) {
        value = parseValue(section, key, spec, fileValue);
        source = 'file';
      }
      target[key] = value;
      sources[`${section}.${key}`] = source;
    }
  }
  const config = { ...(out as unknown as Omit<Config, 'sources' | 'warnings'>), sources, warnings } as Config;
  if (!config.DEFAULT.host) config.DEFAULT.host = hostname();
  validateAuth(config);
  return config;
}

function validateAuth(c: Config): void {
  const n = c.neutron;
  const need = (keys: (keyof Config['neutron'])[]) => {
    const missing = keys.filter((k) => !n[k]);
    if (missing.length) {
      throw new ConfigError(
        `[neutron] auth_type = ${n.auth_type} needs ${missing.map((k) => `[neutron] ${String(k)}`).join(', ')}`,
      );
    }
  };
  if (n.auth_type === 'noauth') need(['endpoint_override']);
  else if (n.auth_type === 'password' || n.auth_type === 'v3password')
    need(['auth_url', 'username', 'password']);
  else if (n.auth_type === 'token' || n.auth_type === 'v3token') need(['auth_url', 'token']);
  else need(['auth_url', 'application_credential_id', 'application_credential_secret']);
}

/** The effective configuration as printable text with secrets masked. */
export function describeConfig(c: Config): string {
  const lines: string[] = [];
  for (const [section, specs] of Object.entries(OPTIONS as Record<string, Record<string, OptionSpec>>)) {
    lines.push(`[${section}]`);
    for (const [key, spec] of Object.entries(specs)) {
      const v = (c as unknown as Record<string, Record<string, unknown>>)[section]?.[key];
      const shown = spec.secret && v ? '***' : String(v);
      lines.push(`${key} = ${shown}    # ${c.sources[`${section}.${key}`]}`);
    }
  }
  return lines.join('\n');
}
