// The L2 agent down: a port cannot turn ACTIVE, so a start fails with an error that names the
// agent and the host (vif_plugging_is_fatal) and leaves nothing behind; with the agent back,
// containers start again without touching the driver. CIDRs 10.94.0.0/16.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  dockerFails,
  envStart,
  envStop,
  HOST,
  hostLinks,
  IMAGE,
  type KuryrProcess,
  networkId,
  neutron,
  neutronNetworksOf,
  startKuryr,
  uniqueName,
  waitFor,
  waitPortActive,
} from '../e2e/harness.js';
import { addRow } from './report.js';

describe('L2 agent down', () => {
  let kuryr: KuryrProcess;
  const net = uniqueName('agent');
  const [during, afterwards] = [uniqueName('agent-during'), uniqueName('agent-after')];

  before(async () => {
    // Without the warm pool: a start that makes its port and waits for the (stopped) agent.
    kuryr = await startKuryr(
      '[neutron]\nvif_plugging_is_fatal = true\n[binding]\nactive_wait_timeout = 6\n[vif_pool]\nenabled = false',
    );
  });
  after(async () => {
    await envStart();
    await cleanupDocker([during, afterwards], [net]);
    await kuryr.stop();
  });

  it('reports the ACTIVE timeout naming agent and host, leaks nothing, and recovers when the agent is back', async () => {
    await createKuryrNetwork('--subnet', '10.94.0.0/24', net);
    const [n] = await neutronNetworksOf(await networkId(net));
    await envStop('neutron-agent');
    const t0 = Date.now();
    const err = await dockerFails('run', '-d', '--name', during, '--net', net, IMAGE, 'sleep', '600');
    const failS = (Date.now() - t0) / 1000;
    // Neutron still thinks the agent alive for 75 s, so the port binds but never turns ACTIVE.
    assert.match(err, new RegExp(`still DOWN after 6 s: the L2 agent on host '${HOST}' has not wired it`));
    assert.ok(failS < 20, `failed after ${failS} s`);
    await docker('rm', '-f', during);
    await waitFor(
      'the failed start to leave no port',
      async () => (await neutron.list('ports', { network_id: n?.id })).length === 0,
      10_000,
    );
    assert.deepEqual(await hostLinks('t_c'), []);

    const t1 = Date.now();
    await envStart(); // agent back
    await docker('run', '-d', '--name', afterwards, '--net', net, IMAGE, 'sleep', '600');
    await waitPortActive((await containerNet(afterwards, net)).endpointId);
    addRow({
      scenario: 'L2 agent stopped',
      result: `docker run failed after ${failS.toFixed(1)} s naming the agent and host; works once it is back`,
      recover: `${((Date.now() - t1) / 1000).toFixed(1)} s (incl. agent start)`,
      leaked: (await neutron.list('ports', { network_id: n?.id })).filter((p) => !p.device_id).length,
    });
  });
});
