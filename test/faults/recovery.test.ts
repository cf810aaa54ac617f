// Fault scenarios against the real services: Neutron stopped while containers start, and the
// driver killed in the middle of 20 concurrent starts. Each ends with a row in a table: scenario,
// result, time to recover, resources leaked (must be 0). CIDRs 10.95.0.0/16 belong to this file.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { DockerEngine } from '../../src/docker/engine.js';
import { findGarbage } from '../../src/ops/gc.js';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  dockerFails,
  envStart,
  envStop,
  HOST,
  IMAGE,
  type KuryrProcess,
  kuryrCli,
  neutron,
  pingUntilReply,
  startKuryr,
  uniqueName,
  waitFor,
  waitPortActive,
} from '../e2e/harness.js';
import { addRow } from './report.js';

async function leaked(): Promise<number> {
  const engine = new DockerEngine();
  try {
    return (
      await findGarbage(neutron, await engine.networks(), {
        host: HOST,
        subnetpoolPrefix: 'kuryrPool',
        minAgeMs: 0,
      })
    ).length;
  } finally {
    await engine.close();
  }
}

describe('Neutron stopped while containers start', () => {
  let kuryr: KuryrProcess;
  const net = uniqueName('nd');
  const names: string[] = [];
  after(async () => {
    await envStart(); // whatever happened, Neutron comes back for the next tests
    await cleanupDocker(names, [net]);
    await kuryr?.stop();
  });

  it('fails fast naming Neutron and its URL, then works again without restarting the driver', async () => {
    kuryr = await startKuryr();
    await createKuryrNetwork('--subnet', '10.95.0.0/24', net);
    const before = names[names.push(uniqueName('nd-before')) - 1] as string;
    await docker('run', '-d', '--name', before, '--net', net, IMAGE, 'sleep', '600');
    await envStop('neutron-server');
    const during = names[names.push(uniqueName('nd-during')) - 1] as string;
    const t0 = Date.now();
    const err = await dockerFails('run', '-d', '--name', during, '--net', net, IMAGE, 'sleep', '600');
    const failMs = Date.now() - t0;
    assert.ok(failMs < 10_000, `failed after ${failMs} ms`);
    // The first call that needs Neutron says so: RequestAddress's port POST, or, with a warm port
    // taken from memory, CreateEndpoint's write of its device_id (or Join's subnet read).
    assert.match(
      err,
      /Neutron unreachable: (POST http:\/\/127\.0\.0\.1:9696\/v2\.0\/ports|PUT http:\/\/127\.0\.0\.1:9696\/v2\.0\/ports\/[0-9a-f-]+|GET http:\/\/127\.0\.0\.1:9696\/v2\.0\/subnets) failed/,
    );
    await docker('rm', '-f', during);

    const t1 = Date.now();
    await envStart();
    const after_ = names[names.push(uniqueName('nd-after')) - 1] as string;
    await waitFor(
      'docker run to work again',
      async () => {
        await docker('rm', '-f', after_).catch(() => undefined);
        await docker('run', '-d', '--name', after_, '--net', net, IMAGE, 'sleep', '600');
        return true;
      },
      120_000,
      1000,
    );
    const recoverMs = Date.now() - t1;
    await waitPortActive((await containerNet(after_, net)).endpointId);
    await pingUntilReply(after_, (await containerNet(before, net)).ip);
    const leaks = await leaked();
    addRow({
      scenario: 'Neutron stopped during docker run',
      result: `failed in ${(failMs / 1000).toFixed(1)} s naming Neutron's URL; works again without restarting kuryr`,
      recover: `${(recoverMs / 1000).toFixed(1)} s (incl. neutron-server start)`,
      leaked: leaks,
    });
    assert.equal(leaks, 0);
  });
});

describe('driver killed (SIGKILL) during 20 concurrent container starts, then restarted', () => {
  let kuryr: KuryrProcess;
  const net = uniqueName('kill');
  const names = Array.from({ length: 20 }, (_, i) => uniqueName(`kill-${i}`));
  after(async () => {
    await cleanupDocker(names, [net]);
    await kuryr?.stop();
  });

  it('every container ends running with an ACTIVE port or removed; gc leaves nothing; networking survives', async () => {
    kuryr = await startKuryr();
    await createKuryrNetwork('--subnet', '10.95.1.0/24', net);
    const starts = Promise.allSettled(
      names.map((n) => docker('run', '-d', '--name', n, '--net', net, IMAGE, 'sleep', '600')),
    );
    await new Promise((r) => setTimeout(r, 2500));
    kuryr.child.kill('SIGKILL');
    const killed = kuryr;
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    kuryr = await startKuryr(); // removes the stale socket; Docker's retries reach the new daemon
    const outcomes = await starts;
    const recoverMs = Date.now() - t0;
    const running: string[] = [];
    for (const [i, o] of outcomes.entries()) {
      const name = names[i] as string;
      const state = await docker('inspect', '-f', '{{.State.Running}}', name).catch(() => 'gone');
      if (o.status === 'fulfilled' && state === 'true') running.push(name);
      else await docker('rm', '-f', name).catch(() => undefined); // a failed start: the user removes it
    }
    for (const name of running) {
      const { endpointId } = await containerNet(name, net);
      await waitPortActive(endpointId, 60_000).catch((err: Error) => {
        // What both daemons did with that endpoint and its port: the only record of a rare race.
        const portId = /port ([0-9a-f-]{36})/.exec(err.message)?.[1];
        const about = (log: string) =>
          log
            .split('\n')
            .filter((l) => l.includes(endpointId.slice(0, 12)) || (portId && l.includes(portId)));
        err.message += `\nkilled daemon:\n${about(killed.log()).join('\n')}\nnew daemon:\n${about(kuryr.log()).join('\n')}`;
        throw err;
      });
    }
    const gc = await kuryrCli(kuryr.conf, 'gc', '--min-age', '0', '--apply');
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    const leaks = await leaked();
    assert.equal(leaks, 0);
    // Containers that started before the kill still talk to each other through the restart.
    if (running.length >= 2)
      await pingUntilReply(running[0] as string, (await containerNet(running[1] as string, net)).ip);
    const ports = await neutron.list('ports', { device_owner: 'compute:kuryr' });
    for (const name of running) {
      const { endpointId } = await containerNet(name, net);
      assert.equal(ports.filter((p) => p.device_id === endpointId).length, 1, `${name} has exactly one port`);
    }
    addRow({
      scenario: 'driver SIGKILLed during 20 parallel docker run -d',
      result: `${running.length} running with ACTIVE ports, ${20 - running.length} failed and removed; gc removed ${gc.stdout.split('\n').filter(Boolean).length} more`,
      recover: `${(recoverMs / 1000).toFixed(1)} s until every docker run returned`,
      leaked: leaks,
    });
  });
});
