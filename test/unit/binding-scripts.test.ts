// kuryr-lib compatible binding scripts: real shell scripts in a temp bindir record their argv.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  hasScript,
  pythonRepr,
  runBindScript,
  runUnbindScript,
  vifDetailsArg,
} from '../../src/binding/scripts.js';
import type { Port } from '../../src/neutron/types.js';

const PORT_ID = '5e2a8c1f-3b4d-4e6f-8a9b-0c1d2e3f4a5b';
const NET_ID = '9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a';
const PROJECT = 'c0ffee00c0ffee00c0ffee00c0ffee00';
const EID = 'ab'.repeat(32);
const TAP = 'tap5e2a8c1f-3b';
const MAC = 'fa:16:3e:12:34:56';

function port(vifType: string | undefined, details?: Record<string, unknown>): Port {
  return {
    id: PORT_ID,
    name: 'kuryr-unbound-port',
    network_id: NET_ID,
    mac_address: MAC,
    fixed_ips: [],
    device_id: EID,
    device_owner: 'compute:kuryr',
    status: 'DOWN',
    project_id: PROJECT,
    'binding:vif_type': vifType,
    'binding:vif_details': details,
    tags: [],
  };
}

describe('binding scripts (kuryr-lib bindir)', () => {
  let bindir = '';
  const argvOf = (name: string) =>
    readFileSync(join(bindir, `argv.${name}`), 'utf8')
      .split('\0')
      .slice(0, -1);
  const script = (name: string, body: string, mode = 0o755) =>
    writeFileSync(join(bindir, name), `#!/bin/bash\n${body}\n`, { mode });

  before(() => {
    bindir = mkdtempSync(join(tmpdir(), 'kuryr-bindir-'));
    // Records its argv NUL-separated, and answers like kuryr-lib's `ovs` script decides hybrid.
    script(
      'ovs',
      `printf '%s\\0' "$@" > "$(dirname "$0")/argv.ovs"
HYBRID_PLUG="'ovs_hybrid_plug': True"
case $1 in
  bind) d=$8 ;;
  unbind) d=$6 ;;
esac
if [ "\${d/$HYBRID_PLUG}" = "$d" ]; then echo plain; else echo hybrid; fi`,
    );
    script('unbound', `printf '%s\\0' "$@" > "$(dirname "$0")/argv.unbound"`);
    script(
      'failing',
      'echo "some progress"\necho "first line" >&2\necho "ovs-vsctl: no bridge named br-int" >&2\nexit 3',
    );
    script('slow', `sleep 30 & echo $! > "$(dirname "$0")/slow.pid"\nwait`);
    script('noexec', 'exit 0', 0o644);
  });
  after(() => {
    const pidFile = join(bindir, 'slow.pid');
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
      } catch {
        // already gone, as it should be
      }
    }
    rmSync(bindir, { recursive: true, force: true });
  });

  it('renders vif_details as Python repr, wrapped in double quotes like kuryr-lib', () => {
    assert.equal(
      vifDetailsArg({ port_filter: true, ovs_hybrid_plug: false, bridge_name: 'br-int', x: null }),
      `"{'port_filter': True, 'ovs_hybrid_plug': False, 'bridge_name': 'br-int', 'x': None}"`,
    );
    assert.equal(vifDetailsArg(undefined), 'None');
    assert.equal(vifDetailsArg({}), 'None');
    assert.equal(
      pythonRepr({ a: [1, 2.5, 'x'], b: { c: "it's" }, d: 'q"\'', e: 'tab\there\\', f: 1e-5, g: 1.5e-7 }),
      `{'a': [1, 2.5, 'x'], 'b': {'c': "it's"}, 'd': 'q"\\'', 'e': 'tab\\there\\\\', 'f': 1e-05, 'g': 1.5e-07}`,
    );
    assert.equal(pythonRepr(0.0001), '0.0001');
    assert.equal(pythonRepr(-3), '-3');
  });

  it('hasScript finds scripts by vif_type and refuses paths', () => {
    assert.equal(hasScript(bindir, 'ovs'), true);
    assert.equal(hasScript(bindir, 'vhostuser'), false);
    assert.equal(hasScript(bindir, '../etc'), false);
    assert.equal(hasScript(bindir, '..'), false);
    assert.equal(hasScript(join(bindir, 'nope'), 'ovs'), false);
  });

  it('bind: <vif_type> bind <port> <tap> <endpoint> <mac> <network> <project> <details>', async () => {
    const details = { port_filter: true, ovs_hybrid_plug: true, datapath_type: 'system' };
    const res = await runBindScript(port('ovs', details), TAP, { bindir, endpointId: EID });
    assert.deepEqual(argvOf('ovs'), [
      'bind',
      PORT_ID,
      TAP,
      EID,
      MAC,
      NET_ID,
      PROJECT,
      `"{'port_filter': True, 'ovs_hybrid_plug': True, 'datapath_type': 'system'}"`,
    ]);
    assert.equal(res.stdout.trim(), 'hybrid', "kuryr-lib's `ovs` script sees the hybrid plug");

    const plain = await runBindScript(port('ovs', { port_filter: true, ovs_hybrid_plug: false }), TAP, {
      bindir,
      endpointId: EID,
    });
    assert.equal(plain.stdout.trim(), 'plain');
  });

  it('unbind: <vif_type> unbind <port> <tap> <endpoint> <mac> <details> <network>', async () => {
    const res = await runUnbindScript(port('ovs', { ovs_hybrid_plug: true }), TAP, {
      bindir,
      endpointId: EID,
    });
    assert.deepEqual(argvOf('ovs'), [
      'unbind',
      PORT_ID,
      TAP,
      EID,
      MAC,
      `"{'ovs_hybrid_plug': True}"`,
      NET_ID,
    ]);
    assert.equal(res.stdout.trim(), 'hybrid');
  });

  it('a port without vif_type or vif_details runs the unbound script with details None', async () => {
    await runBindScript(port(undefined), TAP, { bindir, endpointId: EID });
    assert.deepEqual(argvOf('unbound'), ['bind', PORT_ID, TAP, EID, MAC, NET_ID, PROJECT, 'None']);
  });

  it('a missing script names the vif_type, the path and the bindir option', async () => {
    await assert.rejects(runBindScript(port('vhostuser'), TAP, { bindir, endpointId: EID }), (err: Error) => {
      assert.match(err.message, /binding:vif_type 'vhostuser'/);
      assert.ok(err.message.includes(join(bindir, 'vhostuser')), err.message);
      assert.match(err.message, /\[DEFAULT\] bindir/);
      return true;
    });
  });

  it('a failing script reports its exit code and the tail of its stderr', async () => {
    await assert.rejects(runUnbindScript(port('failing'), TAP, { bindir, endpointId: EID }), (err: Error) => {
      assert.match(err.message, /failed with exit code 3/);
      assert.match(err.message, /first line\novs-vsctl: no bridge named br-int$/);
      assert.ok(err.message.includes(join(bindir, 'failing')), err.message);
      assert.doesNotMatch(err.message, /some progress/, 'stderr is preferred over stdout');
      return true;
    });
  });

  it('a script that is not executable says so', async () => {
    await assert.rejects(runBindScript(port('noexec'), TAP, { bindir, endpointId: EID }), /not executable/);
  });

  it('a script that hangs is killed with its children after the timeout', async () => {
    const started = Date.now();
    await assert.rejects(
      runBindScript(port('slow'), TAP, { bindir, endpointId: EID, timeoutMs: 500 }),
      /did not finish within 0\.5 s and was killed/,
    );
    const took = Date.now() - started;
    assert.ok(took >= 450 && took < 5000, `timed out after ${took} ms`);
    const sleeper = Number(readFileSync(join(bindir, 'slow.pid'), 'utf8'));
    assert.ok(sleeper > 0);
    // The script's own child (sleep 30) dies with it: gone or a zombie about to be reaped.
    const deadline = Date.now() + 3000;
    const alive = () => {
      try {
        return !/\) Z /.test(readFileSync(`/proc/${sleeper}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    while (alive() && Date.now() < deadline) await sleep(50);
    assert.equal(alive(), false, `the script's child ${sleeper} was killed`);
  });
});
