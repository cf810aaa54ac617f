// Run by scripts/test.sh before each round's suites (not a test file): removes what an earlier run
// left when it was killed half-way (a session that ended mid-suite, a machine whose disk is reused
// by CI). The suites assume a clean start: zz-leaks asserts that nothing of theirs is left, and
// tests reuse the same CIDRs. Only test-made things go: test-named Docker containers and networks,
// the e2e managed plugin, e2e-* Neutron resources, and what kuryr's own gc calls garbage.
import { removeGarbage } from '../../src/ops/gc.js';
import {
  docker,
  gcGarbage,
  isTestMade,
  neutron,
  startKuryr,
  TEST_MADE_COLLECTIONS,
  TEST_NAME,
} from './harness.js';

const E2E_PLUGIN = 'kuryr/kuryr-e2e:latest';
const say = (msg: string) => process.stderr.write(`[reset] ${msg}\n`);

const lines = (out: string) => out.split('\n').filter(Boolean);

async function resetDocker(): Promise<void> {
  const containers = lines(await docker('ps', '-a', '--format', '{{.Names}}')).filter((n) =>
    TEST_NAME.test(n),
  );
  const networks = lines(await docker('network', 'ls', '--format', '{{.Name}}')).filter((n) =>
    TEST_NAME.test(n),
  );
  if (!containers.length && !networks.length) return;
  say(
    `removing ${containers.length} test container(s) and ${networks.length} test network(s) left by an earlier run`,
  );
  // kuryr answers Docker's Leave/DeleteEndpoint/DeleteNetwork calls, so Neutron's side goes too.
  const kuryr = await startKuryr('[vif_pool]\nenabled = false');
  try {
    for (const c of containers)
      await docker('rm', '-f', c).catch((e: Error) => say(`docker rm ${c}: ${e.message}`));
    for (const n of networks)
      await docker('network', 'rm', n).catch((e: Error) => say(`network rm ${n}: ${e.message}`));
  } finally {
    await kuryr.stop();
  }
}

async function resetNeutron(): Promise<void> {
  const garbage = await gcGarbage();
  if (garbage.length) {
    say(`kuryr gc: removing ${garbage.length} leftover(s)`);
    const { failed } = await removeGarbage(neutron, garbage);
    for (const f of failed) say(`gc could not remove ${f.item.kind} ${f.item.id}: ${f.error}`);
  }
  // Ports first: a network or subnet with ports cannot go.
  for (const collection of TEST_MADE_COLLECTIONS) {
    for (const r of (await neutron.list(collection)).filter(isTestMade)) {
      say(`deleting ${collection} ${r.name} (${r.id})`);
      await neutron.delete(collection, r.id).catch((e: Error) => say(`  failed: ${e.message}`));
    }
  }
}

await resetDocker();
// After its networks (their removal needs it enabled).
await docker('plugin', 'rm', '-f', E2E_PLUGIN).catch(() => undefined);
await resetNeutron();
