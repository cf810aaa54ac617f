// vif_type "ovs" on Open vSwitch's userspace datapath: the container end of the veth gets tx offload
// off only when the bridge's datapath_type is netdev, the datapath type is asked once per bridge,
// and the external_ids are written key by key. ovs-vsctl and ethtool are fakes that log their
// arguments (no OVS, no root needed).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import {
  bridgeDatapathType,
  forgetDatapathTypes,
  identifyOvsPort,
  plugOvs,
  txOffloadOff,
} from '../../src/binding/ovs.js';
import type { Port } from '../../src/neutron/types.js';

const dir = mkdtempSync(join(tmpdir(), 'kuryr-netdev-'));
const log = join(dir, 'calls.log');

/** A fake command: logs "<name> <args>" and answers `get Bridge <br> datapath_type` from a table. */
function fake(name: string, datapaths: Record<string, string> = {}, fail = false): string {
  const file = join(dir, name);
  const cases = Object.entries(datapaths)
    .map(([br, type]) => `  "get Bridge ${br} datapath_type") echo '${type}' ;;`)
    .join('\n');
  writeFileSync(
    file,
    `#!/bin/sh\necho "${name} $*" >> ${log}\n${fail ? 'echo "boom" >&2; exit 1\n' : ''}` +
      `case "$*" in\n${cases}\n  "get Bridge "*) echo 'ovs-vsctl: no bridge named x' >&2; exit 1 ;;\nesac\n`,
  );
  chmodSync(file, 0o755);
  return file;
}
const calls = () => readFileSync(log, 'utf8').split('\n').filter(Boolean);

function port(): Port {
  return {
    id: randomUUID(),
    name: 'p',
    network_id: randomUUID(),
    mac_address: 'FA:16:3E:00:00:01',
    fixed_ips: [],
    device_id: 'ep1',
    device_owner: 'compute:kuryr',
    status: 'DOWN',
    project_id: 'p',
    'binding:vif_type': 'ovs',
    'binding:vif_details': { port_filter: true, connectivity: 'l2' },
    tags: [],
  };
}

describe('OVS plug on a netdev (userspace) bridge', () => {
  const vsctl = [fake('vsctl', { 'br-int': '"netdev"', 'br-sys': '""', 'br-k': 'system' })];
  const ethtool = [fake('ethtool')];
  beforeEach(() => {
    writeFileSync(log, '');
    forgetDatapathTypes();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('switches tx offload off on the container end, asking the datapath type once per bridge', async () => {
    const p = port();
    const opts = { bridge: 'br-int', endpointId: 'ep1', containerIface: 't_cX', vsctl, ethtool };
    await plugOvs(p, 'tapX', opts);
    await plugOvs(p, 'tapX', opts);
    const c = calls();
    assert.equal(c.filter((l) => l.includes('datapath_type')).length, 1, 'datapath type cached');
    assert.deepEqual(
      c.filter((l) => l.startsWith('ethtool')),
      ['ethtool -K t_cX tx off', 'ethtool -K t_cX tx off'],
    );
    // tx off before the port appears in the bridge: no frame leaves with offloads on
    assert.ok(c.indexOf('ethtool -K t_cX tx off') < c.findIndex((l) => l.includes('add-port')));
  });

  it('leaves offloads alone on kernel-datapath bridges ("" or system) and without a container end', async () => {
    for (const bridge of ['br-sys', 'br-k'])
      await plugOvs(port(), 'tapY', { bridge, endpointId: 'e', containerIface: 't_cY', vsctl, ethtool });
    await plugOvs(port(), 'tapZ', { bridge: 'br-int', endpointId: 'e', vsctl, ethtool });
    assert.deepEqual(
      calls().filter((l) => l.startsWith('ethtool')),
      [],
    );
  });

  it('writes external_ids key by key, never the whole map', async () => {
    const p = port();
    await plugOvs(p, 'tapX', { bridge: 'br-int', endpointId: 'ep1', containerIface: 't_cX', vsctl, ethtool });
    const add = calls().find((l) => l.includes('add-port')) ?? '';
    for (const kv of [
      `external_ids:iface-id=${p.id}`,
      'external_ids:attached-mac=fa:16:3e:00:00:01',
      'external_ids:iface-status=active',
      'external_ids:vm-uuid=ep1',
    ])
      assert.ok(add.includes(kv), `${kv} in ${add}`);
    assert.doesNotMatch(add, /external_ids=|external_ids \{/);
  });

  it('a port plugged before its endpoint exists gets vm-uuid later, key by key', async () => {
    const p = port();
    await plugOvs(p, 'tapX', { bridge: 'br-int', endpointId: '', containerIface: 't_cX', vsctl, ethtool });
    const add = calls().find((l) => l.includes('add-port')) ?? '';
    assert.doesNotMatch(add, /vm-uuid|vm-id/, 'no empty vm-uuid (OVSDB refuses it)');
    assert.match(add, new RegExp(`external_ids:iface-id=${p.id}`));
    await identifyOvsPort(p, 'tapX', 'ep9', { vsctl });
    await identifyOvsPort(p, 'tapX', '', { vsctl });
    const hybrid = { ...p, 'binding:vif_details': { ovs_hybrid_plug: true } };
    await identifyOvsPort(hybrid, 'tapX', 'ep9', { vsctl });
    assert.deepEqual(
      calls().filter((l) => l.includes(' set Interface ') && !l.includes('add-port')),
      [
        'vsctl --if-exists set Interface tapX external_ids:vm-uuid=ep9',
        `vsctl --if-exists set Interface qvo${p.id.slice(0, 11)} external_ids:vm-uuid=ep9 external_ids:vm-id=ep9`,
      ],
    );
  });

  it('a failed datapath lookup is not remembered', async () => {
    await assert.rejects(bridgeDatapathType(vsctl, 'br-none'), /OVS bridge x does not exist/);
    await assert.rejects(bridgeDatapathType(vsctl, 'br-none'), /OVS bridge x does not exist/);
    assert.equal(calls().filter((l) => l.includes('br-none')).length, 2);
    assert.equal(await bridgeDatapathType(vsctl, 'br-int'), 'netdev');
  });

  it('explains a missing or failing ethtool', async () => {
    await assert.rejects(txOffloadOff([join(dir, 'no-ethtool')], 't_c1'), /install ethtool/);
    await assert.rejects(
      txOffloadOff([fake('bad-ethtool', {}, true)], 't_c1'),
      /-K t_c1 tx off failed: boom/,
    );
  });
});
