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
    check('l2-agent', async () => {
      const agents = (await neutron.list('agents', { host })).filter((a) =>
        /Linux bridge|Open vSwitch|OVN/i.test(a.agent_type),
      );
      const alive = agents.filter((a) => a.alive && a.admin_state_up);
      return alive.length
        ? { ok: true, detail: `${alive.map((a) => a.agent_type).join(', ')} alive on host '${host}'` }
        : {
            ok: false,
            detail: agents.length
              ? `L2 agent on host '${host}' is down`
              : `no L2 agent registered for host '${host}'`,
          };
    }),
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
