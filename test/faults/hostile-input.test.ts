// Hostile and bad input: property-based bodies for every plugin endpoint, served by the real
// drivers against the real Neutron (in process), plus the listeners' own defences.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/config.js';
import { buildDrivers } from '../../src/daemon.js';
import { buildServer } from '../../src/docker/server.js';
import { createNeutronClient } from '../../src/neutron/from-config.js';
import { type KuryrProcess, NEUTRON_URL, neutron, run, SOCKET, startKuryr } from '../e2e/harness.js';
import { addRow } from './report.js';

const METHODS = [
  'Plugin.Activate',
  'NetworkDriver.GetCapabilities',
  'NetworkDriver.CreateNetwork',
  'NetworkDriver.DeleteNetwork',
  'NetworkDriver.AllocateNetwork',
  'NetworkDriver.FreeNetwork',
  'NetworkDriver.CreateEndpoint',
  'NetworkDriver.DeleteEndpoint',
  'NetworkDriver.EndpointOperInfo',
  'NetworkDriver.Join',
  'NetworkDriver.Leave',
  'NetworkDriver.ProgramExternalConnectivity',
  'NetworkDriver.RevokeExternalConnectivity',
  'NetworkDriver.DiscoverNew',
  'NetworkDriver.DiscoverDelete',
  'IpamDriver.GetCapabilities',
  'IpamDriver.GetDefaultAddressSpaces',
  'IpamDriver.RequestPool',
  'IpamDriver.ReleasePool',
  'IpamDriver.RequestAddress',
  'IpamDriver.ReleaseAddress',
];

describe('property-based bodies against every endpoint (real drivers, real Neutron)', () => {
  let app: FastifyInstance;
  let before_: { networks: number; ports: number; pools: number };
  const counts = async () => ({
    networks: (await neutron.list('networks')).length,
    ports: (await neutron.list('ports')).length,
    pools: (await neutron.list('subnetpools')).length,
  });

  before(async () => {
    const config = loadConfig({
      file: '/nonexistent/kuryr.conf',
      env: {
        KURYR_NEUTRON_AUTH_TYPE: 'noauth',
        KURYR_NEUTRON_ENDPOINT_OVERRIDE: NEUTRON_URL,
        KURYR_NEUTRON_TIMEOUT: '10',
      },
    });
    const logger = pino({ level: 'silent' });
    const drivers = buildDrivers(config, createNeutronClient(config), {
      warn: () => undefined,
      warnDetail: () => undefined,
      activeWaited: () => undefined,
    });
    app = buildServer({ network: drivers.network, ipam: drivers.ipam, logger });
    before_ = await counts();
  });
  after(async () => {
    await app.close();
  });

  const expectSane = (method: string, status: number, body: string) => {
    assert.ok([200, 400, 413, 500].includes(status), `${method}: status ${status} ${body}`);
    const parsed = JSON.parse(body) as Record<string, unknown>;
    assert.equal(typeof parsed, 'object');
    if (status !== 200)
      assert.ok(typeof parsed.Err === 'string' && parsed.Err.length > 0, `${method}: ${body}`);
  };

  it('random JSON values: a JSON answer, 4xx/500 with an Err message, never a crash or a 404', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...METHODS), fc.jsonValue(), async (method, value) => {
        const res = await app.inject({
          method: 'POST',
          url: `/${method}`,
          payload: JSON.stringify(value),
          headers: { 'content-type': 'application/json' },
        });
        expectSane(method, res.statusCode, res.body);
      }),
      { numRuns: 400 },
    );
  });

  it('bodies that are not JSON ("{," + random text) are refused as bad JSON (400)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...METHODS.filter((m) => !m.endsWith('Activate'))),
        fc.string({ minLength: 1 }),
        async (method, text) => {
          const res = await app.inject({
            method: 'POST',
            url: `/${method}`,
            payload: `{,${text}`,
            headers: { 'content-type': 'application/json' },
          });
          assert.equal(res.statusCode, 400, res.body);
          assert.match(JSON.parse(res.body).Err as string, /not valid JSON/);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('well-shaped requests with invalid IDs, CIDRs, MACs and addresses get a clear 4xx/500 Err', async () => {
    const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({
            m: fc.constant('IpamDriver.RequestPool'),
            b: fc.record({
              AddressSpace: fc.string(),
              Pool: fc.string({ minLength: 1 }),
              Options: fc.constant({}),
              V6: fc.boolean(),
            }),
          }),
          fc.record({
            m: fc.constant('IpamDriver.RequestAddress'),
            b: fc.record({
              PoolID: fc.oneof(fc.string({ minLength: 1 }), fc.uuid()),
              Address: fc.string(),
              Options: fc.record({ 'com.docker.network.endpoint.macaddress': fc.string() }),
            }),
          }),
          fc.record({
            m: fc.constant('IpamDriver.ReleaseAddress'),
            b: fc.record({ PoolID: fc.uuid(), Address: fc.string({ minLength: 1 }) }),
          }),
          fc.record({
            m: fc.constant('NetworkDriver.CreateNetwork'),
            b: fc.record({
              NetworkID: fc.oneof(fc.string(), hex64),
              Options: fc.constant({}),
              IPv4Data: fc.array(fc.record({ Pool: fc.string({ minLength: 1 }), Gateway: fc.string() }), {
                minLength: 1,
                maxLength: 2,
              }),
              IPv6Data: fc.constant([]),
            }),
          }),
          fc.record({
            m: fc.constant('NetworkDriver.Join'),
            b: fc.record({
              NetworkID: hex64,
              EndpointID: fc.oneof(fc.string(), hex64),
              SandboxKey: fc.string(),
              Options: fc.constant(null),
            }),
          }),
          fc.record({
            m: fc.constant('NetworkDriver.CreateEndpoint'),
            b: fc.record({
              NetworkID: hex64,
              EndpointID: hex64,
              Interface: fc.record({ Address: fc.string(), MacAddress: fc.string() }),
              Options: fc.constant({}),
            }),
          }),
        ),
        async ({ m, b }) => {
          const res = await app.inject({ method: 'POST', url: `/${m}`, payload: b });
          expectSane(m, res.statusCode, res.body);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a huge body is refused (413) and the server keeps serving', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/NetworkDriver.CreateNetwork',
      payload: `{"NetworkID":"${'a'.repeat(2 << 20)}"}`,
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.statusCode, 413);
    const ok = await app.inject({ method: 'POST', url: '/Plugin.Activate' });
    assert.equal(ok.statusCode, 200);
  });

  it('none of it created anything in Neutron', async () => {
    const now = await counts();
    addRow({
      scenario: 'hostile input on all 21 endpoints',
      result:
        'fast-check: always JSON, 400/413 or 500 with an Err; no crash, no 404; the daemon kept serving',
      recover: '–',
      leaked: now.networks + now.ports + now.pools - before_.networks - before_.ports - before_.pools,
    });
    assert.deepEqual(now, before_);
  });
});

describe('listener defences', () => {
  let kuryr: KuryrProcess;
  before(async () => {
    kuryr = await startKuryr('metrics_listen =');
  });
  after(async () => {
    await kuryr.stop();
  });

  /** curl arguments that POST Plugin.Activate on the socket and print only the HTTP status. */
  const ACTIVATE_STATUS = [
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '--unix-socket',
    SOCKET,
    '-X',
    'POST',
    'http://p/Plugin.Activate',
  ];

  it('the plugin socket is root:root 0660 and an unprivileged user cannot talk to it', async () => {
    const st = statSync(SOCKET);
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.uid, 0);
    assert.equal(st.gid, 0);
    const out = await run('setpriv', [
      '--reuid=nobody',
      '--regid=nogroup',
      '--clear-groups',
      'curl',
      ...ACTIVATE_STATUS,
    ]).catch((e: Error) => e.message);
    assert.doesNotMatch(out, /^200$/);
    assert.match(out, /000|Permission denied|failed/);
    // root still can
    assert.equal(await run('curl', ACTIVATE_STATUS), '200');
  });

  it('unknown ids never reach Neutron as anything but a query value', async () => {
    // A Docker ID with URL syntax is refused by the schema before any Neutron call.
    const id = `${randomUUID()}/../../networks`;
    const out = await run('curl', [
      '-s',
      '--unix-socket',
      SOCKET,
      '-X',
      'POST',
      '--data',
      JSON.stringify({ NetworkID: id }),
      'http://p/NetworkDriver.DeleteNetwork',
    ]);
    assert.match(out, /NetworkID must match pattern/);
  });
});
