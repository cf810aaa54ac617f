// A small typed Neutron v2.0 client: keep-alive connections, a deadline on every call, one retry
// after re-authenticating on 401, and errors that keep Neutron's error type. Every call is
// reported to the current Docker call's context (for logs) and to an optional observer (metrics).
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, type Dispatcher, request } from 'undici';
import { currentContext, type NeutronCallRecord } from '../util/context.js';
import type { Authenticator } from './auth.js';
import { NeutronApiError, NeutronUnavailableError, parseErrorBody } from './errors.js';
import { type Collection, pluralKey, type ResourceMap, singular } from './types.js';

export type QueryValue = string | number | boolean | string[] | undefined;
export type Query = Record<string, QueryValue>;

export interface NeutronClientOptions {
  auth: Authenticator;
  /** Deadline for each HTTP call, connection included. */
  timeoutMs: number;
  dispatcher?: Dispatcher;
  onCall?: (call: NeutronCallRecord & { errorType?: string }) => void;
}

export function toQueryString(query: Query): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** Statuses that mean "try again" (Neutron restarting, a proxy in front of it, a DB deadlock). */
const TRANSIENT_STATUS = new Set([500, 502, 503, 504]);
const RETRY_DELAYS_MS = [200, 600];

/** A 401: the caller re-authenticates once, then surfaces `error`. */
class Unauthorized extends Error {
  constructor(readonly error: NeutronApiError) {
    super(error.message);
  }
}

export class NeutronClient {
  private readonly dispatcher: Dispatcher;

  constructor(private readonly opts: NeutronClientOptions) {
    this.dispatcher = opts.dispatcher ?? new Agent({ keepAliveTimeout: 30_000, connections: 64 });
  }

  /** Closes the connections (the dispatcher is the client's, even when given: createNeutronClient's). */
  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  // ------------------------------------------------------------ generic resource operations
  async list<C extends Collection>(collection: C, query: Query = {}): Promise<ResourceMap[C][]> {
    const body = await this.call('GET', `/v2.0/${collection}${toQueryString(query)}`, collection);
    return (body as Record<string, ResourceMap[C][]>)[pluralKey[collection]] ?? [];
  }

  async get<C extends Collection>(collection: C, id: string, query: Query = {}): Promise<ResourceMap[C]> {
    const body = await this.call(
      'GET',
      `/v2.0/${collection}/${encodeURIComponent(id)}${toQueryString(query)}`,
      collection,
    );
    return (body as Record<string, ResourceMap[C]>)[singular[collection]] as ResourceMap[C];
  }

  async create<C extends Collection>(collection: C, attrs: Record<string, unknown>): Promise<ResourceMap[C]> {
    const body = await this.call('POST', `/v2.0/${collection}`, collection, {
      [singular[collection]]: attrs,
    });
    return (body as Record<string, ResourceMap[C]>)[singular[collection]] as ResourceMap[C];
  }

  /** Creates several resources in one request (Neutron's bulk create: all or none). */
  async createMany<C extends Collection>(
    collection: C,
    attrs: Record<string, unknown>[],
  ): Promise<ResourceMap[C][]> {
    const key = pluralKey[collection];
    const body = await this.call('POST', `/v2.0/${collection}`, collection, { [key]: attrs });
    return (body as Record<string, ResourceMap[C][]>)[key] ?? [];
  }

  async update<C extends Collection>(
    collection: C,
    id: string,
    attrs: Record<string, unknown>,
  ): Promise<ResourceMap[C]> {
    const path = `/v2.0/${collection}/${encodeURIComponent(id)}`;
    const body = await this.call('PUT', path, collection, { [singular[collection]]: attrs });
    return (body as Record<string, ResourceMap[C]>)[singular[collection]] as ResourceMap[C];
  }

  /** Deletes; a resource that is already gone counts as deleted (returns false). */
  async delete(collection: Collection, id: string): Promise<boolean> {
    try {
      await this.call('DELETE', `/v2.0/${collection}/${encodeURIComponent(id)}`, collection);
      return true;
    } catch (err) {
      if (err instanceof NeutronApiError && err.isNotFound) return false;
      throw err;
    }
  }

  /** Replaces the whole tag set of a resource in one call. */
  async setTags(collection: Collection, id: string, tags: string[]): Promise<void> {
    await this.call('PUT', `/v2.0/${collection}/${encodeURIComponent(id)}/tags`, `${collection}/tags`, {
      tags,
    });
  }

  async addTag(collection: Collection, id: string, tag: string): Promise<void> {
    const path = `/v2.0/${collection}/${encodeURIComponent(id)}/tags/${encodeURIComponent(tag)}`;
    await this.call('PUT', path, `${collection}/tags`);
  }

  async removeTag(collection: Collection, id: string, tag: string): Promise<void> {
    const path = `/v2.0/${collection}/${encodeURIComponent(id)}/tags/${encodeURIComponent(tag)}`;
    try {
      await this.call('DELETE', path, `${collection}/tags`);
    } catch (err) {
      if (!(err instanceof NeutronApiError && err.isNotFound)) throw err;
    }
  }

  async extensions(): Promise<Set<string>> {
    return new Set((await this.list('extensions')).map((e) => e.alias));
  }

  // ------------------------------------------------------------ transport
  /** One HTTP exchange with Neutron; re-authenticates and retries once on 401. */
  /**
   * One HTTP exchange with Neutron; re-authenticates and retries once on 401. Requests that are
   * safe to repeat (GET, PUT, DELETE: Neutron applies them idempotently) are retried, boundedly,
   * when the connection drops or Neutron answers 500/502/503/504; a POST never is (it could
   * create a second port). Timeouts are not retried: the deadline bounds the whole call.
   */
  async call(method: string, path: string, resource: string, body?: unknown): Promise<unknown> {
    const retryable = method !== 'POST';
    let reauthenticated = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.exchange(method, path, resource, body);
      } catch (err) {
        if (err instanceof Unauthorized) {
          if (reauthenticated) throw err.error;
          reauthenticated = true;
          this.opts.auth.invalidate();
          attempt--;
          continue;
        }
        const transient =
          (err instanceof NeutronApiError && TRANSIENT_STATUS.has(err.httpStatus)) ||
          (err instanceof NeutronUnavailableError && !err.timedOut);
        if (!retryable || !transient || attempt >= RETRY_DELAYS_MS.length) throw err;
        await sleep(RETRY_DELAYS_MS[attempt]);
      }
    }
  }

  private async exchange(method: string, path: string, resource: string, body?: unknown): Promise<unknown> {
    const creds = await this.opts.auth.credentials();
    const started = performance.now();
    let res: Dispatcher.ResponseData;
    let text: string;
    try {
      res = await request(`${creds.endpoint.replace(/\/+$/, '')}${path}`, {
        method: method as Dispatcher.HttpMethod,
        headers: {
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...creds.headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.opts.timeoutMs),
        dispatcher: this.dispatcher,
      });
      text = await res.body.text();
    } catch (err) {
      this.record(method, resource, 0, started, 'Unavailable');
      const reason =
        (err as Error).name === 'TimeoutError'
          ? `no answer within ${this.opts.timeoutMs} ms`
          : (err as Error).message;
      const failure = new NeutronUnavailableError(
        method,
        `${creds.endpoint.replace(/\/+$/, '')}${path.split('?')[0] ?? path}`,
        reason,
      );
      failure.timedOut = (err as Error).name === 'TimeoutError';
      throw failure;
    }
    const status = res.statusCode;
    if (status >= 400) {
      const { type, detail } = parseErrorBody(status, text);
      this.record(method, resource, status, started, status === 401 ? 'Unauthorized' : type);
      const error = new NeutronApiError(status, type, detail, method, path);
      throw status === 401 ? new Unauthorized(error) : error;
    }
    if (!text || text === 'null') {
      this.record(method, resource, status, started);
      return undefined;
    }
    try {
      const parsed: unknown = JSON.parse(text);
      this.record(method, resource, status, started);
      return parsed;
    } catch {
      // e.g. an HTML page from a proxy in front of Neutron
      this.record(method, resource, status, started, 'InvalidResponse');
      throw new NeutronApiError(status, 'InvalidResponse', `not JSON: ${text.slice(0, 120)}`, method, path);
    }
  }

  private record(
    method: string,
    resource: string,
    status: number,
    started: number,
    errorType?: string,
  ): void {
    const call = { method, resource, status, ms: Math.round((performance.now() - started) * 10) / 10 };
    currentContext()?.neutronCalls.push(call);
    this.opts.onCall?.(errorType ? { ...call, errorType } : call);
  }
}
