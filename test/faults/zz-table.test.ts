// Runs last: prints the fault suite's table (scenario, result, time to recover, resources leaked)
// and checks that every scenario reported, and that none leaked anything.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { readRows, table } from './report.js';

const EXPECTED = [
  'Neutron stopped during docker run',
  'Neutron answering 503s (every 3rd GET/PUT/DELETE)',
  'port POST answered after the deadline',
  'driver SIGKILLed during 20 parallel docker run -d',
  'dockerd restarted under --restart always containers',
  'dockerd restarted under --restart always containers (request replay on)',
  'L2 agent stopped',
  'Keystone token near expiry, then Keystone down',
  'hostile input on all 21 endpoints',
];

it('every fault scenario reported, with nothing leaked', () => {
  const rows = readRows();
  process.stdout.write(`\n${table(rows)}\n\n`);
  for (const s of EXPECTED)
    assert.ok(
      rows.some((r) => r.scenario === s),
      `no row for "${s}"`,
    );
  assert.deepEqual(
    rows.filter((r) => r.leaked !== 0 && r.leaked !== '–').map((r) => r.scenario),
    [],
  );
});
