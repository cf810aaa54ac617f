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

  it("a burst's quiet period grows with its containers (Docker still starts them); sequential starts barely move it", async () => {
    const tail = { perStartMs: 30, windowMs: 200, maxMs: 500 };
    const burst = new HostActivity(tail);
    const t0 = Date.now();
    let burstRanAt = 0;
    burst.afterQuiet(50, 10_000, () => {
      burstRanAt = Date.now() - t0;
    });
    for (let i = 0; i < 10; i++) burst.containerStarting();
    const sequential = new HostActivity(tail);
    let seqRanAt = 0;
    const s0 = Date.now();
    for (let i = 0; i < 3; i++) {
      sequential.containerStarting();
      await sleep(250); // beyond the window: each start is a burst of one
    }
    const s1 = Date.now();
    sequential.afterQuiet(50, 10_000, () => {
      seqRanAt = Date.now() - s1;
    });
    await sleep(500);
    // 10 starts: 50 ms + 9 × 30 ms = 320 ms of quiet after the last one.
    assert.ok(burstRanAt >= 310 && burstRanAt < 450, `burst: ran at ${burstRanAt} ms, wanted ~320`);
    // The last start was 250 ms ago, alone in its window: quiet already.
    assert.ok(seqRanAt < 80, `sequential: ran ${seqRanAt} ms after asking (${s1 - s0} ms of starts)`);
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
