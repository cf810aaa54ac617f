// Background clean-up after `docker network rm`: in order, failures logged (never thrown),
// `busy` while anything is queued, `settled` waits for all of it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Teardowns } from '../../src/cnm/teardowns.js';

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
    assert.equal(t.busy, true);
    assert.equal(t.size, 2);
    assert.deepEqual(done, []);
    await t.settled();
    assert.deepEqual(done, ['network', 'pool']);
    assert.equal(t.busy, false);
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
});
