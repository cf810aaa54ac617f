// HostActivity: background work runs once starts pause, never later than its bound, and not at
// all once cancelled.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HostBinder } from '../../src/binding/index.js';
import type { Catalog, NeutronReader } from '../../src/cnm/catalog.js';
import { HostActivity } from '../../src/cnm/host-activity.js';
import { PortBinding } from '../../src/cnm/port-binding.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('host activity', () => {
  it('runs after a quiet period, pushed back by each start', async () => {
    const a = new HostActivity();
    let ran = 0;
    a.afterQuiet(80, 10_000, () => void ran++);
    for (let i = 0; i < 3; i++) {
      await sleep(50);
      a.started();
    }
    assert.equal(ran, 0, '150 ms of starts, never 80 ms quiet');
    await sleep(130);
    assert.equal(ran, 1, 'once the starts paused');
  });

  it("a burst's quiet period grows with its containers (Docker still starts them)", async () => {
    const burst = new HostActivity({ perStartMs: 30, gapMs: 25, maxMs: 500 });
    const t0 = Date.now();
    let ranAt = 0;
    burst.afterQuiet(50, 10_000, () => {
      ranAt = Date.now() - t0;
    });
    for (let i = 0; i < 10; i++) burst.containerStarting();
    await sleep(700);
    // 10 starts: 50 ms + 9 × 30 ms = 320 ms of quiet after the last one.
    assert.ok(ranAt >= 300 && ranAt < 650, `ran at ${ranAt} ms, wanted ~320`);
  });

  it('starts one by one, slower than the burst gap, add no tail: a steady stream just slower than the quiet period is not held back', async () => {
    // Each start is followed by 70 ms of quiet, enough for 50 ms: without a tail the work runs
    // after the first start. A tail counting these starts (3 × 30 ms) would outlast every gap and
    // hold the work until its bound.
    const a = new HostActivity({ perStartMs: 30, gapMs: 25, maxMs: 500 });
    const t0 = Date.now();
    let ranAt = 0;
    for (let i = 0; i < 3; i++) {
      a.containerStarting();
      await sleep(70);
    }
    a.afterQuiet(50, 2_000, () => {
      ranAt = Date.now() - t0;
    });
    for (let i = 0; i < 8; i++) {
      a.containerStarting();
      await sleep(70);
    }
    await sleep(100);
    assert.ok(ranAt > 0 && ranAt < 450, `ran at ${ranAt} ms: held back by starts that were no burst`);
  });

  it('a steady stream of starts does not starve it past its bound', async () => {
    const a = new HostActivity();
    let ranAt = 0;
    const t0 = Date.now();
    a.afterQuiet(60, 200, () => {
      ranAt = Date.now() - t0;
    });
    while (Date.now() - t0 < 400) {
      a.started();
      await sleep(20);
    }
    assert.ok(ranAt >= 190 && ranAt < 320, `ran at ${ranAt} ms, bound 200 ms`);
  });

  it('a start waiting for its port is no pause, however long it waits', async () => {
    const a = new HostActivity();
    let ran = 0;
    a.afterQuiet(50, 10_000, () => void ran++);
    const waited = a.during(sleep(200).then(() => 'port'));
    await sleep(150);
    assert.equal(ran, 0, 'three quiet periods long, but a start was waiting');
    assert.equal(await waited, 'port', 'the wait gives its result through');
    await sleep(30);
    assert.equal(ran, 0, 'the wait ending is a start doing something');
    await sleep(70);
    assert.equal(ran, 1, 'then the quiet period');
  });

  it('a start waiting for the agent to wire its port is no pause; the pool watching its warm ports is', async () => {
    const a = new HostActivity();
    let status = 'BUILD';
    const reader = {
      list: async () => [{ id: 'p1', status }],
      get: async () => ({ id: 'p1', status }),
    } as unknown as NeutronReader;
    const ports = new PortBinding({ reader } as unknown as Catalog, {} as HostBinder, 'h', a);
    let ran = 0;
    a.afterQuiet(50, 10_000, () => void ran++);
    const poolWatch = ports.active.wait('p1', 5_000);
    await sleep(100);
    assert.equal(ran, 1, 'the pool watching its warm port wire is background work, not a start');
    a.afterQuiet(50, 10_000, () => void ran++);
    const join = ports.startWaitsActive('p1', 5_000);
    await sleep(400);
    assert.equal(ran, 1, 'the port was still BUILD: a start was waiting');
    status = 'ACTIVE';
    assert.equal(await join, 'ACTIVE');
    assert.equal(await poolWatch, 'ACTIVE');
    await sleep(100);
    assert.equal(ran, 2, 'once the port is wired and the quiet period has passed');
  });

  it('cancelled, it never runs', async () => {
    const a = new HostActivity();
    let ran = 0;
    const cancel = a.afterQuiet(30, 1_000, () => void ran++);
    await sleep(10);
    cancel();
    await sleep(80);
    assert.equal(ran, 0);
  });
});
