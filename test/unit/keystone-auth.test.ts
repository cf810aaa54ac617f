// KeystoneAuth with a fake Keystone and a fake Neutron (both node:http on 127.0.0.1): token
// request body, catalog lookup, token reuse and refresh, 401 handling, error messages.
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { KeystoneAuth, type KeystoneOptions } from '../../src/neutron/auth.js';
import { NeutronClient } from '../../src/neutron/client.js';
import { KeystoneAuthError, NeutronApiError, NeutronUnavailableError } from '../../src/neutron/errors.js';
import { closedPort, FakeHttpServer, type RecordedRequest, sendJson } from './helpers/fake-http.js';

const PASSWORD = 'S3cret-Pa55word!';

/** Keystone's timestamp format, with microseconds: 2024-05-01T10:00:00.123000Z. */
function keystoneTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

interface CatalogEndpoint {
  interface: string;
  region?: string;
  region_id?: string;
  url: string;
}

describe('KeystoneAuth', () => {
  let keystone: FakeHttpServer;
  let neutron: FakeHttpServer;
  let other: FakeHttpServer;
  /** Tokens issued so far, in order ("tok-1", "tok-2", ...). */
  let issued: string[];
  /** Tokens Neutron answers 401 to. */
  let rejected: Set<string>;
  let expiresInMs: number;
  let catalog: () => unknown[];
  let keystoneDelayMs: number;
  const clients: NeutronClient[] = [];

  function networkCatalog(endpoints: CatalogEndpoint[]): unknown[] {
    return [
      {
        type: 'compute',
        name: 'nova',
        endpoints: [{ interface: 'public', region: 'RegionOne', url: 'http://nova.invalid' }],
      },
      { type: 'network', name: 'neutron', endpoints },
    ];
  }

  function tokenRequests(): RecordedRequest[] {
    return keystone.requests.filter((r) => r.method === 'POST' && r.path === '/v3/auth/tokens');
  }

  function passwordOptions(extra: Partial<KeystoneOptions> = {}): KeystoneOptions {
    return {
      authUrl: `${keystone.url}/v3/`,
      method: { kind: 'password', username: 'admin', password: PASSWORD, userDomainName: 'Default' },
      projectName: 'service',
      projectDomainName: 'Default',
      interface: 'public',
      timeoutMs: 2000,
      ...extra,
    };
  }

  function clientFor(auth: KeystoneAuth): NeutronClient {
    const c = new NeutronClient({ auth, timeoutMs: 2000 });
    clients.push(c);
    return c;
  }

  before(async () => {
    [keystone, neutron, other] = await Promise.all([
      FakeHttpServer.start(),
      FakeHttpServer.start(),
      FakeHttpServer.start(),
    ]);
  });
  after(async () => {
    await Promise.all([keystone.close(), neutron.close(), other.close()]);
  });

  beforeEach(() => {
    for (const s of [keystone, neutron, other]) s.requests.length = 0;
    issued = [];
    rejected = new Set();
    expiresInMs = 3600_000;
    keystoneDelayMs = 0;
    catalog = () =>
      networkCatalog([
        { interface: 'internal', region: 'RegionOne', url: 'http://internal.invalid:9696' },
        { interface: 'public', region: 'RegionOne', url: neutron.url },
        { interface: 'admin', region: 'RegionOne', url: 'http://admin.invalid:9696' },
      ]);
    keystone.handler = (_req, res) => {
      const answer = () => {
        const id = `tok-${issued.length + 1}`;
        issued.push(id);
        const body = {
          token: {
            methods: ['password'],
            expires_at: keystoneTime(Date.now() + expiresInMs),
            issued_at: new Date().toISOString(),
            catalog: catalog(),
          },
        };
        sendJson(res, 201, body, { 'X-Subject-Token': id });
      };
      if (keystoneDelayMs) setTimeout(answer, keystoneDelayMs);
      else answer();
    };
    const neutronHandler = (req: RecordedRequest, res: import('node:http').ServerResponse) => {
      const token = req.headers['x-auth-token'];
      if (typeof token !== 'string' || !issued.includes(token) || rejected.has(token)) {
        sendJson(res, 401, {
          error: {
            code: 401,
            title: 'Unauthorized',
            message: 'The request you have made requires authentication.',
          },
        });
        return;
      }
      sendJson(res, 200, { networks: [{ id: 'n1', name: 'x' }] });
    };
    neutron.handler = neutronHandler;
    other.handler = neutronHandler;
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });

  describe('password authentication', () => {
    it('POSTs a project-scoped password request to /v3/auth/tokens', async () => {
      const auth = new KeystoneAuth(passwordOptions());
      await auth.credentials();
      const reqs = tokenRequests();
      assert.equal(reqs.length, 1);
      assert.equal(reqs[0]?.headers['content-type'], 'application/json');
      assert.deepEqual(reqs[0]?.json, {
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name: 'admin', domain: { name: 'Default' }, password: PASSWORD } },
          },
          scope: { project: { name: 'service', domain: { name: 'Default' } } },
        },
      });
    });

    it('uses ids for user domain, project domain and project when given', async () => {
      const auth = new KeystoneAuth(
        passwordOptions({
          method: { kind: 'password', username: 'admin', password: PASSWORD, userDomainId: 'default' },
          projectName: 'service',
          projectDomainId: 'dom-1',
        }),
      );
      await auth.credentials();
      const body = tokenRequests()[0]?.json as {
        auth: { identity: { password: { user: { domain: unknown } } }; scope: unknown };
      };
      assert.deepEqual(body.auth.identity.password.user.domain, { id: 'default' });
      assert.deepEqual(body.auth.scope, { project: { name: 'service', domain: { id: 'dom-1' } } });

      keystone.requests.length = 0;
      await new KeystoneAuth(passwordOptions({ projectId: 'proj-42' })).credentials();
      const scoped = tokenRequests()[0]?.json as { auth: { scope: unknown } };
      assert.deepEqual(scoped.auth.scope, { project: { id: 'proj-42' } });
    });

    it('an auth_url without /v3 gets it appended', async () => {
      await new KeystoneAuth(passwordOptions({ authUrl: keystone.url })).credentials();
      assert.equal(tokenRequests().length, 1);
    });

    it('takes the token from X-Subject-Token and the public network endpoint from the catalog', async () => {
      const auth = new KeystoneAuth(passwordOptions());
      const creds = await auth.credentials();
      assert.equal(creds.endpoint, neutron.url);
      assert.deepEqual(creds.headers, { 'X-Auth-Token': 'tok-1' });
    });

    it('honours endpoint_type (interface) when picking from the catalog', async () => {
      const creds = await new KeystoneAuth(passwordOptions({ interface: 'internal' })).credentials();
      assert.equal(creds.endpoint, 'http://internal.invalid:9696');
    });

    it('filters the catalog by region (region or region_id)', async () => {
      catalog = () =>
        networkCatalog([
          { interface: 'public', region: 'RegionOne', url: neutron.url },
          { interface: 'public', region: 'RegionTwo', url: other.url },
          { interface: 'public', region_id: 'RegionThree', url: 'http://three.invalid' },
        ]);
      assert.equal(
        (await new KeystoneAuth(passwordOptions({ regionName: 'RegionTwo' })).credentials()).endpoint,
        other.url,
      );
      assert.equal(
        (await new KeystoneAuth(passwordOptions({ regionName: 'RegionThree' })).credentials()).endpoint,
        'http://three.invalid',
      );
      assert.equal((await new KeystoneAuth(passwordOptions()).credentials()).endpoint, neutron.url);
    });

    it('sends X-Auth-Token to the Neutron endpoint from the catalog', async () => {
      const client = clientFor(new KeystoneAuth(passwordOptions()));
      const nets = await client.list('networks');
      assert.deepEqual(
        nets.map((n) => n.id),
        ['n1'],
      );
      assert.equal(neutron.requests.length, 1);
      assert.equal(neutron.requests[0]?.headers['x-auth-token'], 'tok-1');
      assert.equal(neutron.requests[0]?.path, '/v2.0/networks');
    });

    it('reuses a valid token for later calls', async () => {
      const client = clientFor(new KeystoneAuth(passwordOptions()));
      await client.list('networks');
      await client.list('networks');
      await client.list('networks');
      assert.equal(tokenRequests().length, 1);
      assert.equal(neutron.requests.length, 3);
    });

    it('token auth and application credentials send their own identity', async () => {
      await new KeystoneAuth(passwordOptions({ method: { kind: 'token', token: 'pre-made' } })).credentials();
      const tokenBody = tokenRequests()[0]?.json as { auth: { identity: unknown; scope: unknown } };
      assert.deepEqual(tokenBody.auth.identity, { methods: ['token'], token: { id: 'pre-made' } });
      assert.deepEqual(tokenBody.auth.scope, { project: { name: 'service', domain: { name: 'Default' } } });

      keystone.requests.length = 0;
      await new KeystoneAuth(
        passwordOptions({ method: { kind: 'applicationCredential', id: 'ac-1', secret: 'ac-secret' } }),
      ).credentials();
      const acBody = tokenRequests()[0]?.json as {
        auth: { identity: Record<string, unknown>; scope?: unknown };
      };
      assert.deepEqual(acBody.auth.identity.methods, ['application_credential']);
      const ac = acBody.auth.identity.application_credential as Record<string, unknown>;
      assert.equal(ac.id, 'ac-1');
      assert.equal(ac.secret, 'ac-secret');
      assert.equal(acBody.auth.scope, undefined);
    });
  });

  describe('401 handling and refresh', () => {
    it('a 401 from Neutron re-authenticates once, retries with the new token and succeeds', async () => {
      const client = clientFor(new KeystoneAuth(passwordOptions()));
      await client.list('networks');
      rejected.add('tok-1'); // token revoked behind our back
      const nets = await client.list('networks');
      assert.equal(nets.length, 1);
      assert.equal(tokenRequests().length, 2);
      assert.deepEqual(
        neutron.requests.map((r) => r.headers['x-auth-token']),
        ['tok-1', 'tok-1', 'tok-2'],
      );
      // and the fresh token is kept for the next call
      await client.list('networks');
      assert.equal(tokenRequests().length, 2);
      assert.equal(neutron.requests.at(-1)?.headers['x-auth-token'], 'tok-2');
    });

    it('a second consecutive 401 surfaces as an error (no loop)', async () => {
      const client = clientFor(new KeystoneAuth(passwordOptions()));
      neutron.handler = (_req, res) =>
        sendJson(res, 401, {
          error: {
            code: 401,
            title: 'Unauthorized',
            message: 'The request you have made requires authentication.',
          },
        });
      await assert.rejects(client.list('networks'), (err: unknown) => {
        assert.ok(err instanceof NeutronApiError);
        assert.equal(err.httpStatus, 401);
        assert.equal(err.type, 'Unauthorized');
        return true;
      });
      assert.equal(tokenRequests().length, 2);
      assert.equal(neutron.requests.length, 2);
    });

    it('a token within refreshMarginMs of expiry is renewed before the call', async () => {
      expiresInMs = 30_000; // inside the default 120 s margin
      const client = clientFor(new KeystoneAuth(passwordOptions()));
      await client.list('networks');
      await client.list('networks');
      assert.equal(tokenRequests().length, 2);
      assert.deepEqual(
        neutron.requests.map((r) => r.headers['x-auth-token']),
        ['tok-1', 'tok-2'],
      );
    });

    it('an explicit refreshMarginMs is honoured', async () => {
      expiresInMs = 30_000;
      const client = clientFor(new KeystoneAuth(passwordOptions({ refreshMarginMs: 1000 })));
      await client.list('networks');
      await client.list('networks');
      assert.equal(tokenRequests().length, 1);

      keystone.requests.length = 0;
      const eager = clientFor(new KeystoneAuth(passwordOptions({ refreshMarginMs: 60_000 })));
      await eager.list('networks');
      await eager.list('networks');
      assert.equal(tokenRequests().length, 2);
    });

    it('concurrent first calls share one token request', async () => {
      keystoneDelayMs = 30;
      const client = clientFor(new KeystoneAuth(passwordOptions()));
      const results = await Promise.all(Array.from({ length: 8 }, () => client.list('networks')));
      assert.equal(results.length, 8);
      assert.equal(tokenRequests().length, 1);
      assert.equal(neutron.requests.length, 8);
      assert.ok(neutron.requests.every((r) => r.headers['x-auth-token'] === 'tok-1'));
    });

    it('after a failed authentication the next call tries again', async () => {
      const auth = new KeystoneAuth(passwordOptions());
      const good = keystone.handler;
      keystone.handler = (_req, res) =>
        sendJson(res, 503, { error: { code: 503, title: 'Service Unavailable', message: 'down' } });
      await assert.rejects(auth.credentials(), KeystoneAuthError);
      keystone.handler = good;
      const creds = await auth.credentials();
      assert.equal(creds.headers['X-Auth-Token'], 'tok-1');
      assert.equal(tokenRequests().length, 2);
    });
  });

  describe('errors', () => {
    it('Keystone 401 → KeystoneAuthError that does not leak the password', async () => {
      keystone.handler = (_req, res) =>
        sendJson(res, 401, {
          error: {
            code: 401,
            title: 'Unauthorized',
            message: 'The request you have made requires authentication.',
          },
        });
      const client = clientFor(new KeystoneAuth(passwordOptions()));
      await assert.rejects(client.list('networks'), (err: unknown) => {
        assert.ok(err instanceof KeystoneAuthError, String(err));
        assert.match(err.message, /Keystone 401 Unauthorized/);
        assert.match(err.message, /requires authentication/);
        assert.ok(err.message.includes(`${keystone.url}/v3/auth/tokens`), err.message);
        assert.ok(!err.message.includes(PASSWORD), 'password leaked into the message');
        assert.ok(!String(err.stack).includes(PASSWORD), 'password leaked into the stack');
        return true;
      });
      assert.equal(neutron.requests.length, 0);
    });

    it('a Keystone answer without X-Subject-Token is a KeystoneAuthError', async () => {
      keystone.handler = (_req, res) =>
        sendJson(res, 201, { token: { expires_at: new Date(Date.now() + 3600_000).toISOString() } });
      await assert.rejects(new KeystoneAuth(passwordOptions()).credentials(), (err: unknown) => {
        assert.ok(err instanceof KeystoneAuthError);
        assert.match(err.message, /X-Subject-Token/);
        return true;
      });
    });

    it('unreachable Keystone → NeutronUnavailableError naming Keystone', async () => {
      const port = await closedPort();
      await assert.rejects(
        new KeystoneAuth(passwordOptions({ authUrl: `http://127.0.0.1:${port}/v3` })).credentials(),
        (err: unknown) => {
          assert.ok(err instanceof NeutronUnavailableError, String(err));
          assert.match(err.message, /Keystone/);
          assert.ok(!err.message.includes(PASSWORD));
          return true;
        },
      );
    });

    it('endpoint_override wins over the catalog', async () => {
      const client = clientFor(new KeystoneAuth(passwordOptions({ endpointOverride: other.url })));
      await client.list('networks');
      assert.equal(neutron.requests.length, 0);
      assert.equal(other.requests.length, 1);
      assert.equal(other.requests[0]?.headers['x-auth-token'], 'tok-1');
    });

    it('endpoint_override works even when the catalog has no network service', async () => {
      catalog = () => [];
      const creds = await new KeystoneAuth(passwordOptions({ endpointOverride: other.url })).credentials();
      assert.equal(creds.endpoint, other.url);
    });

    it('a catalog without a network endpoint → clear KeystoneAuthError', async () => {
      catalog = () => [{ type: 'compute', endpoints: [{ interface: 'public', url: 'http://nova.invalid' }] }];
      await assert.rejects(new KeystoneAuth(passwordOptions()).credentials(), (err: unknown) => {
        assert.ok(err instanceof KeystoneAuthError);
        assert.match(err.message, /no 'network' endpoint with interface 'public'/);
        assert.match(err.message, /endpoint_override/);
        return true;
      });
    });

    it('a region with no network endpoint names the region', async () => {
      await assert.rejects(
        new KeystoneAuth(passwordOptions({ regionName: 'Nowhere' })).credentials(),
        (err: unknown) => {
          assert.ok(err instanceof KeystoneAuthError);
          assert.match(err.message, /in region 'Nowhere'/);
          return true;
        },
      );
    });
  });
});
