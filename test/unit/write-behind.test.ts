// WriteBehind: background writes (a warm port's endpoint identity): ordered per port, retried on
// 5xx and dropped connections, never on 4xx, silent when the port is gone, awaited by `settled`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostActivity } from '../../src/cnm/host-activity.js';
import { WriteBehind } from '../../src/cnm/write-behind.js';
import { NeutronApiError, NeutronUnavailableError } from '../../src/neutron/errors.js';

const view = () => new WriteBehind();
const apiError = (status: number, type: string) =>
  new NeutronApiError(status, type, 'x', 'PUT', '/v2.0/ports/p');

describe('write-behind', () => {
  it('retries a 503 and a dropped connection, then succeeds; settled() waits for it', async () => {
    const v = view();
    const failures = [
      apiError(503, 'ServiceUnavailable'),
      new NeutronUnavailableError('PUT', '/p', 'ECONNRESET'),
    ];
    let attempts = 0;
    const warnings: string[] = [];
    v.enqueue(
      'p1',
      'recording',
      async () => {
        attempts++;
        const err = failures.shift();
        if (err) throw err;
      },
      (m) => warnings.push(m),
    );
    await v.settled('p1');
    assert.equal(attempts, 3);
    assert.deepEqual(warnings, []);
  });

  it('a delayed write waits its time, but settled() starts it at once', async () => {
    const v = view();
    let ran = 0;
    v.enqueue(
      'p4',
      'later',
      async () => void ran++,
      () => undefined,
      60_000,
    );
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(ran, 0, 'not yet');
    const t0 = Date.now();
    await v.settled('p4');
    assert.equal(ran, 1);
    assert.ok(Date.now() - t0 < 1000, 'did not wait for the delay');
  });

  it('cancel() drops a write not yet started, at once, and waits for one in flight', async () => {
    const v = view();
    let ran = 0;
    v.enqueue(
      'p5',
      'later',
      async () => void ran++,
      () => undefined,
      60_000,
    );
    const t0 = Date.now();
    await v.cancel('p5');
    assert.equal(ran, 0, 'dropped');
    assert.ok(Date.now() - t0 < 1000, 'did not wait for the delay');
    let finished = false;
    v.enqueue(
      'p6',
      'now',
      async () => {
        await new Promise((r) => setTimeout(r, 100));
        finished = true;
      },
      () => undefined,
    );
    await new Promise((r) => setTimeout(r, 20)); // in flight
    await v.cancel('p6');
    assert.ok(finished, 'the write in flight was waited for');
    let later = 0;
    v.enqueue(
      'p5',
      'after the cancel',
      async () => void later++,
      () => undefined,
    );
    await v.settled('p5');
    assert.equal(later, 1, 'writes queued after a cancel run');
  });

  it('a delayed write waits until starts on the host pause (the clock the warm pool shares)', async () => {
    const activity = new HostActivity();
    const v = new WriteBehind(activity);
    let ran = 0;
    v.enqueue(
      'p7',
      'after the burst',
      async () => void ran++,
      () => undefined,
      100,
    );
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 60));
      activity.started(); // another start (a warm-pool take)
    }
    await new Promise((r) => setTimeout(r, 60)); // 240 ms after queueing, 60 after the last start
    assert.equal(ran, 0, 'not during the burst');
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(ran, 1, 'once the starts paused');
  });

  it('writes due together (a burst held them to their bound) go to Neutron a few at a time', async () => {
    const v = view();
    let inFlight = 0;
    let most = 0;
    for (let i = 0; i < 12; i++)
      v.enqueue(
        `p${i}`,
        'recording',
        async () => {
          most = Math.max(most, ++inFlight);
          await new Promise((r) => setTimeout(r, 20));
          inFlight--;
        },
        () => undefined,
      );
    await v.settleAll();
    assert.ok(most > 1 && most <= 4, `at most 4 in flight (saw ${most})`);
  });

  it('gives up on a 4xx at once and says what failed', async () => {
    const v = view();
    let attempts = 0;
    const warnings: string[] = [];
    v.enqueue(
      'p2',
      'recording endpoint e on port p2',
      async () => {
        attempts++;
        throw apiError(409, 'Conflict');
      },
      (m) => warnings.push(m),
    );
    await v.settled('p2');
    assert.equal(attempts, 1);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /recording endpoint e on port p2 failed: Neutron 409 Conflict/);
  });

  it('is silent when the port is gone (404), and keeps writes to one port in order', async () => {
    const v = view();
    const order: string[] = [];
    const warnings: string[] = [];
    v.enqueue(
      'p3',
      'first',
      async () => {
        await new Promise((r) => setTimeout(r, 30));
        order.push('first');
      },
      (m) => warnings.push(m),
    );
    await new Promise((r) => setTimeout(r, 10)); // the first is in flight
    v.enqueue(
      'p3',
      'second',
      async () => {
        order.push('second');
        throw apiError(404, 'PortNotFound');
      },
      (m) => warnings.push(m),
    );
    await v.settleAll();
    assert.deepEqual(order, ['first', 'second']);
    assert.deepEqual(warnings, []);
  });

  it('a newer write replaces one not yet started (a recycled port taken again before its reset), at once', async () => {
    const activity = new HostActivity();
    const v = new WriteBehind(activity);
    const order: string[] = [];
    v.enqueue(
      'p8',
      'reset',
      async () => void order.push('reset'),
      () => undefined,
      60_000,
      false,
    );
    let quiet = false;
    activity.afterQuiet(50, 10_000, () => {
      quiet = true;
    });
    await new Promise((r) => setTimeout(r, 80));
    assert.ok(quiet, 'a reset is no start: the host stayed quiet');
    const t0 = Date.now();
    v.enqueue(
      'p8',
      'identity',
      async () => void order.push('identity'),
      () => undefined,
    );
    await v.settled('p8');
    assert.deepEqual(order, ['identity'], 'the reset was never written');
    assert.ok(Date.now() - t0 < 1_000, 'the replaced write did not hold the newer one up');
  });
});
