// The plugin's HTTP face: one route per Docker method, validated against its schema, and one place
// that turns errors into Docker's `{"Err": ...}` envelope. Knows nothing about Neutron.
import { randomUUID } from 'node:crypto';
import type { TSchema } from '@sinclair/typebox';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { type CallContext, runWithContext } from '../util/context.js';
import { DriverError, errorMessage } from '../util/errors.js';
import * as P from './protocol.js';

/** Docker sends `Accept: application/vnd.docker.plugins.v1.2+json`; we answer in kind. */
export const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

export interface CallObserver {
  onStart?(handler: string): void;
  onFinish?(handler: string, ms: number, error?: unknown): void;
}

export interface ServerOptions {
  network: P.NetworkDriver;
  ipam: P.IpamDriver;
  logger: Logger;
  observer?: CallObserver;
  /** TLS for a TCP listener (kuryr-libnetwork's enable_ssl). */
  https?: { cert: Buffer; key: Buffer };
}

interface Route {
  schema?: TSchema;
  handle: (body: never) => Promise<object>;
}

function routes(network: P.NetworkDriver, ipam: P.IpamDriver): Record<string, Route> {
  const table: Record<string, Route> = {
    '/Plugin.Activate': {
      handle: async (): Promise<P.ActivateResponse> => ({ Implements: ['NetworkDriver', 'IpamDriver'] }),
    },
    '/NetworkDriver.GetCapabilities': { handle: () => network.getCapabilities() },
    '/NetworkDriver.CreateNetwork': {
      schema: P.CreateNetworkRequest,
      handle: (b) => network.createNetwork(b),
    },
    '/NetworkDriver.DeleteNetwork': { schema: P.NetworkIdRequest, handle: (b) => network.deleteNetwork(b) },
    '/NetworkDriver.AllocateNetwork': {
      schema: P.AllocateNetworkRequest,
      handle: (b) => network.allocateNetwork(b),
    },
    '/NetworkDriver.FreeNetwork': { schema: P.NetworkIdRequest, handle: (b) => network.freeNetwork(b) },
    '/NetworkDriver.CreateEndpoint': {
      schema: P.CreateEndpointRequest,
      handle: (b) => network.createEndpoint(b),
    },
    '/NetworkDriver.DeleteEndpoint': { schema: P.EndpointRequest, handle: (b) => network.deleteEndpoint(b) },
    '/NetworkDriver.EndpointOperInfo': {
      schema: P.EndpointRequest,
      handle: (b) => network.endpointOperInfo(b),
    },
    '/NetworkDriver.Join': { schema: P.JoinRequest, handle: (b) => network.join(b) },
    '/NetworkDriver.Leave': { schema: P.EndpointRequest, handle: (b) => network.leave(b) },
    '/NetworkDriver.DiscoverNew': { schema: P.DiscoveryRequest, handle: async () => ({}) },
    '/NetworkDriver.DiscoverDelete': { schema: P.DiscoveryRequest, handle: async () => ({}) },
    '/IpamDriver.GetCapabilities': { handle: () => ipam.getCapabilities() },
    '/IpamDriver.GetDefaultAddressSpaces': { handle: () => ipam.getDefaultAddressSpaces() },
    '/IpamDriver.RequestPool': { schema: P.RequestPoolRequest, handle: (b) => ipam.requestPool(b) },
    '/IpamDriver.ReleasePool': { schema: P.PoolIdRequest, handle: (b) => ipam.releasePool(b) },
    '/IpamDriver.RequestAddress': { schema: P.RequestAddressRequest, handle: (b) => ipam.requestAddress(b) },
    '/IpamDriver.ReleaseAddress': { schema: P.ReleaseAddressRequest, handle: (b) => ipam.releaseAddress(b) },
  };
  // Optional methods: without them Docker gets a 404, which it takes to mean the method is absent.
  const {
    gwAllocCheck: gwCheck,
    programExternalConnectivity: program,
    revokeExternalConnectivity: revoke,
  } = network;
  if (gwCheck)
    table['/NetworkDriver.GwAllocCheck'] = {
      schema: P.GwAllocCheckRequest,
      handle: (b) => gwCheck.call(network, b),
    };
  if (program)
    table['/NetworkDriver.ProgramExternalConnectivity'] = {
      schema: P.ExternalConnectivityRequest,
      handle: (b) => program.call(network, b),
    };
  if (revoke)
    table['/NetworkDriver.RevokeExternalConnectivity'] = {
      schema: P.ExternalConnectivityRequest,
      handle: (b) => revoke.call(network, b),
    };
  return table;
}

/** "body/IPv4Data/0/Pool must be string" -> "IPv4Data[0].Pool must be string". */
function describeValidation(err: FastifyError): string {
  const issues = (err.validation ?? []).map((v) => {
    const path = v.instancePath.replace(/^\//, '').split('/').filter(Boolean);
    const field = path.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i ? `.${p}` : p)).join('');
    const missing = (v.params as { missingProperty?: string }).missingProperty;
    if (missing) return `${field ? `${field}.` : ''}${missing} is required`;
    return `${field || 'body'} ${v.message ?? 'is invalid'}`;
  });
  return issues.length ? issues.join('; ') : err.message;
}

export function buildServer(opts: ServerOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    ...(opts.https ? { https: opts.https } : {}),
    // Docker never sends big bodies; a small cap protects us from abuse on a TCP listener.
    bodyLimit: 1 << 20,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: true } },
  });

  // Docker posts JSON with various (or no) content types, and an empty body for no-arg calls.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body).trim();
    if (!text || text === 'null') return done(null, {});
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(new DriverError(`request body is not valid JSON: ${errorMessage(err)}`, 400), undefined);
    }
  });

  app.setErrorHandler((err: FastifyError | DriverError, req, reply) => {
    const handler = req.url;
    let status = 500;
    let message = errorMessage(err);
    if ((err as FastifyError).validation) {
      status = 400;
      message = `invalid ${handler.slice(1)} request: ${describeValidation(err as FastifyError)}`;
    } else if (err instanceof DriverError) {
      status = err.status;
    } else {
      const code = (err as FastifyError).statusCode;
      if (code && code < 500) status = code;
    }
    // Failures inside a handler were logged with their Neutron calls; these never reached one.
    if (status === 400 && !(err instanceof DriverError))
      opts.logger.warn({ handler: handler.slice(1), err: message }, 'rejected');
    reply.code(status).type(CONTENT_TYPE).send({ Err: message });
  });

  app.setNotFoundHandler((req, reply) => {
    reply
      .code(404)
      .type(CONTENT_TYPE)
      .send({ Err: `kuryr does not implement ${req.method} ${req.url}` });
  });

  for (const [path, route] of Object.entries(routes(opts.network, opts.ipam))) {
    const handler = path.slice(1);
    app.post(path, { schema: route.schema ? { body: route.schema } : {} }, async (req, reply) => {
      const ctx: CallContext = { requestId: randomUUID().slice(0, 8), handler, neutronCalls: [] };
      const started = performance.now();
      opts.observer?.onStart?.(handler);
      let error: unknown;
      try {
        const result = await runWithContext(ctx, () => route.handle((req.body ?? {}) as never));
        reply.type(CONTENT_TYPE);
        return result ?? {};
      } catch (err) {
        error = err;
        throw err;
      } finally {
        const ms = Math.round((performance.now() - started) * 10) / 10;
        opts.observer?.onFinish?.(handler, ms, error);
        const line = {
          reqId: ctx.requestId,
          handler,
          ms,
          ...(ctx.waitedMs ? { waitedMs: ctx.waitedMs } : {}),
          neutron: ctx.neutronCalls,
        };
        if (error) opts.logger.warn({ ...line, err: errorMessage(error) }, `${handler} failed`);
        else opts.logger.info(line, handler);
      }
    });
  }
  return app;
}

/**
 * Stops serving Docker: in-flight calls finish, then the listener closes. fastify's close ends
 * the connections idle at that moment only, and Docker keeps a keep-alive connection open: one
 * whose call finished after close began would hold it until Docker drops it (minutes). Such
 * connections are closed as they go idle, and every connection once the deadline passes.
 */
export async function closeServer(app: FastifyInstance, deadlineMs: number): Promise<void> {
  const idle = setInterval(() => app.server.closeIdleConnections(), 100);
  const hard = setTimeout(() => app.server.closeAllConnections(), deadlineMs);
  try {
    await app.close();
  } finally {
    clearInterval(idle);
    clearTimeout(hard);
  }
}
