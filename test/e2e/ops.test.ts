// Operating kuryr for real: the CLI against the real services, metrics and structured logs after
// real Docker traffic, kuryr gc after a killed driver, and the TLS TCP listener with its .json
// spec file. CIDRs 10.81.0.0/16 - 10.84.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  hostLinks,
  IMAGE,
  type KuryrProcess,
  kuryrCli,
  networkId,
  neutron,
  neutronNetworksOf,
  pluginCall,
  portOfEndpoint,
  run,
  startKuryr,
  uniqueName,
} from './harness.js';

const METRICS = '127.0.0.1:23771';

/** Without the warm pool: the metrics test checks what a start that makes its port reports. */
const OPS_CONFIG = `metrics_listen = ${METRICS}\n[vif_pool]\nenabled = false`;

describe('CLI, metrics and logs against the real services', () => {
  let kuryr: KuryrProcess;
  const net = uniqueName('ops');
  const c = uniqueName('ops-c');

  before(async () => {
    // Without the warm pool: the metrics of a start that makes its port and waits for the agent.
    kuryr = await startKuryr(OPS_CONFIG);
  });
  after(async () => {
    await cleanupDocker([c], [net]);
    await kuryr.stop();
  });

  it('kuryr status: every check ok while the daemon runs (exit 0), plugin socket FAIL when it does not (exit 1)', async () => {
    const ok = await kuryrCli(kuryr.conf, 'status');
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    for (const name of ['neutron', 'l2-agent', 'plugin-socket', 'docker', 'managed'])
      assert.match(ok.stdout, new RegExp(`^ok +${name} `, 'm'));
    assert.match(ok.stdout, /(Linux bridge agent|Open vSwitch agent|OVN chassis) alive on host/);
    const json = await kuryrCli(kuryr.conf, 'status', '--json');
    assert.equal((JSON.parse(json.stdout) as { ok: boolean }[]).length, 5);
    await kuryr.stop();
    try {
      const down = await kuryrCli(kuryr.conf, 'status');
      assert.equal(down.code, 1);
      assert.match(down.stdout, /^FAIL plugin-socket .*is 'kuryr serve' running\?/m);
    } finally {
      kuryr = await startKuryr(OPS_CONFIG);
    }
  });

  it('a second daemon on the same socket refuses to start and leaves the first one serving', async () => {
    const second = await kuryrCli(kuryr.conf, 'serve');
    assert.equal(second.code, 1);
    assert.match(
      second.stdout + second.stderr,
      /another kuryr is already serving \/run\/docker\/plugins\/kuryr\.sock/,
    );
    assert.equal((await pluginCall('Plugin.Activate', {})).status, 200);
  });

  it('kuryr config check masks secrets; a bad value exits 2 naming key, value and choices', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kuryr-cfg-'));
    const good = join(dir, 'good.conf');
    writeFileSync(
      good,
      '[neutron]\nauth_type = password\nauth_url = http://127.0.0.1:5000/v3\nusername = kuryr\npassword = s3cr3t-e2e\nproject_name = service\n',
    );
    const shown = await kuryrCli(good, 'config', 'check');
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^password = \*\*\* +# file$/m);
    assert.doesNotMatch(shown.stdout + shown.stderr, /s3cr3t-e2e/);
    const bad = join(dir, 'bad.conf');
    writeFileSync(
      bad,
      '[DEFAULT]\ncapability_scope = planet\n[neutron]\nauth_type = noauth\nendpoint_override = http://x\n',
    );
    const refused = await kuryrCli(bad, 'config', 'check');
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /\[DEFAULT\] capability_scope = "planet": must be one of local, global/);
    const help = await kuryrCli(good, 'gc', '--help');
    assert.match(help.stdout, /Exit codes: 0 nothing left behind/);
  });

  it('metrics and one JSON log line per call after real Docker traffic', async () => {
    await createKuryrNetwork('--subnet', '10.81.0.0/24', net);
    await docker('run', '-d', '--name', c, '--net', net, IMAGE, 'sleep', '600');
    const endpoint = (await containerNet(c, net)).endpointId;
    await docker('rm', '-f', c);
    await docker('network', 'rm', net);
    const res = await request(`http://${METRICS}/metrics`);
    const text = await res.body.text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
    assert.ok(
      value(
        /kuryr_docker_call_duration_seconds_count\{handler="NetworkDriver.CreateNetwork",outcome="ok"\} (\d+)/,
      ) >= 1,
    );
    assert.ok(
      value(/kuryr_docker_call_duration_seconds_count\{handler="NetworkDriver.Join",outcome="ok"\} (\d+)/) >=
        1,
    );
    assert.ok(
      value(
        /kuryr_neutron_request_duration_seconds_count\{method="POST",resource="ports",status="201"\} (\d+)/,
      ) >= 1,
    );
    assert.ok(value(/kuryr_port_active_wait_seconds_count (\d+)/) >= 1);
    assert.match(text, /kuryr_docker_calls_in_flight 0/);
    const health = await request(`http://${METRICS}/healthz`);
    assert.equal(health.statusCode, 200);
    assert.equal(await health.body.text(), 'ok\n');
    const lines = kuryr
      .log()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map(
        (l) =>
          JSON.parse(l) as {
            handler?: string;
            reqId?: string;
            ms?: number;
            neutron?: { method: string; resource: string; status: number; ms: number }[];
          },
      );
    const create = lines.find((l) => l.handler === 'NetworkDriver.CreateEndpoint');
    assert.ok(create?.reqId && typeof create.ms === 'number', 'request id and duration');
    // A call's line lists its Neutron requests: the port's POST is one of them.
    assert.ok(
      lines.some(
        (l) =>
          l.handler &&
          l.neutron?.some(
            (n) =>
              n.method === 'POST' && n.resource === 'ports' && n.status === 201 && typeof n.ms === 'number',
          ),
      ),
      `a call's log line lists the port POST: ${JSON.stringify(lines.filter((l) => l.handler).map((l) => [l.handler, l.neutron?.map((n) => `${n.method} ${n.resource} ${n.status}`)]))}`,
    );
    assert.ok(
      lines.some((l) => l.handler === 'NetworkDriver.DeleteEndpoint'),
      `endpoint ${endpoint.slice(0, 12)} removal logged`,
    );
  });
});

describe('kuryr gc after a killed driver', () => {
  let kuryr: KuryrProcess;
  after(async () => {
    await kuryr?.stop();
  });

  it('finds the network, subnetpool, ports and veth a killed driver left for gone Docker objects, and removes them', async () => {
    kuryr = await startKuryr();
    // What a driver leaves when it dies between Docker's calls: objects for a network and an
    // endpoint that Docker never finished (and so does not know).
    const dockerNet = randomBytes(32).toString('hex');
    const endpoint = randomBytes(32).toString('hex');
    const pool = await pluginCall('IpamDriver.RequestPool', {
      AddressSpace: 'x',
      Pool: '10.82.0.0/24',
      SubPool: '',
      Options: {},
      V6: false,
    });
    await pluginCall('NetworkDriver.CreateNetwork', {
      NetworkID: dockerNet,
      Options: {},
      IPv4Data: [{ AddressSpace: 'x', Pool: '10.82.0.0/24', Gateway: '10.82.0.1/24' }],
      IPv6Data: [],
    });
    const addr = await pluginCall('IpamDriver.RequestAddress', {
      PoolID: pool.body.PoolID,
      Address: '',
      Options: {},
    });
    const ep = await pluginCall('NetworkDriver.CreateEndpoint', {
      NetworkID: dockerNet,
      EndpointID: endpoint,
      Interface: { Address: addr.body.Address },
      Options: {},
    });
    assert.equal(ep.status, 200, JSON.stringify(ep.body));
    const [net] = await neutronNetworksOf(dockerNet);
    const port = await portOfEndpoint(endpoint);
    assert.ok(net && port);
    kuryr.child.kill('SIGKILL');
    await run('sleep', ['0.5']);

    const dry = await kuryrCli(kuryr.conf, 'gc', '--min-age', '0', '--json');
    assert.equal(dry.code, 3, dry.stderr);
    const found = JSON.parse(dry.stdout) as { kind: string; id: string }[];
    assert.ok(
      found.some((g) => g.kind === 'network' && g.id === net.id),
      'network',
    );
    assert.ok(
      found.some((g) => g.kind === 'port' && g.id === port.id),
      'port',
    );
    assert.ok(
      found.some((g) => g.kind === 'subnetpool' && g.id === pool.body.PoolID),
      'subnetpool',
    );
    assert.ok(
      found.some((g) => g.kind === 'veth' && g.id === `tap${port.id.slice(0, 11)}`),
      'veth',
    );
    assert.ok(
      !found.some(
        (g) => g.kind === 'subnetpool' && ['kuryr', 'kuryr6'].includes((g as { name?: string }).name ?? ''),
      ),
    );

    const applied = await kuryrCli(kuryr.conf, 'gc', '--min-age', '0', '--apply');
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    assert.deepEqual(await neutron.list('networks', { id: net.id }), []);
    assert.deepEqual(await neutron.list('ports', { id: port.id }), []);
    assert.deepEqual(await neutron.list('subnetpools', { id: String(pool.body.PoolID) }), []);
    assert.deepEqual(await hostLinks(`tap${port.id.slice(0, 11)}`), []);
    const clean = await kuryrCli(kuryr.conf, 'gc', '--min-age', '0');
    assert.equal(clean.code, 0, clean.stdout);
  });
});

describe('TCP listener with mutual TLS and a .json spec file', () => {
  let kuryr: KuryrProcess;
  const name = `kuryr-tls-${randomBytes(3).toString('hex')}`;
  const specFile = `/etc/docker/plugins/${name}.json`;
  const net = uniqueName('tls');
  const dir = mkdtempSync(join(tmpdir(), 'kuryr-tls-'));
  const f = (n: string) => join(dir, n);
  const URL_ = 'https://127.0.0.1:23773/Plugin.Activate';

  before(async () => {
    const selfSigned = (cn: string, key: string, cert: string, san?: string) =>
      run('openssl', [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        `/CN=${cn}`,
        ...(san ? ['-addext', `subjectAltName=${san}`] : []),
        '-keyout',
        key,
        '-out',
        cert,
      ]);
    await selfSigned('127.0.0.1', f('server.key'), f('server.pem'), 'IP:127.0.0.1');
    // A client CA, and Docker's client certificate signed by it.
    await selfSigned('kuryr-client-ca', f('ca.key'), f('ca.pem'));
    await run('openssl', [
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=dockerd',
      '-keyout',
      f('client.key'),
      '-out',
      f('client.csr'),
    ]);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      f('client.csr'),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-out',
      f('client.pem'),
    ]);
    kuryr = await startKuryr(
      [
        'plugin_socket =',
        'listen_tcp = true',
        'kuryr_uri = http://127.0.0.1:23773',
        'enable_ssl = true',
        `ssl_cert_file = ${f('server.pem')}`,
        `ssl_key_file = ${f('server.key')}`,
        `ssl_ca_file = ${f('server.pem')}`,
        `ssl_client_ca_file = ${f('ca.pem')}`,
        `ssl_client_cert_file = ${f('client.pem')}`,
        `ssl_client_key_file = ${f('client.key')}`,
        `spec_name = ${name}`,
        'metrics_listen =',
      ].join('\n'),
      async () => existsSync(specFile),
    );
  });
  after(async () => {
    await cleanupDocker([], [net]);
    await kuryr.stop();
  });

  it('refuses plain HTTP and clients without a certificate from the client CA', async () => {
    const curl = (...args: string[]) =>
      run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', ...args]).catch(
        () => 'refused',
      );
    assert.notEqual(await curl('http://127.0.0.1:23773/Plugin.Activate'), '200');
    assert.notEqual(await curl('--cacert', f('server.pem'), URL_), '200');
    assert.notEqual(
      await curl('--cacert', f('server.pem'), '--cert', f('server.pem'), '--key', f('server.key'), URL_),
      '200',
    );
    assert.equal(
      await curl('--cacert', f('server.pem'), '--cert', f('client.pem'), '--key', f('client.key'), URL_),
      '200',
    );
  });

  it('writes a .json spec with TLSConfig, and Docker drives the plugin over mutual TLS', async () => {
    const spec = JSON.parse(readFileSync(specFile, 'utf8')) as {
      Addr: string;
      TLSConfig: { CAFile?: string; CertFile?: string; KeyFile?: string; InsecureSkipVerify: boolean };
    };
    assert.equal(spec.Addr, 'https://127.0.0.1:23773');
    assert.equal(spec.TLSConfig.InsecureSkipVerify, false);
    assert.equal(spec.TLSConfig.CAFile, f('server.pem'));
    assert.equal(spec.TLSConfig.CertFile, f('client.pem'));
    await docker('network', 'create', '-d', name, '--ipam-driver', name, '--subnet', '10.83.0.0/24', net);
    assert.equal((await neutronNetworksOf(await networkId(net))).length, 1);
    await docker('network', 'rm', net);
    await kuryr.stop();
    assert.equal(existsSync(specFile), false, 'spec file removed on shutdown');
  });
});
