// What Docker engines 27, 28 and 29 send to remote network and IPAM plugins, as fixtures written
// from moby's sources (test/fixtures/moby-<version>/*.json name the tag and files read), replayed
// call by call through the HTTP layer against the fake drivers: every request must be accepted,
// reach the driver exactly as sent, and the driver's answer must go back unchanged.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type * as P from '../../src/docker/protocol.js';
import { buildServer } from '../../src/docker/server.js';
import { type Fixture, loadFixtures } from '../fixtures/moby.js';
import { FakeIpamDriver, FakeNetworkDriverWithExternal, silentLogger } from './helpers/fake-drivers.js';

/** The fake network driver of engines ≥ 28: it also answers GwAllocCheck. */
class FakeGwCheckingDriver extends FakeNetworkDriverWithExternal {
  gwAllocCheck(req: P.GwAllocCheckRequest): Promise<P.GwAllocCheckResponse> {
    return this.rec('gwAllocCheck', req, { SkipIPv4: false, SkipIPv6: false });
  }
}

/** "NetworkDriver.GwAllocCheck" -> the fake and its method name "gwAllocCheck". */
function target(method: string, network: FakeGwCheckingDriver, ipam: FakeIpamDriver) {
  const [kind, name = ''] = method.split('.');
  const fn = name.charAt(0).toLowerCase() + name.slice(1);
  return { fake: kind === 'IpamDriver' ? ipam : network, fn };
}

async function replay(
  app: FastifyInstance,
  network: FakeGwCheckingDriver,
  ipam: FakeIpamDriver,
  fx: Fixture,
) {
  for (const [i, call] of fx.calls.entries()) {
    const where = `${fx.engine} call ${i} ${call.method}${call.note ? ` (${call.note})` : ''}`;
    const { fake, fn } = target(call.method, network, ipam);
    if (call.method !== 'Plugin.Activate') fake.answers.set(fn, call.answer);
    const before = fake.callsTo(fn).length;
    const res = await app.inject({
      method: 'POST',
      url: `/${call.method}`,
      headers: { 'content-type': 'application/vnd.docker.plugins.v1.2+json' },
      // Calls without arguments carry an empty body (moby encodes only non-nil arguments).
      payload: call.request === undefined ? '' : JSON.stringify(call.request),
    });
    assert.equal(res.statusCode, 200, `${where}: ${res.body}`);
    assert.deepEqual(res.json(), call.answer, `${where}: answer`);
    if (call.method === 'Plugin.Activate') continue;
    const seen = fake.callsTo(fn);
    assert.equal(seen.length, before + 1, `${where}: reached the driver once`);
    if (call.request !== undefined)
      assert.deepEqual(seen.at(-1)?.req, call.request, `${where}: request as sent`);
  }
}

describe('moby 27–29 request/response fixtures through the protocol layer', () => {
  const fixtures = loadFixtures();

  it('there are fixtures for engines 27, 28 and 29, each naming the moby tag it was read from', () => {
    const versions = new Set(fixtures.map((f) => f.file.split('/')[0]));
    assert.deepEqual([...versions].sort(), ['moby-27', 'moby-28', 'moby-29']);
    for (const { file, fixture } of fixtures) {
      assert.match(fixture.engine, /^moby (v|docker-v)\d+\.\d+\.\d+$/, file);
      assert.ok(
        fixture.engine.includes(file.slice('moby-'.length, 'moby-'.length + 2)),
        `${file}: tag of its engine`,
      );
      assert.ok(fixture.read.length > 0 && fixture.calls.length > 0, file);
    }
  });

  for (const { file, fixture } of fixtures) {
    it(`${file}: ${fixture.scenario}`, async () => {
      const network = new FakeGwCheckingDriver();
      const ipam = new FakeIpamDriver();
      const app = buildServer({ network, ipam, logger: silentLogger });
      try {
        await replay(app, network, ipam, fixture);
        // The driver saw exactly the fixture's calls, in its order.
        const order = [...network.calls, ...ipam.calls].length;
        assert.equal(order, fixture.calls.filter((c) => c.method !== 'Plugin.Activate').length);
      } finally {
        await app.close();
      }
    });
  }

  it('GwAllocCheck answers 404 for a driver without it (engines < 28 never send it)', async () => {
    const app = buildServer({
      network: new FakeNetworkDriverWithExternal(),
      ipam: new FakeIpamDriver(),
      logger: silentLogger,
    });
    try {
      const res = await app.inject({
        method: 'POST',
        url: '/NetworkDriver.GwAllocCheck',
        payload: '{"Options":{}}',
      });
      assert.equal(res.statusCode, 404);
    } finally {
      await app.close();
    }
  });

  it('GwAllocCheck: a malformed request is a 400 naming the method; an empty body reaches the driver', async () => {
    const network = new FakeGwCheckingDriver();
    const app = buildServer({ network, ipam: new FakeIpamDriver(), logger: silentLogger });
    try {
      const bad = await app.inject({
        method: 'POST',
        url: '/NetworkDriver.GwAllocCheck',
        payload: '{"Options":"x"}',
      });
      assert.equal(bad.statusCode, 400);
      assert.match((bad.json() as { Err: string }).Err, /GwAllocCheck/);
      assert.equal(network.callsTo('gwAllocCheck').length, 0);
      const empty = await app.inject({
        method: 'POST',
        url: '/NetworkDriver.GwAllocCheck',
        headers: { 'content-type': 'application/json' },
        payload: '',
      });
      assert.equal(empty.statusCode, 200, empty.body);
      assert.deepEqual(empty.json(), { SkipIPv4: false, SkipIPv6: false });
    } finally {
      await app.close();
    }
  });

  it('repeated GetDefaultAddressSpaces (moby ≥ 27: before every RequestPool) each get the same answer', async () => {
    const ipam = new FakeIpamDriver();
    const app = buildServer({ network: new FakeGwCheckingDriver(), ipam, logger: silentLogger });
    try {
      const answers = [];
      for (let i = 0; i < 5; i++)
        answers.push(
          (await app.inject({ method: 'POST', url: '/IpamDriver.GetDefaultAddressSpaces' })).json(),
        );
      assert.equal(new Set(answers.map((a) => JSON.stringify(a))).size, 1);
      assert.equal(ipam.callsTo('getDefaultAddressSpaces').length, 5);
    } finally {
      await app.close();
    }
  });
});
