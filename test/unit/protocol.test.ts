// The Docker-facing HTTP layer: routing, body parsing, schema validation and the {"Err"} envelope,
// exercised through app.inject against fake drivers.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Client } from 'undici';
import { buildServer, CONTENT_TYPE, closeServer } from '../../src/docker/server.js';
import { DriverError, InvalidRequestError, NotFoundError } from '../../src/util/errors.js';
import {
  EP_ID,
  FakeIpamDriver,
  FakeNetworkDriver,
  FakeNetworkDriverWithExternal,
  NET_ID,
  silentLogger,
} from './helpers/fake-drivers.js';

interface Harness {
  app: FastifyInstance;
  network: FakeNetworkDriver;
  ipam: FakeIpamDriver;
  finished: { handler: string; error?: unknown }[];
  started: string[];
}

function harness(network = new FakeNetworkDriver()): Harness {
  const ipam = new FakeIpamDriver();
  const finished: Harness['finished'] = [];
  const started: string[] = [];
  const app = buildServer({
    network,
    ipam,
    logger: silentLogger,
    observer: {
      onStart: (handler) => started.push(handler),
      onFinish: (handler, _ms, error) => finished.push({ handler, error }),
    },
  });
  return { app, network, ipam, finished, started };
}

async function post(
  app: FastifyInstance,
  path: string,
  payload?: unknown,
  headers: Record<string, string> = {},
) {
  const res = await app.inject({
    method: 'POST',
    url: path,
    headers,
    ...(payload === undefined
      ? {}
      : { payload: typeof payload === 'string' ? payload : JSON.stringify(payload) }),
  });
  return res;
}

const DOCKER_JSON = { 'content-type': CONTENT_TYPE };

/** The media type without parameters (Fastify may append "; charset=utf-8"). */
function mediaType(header: string | string[] | number | undefined): string | undefined {
  return typeof header === 'string' ? header.split(';')[0]?.trim() : undefined;
}

function validCreateNetwork() {
  return {
    NetworkID: NET_ID,
    Options: {
      'com.docker.network.enable_ipv6': false,
      'com.docker.network.generic': { 'neutron.net.name': 'mynet' },
    },
    IPv4Data: [
      { AddressSpace: 'no_address_space', Pool: '10.10.0.0/24', Gateway: '10.10.0.1/24', AuxAddresses: null },
    ],
    IPv6Data: [],
  };
}

describe('docker protocol server', () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });
  afterEach(async () => {
    await h.app.close();
  });

  describe('handshake and no-argument calls', () => {
    it('Plugin.Activate with an empty body answers both driver kinds in Docker content type', async () => {
      const res = await post(h.app, '/Plugin.Activate', '', DOCKER_JSON);
      assert.equal(res.statusCode, 200);
      assert.equal(mediaType(res.headers['content-type']), CONTENT_TYPE);
      assert.deepEqual(res.json(), { Implements: ['NetworkDriver', 'IpamDriver'] });
    });

    it('Plugin.Activate with no body and no content type also works', async () => {
      const res = await post(h.app, '/Plugin.Activate');
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { Implements: ['NetworkDriver', 'IpamDriver'] });
    });

    for (const [label, headers, payload] of [
      ['empty body with content type', DOCKER_JSON, ''],
      ['no body and no content type', {}, undefined],
      ['a literal null body', DOCKER_JSON, 'null'],
      ['an empty JSON object, application/json', { 'content-type': 'application/json' }, '{}'],
    ] as const) {
      it(`NetworkDriver.GetCapabilities with ${label}`, async () => {
        const res = await post(h.app, '/NetworkDriver.GetCapabilities', payload, headers);
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(res.json(), { Scope: 'local', ConnectivityScope: 'global' });
        assert.equal(h.network.callsTo('getCapabilities').length, 1);
      });

      it(`IpamDriver.GetCapabilities with ${label}`, async () => {
        const res = await post(h.app, '/IpamDriver.GetCapabilities', payload, headers);
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(res.json(), { RequiresMACAddress: true, RequiresRequestReplay: false });
      });

      it(`IpamDriver.GetDefaultAddressSpaces with ${label}`, async () => {
        const res = await post(h.app, '/IpamDriver.GetDefaultAddressSpaces', payload, headers);
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(res.json(), {
          LocalDefaultAddressSpace: 'no_address_space',
          GlobalDefaultAddressSpace: 'no_address_space',
        });
        assert.equal(mediaType(res.headers['content-type']), CONTENT_TYPE);
      });
    }
  });

  describe('request bodies reach the driver', () => {
    it('CreateNetwork passes the parsed fields through unchanged', async () => {
      const body = validCreateNetwork();
      const res = await post(h.app, '/NetworkDriver.CreateNetwork', body, DOCKER_JSON);
      assert.equal(res.statusCode, 200, res.body);
      const calls = h.network.callsTo('createNetwork');
      assert.equal(calls.length, 1);
      assert.deepEqual(calls[0]?.req, body);
    });

    it('accepts a JSON body without any content type header', async () => {
      const res = await post(h.app, '/NetworkDriver.DeleteNetwork', { NetworkID: NET_ID });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(h.network.callsTo('deleteNetwork')[0]?.req, { NetworkID: NET_ID });
    });

    it('accepts a JSON body with a non-JSON content type (text/plain)', async () => {
      const res = await post(
        h.app,
        '/NetworkDriver.DeleteNetwork',
        { NetworkID: NET_ID },
        { 'content-type': 'text/plain' },
      );
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(h.network.callsTo('deleteNetwork').length, 1);
    });

    it('accepts and keeps unknown extra fields added by newer daemons', async () => {
      const body = {
        ...validCreateNetwork(),
        SomethingNew: { nested: [1, 2] },
        IPv4Data: [{ Pool: '10.10.0.0/24', Gateway: '10.10.0.1/24', FutureField: true }],
      };
      const res = await post(h.app, '/NetworkDriver.CreateNetwork', body, DOCKER_JSON);
      assert.equal(res.statusCode, 200, res.body);
      const got = h.network.callsTo('createNetwork')[0]?.req as Record<string, unknown>;
      assert.deepEqual(got.SomethingNew, { nested: [1, 2] });
      assert.deepEqual(got.IPv4Data, body.IPv4Data);
    });

    it('accepts null Options and null IPv6Data (as Docker sends them)', async () => {
      const body = { NetworkID: NET_ID, Options: null, IPv4Data: [{ Pool: '10.0.0.0/24' }], IPv6Data: null };
      const res = await post(h.app, '/NetworkDriver.CreateNetwork', body, DOCKER_JSON);
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(h.network.callsTo('createNetwork')[0]?.req, body);
    });

    it('Join and RequestAddress return the driver answers verbatim', async () => {
      const join = await post(
        h.app,
        '/NetworkDriver.Join',
        { NetworkID: NET_ID, EndpointID: EP_ID, SandboxKey: '/var/run/docker/netns/abc', Options: {} },
        DOCKER_JSON,
      );
      assert.equal(join.statusCode, 200, join.body);
      assert.deepEqual(join.json(), {
        InterfaceName: { SrcName: 'tap0123', DstPrefix: 'eth' },
        Gateway: '10.0.0.1',
        DisableGatewayService: false,
      });
      h.ipam.answers.set('requestAddress', { Address: '10.10.0.9/24', Data: { mac: 'x' } });
      const addr = await post(h.app, '/IpamDriver.RequestAddress', {
        PoolID: 'pool-1',
        Address: '',
        Options: null,
      });
      assert.equal(addr.statusCode, 200, addr.body);
      assert.deepEqual(addr.json(), { Address: '10.10.0.9/24', Data: { mac: 'x' } });
      assert.deepEqual(h.ipam.callsTo('requestAddress')[0]?.req, {
        PoolID: 'pool-1',
        Address: '',
        Options: null,
      });
    });

    it('runs the driver inside a call context named after the handler, and notifies the observer', async () => {
      const res = await post(h.app, '/IpamDriver.ReleasePool', { PoolID: 'pool-1' });
      assert.equal(res.statusCode, 200);
      assert.equal(h.ipam.callsTo('releasePool')[0]?.handler, 'IpamDriver.ReleasePool');
      assert.deepEqual(h.started, ['IpamDriver.ReleasePool']);
      assert.equal(h.finished.length, 1);
      assert.equal(h.finished[0]?.handler, 'IpamDriver.ReleasePool');
      assert.equal(h.finished[0]?.error, undefined);
    });
  });

  describe('malformed and invalid requests', () => {
    it('malformed JSON is a 400 whose Err mentions JSON, and the driver is not called', async () => {
      const res = await post(h.app, '/NetworkDriver.CreateNetwork', '{"NetworkID": ', DOCKER_JSON);
      assert.equal(res.statusCode, 400);
      assert.equal(mediaType(res.headers['content-type']), CONTENT_TYPE);
      const body = res.json() as { Err: string };
      assert.equal(typeof body.Err, 'string');
      assert.match(body.Err, /JSON/);
      assert.equal(h.network.calls.length, 0);
    });

    it('missing NetworkID is a 400 naming the field', async () => {
      const { NetworkID: _omit, ...body } = validCreateNetwork();
      const res = await post(h.app, '/NetworkDriver.CreateNetwork', body, DOCKER_JSON);
      assert.equal(res.statusCode, 400);
      const { Err } = res.json() as { Err: string };
      assert.match(Err, /NetworkID/);
      assert.match(Err, /required/);
      assert.match(Err, /CreateNetwork/);
      assert.equal(h.network.calls.length, 0);
    });

    it('a NetworkID that is not a Docker ID is a 400 naming NetworkID', async () => {
      const res = await post(h.app, '/NetworkDriver.DeleteNetwork', { NetworkID: 'not-an-id' }, DOCKER_JSON);
      assert.equal(res.statusCode, 400);
      assert.match((res.json() as { Err: string }).Err, /NetworkID/);
    });

    it('a wrongly typed IPv4Data[0].Pool is a 400 naming the nested field', async () => {
      const body = { ...validCreateNetwork(), IPv4Data: [{ Pool: 42 }] };
      const res = await post(h.app, '/NetworkDriver.CreateNetwork', body, DOCKER_JSON);
      assert.equal(res.statusCode, 400);
      const { Err } = res.json() as { Err: string };
      assert.match(Err, /IPv4Data\[0\]\.Pool/);
      assert.match(Err, /string/);
    });

    it('a missing Pool inside IPv4Data[1] names IPv4Data[1].Pool', async () => {
      const body = {
        ...validCreateNetwork(),
        IPv4Data: [{ Pool: '10.0.0.0/24' }, { Gateway: '10.0.1.1/24' }],
      };
      const res = await post(h.app, '/NetworkDriver.CreateNetwork', body, DOCKER_JSON);
      assert.equal(res.statusCode, 400);
      assert.match((res.json() as { Err: string }).Err, /IPv4Data\[1\]\.Pool is required/);
    });

    it('IPAM: missing PoolID is a 400 naming PoolID', async () => {
      const res = await post(
        h.app,
        '/IpamDriver.RequestAddress',
        { Address: '', Options: null },
        DOCKER_JSON,
      );
      assert.equal(res.statusCode, 400);
      assert.match((res.json() as { Err: string }).Err, /PoolID/);
      assert.equal(h.ipam.calls.length, 0);
    });

    it('IPAM: a numeric PoolID is a 400 naming PoolID (no type coercion)', async () => {
      const res = await post(h.app, '/IpamDriver.ReleasePool', { PoolID: 7 }, DOCKER_JSON);
      assert.equal(res.statusCode, 400);
      assert.match((res.json() as { Err: string }).Err, /PoolID/);
      assert.equal(h.ipam.calls.length, 0);
    });

    it('a JSON array body is a 400, not a crash', async () => {
      const res = await post(h.app, '/NetworkDriver.DeleteNetwork', '[1,2]', DOCKER_JSON);
      assert.equal(res.statusCode, 400);
      assert.equal(typeof (res.json() as { Err: unknown }).Err, 'string');
    });
  });

  describe('unknown methods', () => {
    for (const path of ['/NetworkDriver.Nope', '/Foo']) {
      it(`${path} answers 404 with a JSON Err`, async () => {
        const res = await post(h.app, path, '{}', DOCKER_JSON);
        assert.equal(res.statusCode, 404);
        const body = res.json() as { Err: string };
        assert.equal(typeof body.Err, 'string');
        assert.ok(body.Err.includes(path), body.Err);
      });
    }

    it('ProgramExternalConnectivity answers 404 when the driver does not implement it', async () => {
      const res = await post(h.app, '/NetworkDriver.ProgramExternalConnectivity', {
        NetworkID: NET_ID,
        EndpointID: EP_ID,
      });
      assert.equal(res.statusCode, 404);
      assert.equal(typeof (res.json() as { Err: unknown }).Err, 'string');
    });

    it('ProgramExternalConnectivity reaches a driver that implements it', async () => {
      const network = new FakeNetworkDriverWithExternal();
      const other = harness(network);
      try {
        const body = { NetworkID: NET_ID, EndpointID: EP_ID, Options: { 'com.docker.network.portmap': [] } };
        const res = await post(other.app, '/NetworkDriver.ProgramExternalConnectivity', body);
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(res.json(), {});
        assert.deepEqual(network.callsTo('programExternalConnectivity')[0]?.req, body);
        const revoke = await post(other.app, '/NetworkDriver.RevokeExternalConnectivity', {
          NetworkID: NET_ID,
          EndpointID: EP_ID,
        });
        assert.equal(revoke.statusCode, 200, revoke.body);
        assert.equal(network.callsTo('revokeExternalConnectivity').length, 1);
      } finally {
        await other.app.close();
      }
    });
  });

  describe('driver errors become {"Err"} envelopes', () => {
    const deleteBody = { NetworkID: NET_ID };

    it('DriverError(…, 400) → 400 with its message', async () => {
      h.network.failWith.set('deleteNetwork', new DriverError('network is still in use', 400));
      const res = await post(h.app, '/NetworkDriver.DeleteNetwork', deleteBody, DOCKER_JSON);
      assert.equal(res.statusCode, 400);
      assert.equal(mediaType(res.headers['content-type']), CONTENT_TYPE);
      assert.deepEqual(res.json(), { Err: 'network is still in use' });
    });

    it('InvalidRequestError → 400 with its message', async () => {
      h.network.failWith.set('deleteNetwork', new InvalidRequestError('bad option foo'));
      const res = await post(h.app, '/NetworkDriver.DeleteNetwork', deleteBody, DOCKER_JSON);
      assert.equal(res.statusCode, 400);
      assert.deepEqual(res.json(), { Err: 'bad option foo' });
    });

    it('a plain Error → 500 with its message, and the observer sees the error', async () => {
      const boom = new Error('boom: something broke');
      h.network.failWith.set('deleteNetwork', boom);
      const res = await post(h.app, '/NetworkDriver.DeleteNetwork', deleteBody, DOCKER_JSON);
      assert.equal(res.statusCode, 500);
      assert.deepEqual(res.json(), { Err: 'boom: something broke' });
      assert.equal(h.finished[0]?.error, boom);
    });

    it('a thrown non-Error value → 500 with a string Err', async () => {
      h.network.failWith.set('deleteNetwork', 'just a string');
      const res = await post(h.app, '/NetworkDriver.DeleteNetwork', deleteBody, DOCKER_JSON);
      assert.equal(res.statusCode, 500);
      assert.deepEqual(res.json(), { Err: 'just a string' });
    });

    it('NotFoundError → 500, never 404 (Docker would take a 404 to mean the method is absent)', async () => {
      h.network.failWith.set(
        'deleteNetwork',
        new NotFoundError('no Neutron network for this Docker network'),
      );
      const res = await post(h.app, '/NetworkDriver.DeleteNetwork', deleteBody, DOCKER_JSON);
      assert.equal(res.statusCode, 500);
      assert.deepEqual(res.json(), { Err: 'no Neutron network for this Docker network' });
    });

    for (const [label, err, status] of [
      ['plain Error', new Error('pool exhausted'), 500],
      ['DriverError 400', new DriverError('pool exhausted', 400), 400],
      ['NotFoundError', new NotFoundError('pool exhausted'), 500],
    ] as const) {
      it(`IPAM RequestPool failing with ${label} is non-200 with Err`, async () => {
        h.ipam.failWith.set('requestPool', err);
        const res = await post(h.app, '/IpamDriver.RequestPool', {
          AddressSpace: 'x',
          Pool: '10.0.0.0/16',
          Options: null,
        });
        assert.equal(res.statusCode, status);
        assert.notEqual(res.statusCode, 200);
        assert.deepEqual(res.json(), { Err: 'pool exhausted' });
      });
    }

    it('IPAM RequestAddress failure is non-200 with Err', async () => {
      h.ipam.failWith.set('requestAddress', new DriverError('no more addresses', 500));
      const res = await post(h.app, '/IpamDriver.RequestAddress', { PoolID: 'pool-1', Options: null });
      assert.equal(res.statusCode, 500);
      assert.deepEqual(res.json(), { Err: 'no more addresses' });
    });
  });

  describe('empty answers', () => {
    for (const [path, body] of [
      ['/NetworkDriver.DeleteNetwork', { NetworkID: NET_ID }],
      ['/NetworkDriver.Leave', { NetworkID: NET_ID, EndpointID: EP_ID }],
      ['/IpamDriver.ReleaseAddress', { PoolID: 'pool-1', Address: '10.10.0.5' }],
      ['/NetworkDriver.DiscoverNew', { DiscoveryType: 1, DiscoveryData: { Address: '1.2.3.4' } }],
    ] as const) {
      it(`${path} sends a JSON object {} (never an empty body)`, async () => {
        const res = await post(h.app, path, body, DOCKER_JSON);
        assert.equal(res.statusCode, 200, res.body);
        assert.equal(res.body, '{}');
        assert.equal(mediaType(res.headers['content-type']), CONTENT_TYPE);
      });
    }

    it('a driver resolving undefined still produces {}', async () => {
      h.network.answers.set('freeNetwork', undefined);
      const res = await post(h.app, '/NetworkDriver.FreeNetwork', { NetworkID: NET_ID }, DOCKER_JSON);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.body, '{}');
      assert.equal(h.network.callsTo('freeNetwork').length, 1);
    });
  });
});

describe('closing the server (daemon shutdown)', () => {
  /** A driver whose CreateNetwork waits until the test lets it go. */
  class HeldDriver extends FakeNetworkDriver {
    private enter = () => {};
    readonly entered = new Promise<void>((r) => {
      this.enter = r;
    });
    letGo = () => {};
    private readonly released = new Promise<void>((r) => {
      this.letGo = r;
    });
    override async createNetwork(req: Parameters<FakeNetworkDriver['createNetwork']>[0]) {
      this.enter();
      await this.released;
      return super.createNetwork(req);
    }
  }

  async function listening(network: HeldDriver): Promise<{ app: FastifyInstance; client: Client }> {
    const socket = join(mkdtempSync(join(tmpdir(), 'kuryr-close-')), 'p.sock');
    const { app } = harness(network);
    await app.listen({ path: socket });
    // Docker's client keeps its connection open between calls.
    const client = new Client('http://plugin', { socketPath: socket, keepAliveTimeout: 60_000 });
    return { app, client };
  }

  it('a call in flight finishes; the keep-alive connection it leaves does not hold the close', async () => {
    const network = new HeldDriver();
    const { app, client } = await listening(network);
    try {
      const call = client.request({
        method: 'POST',
        path: '/NetworkDriver.CreateNetwork',
        body: JSON.stringify(validCreateNetwork()),
      });
      await network.entered;
      const t0 = Date.now();
      const closed = closeServer(app, 30_000);
      setTimeout(() => network.letGo(), 200);
      const res = await call;
      assert.equal(res.statusCode, 200, 'the call in flight got its answer');
      await res.body.text();
      await closed;
      assert.ok(Date.now() - t0 < 5_000, `closed after ${Date.now() - t0} ms`);
    } finally {
      await client.close();
    }
  });

  it('a call that never finishes is cut off at the deadline', async () => {
    const network = new HeldDriver();
    const { app, client } = await listening(network);
    try {
      const call = client
        .request({
          method: 'POST',
          path: '/NetworkDriver.CreateNetwork',
          body: JSON.stringify(validCreateNetwork()),
        })
        .catch((err: Error) => err);
      await network.entered;
      const t0 = Date.now();
      await closeServer(app, 300);
      assert.ok(Date.now() - t0 < 3_000, `closed after ${Date.now() - t0} ms`);
      assert.ok((await call) instanceof Error, 'the connection was closed under the call');
    } finally {
      network.letGo();
      await client.destroy();
    }
  });
});
