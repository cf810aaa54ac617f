// Which Neutron requests are retried: only those safe to repeat, only on transient failures, boundedly.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NoAuth } from '../../src/neutron/auth.js';
import { NeutronClient } from '../../src/neutron/client.js';
import { NeutronApiError, NeutronUnavailableError } from '../../src/neutron/errors.js';
import { FakeHttpServer, sendJson } from './helpers/fake-http.js';

describe('NeutronClient retries', () => {
  let fake: FakeHttpServer;
  let client: NeutronClient;
  before(async () => {
    fake = await FakeHttpServer.start();
    client = new NeutronClient({ auth: new NoAuth(fake.url), timeoutMs: 300 });
  });
  after(async () => {
    await client.close();
    await fake.close();
  });

  /** Answers 503 `failures` times, then succeeds. */
  const flaky = (failures: number, ok: unknown) => {
    let n = 0;
    fake.requests.length = 0;
    fake.handler = (_req, res) => {
      if (n++ < failures)
        sendJson(res, 503, { NeutronError: { type: 'ServiceUnavailable', message: 'busy' } });
      else sendJson(res, 200, ok);
    };
  };

  it('a GET answered 503 is retried and then succeeds', async () => {
    flaky(2, { networks: [{ id: 'n1' }] });
    const nets = await client.list('networks');
    assert.deepEqual(
      nets.map((n) => n.id),
      ['n1'],
    );
    assert.equal(fake.requests.length, 3);
  });

  it('retries are bounded: three 503s in a row surface the error', async () => {
    flaky(10, {});
    await assert.rejects(
      client.list('networks'),
      (err: unknown) => err instanceof NeutronApiError && err.httpStatus === 503,
    );
    assert.equal(fake.requests.length, 3);
  });

  it('a POST is never retried (it could create a second port)', async () => {
    flaky(1, { port: { id: 'p1' } });
    await assert.rejects(
      client.create('ports', { network_id: 'n' }),
      (err: unknown) => err instanceof NeutronApiError && err.httpStatus === 503,
    );
    assert.equal(fake.requests.length, 1);
  });

  it('a DELETE answered 502 is retried', async () => {
    let n = 0;
    fake.requests.length = 0;
    fake.handler = (_req, res) => {
      if (n++ === 0) sendJson(res, 502, { error: { title: 'Bad Gateway', message: 'proxy' } });
      else res.writeHead(204).end();
    };
    assert.equal(await client.delete('ports', 'p1'), true);
    assert.equal(fake.requests.length, 2);
  });

  it('a timeout is not retried: the deadline bounds the whole call', async () => {
    fake.requests.length = 0;
    fake.handler = () => undefined; // never answers
    const t0 = Date.now();
    await assert.rejects(
      client.list('ports'),
      (err: unknown) => err instanceof NeutronUnavailableError && err.timedOut,
    );
    assert.ok(Date.now() - t0 < 1500);
    assert.equal(fake.requests.length, 1);
  });

  it('a 409 is not retried', async () => {
    fake.requests.length = 0;
    fake.handler = (_req, res) =>
      sendJson(res, 409, { NeutronError: { type: 'IpAddressAlreadyAllocated', message: 'taken' } });
    await assert.rejects(
      client.update('ports', 'p1', { name: 'x' }),
      (err: unknown) => err instanceof NeutronApiError && err.httpStatus === 409,
    );
    assert.equal(fake.requests.length, 1);
  });
});
