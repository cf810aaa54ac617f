// vif_type "ovs" against a real ovsdb-server (Debian's openvswitch-switch), on a private database
// and socket with no ovs-vswitchd of its own, so ovs-vsctl runs with --no-wait and the test checks
// what the OVS agent and ovn-controller read: the ports and external_ids in OVSDB, the qbr/qvb/qvo
// links of the hybrid plug in the host namespace, and tx offload off on the container end on a
// netdev bridge. (Packets through a real vswitchd: backend-traffic.test.ts on the ovn/ovs
// backends.) Installs openvswitch-switch when missing (as root, with its services kept from
// starting) and cleans up all it made.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { forgetDatapathTypes, hybridNames, plugOvs, unplugOvs } from '../../src/binding/ovs.js';
import type { Port } from '../../src/neutron/types.js';

const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const POLICY_RC = '/usr/sbin/policy-rc.d';

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, maxBuffer: 16 << 20, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
        else resolve(stdout.trim());
      },
    );
  });
}

/** pid → name of every running Open vSwitch daemon (ovsdb-server, ovs-vswitchd, ...). */
function ovsProcesses(): Map<number, string> {
  const found = new Map<number, string>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const comm = readFileSync(`/proc/${d}/comm`, 'utf8').trim();
      if (/^ovs/.test(comm)) found.set(Number(d), comm);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** Installs openvswitch-switch if ovsdb-server is missing, without letting its daemons start. */
async function ensureOpenvswitch(): Promise<void> {
  if (existsSync('/usr/sbin/ovsdb-server') && existsSync(SCHEMA) && existsSync('/usr/bin/ovs-vsctl')) return;
  assert.equal(process.getuid?.(), 0, 'installing openvswitch-switch needs root');
  const before = ovsProcesses();
  // Debian's postinst starts the service through invoke-rc.d, which asks policy-rc.d: 101 = no.
  const ownPolicy = !existsSync(POLICY_RC);
  if (ownPolicy) writeFileSync(POLICY_RC, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    const apt = ['-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '-q', '--no-install-recommends'];
    try {
      await run('apt-get', [...apt, 'openvswitch-switch'], 600_000);
    } catch {
      await run('apt-get', ['update', '-q'], 600_000);
      await run('apt-get', [...apt, 'openvswitch-switch'], 600_000);
    }
  } finally {
    if (ownPolicy) rmSync(POLICY_RC, { force: true });
  }
  const started = [...ovsProcesses()].filter(([pid]) => !before.has(pid));
  assert.deepEqual(started, [], 'installing openvswitch-switch must not start any OVS daemon');
}

/** Parses ovs-vsctl's map syntax: {a="x", b=y}. */
function parseMap(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const body = text.trim().replace(/^\{|\}$/g, '');
  for (const m of body.matchAll(/([\w-]+)=("(?:[^"\\]|\\.)*"|[^,\s]*)/g)) {
    const [, k = '', v = ''] = m;
    out[k] = v.startsWith('"') ? (JSON.parse(v) as string) : v;
  }
  return out;
}

const exists = (dev: string) => existsSync(`/sys/class/net/${dev}`);
const masterOf = (dev: string) => {
  try {
    return basename(readlinkSync(`/sys/class/net/${dev}/master`));
  } catch {
    return undefined;
  }
};
const ifindex = (dev: string) => Number(readFileSync(`/sys/class/net/${dev}/ifindex`, 'utf8'));
const mtuOf = (dev: string) => Number(readFileSync(`/sys/class/net/${dev}/mtu`, 'utf8'));

interface IpLink {
  ifname: string;
  link?: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}
async function ipLink(dev: string): Promise<IpLink> {
  const [link] = JSON.parse(await run('ip', ['-d', '-j', 'link', 'show', 'dev', dev])) as IpLink[];
  assert.ok(link, `ip -d link show ${dev}`);
  return link;
}

function testPort(hybrid: boolean, extra: Record<string, unknown> = {}): Port {
  return {
    id: randomUUID(),
    name: 'kuryr-unbound-port',
    network_id: randomUUID(),
    mac_address: 'FA:16:3E:0A:0B:0C',
    fixed_ips: [],
    device_id: '',
    device_owner: 'compute:kuryr',
    status: 'DOWN',
    project_id: 'p',
    'binding:vif_type': 'ovs',
    'binding:vif_details': { port_filter: true, ovs_hybrid_plug: hybrid, ...extra },
    tags: [],
  };
}

describe('vif_type ovs against a real ovsdb-server', () => {
  const rand = randomBytes(4).toString('hex');
  const tapA = `kto${rand}a`; // not "tap*": the host's Linux bridge agent watches those
  const tapB = `kto${rand}b`;
  const tapC = `kto${rand}c`;
  const peer = (tap: string) => `ktp${tap.slice(3)}`;
  const otherBridge = `brkt${rand}`;
  const netdevBridge = `brnd${rand}`;
  const endpointId = randomBytes(32).toString('hex');
  const plain = testPort(false);
  const hybrid = testPort(true);
  const named = testPort(false, { bridge_name: otherBridge });
  let dir = '';
  let sock = '';
  let ovsdbPid = 0;
  let vsctl: string[] = [];
  const ovs = (...args: string[]) => run(vsctl[0] ?? 'ovs-vsctl', [...vsctl.slice(1), ...args]);
  const ports = async (bridge: string) => (await ovs('list-ports', bridge)).split('\n').filter(Boolean);
  const ids = async (iface: string) => parseMap(await ovs('get', 'Interface', iface, 'external_ids'));
  const interfaceRows = async (name: string) =>
    ovs('--bare', '--columns=_uuid', 'find', 'Interface', `name=${name}`);

  before(async () => {
    await ensureOpenvswitch();
    dir = mkdtempSync(join(tmpdir(), 'kuryr-ovs-'));
    const db = join(dir, 'conf.db');
    sock = join(dir, 'db.sock');
    const pidFile = join(dir, 'ovsdb-server.pid');
    await run('ovsdb-tool', ['create', db, SCHEMA]);
    await run('ovsdb-server', [
      db,
      `--remote=punix:${sock}`,
      `--unixctl=${join(dir, 'ovsdb-server.ctl')}`,
      `--pidfile=${pidFile}`,
      `--log-file=${join(dir, 'ovsdb-server.log')}`,
      '--detach',
      '--no-chdir',
    ]);
    ovsdbPid = Number(readFileSync(pidFile, 'utf8').trim());
    assert.ok(ovsdbPid > 0, 'ovsdb-server wrote its pid');
    vsctl = ['ovs-vsctl', `--db=unix:${sock}`, '--no-wait', '--timeout=10'];
    await ovs('init');
    await ovs('add-br', 'br-int', '--', 'add-br', otherBridge);
    for (const tap of [tapA, tapB, tapC]) {
      await run('ip', [
        'link',
        'add',
        tap,
        'mtu',
        '1450',
        'type',
        'veth',
        'peer',
        'name',
        peer(tap),
        'mtu',
        '1450',
      ]);
      await run('ip', ['link', 'set', 'dev', tap, 'up']);
    }
  });

  after(async () => {
    const links = [tapA, tapB, tapC].flatMap((t) => [t, peer(t)]);
    for (const p of [plain, hybrid, named]) links.push(...Object.values(hybridNames(p.id)));
    for (const dev of links)
      if (exists(dev)) await run('ip', ['link', 'del', 'dev', dev]).catch(() => undefined);
    if (ovsdbPid) {
      try {
        process.kill(ovsdbPid, 'SIGTERM');
      } catch {
        // already gone
      }
      for (let i = 0; i < 50 && existsSync(`/proc/${ovsdbPid}`); i++) await sleep(100);
      if (existsSync(`/proc/${ovsdbPid}`)) process.kill(ovsdbPid, 'SIGKILL');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    assert.equal(existsSync(`/proc/${ovsdbPid}`), false, 'our ovsdb-server is stopped');
    for (const dev of links) assert.equal(exists(dev), false, `${dev} removed`);
  });

  it('runs its own ovsdb-server', () => {
    assert.equal(ovsProcesses().get(ovsdbPid), 'ovsdb-server');
  });

  it('on a netdev bridge, switches tx offload off on the container end only', async () => {
    const txOn = async (dev: string) => /^tx-checksumming: on/m.test(await run('ethtool', ['-k', dev]));
    await ovs('add-br', netdevBridge, '--', 'set', 'Bridge', netdevBridge, 'datapath_type=netdev');
    forgetDatapathTypes();
    assert.ok(await txOn(peer(tapC)), 'veths start with tx offload on');
    await plugOvs(plain, tapC, { bridge: 'br-int', endpointId, vsctl, containerIface: peer(tapC) });
    assert.ok(await txOn(peer(tapC)), 'br-int has the default (kernel) datapath: offloads untouched');
    await unplugOvs(plain, tapC, { bridge: 'br-int', vsctl });
    await plugOvs(plain, tapC, { bridge: netdevBridge, endpointId, vsctl, containerIface: peer(tapC) });
    assert.equal(await txOn(peer(tapC)), false, 'container end: tx off');
    assert.ok(await txOn(tapC), 'host end untouched');
    await unplugOvs(plain, tapC, { bridge: netdevBridge, vsctl });
    assert.deepEqual(await ports(netdevBridge), []);
    assert.equal(await interfaceRows(tapC), '');
  });

  it('plugs the tap into br-int with the external_ids the OVS agent reads, idempotently', async () => {
    await plugOvs(plain, tapA, { bridge: 'br-int', endpointId, vsctl });
    const expected = {
      'attached-mac': 'fa:16:3e:0a:0b:0c',
      'iface-id': plain.id,
      'iface-status': 'active',
      owner: 'kuryr',
      'vm-uuid': endpointId,
    };
    assert.deepEqual(await ports('br-int'), [tapA]);
    assert.deepEqual(await ids(tapA), expected);
    await plugOvs(plain, tapA, { bridge: 'br-int', endpointId, vsctl });
    assert.deepEqual(await ports('br-int'), [tapA], 'plugged once');
    assert.deepEqual(await ids(tapA), expected);
    assert.equal(await ovs('port-to-br', tapA), 'br-int');
  });

  it('uses binding:vif_details.bridge_name over the configured bridge', async () => {
    await plugOvs(named, tapC, { bridge: 'br-int', endpointId, vsctl });
    assert.deepEqual(await ports(otherBridge), [tapC]);
    assert.deepEqual(await ports('br-int'), [tapA]);
    assert.equal((await ids(tapC))['iface-id'], named.id);
    await unplugOvs(named, tapC, { bridge: 'br-int', vsctl });
    assert.deepEqual(await ports(otherBridge), []);
    assert.equal(await interfaceRows(tapC), '');
  });

  it('unplugs the tap from OVS, idempotently, and leaves the tap to the caller', async () => {
    await unplugOvs(plain, tapA, { bridge: 'br-int', vsctl });
    assert.deepEqual(await ports('br-int'), []);
    assert.equal(await interfaceRows(tapA), '', 'no Interface row left');
    await unplugOvs(plain, tapA, { bridge: 'br-int', vsctl });
    await unplugOvs({ id: plain.id }, tapA, { bridge: 'br-int', vsctl });
    assert.ok(exists(tapA));
  });

  it('hybrid plug: tap in qbr, qvb<->qvo veth, qvo in br-int with vm-uuid and vm-id', async () => {
    const { qbr, qvb, qvo } = hybridNames(hybrid.id);
    assert.equal(qbr.length, 14);
    await plugOvs(hybrid, tapB, { bridge: 'br-int', endpointId, vsctl });
    for (const dev of [qbr, qvb, qvo]) assert.ok(exists(dev), `${dev} exists in /sys/class/net`);

    const br = await ipLink(qbr);
    assert.equal(br.linkinfo?.info_kind, 'bridge');
    assert.equal(br.linkinfo?.info_data?.forward_delay, 0);
    assert.equal(br.linkinfo?.info_data?.stp_state, 0);
    const vb = await ipLink(qvb);
    assert.equal(vb.linkinfo?.info_kind, 'veth');
    assert.equal(vb.link, qvo, 'qvb is the peer of qvo');
    assert.equal((await ipLink(qvo)).linkinfo?.info_kind, 'veth');
    for (const dev of [qbr, qvb, qvo, tapB]) assert.ok((await ipLink(dev)).flags.includes('UP'), `${dev} up`);
    assert.equal(masterOf(tapB), qbr);
    assert.equal(masterOf(qvb), qbr);
    assert.equal(masterOf(qvo), undefined);
    assert.equal(mtuOf(qvb), 1450, "qvb/qvo get the tap's MTU");
    assert.equal(mtuOf(qvo), 1450);

    const expected = {
      'attached-mac': 'fa:16:3e:0a:0b:0c',
      'iface-id': hybrid.id,
      'iface-status': 'active',
      owner: 'kuryr',
      'vm-id': endpointId,
      'vm-uuid': endpointId,
    };
    assert.deepEqual(await ports('br-int'), [qvo], 'only qvo is in OVS, not the tap');
    assert.deepEqual(await ids(qvo), expected);

    const before = [qbr, qvb, qvo].map(ifindex);
    await plugOvs(hybrid, tapB, { bridge: 'br-int', endpointId, vsctl });
    assert.deepEqual([qbr, qvb, qvo].map(ifindex), before, 're-plug keeps the same links');
    assert.deepEqual(await ports('br-int'), [qvo]);
    assert.deepEqual(await ids(qvo), expected);
    assert.equal(masterOf(tapB), qbr);
  });

  it('hybrid unplug removes qvo from OVS and deletes qvb/qvo/qbr, idempotently', async () => {
    const { qbr, qvb, qvo } = hybridNames(hybrid.id);
    await unplugOvs(hybrid, tapB, { bridge: 'br-int', vsctl });
    assert.deepEqual(await ports('br-int'), []);
    assert.equal(await interfaceRows(qvo), '');
    for (const dev of [qbr, qvb, qvo]) assert.equal(exists(dev), false, `${dev} deleted`);
    assert.ok(exists(tapB), 'the tap stays for the caller');
    assert.equal(masterOf(tapB), undefined, 'released from qbr');
    await unplugOvs(hybrid, tapB, { bridge: 'br-int', vsctl });
    // Without vif_details (port gone from Neutron) the hybrid leftovers are still found by name.
    await plugOvs(hybrid, tapB, { bridge: 'br-int', endpointId, vsctl });
    await unplugOvs({ id: hybrid.id }, tapB, { bridge: 'br-int', vsctl });
    assert.deepEqual(await ports('br-int'), []);
    for (const dev of [qbr, qvb, qvo]) assert.equal(exists(dev), false, `${dev} deleted`);
  });

  it('switching a port from hybrid to direct plug removes the hybrid leftovers', async () => {
    const { qbr, qvb, qvo } = hybridNames(hybrid.id);
    await plugOvs(hybrid, tapB, { bridge: 'br-int', endpointId, vsctl });
    const direct = { ...hybrid, 'binding:vif_details': { port_filter: true, ovs_hybrid_plug: false } };
    await plugOvs(direct, tapB, { bridge: 'br-int', endpointId, vsctl });
    assert.deepEqual(await ports('br-int'), [tapB]);
    for (const dev of [qbr, qvb, qvo]) assert.equal(exists(dev), false, `${dev} deleted`);
    assert.equal(masterOf(tapB), undefined);
    await plugOvs(hybrid, tapB, { bridge: 'br-int', endpointId, vsctl });
    assert.deepEqual(await ports('br-int'), [qvo], 'and back: the tap leaves OVS for qbr');
    assert.equal(masterOf(tapB), qbr);
    await unplugOvs(hybrid, tapB, { bridge: 'br-int', vsctl });
    assert.deepEqual(await ports('br-int'), []);
  });

  it('explains failures: missing bridge, no ovsdb-server, no ovs-vsctl', async () => {
    await assert.rejects(
      plugOvs(plain, tapA, { bridge: `brno${rand}`, endpointId, vsctl }),
      /OVS bridge brno\w+ does not exist.*neutron-openvswitch-agent/,
    );
    assert.equal(await interfaceRows(tapA), '');
    await assert.rejects(
      plugOvs(plain, tapA, {
        bridge: 'br-int',
        endpointId,
        vsctl: ['ovs-vsctl', `--db=unix:${join(dir, 'nothing.sock')}`, '--no-wait', '--timeout=2'],
      }),
      /Is ovsdb-server running/,
    );
    await assert.rejects(
      unplugOvs(plain, tapA, { bridge: 'br-int', vsctl: [`/nonexistent/ovs-vsctl-${rand}`] }),
      /ovs-vsctl-\w+ not found: install openvswitch-switch/,
    );
  });
});
