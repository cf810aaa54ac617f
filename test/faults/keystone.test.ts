// Keystone token expiry and Keystone down, with the real Docker and Neutron (noauth Neutron
// ignores the token) and an in-process Keystone whose tokens live one second beyond kuryr's
// refresh margin. Also: the password and tokens never appear in anything kuryr emits.
// CIDRs 10.98.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import {
  cleanupDocker,
  createKuryrNetwork,
  docker,
  dockerFails,
  IMAGE,
  type KuryrProcess,
  NEUTRON_URL,
  startKuryr,
  uniqueName,
} from '../e2e/harness.js';
import { addRow } from './report.js';

const PASSWORD = 'S3cret-e2e-pass';
const TOKEN_MARK = 'TOKENSECRET';
const METRICS = '127.0.0.1:23797';

describe('Keystone token expiry and outage', () => {
  let kuryr: KuryrProcess;
  let keystone: Server;
  const state = { down: false, issued: 0, badPassword: 0 };
  const net = uniqueName('ks');
  const containers = [uniqueName('ks-1'), uniqueName('ks-2'), uniqueName('ks-3'), uniqueName('ks-4')];
  const emitted: string[] = [];

  before(async () => {
    keystone = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (state.down)
          return void res
            .writeHead(503)
            .end('{"error":{"code":503,"title":"Service Unavailable","message":"down"}}');
        const body = JSON.parse(Buffer.concat(chunks).toString()) as {
          auth: { identity: { password?: { user: { password: string } } } };
        };
        if (body.auth.identity.password?.user.password !== PASSWORD) {
          state.badPassword++;
          return void res.writeHead(401).end('{"error":{"code":401,"title":"Unauthorized","message":"bad"}}');
        }
        state.issued++;
        // kuryr refreshes 120 s before expiry: this token is good for one second.
        const expires = new Date(Date.now() + 121_000).toISOString();
        res
          .writeHead(201, {
            'content-type': 'application/json',
            'x-subject-token': `${TOKEN_MARK}-${state.issued}`,
          })
          .end(
            JSON.stringify({
              token: {
                expires_at: expires,
                catalog: [
                  {
                    type: 'network',
                    endpoints: [{ interface: 'public', region: 'RegionOne', url: NEUTRON_URL }],
                  },
                ],
              },
            }),
          );
      });
    });
    await new Promise<void>((r) => keystone.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(keystone.address() as AddressInfo).port}/v3`;
    kuryr = await startKuryr(
      `metrics_listen = ${METRICS}\n[neutron]\nauth_type = password\nauth_url = ${url}\nusername = kuryr\npassword = ${PASSWORD}\nproject_name = service\nendpoint_override =` +
        // Without the warm pool: a start that takes a warm port needs no Neutron (nor Keystone)
        // request at all, and these scenarios are about the requests.
        '\n[vif_pool]\nenabled = false',
    );
  });
  after(async () => {
    state.down = false;
    await cleanupDocker(containers, [net]);
    await kuryr.stop();
    keystone.close();
  });

  it('re-authenticates when the token nears expiry, with no failed Docker call', async () => {
    await createKuryrNetwork('--subnet', '10.98.0.0/24', net);
    await docker('run', '-d', '--name', containers[0] as string, '--net', net, IMAGE, 'sleep', '600');
    const first = state.issued;
    assert.ok(first >= 1);
    await sleep(1500);
    await docker('run', '-d', '--name', containers[1] as string, '--net', net, IMAGE, 'sleep', '600');
    assert.ok(state.issued > first, `a new token was fetched (${state.issued} issued)`);
  });

  it('Keystone down: calls fail only during the outage, with a clear error; then work again', async () => {
    await sleep(1500); // the token is due for refresh
    state.down = true;
    const err = await dockerFails(
      'run',
      '-d',
      '--name',
      containers[2] as string,
      '--net',
      net,
      IMAGE,
      'sleep',
      '600',
    );
    emitted.push(err);
    assert.match(err, /Keystone 503/);
    await docker('rm', '-f', containers[2] as string);
    state.down = false;
    await docker('run', '-d', '--name', containers[3] as string, '--net', net, IMAGE, 'sleep', '600');
    await docker('rm', '-f', containers[0] as string, containers[1] as string, containers[3] as string);
    await docker('network', 'rm', net);
  });

  it('neither the password nor any token appears in logs, errors or metrics', async () => {
    emitted.push(kuryr.log());
    emitted.push(await (await request(`http://${METRICS}/metrics`)).body.text());
    const all = emitted.join('\n');
    assert.ok(all.length > 1000, 'there is output to check');
    assert.equal(all.includes(PASSWORD), false, 'password leaked');
    assert.equal(all.includes(TOKEN_MARK), false, 'token leaked');
    assert.equal(state.badPassword, 0);
    addRow({
      scenario: 'Keystone token near expiry, then Keystone down',
      result: `re-authenticated with no failed call (${state.issued} tokens); during the outage one docker run failed with "Keystone 503"; password and tokens in no log, error or metric`,
      recover: 'the next call after Keystone returned',
      leaked: '–',
    });
  });
});
