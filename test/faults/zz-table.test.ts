// Runs last: prints the fault suite's table (scenario, result, time to recover, resources leaked)
// and checks that every scenario reported, and that none leaked anything.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { readRows, table } from './report.js';

// Each file's scenarios. scripts/test.sh runs some files only on some rounds: KURYR_FAULTS_FILES
// (file names without .test.ts) says which ran; unset, all of them did.
const SCENARIOS: Record<string, string[]> = {
  recovery: ['Neutron stopped during docker run', 'driver SIGKILLed during 20 parallel docker run -d'],
  'flaky-neutron': [
    'Neutron answering 503s (every 3rd GET/PUT/DELETE)',
    'port POST answered after the deadline',
  ],
  'dockerd-restart': [
    'dockerd restarted under --restart always containers',
    'dockerd restarted under --restart always containers (request replay on)',
  ],
  'agent-down': ['L2 agent stopped'],
  keystone: ['Keystone token near expiry, then Keystone down'],
  'hostile-input': ['hostile input on all 21 endpoints'],
};
const ran = process.env.KURYR_FAULTS_FILES?.split(/\s+/).filter(Boolean) ?? Object.keys(SCENARIOS);
const EXPECTED = ran.flatMap((f) => {
  const s = SCENARIOS[f];
  assert.ok(s, `KURYR_FAULTS_FILES names ${f}, which is not a fault file`);
  return s;
});

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
