// Runs last (files run in name order): after the whole suite, Neutron holds nothing the suite made
// and the host has no leftover interfaces. "Made by the suite" = anything kuryr's gc would call
// garbage (kuryr resources whose Docker objects are gone), plus the e2e-* resources tests create
// by hand, plus test-named Docker objects.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  docker,
  gcGarbage,
  hostLinks,
  isTestMade,
  neutron,
  TEST_MADE_COLLECTIONS,
  TEST_NAME,
} from './harness.js';

describe('after the whole suite', () => {
  it('kuryr gc finds nothing left behind in Neutron or on the host', async () => {
    assert.deepEqual(await gcGarbage(), []);
  });

  it('no e2e-* network, subnet, subnetpool, port or security group is left in Neutron', async () => {
    for (const collection of TEST_MADE_COLLECTIONS) {
      const left = (await neutron.list(collection)).filter(isTestMade);
      assert.deepEqual(
        left.map((r) => r.name),
        [],
        collection,
      );
    }
  });

  it('no test container or network is left in Docker, and no kuryr veth or bridge leg on the host', async () => {
    const names = [
      ...(await docker('ps', '-a', '--format', '{{.Names}}')).split('\n'),
      ...(await docker('network', 'ls', '--format', '{{.Name}}')).split('\n'),
    ];
    assert.deepEqual(
      names.filter((n) => TEST_NAME.test(n)),
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
