// `kuryr status`: is everything kuryr depends on in place? Each check says what it found.
import { existsSync } from 'node:fs';
import { Agent, request } from 'undici';
import { isKuryrPortOwner, NET_TAG_LOW } from '../cnm/naming.js';
import type { Config } from '../config/config.js';
import type { DockerEngine } from '../docker/engine.js';
import type { NeutronClient } from '../neutron/client.js';
import { errorMessage } from '../util/errors.js';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

const REQUIRED_EXTENSIONS = ['standard-attr-tag', 'subnet_allocation', 'binding'];

/**
 * Which Neutron backend wires ports on this host, told by what Neutron's agent list shows for it:
 * ML2/OVN lists each chassis as an "OVN Controller agent" (or "OVN Controller Gateway agent")
 * whose host is the chassis' hostname, alive while ovn-controller keeps up with the northbound
 * database; ML2/OVS and ML2/linuxbridge list their L2 agents.
 */
const BACKENDS: readonly { backend: string; what: string; type: RegExp }[] = [
  { backend: 'ML2/OVN', what: 'OVN chassis', type: /^OVN Controller( Gateway)? agent$/i },
  { backend: 'ML2/OVS', what: 'Open vSwitch agent', type: /^Open vSwitch agent$/i },
  { backend: 'ML2/linuxbridge', what: 'Linux bridge agent', type: /^Linux bridge agent$/i },
];

/** The backend found for `host` and whether its agent (or OVN chassis) is alive. */
async function l2Check(neutron: NeutronClient, host: string): Promise<{ ok: boolean; detail: string }> {
  const agents = await neutron.list('agents', { host });
  const found = BACKENDS.flatMap((b) =>
    agents.filter((a) => a.host === host && b.type.test(a.agent_type)).map((a) => ({ ...b, agent: a })),
  );
  const alive = found.filter((f) => f.agent.alive && f.agent.admin_state_up);
  if (alive.length) {
    // A dead agent of another backend (the host was switched) is not this host's backend.
    return {
      ok: true,
      detail: alive.map((f) => `${f.backend}: ${f.what} alive on host '${host}'`).join('; '),
    };
  }
  if (found.length) {
    const dead = found.map((f) => `${f.backend}: ${f.what} ${f.agent.alive ? 'disabled' : 'down'}`);
    return { ok: false, detail: `${dead.join('; ')} on host '${host}'` };
  }
  return {
    ok: false,
    detail:
      `no L2 agent or OVN chassis registered for host '${host}' (looked for ${BACKENDS.map((b) => b.what).join(', ')}): ` +
      `is it running, and does [DEFAULT] host equal its host (OVN: the chassis' external_ids:hostname)?`,
  };
}

export async function statusChecks(
  config: Config,
  neutron: NeutronClient,
  engine: DockerEngine,
): Promise<Check[]> {
  const host = config.DEFAULT.host;
  const check = async (name: string, fn: () => Promise<{ ok: boolean; detail: string }>): Promise<Check> => {
    try {
      return { name, ...(await fn()) };
    } catch (err) {
      return { name, ok: false, detail: errorMessage(err) };
    }
  };
  return Promise.all([
    check('neutron', async () => {
      const ext = await neutron.extensions();
      const missing = REQUIRED_EXTENSIONS.filter((e) => !ext.has(e));
      return missing.length
        ? { ok: false, detail: `missing extensions: ${missing.join(', ')}` }
        : {
            ok: true,
            detail: `reachable, ${ext.size} extensions (${REQUIRED_EXTENSIONS.join(', ')} present)`,
          };
    }),
    check('l2-agent', () => l2Check(neutron, host)),
    check('plugin-socket', async () => {
      const socket = config.DEFAULT.plugin_socket;
      if (!socket || !existsSync(socket))
        return { ok: false, detail: `${socket || '(none)'} does not exist: is 'kuryr serve' running?` };
      const res = await request('http://plugin/Plugin.Activate', {
        method: 'POST',
        dispatcher: new Agent({ connect: { socketPath: socket } }),
        signal: AbortSignal.timeout(5000),
      });
      const body = await res.body.text();
      return {
        ok: res.statusCode === 200 && body.includes('IpamDriver'),
        detail: `${socket} answers Plugin.Activate`,
      };
    }),
    check('docker', async () => {
      const info = await engine.info();
      const active = info.Plugins?.Network?.includes('kuryr') ?? false;
      return {
        ok: true,
        detail: `Docker ${info.ServerVersion ?? '?'}; plugin kuryr ${active ? 'activated' : 'not activated yet (Docker activates it on first use)'}`,
      };
    }),
    check('managed', async () => {
      const [networks, ports] = await Promise.all([
        neutron.list('networks', { fields: ['id', 'tags'] }),
        neutron.list('ports', { fields: ['id', 'device_owner', 'binding:host_id'] }),
      ]);
      const nets = networks.filter((n) => n.tags.some((t) => t.startsWith(NET_TAG_LOW))).length;
      const mine = ports.filter((p) => isKuryrPortOwner(p.device_owner));
      const here = mine.filter((p) => p['binding:host_id'] === host).length;
      return {
        ok: true,
        detail: `${nets} Neutron networks, ${mine.length} ports (${here} on this host) under kuryr`,
      };
    }),
  ]);
}
