// The Docker managed (v2) plugin, built locally from this tree (scripts/build-plugin.sh, no
// registry), installed with docker plugin create/enable, passes the two-container ping test.
// CIDRs 10.71.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { dockerIdTags } from '../../src/cnm/naming.js';
import {
  cleanupDocker,
  containerNet,
  docker,
  HOST,
  IMAGE,
  NEUTRON_URL,
  networkId,
  neutron,
  neutronNetworksOf,
  pingUntilReply,
  portOfEndpoint,
  run,
  uniqueName,
  waitPortActive,
} from './harness.js';

const PLUGIN = 'kuryr/kuryr-e2e:latest';
const ROOT = new URL('../..', import.meta.url).pathname;

describe('managed plugin (docker plugin create/enable)', () => {
  const net = uniqueName('v2');
  const [c1, c2] = [uniqueName('v2-c1'), uniqueName('v2-c2')];

  before(async () => {
    await docker('plugin', 'rm', '-f', PLUGIN).catch(() => undefined);
    await run(`${ROOT}scripts/build-plugin.sh`, [`${ROOT}build/plugin`], 300_000);
    mkdirSync('/etc/kuryr', { recursive: true }); // the plugin's config mount
    mkdirSync('/run/openvswitch', { recursive: true }); // and Open vSwitch's (there even without OVS)
    await docker('plugin', 'create', PLUGIN, `${ROOT}build/plugin`);
    await docker(
      'plugin',
      'set',
      PLUGIN,
      `KURYR_DEFAULT_HOST=${HOST}`,
      'KURYR_NEUTRON_AUTH_TYPE=noauth',
      `KURYR_NEUTRON_ENDPOINT_OVERRIDE=${NEUTRON_URL}`,
      'KURYR_DEFAULT_METRICS_LISTEN=',
    );
    await docker('plugin', 'enable', PLUGIN);
  });
  after(async () => {
    await cleanupDocker([c1, c2], [net]);
    await docker('plugin', 'disable', '-f', PLUGIN).catch(() => undefined);
    await docker('plugin', 'rm', '-f', PLUGIN).catch(() => undefined);
  });

  it('is enabled as a network and IPAM driver', async () => {
    const out = await docker(
      'plugin',
      'inspect',
      '-f',
      '{{.Enabled}} {{json .Config.Interface.Types}}',
      PLUGIN,
    );
    assert.equal(out, 'true ["docker.networkdriver/1.0","docker.ipamdriver/1.0"]');
  });

  it('networks two containers over Neutron and cleans up after itself', async () => {
    await docker('network', 'create', '-d', PLUGIN, '--ipam-driver', PLUGIN, '--subnet', '10.71.0.0/24', net);
    const id = await networkId(net);
    const [neutronNet] = await neutronNetworksOf(id);
    assert.ok(neutronNet);
    for (const tag of dockerIdTags(id)) assert.ok(neutronNet.tags.includes(tag));
    await docker('run', '-d', '--name', c1, '--net', net, IMAGE, 'sleep', '600');
    await docker('run', '-d', '--name', c2, '--net', net, IMAGE, 'sleep', '600');
    const [n1, n2] = [await containerNet(c1, net), await containerNet(c2, net)];
    for (const n of [n1, n2]) {
      const port = await waitPortActive(n.endpointId);
      assert.equal(port['binding:host_id'], HOST);
    }
    await pingUntilReply(c1, n2.ip);
    await docker('rm', '-f', c1, c2);
    for (const n of [n1, n2]) assert.equal(await portOfEndpoint(n.endpointId, 0), undefined);
    await docker('network', 'rm', net);
    assert.deepEqual(await neutron.list('networks', { id: neutronNet.id }), []);
  });
});
