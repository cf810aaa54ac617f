// Runs last (files run in name order): after the whole suite, Neutron holds nothing the suite made
// and the host has no leftover interfaces. "Made by the suite" = anything kuryr's gc would call
// garbage (kuryr resources whose Docker objects are gone), plus the e2e-* resources tests create
// by hand, plus test-named Docker objects.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DockerEngine } from '../../src/docker/engine.js';
import { findGarbage } from '../../src/ops/gc.js';
import { docker, HOST, hostLinks, neutron } from './harness.js';

describe('after the whole suite', () => {
  it('kuryr gc finds nothing left behind in Neutron or on the host', async () => {
    const engine = new DockerEngine();
    try {
      const garbage = await findGarbage(neutron, await engine.networks(), {
        host: HOST,
        subnetpoolPrefix: 'kuryrPool',
        minAgeMs: 0,
      });
      assert.deepEqual(garbage, []);
    } finally {
      await engine.close();
    }
  });

  it('no e2e-* network, subnet, subnetpool, port or security group is left in Neutron', async () => {
    for (const collection of ['networks', 'subnets', 'subnetpools', 'ports', 'security-groups'] as const) {
      const left = (await neutron.list(collection)).filter(
        (r) => r.name.startsWith('e2e-') || r.name.endsWith('-exposed_ports'),
      );
      assert.deepEqual(
        left.map((r) => r.name),
        [],
        collection,
      );
    }
  });

  it('no test container or network is left in Docker, and no kuryr veth or bridge leg on the host', async () => {
    const testName = /-\d+-[0-9a-z]{5}$/;
    const names = [
      ...(await docker('ps', '-a', '--format', '{{.Names}}')).split('\n'),
      ...(await docker('network', 'ls', '--format', '{{.Name}}')).split('\n'),
    ];
    assert.deepEqual(
      names.filter((n) => testName.test(n)),
      [],
    );
    const live = (await docker('ps', '-q')).split('\n').filter(Boolean).length;
    // Each running container on a kuryr network holds one tap; with none running, none may exist.
    if (live === 0) assert.deepEqual(await hostLinks('tap'), []);
    assert.deepEqual(await hostLinks('t_c'), []);
    for (const prefix of ['qbr', 'qvb', 'qvo', 'tapkt', 'kto'])
      assert.deepEqual(await hostLinks(prefix), [], prefix);
  });
});
