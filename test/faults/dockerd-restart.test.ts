// dockerd restarted under containers started with --restart always: they come back on the same
// kuryr network with working ports, and Neutron holds exactly one port per container.
// CIDRs 10.97.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  envStart,
  IMAGE,
  isIdleWarmPort,
  type KuryrProcess,
  networkId,
  neutron,
  neutronNetworksOf,
  pingUntilReply,
  restartDockerd,
  startKuryr,
  uniqueName,
  waitFor,
  waitPortActive,
} from '../e2e/harness.js';
import { addRow } from './report.js';

function scenario(replay: boolean, subnet: string): void {
  describe(`dockerd restart with --restart always containers (ipam_request_replay = ${replay})`, () => {
    let kuryr: KuryrProcess;
    const net = uniqueName(replay ? 'drr' : 'dr');
    const [c1, c2] = [uniqueName('dr-1'), uniqueName('dr-2')];

    before(async () => {
      kuryr = await startKuryr(`ipam_request_replay = ${replay}`);
    });
    after(async () => {
      await envStart();
      await cleanupDocker([c1, c2], [net]);
      await kuryr.stop();
    });

    it('the containers come back with the same network and one ACTIVE port each; nothing duplicated', async () => {
      await createKuryrNetwork('--subnet', subnet, net);
      for (const c of [c1, c2])
        await docker('run', '-d', '--restart', 'always', '--name', c, '--net', net, IMAGE, 'sleep', '3600');
      const [neutronNet] = await neutronNetworksOf(await networkId(net));
      assert.ok(neutronNet);
      const poolRequests = () =>
        kuryr
          .log()
          .split('\n')
          .filter((l) => l.includes('"handler":"IpamDriver.RequestPool"')).length;
      const poolsBefore = poolRequests();
      const t0 = Date.now();
      await restartDockerd();
      for (const c of [c1, c2]) {
        await waitFor(
          `${c} running again`,
          async () => (await docker('inspect', '-f', '{{.State.Running}}', c)) === 'true',
          60_000,
          500,
        );
      }
      const recoverS = ((Date.now() - t0) / 1000).toFixed(1);
      // With replay on, the restarted daemon asked for the network's pool again (and got the same one).
      if (replay) assert.ok(poolRequests() > poolsBefore, 'Docker replayed RequestPool');
      else assert.equal(poolRequests(), poolsBefore);
      const [n1, n2] = [await containerNet(c1, net), await containerNet(c2, net)];
      for (const n of [n1, n2]) await waitPortActive(n.endpointId, 60_000);
      await pingUntilReply(c1, n2.ip);
      assert.deepEqual(
        (await neutronNetworksOf(await networkId(net))).map((n) => n.id),
        [neutronNet.id],
        'same Neutron network',
      );
      // (The network's idle warm ports are not containers'.)
      const ports = (await neutron.list('ports', { network_id: neutronNet.id })).filter(
        (p) => !isIdleWarmPort(p),
      );
      assert.equal(
        ports.length,
        2,
        `one port per container (found ${ports.map((p) => p.device_id.slice(0, 12)).join(', ')})`,
      );
      addRow({
        scenario: `dockerd restarted under --restart always containers${replay ? ' (request replay on)' : ''}`,
        result: 'both back with ACTIVE ports and pinging; same Neutron network; exactly 2 ports',
        recover: `${recoverS} s`,
        leaked: ports.length - 2,
      });
    });
  });
}

scenario(false, '10.97.0.0/24');
scenario(true, '10.97.1.0/24');
