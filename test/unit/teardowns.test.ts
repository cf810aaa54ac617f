// Background clean-up after `docker network rm` and `docker rm`: in order, failures logged (never
// thrown), `size` while anything is queued, `settled` waits for all of it; a network teardown waits
// for the port deletions queued before it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Teardowns } from '../../src/cnm/teardowns.js';

const port = (id: string, ip: string) => ({
  id,
  network_id: 'n1',
  fixed_ips: [{ subnet_id: 's1', ip_address: ip }],
});

describe('teardowns', () => {
  it('run one after another, in the order queued, and settle when all are done', async () => {
    const t = new Teardowns(() => assert.fail('nothing fails here'));
    const done: string[] = [];
    t.queue('network', async () => {
      await sleep(30);
      done.push('network');
    });
    t.queue('pool', async () => {
      done.push('pool');
    });
    assert.equal(t.size, 2);
    assert.deepEqual(done, []);
    await t.settled();
    assert.deepEqual(done, ['network', 'pool']);
    assert.equal(t.size, 0);
  });

  it('a failure is reported with what failed, and the next one still runs', async () => {
    const warnings: string[] = [];
    const t = new Teardowns((m, d) => warnings.push(`${m} ${JSON.stringify(d)}`));
    let ran = false;
    t.queue('deleting Neutron network n1', async () => {
      throw new Error('409 NetworkInUse');
    });
    t.queue('releasing pool p1', async () => {
      ran = true;
    });
    await t.settled();
    assert.equal(ran, true);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /deleting Neutron network n1 failed.*kuryr gc.*409 NetworkInUse/);
  });

  it('port deletions run in the background; a network teardown queued after them waits for them', async () => {
    const t = new Teardowns(() => assert.fail('nothing fails here'));
    const done: string[] = [];
    for (const [id, ip] of [
      ['p1', '10.0.0.5'],
      ['p2', '10.0.0.6'],
    ] as const) {
      t.deletePort(port(id, ip), `deleting ${id}`, async () => {
        await sleep(40);
        done.push(id);
      });
    }
    t.queue('network', async () => {
      done.push('network');
    });
    assert.equal(t.size, 3);
    await t.addressFreed('n1', '10.0.0.5');
    assert.ok(done.includes('p1'), 'its address is free once the port is gone');
    await t.addressFreed('n1', '10.0.0.9'); // held by nothing: at once
    await t.settled();
    assert.equal(done.at(-1), 'network', `the network last: ${done.join(', ')}`);
    assert.equal(t.size, 0);
  });

  it('a replayed deletion of a port being deleted joins the first; a failed one is reported', async () => {
    const warnings: string[] = [];
    const t = new Teardowns((m) => warnings.push(m));
    let runs = 0;
    const work = async () => {
      runs++;
      await sleep(20);
      throw new Error('Neutron 500');
    };
    t.deletePort(port('p1', '10.0.0.5'), 'deleting port p1', work);
    t.deletePort(port('p1', '10.0.0.5'), 'deleting port p1', work);
    await t.settled();
    assert.equal(runs, 1);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /deleting port p1 failed; 'kuryr gc'/);
    await t.addressFreed('n1', '10.0.0.5'); // over: resolves at once
  });
});
