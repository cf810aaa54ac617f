// How we obtain Neutron's URL and a token: `noauth` (a fixed endpoint, no token) or Keystone v3
// (password, token or application credential). Tokens are fetched once, shared by concurrent
// callers, refreshed before they expire and dropped when Neutron answers 401.
import { type Dispatcher, request } from 'undici';
import { KeystoneAuthError, NeutronUnavailableError, parseErrorBody } from './errors.js';

export interface Credentials {
  endpoint: string;
  headers: Record<string, string>;
}

export interface Authenticator {
  /** Current Neutron base URL (without /v2.0) and auth headers. */
  credentials(): Promise<Credentials>;
  /** Forget the cached token (called after a 401) so the next call authenticates again. */
  invalidate(): void;
}

export class NoAuth implements Authenticator {
  constructor(private readonly endpoint: string) {}
  async credentials(): Promise<Credentials> {
    return { endpoint: this.endpoint, headers: {} };
  }
  invalidate(): void {}
}

export type KeystoneMethod =
  | { kind: 'password'; username: string; password: string; userDomainName?: string; userDomainId?: string }
  | { kind: 'token'; token: string }
  | { kind: 'applicationCredential'; id: string; secret: string };

export interface KeystoneOptions {
  authUrl: string;
  method: KeystoneMethod;
  projectName?: string;
  projectId?: string;
  projectDomainName?: string;
  projectDomainId?: string;
  regionName?: string;
  /** public | internal | admin */
  interface: string;
  endpointOverride?: string;
  timeoutMs: number;
  /** Refresh this long before `expires_at`. */
  refreshMarginMs?: number;
  dispatcher?: Dispatcher;
}

interface CatalogEntry {
  type: string;
  endpoints: { interface: string; region?: string; region_id?: string; url: string }[];
}

interface Token {
  id: string;
  endpoint: string;
  expiresAt: number;
}

export class KeystoneAuth implements Authenticator {
  private token?: Token;
  private inflight?: Promise<Token>;

  constructor(private readonly opts: KeystoneOptions) {}

  async credentials(): Promise<Credentials> {
    const margin = this.opts.refreshMarginMs ?? 120_000;
    let token = this.token;
    if (!token || token.expiresAt - margin <= Date.now()) {
      // One authentication at a time: concurrent callers share the same request.
      this.inflight ??= this.authenticate().finally(() => {
        this.inflight = undefined;
      });
      token = await this.inflight;
      this.token = token;
    }
    return { endpoint: token.endpoint, headers: { 'X-Auth-Token': token.id } };
  }

  invalidate(): void {
    this.token = undefined;
  }

  private tokensUrl(): string {
    const base = this.opts.authUrl.replace(/\/+$/, '');
    return `${/\/v3$/.test(base) ? base : `${base}/v3`}/auth/tokens`;
  }

  private body(): unknown {
    const m = this.opts.method;
    let identity: unknown;
    if (m.kind === 'password') {
      const domain = m.userDomainId ? { id: m.userDomainId } : { name: m.userDomainName ?? 'Default' };
      identity = {
        methods: ['password'],
        password: { user: { name: m.username, domain, password: m.password } },
      };
    } else if (m.kind === 'token') {
      identity = { methods: ['token'], token: { id: m.token } };
    } else {
      // Application credentials carry their own scope: sending one is an error.
      return { auth: { identity: { methods: ['application_credential'], application_credential: m } } };
    }
    const { projectId, projectName, projectDomainId, projectDomainName } = this.opts;
    const project = projectId
      ? { id: projectId }
      : projectName
        ? {
            name: projectName,
            domain: projectDomainId ? { id: projectDomainId } : { name: projectDomainName ?? 'Default' },
          }
        : undefined;
    return { auth: { identity, ...(project ? { scope: { project } } : {}) } };
  }

  private async authenticate(): Promise<Token> {
    const url = this.tokensUrl();
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(this.body()),
        signal: AbortSignal.timeout(this.opts.timeoutMs),
        dispatcher: this.opts.dispatcher,
      });
    } catch (err) {
      throw new NeutronUnavailableError('POST', url, `Keystone: ${(err as Error).message}`);
    }
    const text = await res.body.text();
    if (res.statusCode !== 201 && res.statusCode !== 200) {
      const { type, detail } = parseErrorBody(res.statusCode, text);
      throw new KeystoneAuthError(
        `Keystone ${res.statusCode} ${type}: ${detail} (authenticating to ${url} as configured in [neutron]). Check auth_url, the user, project and domain names and the password`,
      );
    }
    const id = res.headers['x-subject-token'];
    if (typeof id !== 'string')
      throw new KeystoneAuthError(`Keystone ${url} answered without X-Subject-Token`);
    const body = JSON.parse(text) as { token: { expires_at: string; catalog?: CatalogEntry[] } };
    return {
      id,
      endpoint: this.findEndpoint(body.token.catalog ?? []),
      expiresAt: Date.parse(body.token.expires_at),
    };
  }

  private findEndpoint(catalog: CatalogEntry[]): string {
    if (this.opts.endpointOverride) return this.opts.endpointOverride;
    const { regionName, interface: iface } = this.opts;
    const candidates = catalog
      .filter((e) => e.type === 'network')
      .flatMap((e) => e.endpoints)
      .filter(
        (ep) =>
          ep.interface === iface && (!regionName || ep.region === regionName || ep.region_id === regionName),
      );
    const ep = candidates[0];
    if (!ep) {
      throw new KeystoneAuthError(
        `Keystone catalog has no 'network' endpoint with interface '${iface}'${regionName ? ` in region '${regionName}'` : ''}. Set [neutron] endpoint_type/region_name, or endpoint_override`,
      );
    }
    return ep.url;
  }
}
