// Neutron answering 503s or very slowly, through a fault-injecting proxy in front of the real
// neutron-server: only requests safe to repeat are retried, boundedly, and nothing is duplicated.
// CIDRs 10.96.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  IMAGE,
  type KuryrProcess,
  networkId,
  neutron,
  neutronNetworksOf,
  portOfEndpoint,
  startKuryr,
  uniqueName,
} from '../e2e/harness.js';
import { addRow } from './report.js';

const UPSTREAM = new URL(process.env.NEUTRON_URL ?? 'http://127.0.0.1:9696');

interface Faults {
  /** Answer 503 to every n-th GET/PUT/DELETE (0 = never) instead of forwarding it. */
  every503: number;
  /** Forward POST /v2.0/ports at once but hold Neutron's answer this long (ms). */
  slowPortPostMs: number;
}

/** A proxy that forwards to neutron-server and injects the configured faults; counts them. */
async function faultProxy(
  faults: Faults,
): Promise<{ url: string; server: Server; injected: { e503: number; slow: number } }> {
  const injected = { e503: 0, slow: 0 };
  let n = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' && faults.every503 > 0 && ++n % faults.every503 === 0) {
        injected.e503++;
        res
          .writeHead(503, { 'content-type': 'application/json' })
          .end('{"NeutronError":{"type":"ServiceUnavailable","message":"injected"}}');
        return;
      }
      const up = httpRequest(
        {
          host: UPSTREAM.hostname,
          port: UPSTREAM.port,
          path: req.url,
          method: req.method,
          headers: req.headers,
        },
        (upRes) => {
          const body: Buffer[] = [];
          upRes.on('data', (c: Buffer) => body.push(c));
          upRes.on('end', () => {
            const send = () => res.writeHead(upRes.statusCode ?? 502, upRes.headers).end(Buffer.concat(body));
            if (req.method === 'POST' && req.url === '/v2.0/ports' && faults.slowPortPostMs > 0) {
              injected.slow++;
              setTimeout(send, faults.slowPortPostMs);
            } else send();
          });
        },
      );
      up.on('error', () => res.writeHead(502).end());
      up.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, injected };
}

describe('Neutron behind a fault-injecting proxy', () => {
  let kuryr: KuryrProcess;
  let proxy: Awaited<ReturnType<typeof faultProxy>>;
  const faults: Faults = { every503: 3, slowPortPostMs: 0 };
  const net = uniqueName('flaky');
  const containers = [
    uniqueName('flaky-1'),
    uniqueName('flaky-2'),
    uniqueName('flaky-3'),
    uniqueName('flaky-slow'),
  ];

  before(async () => {
    proxy = await faultProxy(faults);
    // Without the warm pool: these scenarios are about the requests of a start that makes its port.
    kuryr = await startKuryr(
      `[neutron]\nendpoint_override = ${proxy.url}\ntimeout = 2\n[vif_pool]\nenabled = false`,
    );
  });
  after(async () => {
    faults.every503 = 0;
    faults.slowPortPostMs = 0;
    await cleanupDocker(containers, [net]);
    await kuryr.stop();
    proxy.server.close();
  });

  it('every third GET/PUT/DELETE answered 503: all Docker operations succeed, nothing duplicated', async () => {
    await createKuryrNetwork('--subnet', '10.96.0.0/24', net);
    for (const c of containers.slice(0, 3))
      await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
    assert.ok(proxy.injected.e503 >= 3, `faults injected: ${proxy.injected.e503}`);
    const [n] = await neutronNetworksOf(await networkId(net));
    assert.equal((await neutronNetworksOf(await networkId(net))).length, 1);
    const ports = await neutron.list('ports', { network_id: n?.id });
    assert.equal(ports.length, 3, 'one port per container');
    for (const c of containers.slice(0, 3)) {
      const { endpointId } = await containerNet(c, net);
      await portOfEndpoint(endpointId); // the endpoint's identity is written behind (retried on 503)
      const now = await neutron.list('ports', { network_id: n?.id });
      assert.equal(now.filter((p) => p.device_id === endpointId).length, 1);
    }
    await docker('rm', '-f', ...containers.slice(0, 3));
    const left = await neutron.list('ports', { network_id: n?.id });
    addRow({
      scenario: 'Neutron answering 503s (every 3rd GET/PUT/DELETE)',
      result: `${proxy.injected.e503} 503s injected; network create, 3 runs and rm all succeeded; one port per container`,
      recover: 'retries (≤ 2, 200/600 ms)',
      leaked: left.length,
    });
    assert.deepEqual(left, []);
  });

  it('a port POST answered after the 2 s deadline is not repeated: the port it made is found and used', async () => {
    faults.every503 = 0;
    faults.slowPortPostMs = 3000;
    const c = containers[3] as string;
    await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
    assert.ok(proxy.injected.slow >= 1);
    const [n] = await neutronNetworksOf(await networkId(net));
    const ports = await neutron.list('ports', { network_id: n?.id });
    assert.equal(ports.length, 1, 'exactly one port, no duplicate from a retry');
    const endpointId = (await containerNet(c, net)).endpointId;
    assert.equal((await portOfEndpoint(endpointId))?.id, ports[0]?.id);
    faults.slowPortPostMs = 0;
    await docker('rm', '-f', c);
    await docker('network', 'rm', net);
    const leftNets = await neutron.list('networks', { id: n?.id ?? '' });
    addRow({
      scenario: 'port POST answered after the deadline',
      result: "not repeated; the port it made was found by Docker's MAC and used: exactly one port",
      recover: 'immediate',
      leaked: leftNets.length,
    });
    assert.deepEqual(leftNets, []);
  });
});
