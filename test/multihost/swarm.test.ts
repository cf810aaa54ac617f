// Swarm mode, global scope: the managed (v2) kuryr plugin on every host (capability_scope global),
// `docker swarm init` on host1 over the underlay (data path port moved off 4789, Neutron's VXLAN
// port), host2 joins; a swarm-scoped kuryr network and a 4-replica service spread over both hosts
// (dnsrr: this kernel has no IPVS); tasks on different hosts reach each other; one Neutron network
// for the manager's AllocateNetwork and every host's CreateNetwork. CIDRs 10.214.0.0/16 and
// 10.216.0.0/16 (docker_gwbridge) belong to this file.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  attachment,
  hdocker,
  hexec,
  hostsUp,
  IMAGE,
  kuryrPortsOn,
  neutron,
  neutronNetworksFor,
  run,
  STATE,
  uniqueName,
  waitFor,
  waitPortActive,
} from './hosts.js';
import { pingFrom } from './traffic.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const PLUGIN = 'kuryr/kuryr:latest';
// KURYR_MH_PLUGIN_DIR: a plugin built elsewhere (e.g. from a patched tree) instead of this tree's.
const PLUGIN_DIR = process.env.KURYR_MH_PLUGIN_DIR ?? join(STATE, 'plugin');
const HOSTS = ['host1', 'host2'] as const;
const DATA_PATH_PORT = '7789';
const addr = (h: string) => `169.254.100.${h.slice(4)}`;

async function installPlugin(host: string): Promise<void> {
  const conf = join(STATE, 'hosts', host, 'etc/kuryr-plugin');
  // The plugin's mounts must exist on the host, OVS or not (scripts/build-plugin.sh).
  await hexec(host, 'mkdir', '-p', '/run/openvswitch');
  mkdirSync(conf, { recursive: true });
  // Extra kuryr.conf lines for the plugin (mounted at /etc/kuryr), e.g. to try a setting.
  writeFileSync(join(conf, 'kuryr.conf'), `${process.env.KURYR_MH_PLUGIN_CONF ?? ''}\n`);
  await hdocker(host, 'plugin', 'rm', '-f', PLUGIN).catch(() => undefined);
  await hdocker(host, 'plugin', 'create', PLUGIN, PLUGIN_DIR);
  await hdocker(
    host,
    ...['plugin', 'set', PLUGIN, `KURYR_DEFAULT_HOST=${host}`, 'KURYR_DEFAULT_CAPABILITY_SCOPE=global'],
    ...['KURYR_NEUTRON_AUTH_TYPE=noauth', 'KURYR_NEUTRON_ENDPOINT_OVERRIDE=http://127.0.0.1:9696'],
    ...['KURYR_DEFAULT_DEBUG=true', 'KURYR_DEFAULT_METRICS_LISTEN=127.0.0.1:23752', `config.source=${conf}`],
  );
  await hdocker(host, 'plugin', 'enable', PLUGIN);
}

/** Swarm's own bridge, on addresses this test chooses (Docker would pick 172.18.0.0/16). */
async function gwbridge(host: string): Promise<void> {
  await hdocker(host, 'network', 'rm', 'docker_gwbridge').catch(() => undefined);
  await hdocker(
    host,
    ...['network', 'create', '--subnet', `10.216.${host.slice(4)}.0/24`],
    ...['--opt', 'com.docker.network.bridge.name=docker_gwbridge'],
    ...['--opt', 'com.docker.network.bridge.enable_icc=false'],
    ...['--opt', 'com.docker.network.bridge.enable_ip_masquerade=false', 'docker_gwbridge'],
  );
}

const tasksOf = async (service: string) =>
  (
    await hdocker(
      'host1',
      'service',
      'ps',
      service,
      '--no-trunc',
      '--format',
      '{{.Node}}|{{.CurrentState}}|{{.Error}}',
    )
  )
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [node = '', state = '', error = ''] = l.split('|');
      return { node, state, error };
    });

describe('Swarm across two hosts with the managed plugin (global scope)', () => {
  const net = uniqueName('swarm');
  const svc = uniqueName('svc');
  let networkId = '';

  before(async () => {
    await hostsUp(2);
    if (!existsSync(join(PLUGIN_DIR, 'config.json')))
      await run(join(ROOT, 'scripts/build-plugin.sh'), [PLUGIN_DIR], 300_000);
    for (const h of HOSTS) {
      await hdocker(h, 'swarm', 'leave', '-f').catch(() => undefined);
      await installPlugin(h);
      await gwbridge(h);
    }
  });
  after(async () => {
    await hdocker('host1', 'service', 'rm', svc).catch(() => undefined);
    await waitFor(
      'service tasks to go',
      async () =>
        (await hdocker('host2', 'ps', '-aq')) === '' && (await hdocker('host1', 'ps', '-aq')) === '',
      60_000,
      500,
    ).catch(() => undefined);
    await hdocker('host1', 'network', 'rm', net).catch(() => undefined);
    for (const h of [...HOSTS].reverse()) {
      await hdocker(h, 'swarm', 'leave', '-f').catch(() => undefined);
      await hdocker(h, 'network', 'rm', 'docker_gwbridge').catch(() => undefined);
      await hdocker(h, 'plugin', 'disable', '-f', PLUGIN).catch(() => undefined);
      await hdocker(h, 'plugin', 'rm', '-f', PLUGIN).catch(() => undefined);
    }
  });

  it('forms a swarm over the underlay, data path off port 4789', async () => {
    await hdocker(
      'host1',
      ...['swarm', 'init', '--advertise-addr', addr('host1'), '--listen-addr', `${addr('host1')}:2377`],
      ...['--data-path-port', DATA_PATH_PORT, '--default-addr-pool', '10.214.128.0/17'],
    );
    const token = await hdocker('host1', 'swarm', 'join-token', '-q', 'worker');
    await hdocker(
      'host2',
      ...['swarm', 'join', '--token', token, '--advertise-addr', addr('host2')],
      ...['--listen-addr', `${addr('host2')}:2377`, `${addr('host1')}:2377`],
    );
    const nodes = await hdocker('host1', 'node', 'ls', '--format', '{{.Hostname}} {{.Status}}');
    assert.deepEqual(nodes.split('\n').sort(), ['host1 Ready', 'host2 Ready']);
  });

  it('creates a swarm-scoped kuryr network', async () => {
    await hdocker(
      'host1',
      ...['network', 'create', '-d', PLUGIN, '--ipam-driver', PLUGIN, '--scope', 'swarm', '--attachable'],
      ...['--subnet', '10.214.1.0/24', net],
    );
    networkId = await hdocker('host1', 'network', 'inspect', '-f', '{{.Id}}', net);
    assert.equal(await hdocker('host1', 'network', 'inspect', '-f', '{{.Scope}}', net), 'swarm');
  });

  it('a 4-replica service spreads over both hosts and every task runs', async () => {
    await hdocker(
      'host1',
      ...['service', 'create', '--detach', '--name', svc, '--replicas', '4', '--network', net],
      ...['--endpoint-mode', 'dnsrr', '--placement-pref', 'spread=node.hostname', '--no-resolve-image'],
      ...[IMAGE, 'sleep', '900'],
    );
    const running = await waitFor(
      'four running tasks',
      async () => {
        const tasks = await tasksOf(svc);
        const up = tasks.filter((t) => t.state.startsWith('Running'));
        return up.length === 4 ? up : undefined;
      },
      60_000,
      1_000,
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${JSON.stringify(await tasksOf(svc), null, 1)}`);
    });
    assert.deepEqual(running.map((t) => t.node).sort(), ['host1', 'host1', 'host2', 'host2']);
  });

  it('one Neutron network for the Docker network, whatever each host did', async () => {
    const nets = await neutronNetworksFor(networkId);
    assert.equal(nets.length, 1, JSON.stringify(nets.map((n) => n.id)));
    // Every host that runs a task created the Docker network locally with the same ID.
    for (const h of HOSTS)
      assert.equal(await hdocker(h, 'network', 'inspect', '-f', '{{.Id}}', net), networkId);
  });

  it("each task's port is bound to its own host and ACTIVE; tasks on different hosts reach each other", async () => {
    const byHost: Record<string, { c: string; ip: string }[]> = {};
    for (const h of HOSTS) {
      const ids = (await hdocker(h, 'ps', '-q', '--filter', `label=com.docker.swarm.service.name=${svc}`))
        .split('\n')
        .filter(Boolean);
      byHost[h] = [];
      for (const c of ids) {
        const a = await attachment(h, c, net);
        const port = await waitPortActive(a.endpointId);
        assert.equal(port['binding:host_id'], h);
        byHost[h].push({ c, ip: a.ip });
      }
    }
    const [a, b] = [byHost.host1?.[0], byHost.host2?.[0]];
    assert.ok(a && b);
    await pingFrom('host1', a.c, b.ip);
    await pingFrom('host2', b.c, a.ip);
  });

  it('removing the service leaves no port on either host', async () => {
    await hdocker('host1', 'service', 'rm', svc);
    await waitFor(
      'task ports to go',
      async () => (await kuryrPortsOn('host1')).length + (await kuryrPortsOn('host2')).length === 0,
      60_000,
      1_000,
    );
    assert.equal((await neutronNetworksFor(networkId)).length, 1, 'the network stays while Docker has it');
  });

  it('docker network rm on the manager removes the Neutron network, its subnet and its subnetpool', async () => {
    const [n] = await neutronNetworksFor(networkId);
    assert.ok(n);
    await hdocker('host1', 'network', 'rm', net);
    await waitFor(
      'the Neutron network, subnet and subnetpool to go',
      async () =>
        (await neutronNetworksFor(networkId)).length === 0 &&
        (await neutron.list('subnets', { network_id: n.id })).length === 0 &&
        (await neutron.list('subnetpools', { name: 'kuryrPool-10.214.1.0/24' })).length === 0,
      30_000,
      500,
    );
  });
});
