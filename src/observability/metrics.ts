// Prometheus metrics and a health endpoint, served on their own listener (never on Docker's
// plugin socket): per-handler latency and errors, Neutron call latency and errors by type,
// in-flight Docker calls, and how long Join waited for ports to turn ACTIVE.
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname } from 'node:path';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { CallObserver } from '../docker/server.js';
import type { NeutronClientOptions } from '../neutron/client.js';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class Metrics {
  readonly registry = new Registry();
  private readonly handlerSeconds = new Histogram({
    name: 'kuryr_docker_call_duration_seconds',
    help: 'Duration of Docker plugin calls by handler and outcome',
    labelNames: ['handler', 'outcome'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly handlerErrors = new Counter({
    name: 'kuryr_docker_call_errors_total',
    help: 'Docker plugin calls that returned an error, by handler',
    labelNames: ['handler'],
    registers: [this.registry],
  });
  private readonly inflight = new Gauge({
    name: 'kuryr_docker_calls_in_flight',
    help: 'Docker plugin calls being handled now',
    registers: [this.registry],
  });
  private readonly neutronSeconds = new Histogram({
    name: 'kuryr_neutron_request_duration_seconds',
    help: 'Duration of Neutron API requests by method, resource and HTTP status',
    labelNames: ['method', 'resource', 'status'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly neutronErrors = new Counter({
    name: 'kuryr_neutron_request_errors_total',
    help: 'Failed Neutron API requests by error type (NeutronError.type, Unavailable, ...)',
    labelNames: ['method', 'resource', 'type'],
    registers: [this.registry],
  });
  readonly bindingWaitSeconds = new Histogram({
    name: 'kuryr_port_active_wait_seconds',
    help: 'Time Join waited for the Neutron port to turn ACTIVE (0 when it already was)',
    buckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 60],
    registers: [this.registry],
  });

  readonly poolTakes = new Counter({
    name: 'kuryr_warm_pool_takes_total',
    help: 'RequestAddress calls that asked the warm pool for a port, by whether it had one',
    labelNames: ['result'],
    registers: [this.registry],
  });

  readonly poolReturns = new Counter({
    name: 'kuryr_warm_pool_returns_total',
    help: "Ports released by Docker that the warm pool handed out, by whether it took them back ('kept') or they were deleted",
    labelNames: ['result'],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'kuryr_' });
  }

  /** Warm-pool ports ready now (all, and those already ACTIVE), read at scrape time. */
  watchPool(stats: () => { ready: number; active: number }): void {
    new Gauge({
      name: 'kuryr_warm_pool_ports',
      help: 'Warm-pool ports ready on this host, by state (ready: all; active: wired by the agent)',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const s = stats();
        this.set({ state: 'ready' }, s.ready);
        this.set({ state: 'active' }, s.active);
      },
    });
  }

  /** Neutron clean-up queued after `docker network rm`, read at scrape time. */
  watchTeardowns(pending: () => number): void {
    new Gauge({
      name: 'kuryr_teardowns_pending',
      help: 'Neutron clean-up (warm ports, network, subnets, pool of a removed Docker network) still running in the background',
      registers: [this.registry],
      collect() {
        this.set(pending());
      },
    });
  }

  readonly observer: CallObserver = {
    onStart: () => this.inflight.inc(),
    onFinish: (handler, ms, error) => {
      this.inflight.dec();
      this.handlerSeconds.observe({ handler, outcome: error ? 'error' : 'ok' }, ms / 1000);
      if (error) this.handlerErrors.inc({ handler });
    },
  };

  readonly onNeutronCall: NonNullable<NeutronClientOptions['onCall']> = (call) => {
    this.neutronSeconds.observe(
      { method: call.method, resource: call.resource, status: String(call.status) },
      call.ms / 1000,
    );
    if (call.errorType)
      this.neutronErrors.inc({ method: call.method, resource: call.resource, type: call.errorType });
  };
}

export interface HealthSource {
  /** Resolves when Neutron answered recently; rejects with the reason otherwise. */
  neutronReachable(): Promise<void>;
}

/**
 * `listen` is a unix socket path (starts with "/") or host:port (loopback only is sensible).
 * GET /metrics → Prometheus text; GET /healthz → 200 "ok" or 503 with the reason.
 */
export async function serveMetrics(metrics: Metrics, health: HealthSource, listen: string): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      metrics.registry
        .metrics()
        .then((text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text))
        .catch((err) => res.writeHead(500).end(String(err)));
    } else if (req.url === '/healthz') {
      health
        .neutronReachable()
        .then(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'))
        .catch((err) =>
          res.writeHead(503, { 'content-type': 'text/plain' }).end(`neutron: ${(err as Error).message}\n`),
        );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (listen.startsWith('/')) {
      mkdirSync(dirname(listen), { recursive: true });
      if (existsSync(listen)) unlinkSync(listen);
      server.listen(listen, () => {
        chmodSync(listen, 0o660);
        resolve();
      });
    } else {
      const i = listen.lastIndexOf(':');
      server.listen(Number(listen.slice(i + 1)), listen.slice(0, i) || '127.0.0.1', () => resolve());
    }
  });
  return server;
}
