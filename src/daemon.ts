// Wires config → Neutron client → CNM translation → Docker protocol server, and owns the listener
// lifecycle: one daemon per socket, graceful shutdown that finishes in-flight calls.
import { chmodSync, existsSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { createHostBinder } from './binding/index.js';
import { NeutronIpam } from './cnm/ipam.js';
import { NeutronNetworkDriver } from './cnm/network.js';
import { NeutronView } from './cnm/neutron-view.js';
import type { Config } from './config/config.js';
import type { IpamDriver, NetworkDriver } from './docker/protocol.js';
import { buildServer } from './docker/server.js';
import type { NeutronClient } from './neutron/client.js';
import { createNeutronClient } from './neutron/from-config.js';
import { errorMessage } from './util/errors.js';

export interface Daemon {
  apps: FastifyInstance[];
  neutron: NeutronClient;
  close(): Promise<void>;
}

/** The drivers, ready to be served by one or more listeners. */
export function buildDrivers(
  config: Config,
  neutron: NeutronClient,
  logger: Logger,
): { network: NetworkDriver; ipam: IpamDriver } {
  const view = new NeutronView(neutron);
  const defaultSubnetpools = {
    4: config.neutron.default_subnetpool_v4,
    6: config.neutron.default_subnetpool_v6,
  };
  const network = new NeutronNetworkDriver(
    view,
    createHostBinder({
      host: config.DEFAULT.host,
      bindir: config.DEFAULT.bindir,
      ovsBridge: config.binding.ovs_bridge,
      scriptTimeoutMs: config.binding.script_timeout * 1000,
    }),
    {
      scope: config.DEFAULT.capability_scope,
      host: config.DEFAULT.host,
      vethDstPrefix: config.binding.veth_dst_prefix,
      enableDhcp: config.neutron.enable_dhcp,
      subnetpoolNamePrefix: config.DEFAULT.subnetpool_name_prefix,
      defaultSubnetpools,
      activeWaitMs: (config.neutron.vif_plugging_timeout || config.binding.active_wait_timeout) * 1000,
      activeWaitFatal: config.neutron.vif_plugging_is_fatal,
      processExternalConnectivity: config.DEFAULT.process_external_connectivity,
    },
    (msg) => logger.warn(msg),
  );
  const ipam = new NeutronIpam(view, {
    localAddressSpace: config.DEFAULT.local_default_address_space,
    globalAddressSpace: config.DEFAULT.global_default_address_space,
    subnetpoolNamePrefix: config.DEFAULT.subnetpool_name_prefix,
    defaultSubnetpools,
    requestReplay: config.DEFAULT.ipam_request_replay,
  });
  return { network, ipam };
}

/** True when something answers on the socket (another kuryr), false for a stale file. */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startDaemon(config: Config, logger: Logger): Promise<Daemon> {
  const neutron = createNeutronClient(config);
  const drivers = buildDrivers(config, neutron, logger);
  const apps: FastifyInstance[] = [];
  const cleanup: string[] = [];
  const socket = config.DEFAULT.plugin_socket;
  if (socket) {
    if (existsSync(socket)) {
      if (await socketInUse(socket))
        throw new Error(`another kuryr is already serving ${socket}; stop it first`);
      unlinkSync(socket); // stale, from a crash
    }
    mkdirSync(dirname(socket), { recursive: true });
    const app = buildServer({ ...drivers, logger });
    await app.listen({ path: socket });
    chmodSync(socket, 0o660);
    apps.push(app);
    cleanup.push(socket);
    logger.info({ socket }, 'listening for Docker on unix socket');
  }
  if (config.DEFAULT.listen_tcp) {
    // Docker finds a TCP plugin through a spec file named after the driver.
    const url = new URL(config.DEFAULT.kuryr_uri);
    const app = buildServer({ ...drivers, logger });
    await app.listen({ host: url.hostname, port: Number(url.port) || 23750 });
    apps.push(app);
    const specFile = join(config.DEFAULT.spec_dir, 'kuryr.spec');
    mkdirSync(config.DEFAULT.spec_dir, { recursive: true });
    writeFileSync(specFile, `${url.origin}\n`);
    cleanup.push(specFile);
    logger.info({ url: url.origin, specFile }, 'listening for Docker on TCP');
  }
  checkNeutron(neutron, logger);
  return {
    apps,
    neutron,
    async close() {
      await Promise.all(apps.map((a) => a.close())); // each waits for its in-flight calls
      for (const f of cleanup) if (existsSync(f)) unlinkSync(f);
      await neutron.close();
    },
  };
}

/** Logs (does not fail) whether Neutron is reachable: Docker calls fail with a clear error meanwhile. */
function checkNeutron(neutron: NeutronClient, logger: Logger): void {
  neutron
    .extensions()
    .then((ext) => {
      const missing = ['standard-attr-tag', 'subnet_allocation', 'binding'].filter((a) => !ext.has(a));
      if (missing.length) logger.error({ missing }, 'Neutron lacks extensions kuryr needs');
      else logger.info({ extensions: ext.size }, 'Neutron reachable');
    })
    .catch((err) =>
      logger.error(
        { err: errorMessage(err) },
        'Neutron not reachable yet; Docker calls will fail until it is',
      ),
    );
}
