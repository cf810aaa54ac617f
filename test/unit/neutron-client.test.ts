// NeutronClient against an in-process fake Neutron (node:http on 127.0.0.1): body wrapping, query
// strings, error mapping, deadlines and call reporting.
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { NoAuth } from '../../src/neutron/auth.js';
import { NeutronClient, type NeutronClientOptions, toQueryString } from '../../src/neutron/client.js';
import { NeutronApiError, NeutronUnavailableError } from '../../src/neutron/errors.js';
import { type CallContext, type NeutronCallRecord, runWithContext } from '../../src/util/context.js';
import { DriverError } from '../../src/util/errors.js';
import { closedPort, FakeHttpServer, sendJson } from './helpers/fake-http.js';

type CallRecord = Parameters<NonNullable<NeutronClientOptions['onCall']>>[0];

describe('NeutronClient', () => {
  let neutron: FakeHttpServer;
  let client: NeutronClient;
  let observed: CallRecord[];

  before(async () => {
    neutron = await FakeHttpServer.start();
  });
  after(async () => {
    await neutron.close();
  });
  beforeEach(() => {
    neutron.requests.length = 0;
    observed = [];
    client = new NeutronClient({
      auth: new NoAuth(`${neutron.url}/`),
      timeoutMs: 2000,
      onCall: (c) => observed.push(c),
    });
  });
  afterEach(async () => {
    await client.close();
  });

  describe('resource round trips', () => {
    it('list GETs the collection and unwraps the plural key', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 200, {
          networks: [
            { id: 'n1', name: 'a' },
            { id: 'n2', name: 'b' },
          ],
        });
      const nets = await client.list('networks', { name: 'a', tags: ['kuryr.net.uuid.uh:x'] });
      assert.deepEqual(
        nets.map((n) => n.id),
        ['n1', 'n2'],
      );
      const req = neutron.requests[0];
      assert.equal(req?.method, 'GET');
      assert.equal(req?.path, '/v2.0/networks');
      assert.equal(req?.query.get('name'), 'a');
      assert.equal(req?.query.get('tags'), 'kuryr.net.uuid.uh:x');
      assert.equal(req?.headers.accept, 'application/json');
      assert.equal(req?.headers['content-type'], undefined);
    });

    it('list of security-groups reads the security_groups key', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 200, { security_groups: [{ id: 'sg1', name: 'default', tags: [] }] });
      const groups = await client.list('security-groups', { name: 'default' });
      assert.deepEqual(groups, [{ id: 'sg1', name: 'default', tags: [] }]);
      assert.equal(neutron.requests[0]?.path, '/v2.0/security-groups');
    });

    it('list returns [] when the plural key is missing', async () => {
      neutron.handler = (_req, res) => sendJson(res, 200, {});
      assert.deepEqual(await client.list('ports'), []);
    });

    it('repeated query keys (fixed_ips twice) are sent as repeated parameters', async () => {
      neutron.handler = (_req, res) => sendJson(res, 200, { ports: [] });
      await client.list('ports', {
        network_id: 'net-1',
        fixed_ips: ['subnet_id=s1', 'ip_address=10.0.0.5'],
        device_owner: undefined,
        admin_state_up: true,
      });
      const req = neutron.requests[0];
      assert.deepEqual(req?.query.getAll('fixed_ips'), ['subnet_id=s1', 'ip_address=10.0.0.5']);
      assert.equal(req?.query.get('network_id'), 'net-1');
      assert.equal(req?.query.get('admin_state_up'), 'true');
      assert.equal(req?.query.has('device_owner'), false);
    });

    it('get fetches one resource by (encoded) id and unwraps the singular key', async () => {
      neutron.handler = (_req, res) => sendJson(res, 200, { subnet: { id: 's/1', cidr: '10.0.0.0/24' } });
      const subnet = await client.get('subnets', 's/1', { fields: ['id', 'cidr'] });
      assert.equal(subnet.cidr, '10.0.0.0/24');
      assert.equal(neutron.requests[0]?.url, '/v2.0/subnets/s%2F1?fields=id&fields=cidr');
    });

    it('create POSTs a wrapped body and returns the unwrapped resource', async () => {
      neutron.handler = (req, res) => {
        const body = req.json as { network: Record<string, unknown> };
        sendJson(res, 201, { network: { id: 'new-net', ...body.network } });
      };
      const net = await client.create('networks', { name: 'kuryr-net', admin_state_up: true });
      assert.equal(net.id, 'new-net');
      assert.equal(net.name, 'kuryr-net');
      const req = neutron.requests[0];
      assert.equal(req?.method, 'POST');
      assert.equal(req?.path, '/v2.0/networks');
      assert.equal(req?.headers['content-type'], 'application/json');
      assert.deepEqual(req?.json, { network: { name: 'kuryr-net', admin_state_up: true } });
    });

    it('create of a security group wraps with security_group', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 201, { security_group: { id: 'sg9', name: 'x', tags: [] } });
      const sg = await client.create('security-groups', { name: 'x' });
      assert.equal(sg.id, 'sg9');
      assert.deepEqual(neutron.requests[0]?.json, { security_group: { name: 'x' } });
      assert.equal(neutron.requests[0]?.path, '/v2.0/security-groups');
    });

    it('update PUTs a wrapped body to the resource URL', async () => {
      neutron.handler = (_req, res) => sendJson(res, 200, { port: { id: 'p1', name: 'renamed' } });
      const port = await client.update('ports', 'p1', { name: 'renamed' });
      assert.equal(port.name, 'renamed');
      const req = neutron.requests[0];
      assert.equal(req?.method, 'PUT');
      assert.equal(req?.path, '/v2.0/ports/p1');
      assert.deepEqual(req?.json, { port: { name: 'renamed' } });
    });

    it('delete returns true on 204', async () => {
      neutron.handler = (_req, res) => {
        res.writeHead(204);
        res.end();
      };
      assert.equal(await client.delete('subnetpools', 'sp1'), true);
      assert.equal(neutron.requests[0]?.method, 'DELETE');
      assert.equal(neutron.requests[0]?.path, '/v2.0/subnetpools/sp1');
    });

    it('delete of a missing resource (404) returns false', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 404, {
          NeutronError: { type: 'NetworkNotFound', message: 'Network gone could not be found.' },
        });
      assert.equal(await client.delete('networks', 'gone'), false);
      assert.equal(neutron.requests.length, 1);
    });

    it('delete still throws on other errors (409 in use)', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 409, {
          NeutronError: { type: 'NetworkInUse', message: 'Unable to complete operation on network.' },
        });
      await assert.rejects(client.delete('networks', 'busy'), (err: unknown) => {
        assert.ok(err instanceof NeutronApiError);
        assert.equal(err.type, 'NetworkInUse');
        return true;
      });
    });

    it('setTags PUTs {"tags": [...]} to /tags', async () => {
      neutron.handler = (req, res) => sendJson(res, 200, req.json);
      await client.setTags('networks', 'n1', ['a', 'b:c']);
      const req = neutron.requests[0];
      assert.equal(req?.method, 'PUT');
      assert.equal(req?.path, '/v2.0/networks/n1/tags');
      assert.deepEqual(req?.json, { tags: ['a', 'b:c'] });
      assert.equal(observed[0]?.resource, 'networks/tags');
    });

    it('addTag PUTs to /tags/<encoded tag> without a body; removeTag ignores 404', async () => {
      neutron.handler = (req, res) => {
        if (req.method === 'DELETE') {
          sendJson(res, 404, { NeutronError: { type: 'TagNotFound', message: 'Tag x could not be found.' } });
        } else {
          res.writeHead(201);
          res.end();
        }
      };
      await client.addTag('ports', 'p1', 'kuryr.ep:a/b');
      await client.removeTag('ports', 'p1', 'x');
      assert.equal(neutron.requests[0]?.method, 'PUT');
      assert.equal(neutron.requests[0]?.url, '/v2.0/ports/p1/tags/kuryr.ep%3Aa%2Fb');
      assert.equal(neutron.requests[0]?.body, '');
      assert.equal(neutron.requests[1]?.method, 'DELETE');
    });

    it('extensions() returns the set of aliases', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 200, {
          extensions: [
            { alias: 'standard-attr-tag', name: 'Tag support' },
            { alias: 'subnet_allocation', name: 'Subnet Allocation' },
          ],
        });
      const ext = await client.extensions();
      assert.equal(ext.size, 2);
      assert.ok(ext.has('standard-attr-tag'));
      assert.ok(ext.has('subnet_allocation'));
    });
  });

  describe('errors', () => {
    it('409 NeutronError keeps status, type and detail', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 409, {
          NeutronError: {
            type: 'IpAddressAlreadyAllocated',
            message: 'IP address 10.0.0.5 already allocated in subnet s1',
            detail: '',
          },
        });
      await assert.rejects(client.create('ports', { network_id: 'n1' }), (err: unknown) => {
        assert.ok(err instanceof NeutronApiError);
        assert.ok(err instanceof DriverError);
        assert.equal(err.httpStatus, 409);
        assert.equal(err.type, 'IpAddressAlreadyAllocated');
        assert.equal(err.detail, 'IP address 10.0.0.5 already allocated in subnet s1');
        assert.equal(
          err.message,
          'Neutron 409 IpAddressAlreadyAllocated: IP address 10.0.0.5 already allocated in subnet s1',
        );
        assert.equal(err.method, 'POST');
        assert.equal(err.path, '/v2.0/ports');
        assert.equal(err.isNotFound, false);
        return true;
      });
      assert.equal(observed.length, 1);
      assert.equal(observed[0]?.status, 409);
      assert.equal(observed[0]?.errorType, 'IpAddressAlreadyAllocated');
    });

    it('500 with a NeutronError body → NeutronApiError 500 with its type', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 500, {
          NeutronError: { type: 'HTTPInternalServerError', message: 'Request Failed: internal server error' },
        });
      await assert.rejects(client.list('networks'), (err: unknown) => {
        assert.ok(err instanceof NeutronApiError);
        assert.equal(err.httpStatus, 500);
        assert.equal(err.type, 'HTTPInternalServerError');
        assert.match(err.message, /^Neutron 500 HTTPInternalServerError: Request Failed/);
        return true;
      });
    });

    it('500 with a non-JSON body → NeutronApiError 500 carrying the text', async () => {
      neutron.handler = (_req, res) => {
        res.writeHead(500, { 'content-type': 'text/html' });
        res.end('<html>Internal Server Error</html>\n');
      };
      await assert.rejects(client.get('ports', 'p1'), (err: unknown) => {
        assert.ok(err instanceof NeutronApiError);
        assert.equal(err.httpStatus, 500);
        assert.equal(err.type, 'ServerError');
        assert.equal(err.detail, '<html>Internal Server Error</html>');
        return true;
      });
    });

    it('keystonemiddleware\'s {"error": {...}} body is understood', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 403, {
          error: { code: 403, title: 'Forbidden', message: 'Policy does not allow this.' },
        });
      await assert.rejects(client.list('agents'), (err: unknown) => {
        assert.ok(err instanceof NeutronApiError);
        assert.equal(err.httpStatus, 403);
        assert.equal(err.type, 'Forbidden');
        assert.equal(err.detail, 'Policy does not allow this.');
        return true;
      });
    });

    it('an empty 4xx body still yields a useful detail', async () => {
      neutron.handler = (_req, res) => {
        res.writeHead(400);
        res.end();
      };
      await assert.rejects(client.list('subnets'), (err: unknown) => {
        assert.ok(err instanceof NeutronApiError);
        assert.equal(err.type, 'HTTPError');
        assert.equal(err.detail, 'HTTP 400');
        return true;
      });
    });

    it('a server that never answers → NeutronUnavailableError within about a second', async () => {
      neutron.handler = () => {
        // never answer
      };
      const slow = new NeutronClient({
        auth: new NoAuth(neutron.url),
        timeoutMs: 200,
        onCall: (c) => observed.push(c),
      });
      const started = Date.now();
      try {
        await assert.rejects(slow.list('networks'), (err: unknown) => {
          assert.ok(err instanceof NeutronUnavailableError, String(err));
          assert.match(err.message, /200 ms/);
          assert.match(err.message, /GET http:\/\/127\.0\.0\.1:\d+\/v2\.0\/networks failed/);
          return true;
        });
      } finally {
        await slow.close();
      }
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 150 && elapsed < 1000, `took ${elapsed} ms`);
      assert.equal(observed[0]?.status, 0);
      assert.equal(observed[0]?.errorType, 'Unavailable');
    });

    it('connection refused → NeutronUnavailableError', async () => {
      const port = await closedPort();
      const refused = new NeutronClient({ auth: new NoAuth(`http://127.0.0.1:${port}`), timeoutMs: 2000 });
      try {
        await assert.rejects(refused.list('networks'), (err: unknown) => {
          assert.ok(err instanceof NeutronUnavailableError, String(err));
          assert.match(
            err.message,
            /^Neutron unreachable: GET http:\/\/127\.0\.0\.1:\d+\/v2\.0\/networks failed/,
          );
          assert.equal(err.status, 500);
          return true;
        });
      } finally {
        await refused.close();
      }
    });

    it('NoAuth: a 401 is retried once, then surfaces as NeutronApiError 401', async () => {
      neutron.handler = (_req, res) =>
        sendJson(res, 401, {
          error: { code: 401, title: 'Unauthorized', message: 'The request requires authentication.' },
        });
      await assert.rejects(client.list('networks'), (err: unknown) => {
        assert.ok(err instanceof NeutronApiError);
        assert.equal(err.httpStatus, 401);
        return true;
      });
      assert.equal(neutron.requests.length, 2);
    });
  });

  describe('call reporting', () => {
    it('onCall and the call context get one record per HTTP call', async () => {
      let n = 0;
      neutron.handler = (req, res) => {
        n++;
        if (req.method === 'DELETE')
          sendJson(res, 404, { NeutronError: { type: 'PortNotFound', message: 'gone' } });
        else sendJson(res, n === 1 ? 200 : 201, n === 1 ? { networks: [] } : { port: { id: 'p' } });
      };
      const ctx: CallContext = { requestId: 'r1', handler: 'NetworkDriver.CreateEndpoint', neutronCalls: [] };
      await runWithContext(ctx, async () => {
        await client.list('networks');
        await client.create('ports', { name: 'x' });
        await client.delete('ports', 'p');
      });
      const strip = (c: NeutronCallRecord) => ({ method: c.method, resource: c.resource, status: c.status });
      const expected = [
        { method: 'GET', resource: 'networks', status: 200 },
        { method: 'POST', resource: 'ports', status: 201 },
        { method: 'DELETE', resource: 'ports', status: 404 },
      ];
      assert.deepEqual(ctx.neutronCalls.map(strip), expected);
      assert.deepEqual(observed.map(strip), expected);
      for (const c of ctx.neutronCalls) assert.ok(typeof c.ms === 'number' && c.ms >= 0);
      assert.equal(observed[2]?.errorType, 'PortNotFound');
      assert.equal(observed[0]?.errorType, undefined);
    });

    it('contexts of concurrent Docker calls stay separate', async () => {
      neutron.handler = (_req, res) => setTimeout(() => sendJson(res, 200, { subnets: [] }), 5);
      const a: CallContext = { requestId: 'a', handler: 'A', neutronCalls: [] };
      const b: CallContext = { requestId: 'b', handler: 'B', neutronCalls: [] };
      await Promise.all([
        runWithContext(a, async () => {
          await client.list('subnets');
          await client.list('subnets');
        }),
        runWithContext(b, () => client.list('subnets')),
      ]);
      assert.equal(a.neutronCalls.length, 2);
      assert.equal(b.neutronCalls.length, 1);
      assert.equal(observed.length, 3);
    });

    it('calls outside any context are still observed', async () => {
      neutron.handler = (_req, res) => sendJson(res, 200, { agents: [] });
      await client.list('agents');
      assert.deepEqual(
        observed.map((c) => [c.method, c.resource, c.status]),
        [['GET', 'agents', 200]],
      );
    });
  });
});

describe('toQueryString', () => {
  it('is empty for no (or only undefined) values', () => {
    assert.equal(toQueryString({}), '');
    assert.equal(toQueryString({ a: undefined }), '');
  });

  it('encodes arrays as repeated keys and escapes values', () => {
    assert.equal(
      toQueryString({ fixed_ips: ['ip_address=10.0.0.1', 'subnet_id=s'], n: 3 }),
      '?fixed_ips=ip_address%3D10.0.0.1&fixed_ips=subnet_id%3Ds&n=3',
    );
  });
});
