// Wires config → Neutron client → CNM translation → Docker protocol server, and owns the listener
// lifecycle: one daemon per socket, graceful shutdown that finishes in-flight calls.
import { chmodSync, existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { createHostBinder, type HostBinder } from './binding/index.js';
import { Catalog } from './cnm/catalog.js';
import type { EndpointHooks } from './cnm/endpoints.js';
import { ExposedPorts } from './cnm/exposed-ports.js';
import { DAEMON_BURST_TAIL, HostActivity } from './cnm/host-activity.js';
import { NeutronIpam } from './cnm/ipam.js';
import { NeutronNetworkDriver } from './cnm/network.js';
import { PortBinding } from './cnm/port-binding.js';
import { Teardowns } from './cnm/teardowns.js';
import { neutronPoolBackend, WarmPool } from './cnm/warm-pool.js';
import { WriteBehind } from './cnm/write-behind.js';
import type { Config } from './config/config.js';
import type { IpamDriver, NetworkDriver } from './docker/protocol.js';
import { buildServer, type CallObserver, closeServer } from './docker/server.js';
import type { NeutronClient } from './neutron/client.js';
import { createNeutronClient } from './neutron/from-config.js';
import { Metrics, serveMetrics } from './observability/metrics.js';
import { errorMessage } from './util/errors.js';

/** Of the ~10 s Docker gives a stopping plugin, what deleting the warm pool may take (the rest:
 *  in-flight calls, background writes). What is left is adopted by the next daemon. */
const POOL_DRAIN_DEADLINE_MS = 6_000;
/** Then Docker's calls still in flight get this long to finish (a Join waiting for ACTIVE). */
const CALLS_DEADLINE_MS = 3_000;

export interface Daemon {
  apps: FastifyInstance[];
  neutron: NeutronClient;
  close(): Promise<void>;
}

export interface DriverHooks extends EndpointHooks {
  warnDetail(message: string, detail?: Record<string, unknown>): void;
  poolTaken?(hit: boolean): void;
  poolReturned?(kept: boolean): void;
}

/** The drivers, ready to be served by one or more listeners, and the warm pool they share. */
export function buildDrivers(
  config: Config,
  neutron: NeutronClient,
  hooks: DriverHooks,
  /** The host side; tests pass an in-memory one. */
  binder?: HostBinder,
): {
  network: NetworkDriver;
  ipam: IpamDriver;
  pool: WarmPool;
  settle: () => Promise<void>;
  /** Neutron clean-up still running in the background (teardowns after `docker network rm`). */
  teardownsPending: () => number;
  /** Deletes ports of starts a previous (killed) daemon left half-done; resolves how many. */
  reapInterruptedStarts: () => Promise<number>;
  /** Writes the device_id of endpoints a previous daemon recorded only on the host; how many. */
  repairRecordedEndpoints: () => Promise<number>;
} {
  const startedAt = Date.now();
  const teardowns = new Teardowns(hooks.warnDetail);
  const defaultSubnetpools = {
    4: config.neutron.default_subnetpool_v4,
    6: config.neutron.default_subnetpool_v6,
  };
  const hostBinder =
    binder ??
    createHostBinder({
      host: config.DEFAULT.host,
      bindir: config.DEFAULT.bindir,
      ovsBridge: config.binding.ovs_bridge,
      scriptTimeoutMs: config.binding.script_timeout * 1000,
    });
  // What the process remembers of Neutron has one owner, and background writes one queue. The
  // host side records which endpoint holds a port ahead of Neutron's device_id.
  const catalog = new Catalog(neutron, hostBinder);
  // Background work (identity writes, refills) waits until starts pause: one clock for both.
  const activity = new HostActivity(DAEMON_BURST_TAIL);
  const writes = new WriteBehind(activity);
  const ports = new PortBinding(catalog, hostBinder, config.DEFAULT.host, activity);
  const pool = new WarmPool(
    neutronPoolBackend(ports, {
      writes,
      delayMs: Math.max(0, config.binding.identity_write_delay) * 1000,
      warn: hooks.warn,
    }),
    {
      // Swarm (global scope): the manager hands out addresses for tasks on any node, so no
      // port can be made ahead on this host.
      enabled: config.vif_pool.enabled && config.DEFAULT.capability_scope === 'local',
      size: Math.max(0, config.vif_pool.size),
      minSize: Math.max(0, config.vif_pool.min_size),
      maxSize: Math.max(config.vif_pool.min_size, config.vif_pool.max_size),
      maxPorts: Math.max(0, config.vif_pool.max_ports),
      demandWindowMs: config.vif_pool.demand_window * 1000,
      idleMs: config.vif_pool.idle_timeout * 1000,
      trimAfterMs: 30_000,
      batch: Math.max(1, config.vif_pool.batch),
      retryMs: 30_000,
      refillDelayMs: 1_000,
      // A previous run's ports wait out Docker's retries of the calls that run was answering.
      adoptHoldMs: REAP_AFTER_MS,
    },
    { warn: hooks.warnDetail, taken: hooks.poolTaken, returned: hooks.poolReturned },
    activity,
  );
  const network = new NeutronNetworkDriver(
    catalog,
    ports,
    pool,
    writes,
    teardowns,
    new ExposedPorts(neutron, catalog),
    {
      scope: config.DEFAULT.capability_scope,
      host: config.DEFAULT.host,
      vethDstPrefix: config.binding.veth_dst_prefix,
      enableDhcp: config.neutron.enable_dhcp,
      subnetpoolNamePrefix: config.DEFAULT.subnetpool_name_prefix,
      defaultSubnetpools,
      activeWaitMs: (config.neutron.vif_plugging_timeout || config.binding.active_wait_timeout) * 1000,
      activeWaitFatal: config.neutron.vif_plugging_is_fatal,
      identityWriteDelayMs: Math.max(0, config.binding.identity_write_delay) * 1000,
      processExternalConnectivity: config.DEFAULT.process_external_connectivity,
    },
    hooks,
  );
  const ipam = new NeutronIpam(
    catalog,
    ports,
    pool,
    writes,
    teardowns,
    {
      localAddressSpace: config.DEFAULT.local_default_address_space,
      globalAddressSpace: config.DEFAULT.global_default_address_space,
      subnetpoolNamePrefix: config.DEFAULT.subnetpool_name_prefix,
      defaultSubnetpools,
      requestReplay: config.DEFAULT.ipam_request_replay,
      ipRangeMode: config.DEFAULT.ip_range_mode,
      scope: config.DEFAULT.capability_scope,
    },
    hooks,
  );
  return {
    network,
    ipam,
    pool,
    settle: () => Promise.all([writes.settleAll(), teardowns.settled()]).then(() => undefined),
    teardownsPending: () => teardowns.size,
    // 2 s of margin: Neutron's created_at has second resolution.
    reapInterruptedStarts: () => ports.reapInterruptedStarts(startedAt - 2_000),
    repairRecordedEndpoints: () => network.repairRecordedEndpoints(),
  };
}

/** Docker's plugin client retries a failed connection for 30 s (moby pkg/plugins, defaultTimeOut). */
const REAP_AFTER_MS = 35_000;

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
  const metrics = new Metrics();
  const neutron = createNeutronClient(config, metrics.onNeutronCall);
  const { pool, settle, teardownsPending, reapInterruptedStarts, repairRecordedEndpoints, ...drivers } =
    buildDrivers(config, neutron, {
      warn: (msg) => logger.warn(msg),
      warnDetail: (msg, detail) => logger.warn(detail ?? {}, msg),
      activeWaited: (s) => metrics.bindingWaitSeconds.observe(s),
      poolTaken: (hit) => metrics.poolTakes.inc({ result: hit ? 'hit' : 'miss' }),
      poolReturned: (kept) => metrics.poolReturns.inc({ result: kept ? 'kept' : 'deleted' }),
    });
  metrics.watchPool(() => pool.stats());
  metrics.watchTeardowns(teardownsPending);
  const observer: CallObserver = metrics.observer;
  const apps: FastifyInstance[] = [];
  const servers: Server[] = [];
  const cleanup: string[] = [];
  let reapTimer: NodeJS.Timeout | undefined;
  const close = async () => {
    clearTimeout(reapTimer);
    // Warm ports are not left behind (a killed daemon's are adopted by the next one). They go
    // while Docker is still served (without the pool): the socket stays ours until they are
    // gone (or the deadline dropped the deletions not yet sent), so a new daemon cannot start and
    // adopt ports this one is deleting.
    await pool
      .close(POOL_DRAIN_DEADLINE_MS)
      .catch((err) => logger.error({ err: errorMessage(err) }, 'draining the warm pool failed'));
    await Promise.all(apps.map((a) => closeServer(a, CALLS_DEADLINE_MS)));
    await settle(); // endpoint identities still being written to Neutron
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    for (const f of cleanup) if (existsSync(f)) unlinkSync(f);
    await neutron.close();
  };
  try {
    const socket = config.DEFAULT.plugin_socket;
    if (socket) {
      if (existsSync(socket)) {
        if (await socketInUse(socket))
          throw new Error(`another kuryr is already serving ${socket}; stop it first`);
        unlinkSync(socket); // stale, from a crash
      }
      mkdirSync(dirname(socket), { recursive: true });
      const app = buildServer({ ...drivers, logger, observer });
      apps.push(app);
      await app.listen({ path: socket });
      cleanup.push(socket);
      chmodSync(socket, 0o660);
      logger.info({ socket }, 'listening for Docker on unix socket');
    }
    if (config.DEFAULT.listen_tcp)
      cleanup.push(await listenTcp(config, logger, apps, { ...drivers, logger, observer }));
    if (config.DEFAULT.metrics_listen) {
      servers.push(
        await serveMetrics(
          metrics,
          { neutronReachable: () => neutron.extensions().then(() => undefined) },
          config.DEFAULT.metrics_listen,
        ),
      );
      if (config.DEFAULT.metrics_listen.startsWith('/')) cleanup.push(config.DEFAULT.metrics_listen);
      logger.info({ listen: config.DEFAULT.metrics_listen }, 'serving /metrics and /healthz');
    }
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  checkNeutron(neutron, logger);
  adoptWarmPorts(pool, repairRecordedEndpoints, logger);
  // Not at once: Docker retries a call whose connection failed for up to 30 s, so a start the
  // previous daemon left half-done may still finish against this one (its CreateEndpoint or Join
  // arriving now). What is still half-done after that never will be.
  reapTimer = setTimeout(() => {
    reapInterruptedStarts()
      .then((n) => n && logger.info({ ports: n }, 'deleted ports of starts a previous run left half-done'))
      .catch((err) =>
        logger.warn({ err: errorMessage(err) }, 'could not look for half-done starts of a previous run'),
      );
  }, REAP_AFTER_MS);
  reapTimer.unref();
  return { apps, neutron, close };
}

/**
 * kuryr-libnetwork's listener: kuryr_uri (http://127.0.0.1:23750), with TLS when enable_ssl, plus
 * the discovery file Docker reads: kuryr.spec (a URL) or, with TLS, kuryr.json with TLSConfig.
 */
async function listenTcp(
  config: Config,
  logger: Logger,
  apps: FastifyInstance[],
  opts: Parameters<typeof buildServer>[0],
): Promise<string> {
  const d = config.DEFAULT;
  const url = new URL(d.kuryr_uri);
  const tls = d.enable_ssl;
  const app = buildServer({
    ...opts,
    ...(tls
      ? {
          https: {
            cert: readFileSync(d.ssl_cert_file),
            key: readFileSync(d.ssl_key_file),
            // Mutual TLS: only clients (Docker) with a certificate from this CA get in.
            ...(d.ssl_client_ca_file
              ? { ca: readFileSync(d.ssl_client_ca_file), requestCert: true, rejectUnauthorized: true }
              : {}),
          },
        }
      : {}),
  });
  apps.push(app);
  await app.listen({ host: url.hostname, port: Number(url.port) || 23750 });
  mkdirSync(d.spec_dir, { recursive: true });
  const origin = `${tls ? 'https' : 'http'}://${url.host}`;
  let specFile: string;
  if (tls) {
    specFile = join(d.spec_dir, `${d.spec_name}.json`);
    // What Docker uses to talk to us: our CA to verify us, and its client certificate for mTLS.
    const TLSConfig = {
      InsecureSkipVerify: !d.ssl_ca_file,
      ...(d.ssl_ca_file ? { CAFile: d.ssl_ca_file } : {}),
      ...(d.ssl_client_cert_file ? { CertFile: d.ssl_client_cert_file, KeyFile: d.ssl_client_key_file } : {}),
    };
    writeFileSync(specFile, `${JSON.stringify({ Name: d.spec_name, Addr: origin, TLSConfig }, null, 2)}\n`);
  } else {
    specFile = join(d.spec_dir, `${d.spec_name}.spec`);
    writeFileSync(specFile, `${origin}\n`);
  }
  logger.info({ url: origin, specFile }, 'listening for Docker on TCP');
  return specFile;
}

/**
 * In the background after start: warm-pool ports a previous run left on this host are taken back
 * (or deleted, with the pool now off). Listing them is one request; it does not delay serving.
 */
function adoptWarmPorts(
  pool: WarmPool,
  repair: () => Promise<number>,
  logger: Logger,
  retryMs = 30_000,
): void {
  // Endpoints recorded only on the host first: their ports are not free warm ports.
  repair()
    .then((repaired) => {
      if (repaired)
        logger.info({ ports: repaired }, "writing endpoints' device_id a previous run left unwritten");
      return pool.adopt();
    })
    .then(({ adopted, removed, held }) => {
      // Held: taken back once a start on their network comes, or deleted (WarmPool.adopt).
      if (adopted || removed || held)
        logger.info({ adopted, removed, held }, 'warm-pool ports from a previous run');
    })
    .catch((err) => {
      // Neutron not reachable yet: try again, so leftovers are neither lost nor leaked.
      logger.warn(
        { err: errorMessage(err) },
        'could not look for warm-pool ports of a previous run; trying again',
      );
      setTimeout(() => adoptWarmPorts(pool, repair, logger, Math.min(retryMs * 2, 300_000)), retryMs).unref();
    });
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
