// vif_type "ovs" (ML2/openvswitch): the host end of the veth goes into the integration bridge as an
// OVS port whose Interface carries external_ids:iface-id=<port id>; that is how
// neutron-openvswitch-agent finds the port, tags it with the network's local VLAN and reports it
// up. With the iptables_hybrid firewall Neutron asks for the "hybrid plug" (vif_details
// ovs_hybrid_plug=true), as Nova/os-vif and kuryr-lib's libexec `ovs` script do it: the tap goes
// into a per-port Linux bridge qbr<port[:11]> (where iptables can filter), joined to br-int by a
// veth pair qvb<port[:11]> (in qbr) <-> qvo<port[:11]> (the OVS port carrying the external_ids).
// ML2/OVN binds ports with vif_type "ovs" too: ovn-controller claims the Interface whose
// external_ids:iface-id is the port's id, so the same plug serves both.
//
// On a bridge of Open vSwitch's userspace datapath (datapath_type=netdev) the veth is read with
// AF_PACKET, and frames the kernel sends with partial checksums or GSO arrive broken (ping works,
// TCP and UDP do not), so the container end gets tx offload switched off, as OVS's and OVN's own
// tests do, and only on such a bridge: the kernel datapath handles offloads fine.
import { type ExecFileException, execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Port } from '../neutron/types.js';
import { DriverError } from '../util/errors.js';
import { deleteLink, HostNetworkError, linkExists, runIpBatch } from './ip.js';

/** How ovs-vsctl is run on a real OVS host: it waits (at most 10 s) for ovs-vswitchd to apply. */
export const DEFAULT_VSCTL: readonly string[] = ['ovs-vsctl', '--timeout=10'];
const VSCTL_TIMEOUT_MS = 20_000;
/** How offloads are switched off: ethtool (ioctl SIOCETHTOOL; iproute2 has no equivalent). */
export const DEFAULT_ETHTOOL: readonly string[] = ['ethtool'];

export class OvsError extends DriverError {}

export interface OvsOptions {
  /** OVS bridge the port goes into when vif_details has no bridge_name, e.g. [binding] ovs_bridge. */
  bridge: string;
  /** ovs-vsctl and its global options, e.g. ['ovs-vsctl', '--db=unix:/x.sock', '--no-wait']. */
  vsctl?: readonly string[];
}

export interface OvsPlugOptions extends OvsOptions {
  /** Docker's endpoint ID: kuryr-lib's external_ids:vm-uuid / vm-id. */
  endpointId: string;
  /** The container end of the veth: gets tx offload off when the bridge is netdev. */
  containerIface?: string;
  /** ethtool and its global options (tests). */
  ethtool?: readonly string[];
}

/** The bridge Neutron named for the port (vif_details.bridge_name), else the configured one. */
export function ovsBridgeName(vifDetails: Record<string, unknown> | undefined, fallback: string): string {
  const named = vifDetails?.bridge_name;
  return typeof named === 'string' && named ? named : fallback;
}

export function isHybridPlug(vifDetails: Record<string, unknown> | undefined): boolean {
  return vifDetails?.ovs_hybrid_plug === true;
}

export function hybridNames(portId: string): { qbr: string; qvb: string; qvo: string } {
  const id = portId.slice(0, 11);
  return { qbr: `qbr${id}`, qvb: `qvb${id}`, qvo: `qvo${id}` };
}

/** Turns ovs-vsctl's failure output into what failed and what to do. */
function explainVsctl(cmd: readonly string[], err: ExecFileException, stderr: string) {
  const [bin = 'ovs-vsctl'] = cmd;
  const out = stderr.trim();
  if (err.code === 'ENOENT') {
    return `${bin} not found: install openvswitch-switch (Debian/Ubuntu) or openvswitch (RHEL) on this host`;
  }
  const what = `${cmd.join(' ')} failed`;
  if (err.killed) {
    return (
      `${what}: no answer within ${VSCTL_TIMEOUT_MS / 1000} s. Is ovs-vswitchd running? ` +
      `(ovs-vsctl waits for it to apply each change unless --no-wait is given)`
    );
  }
  if (/database connection failed|Connection refused|No such file or directory/i.test(out)) {
    return `${what}: ${out}. Is ovsdb-server running (service openvswitch-switch start)?`;
  }
  if (/timeout|Alarm clock/i.test(out) || err.signal === 'SIGALRM') {
    return `${what}: ${out || 'timed out'}. Is ovs-vswitchd running (service openvswitch-switch start)?`;
  }
  const bridge = /no bridge named (\S+)/.exec(out);
  if (bridge) {
    return (
      `${what}: OVS bridge ${bridge[1]} does not exist. Is neutron-openvswitch-agent running on this host, ` +
      `and does its integration bridge match [binding] ovs_bridge / the port's binding:vif_details.bridge_name?`
    );
  }
  return `${what}: ${out || err.message}`;
}

/** Runs ovs-vsctl (with the configured prefix) and returns its stdout. */
export function runVsctl(vsctl: readonly string[], args: string[]): Promise<string> {
  const [bin, ...global] = vsctl;
  if (!bin) return Promise.reject(new OvsError('empty ovs-vsctl command'));
  const cmd = [bin, ...global, ...args];
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      [...global, ...args],
      { timeout: VSCTL_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) reject(new OvsError(explainVsctl(cmd, err, stderr)));
        else resolve(stdout);
      },
    );
  });
}

/** Per OVS database and bridge: its datapath_type ("" = the kernel's "system"). */
const datapathTypes = new Map<string, Promise<string>>();

/**
 * The bridge's datapath_type, asked once per bridge (a bridge keeps its datapath while it
 * exists); a failed lookup is not remembered.
 */
export function bridgeDatapathType(vsctl: readonly string[], bridge: string): Promise<string> {
  const key = `${vsctl.join(' ')}\n${bridge}`;
  let known = datapathTypes.get(key);
  if (!known) {
    known = runVsctl(vsctl, ['get', 'Bridge', bridge, 'datapath_type']).then((out) =>
      out.trim().replace(/^"(.*)"$/, '$1'),
    );
    datapathTypes.set(key, known);
    known.catch(() => datapathTypes.delete(key));
  }
  return known;
}

/** Forgets what bridgeDatapathType learnt (tests; a bridge re-created with another datapath). */
export function forgetDatapathTypes(): void {
  datapathTypes.clear();
}

/** Switches tx offload (checksum, and with it TSO/GSO) off on `dev`. */
export function txOffloadOff(ethtool: readonly string[], dev: string): Promise<void> {
  const [bin = 'ethtool', ...global] = ethtool;
  const args = [...global, '-K', dev, 'tx', 'off'];
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: VSCTL_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, _out, stderr) => {
      if (!err) return resolve();
      const why =
        err.code === 'ENOENT'
          ? `${bin} not found: install ethtool on this host (needed for OVS bridges with datapath_type=netdev)`
          : `${bin} ${args.join(' ')} failed: ${stderr.trim() || err.message}`;
      reject(new OvsError(`${why}. Without it TCP and UDP through the userspace datapath fail`));
    });
  });
}

/** On a netdev bridge: the container end of the veth sends complete checksums, no GSO. */
async function fixOffloadsFor(bridge: string, vsctl: readonly string[], opts: OvsPlugOptions): Promise<void> {
  if (!opts.containerIface) return;
  if ((await bridgeDatapathType(vsctl, bridge)) !== 'netdev') return;
  await txOffloadOff(opts.ethtool ?? DEFAULT_ETHTOOL, opts.containerIface);
}

/**
 * vm-uuid (and the hybrid plug's vm-id, kuryr-lib's name) is Docker's endpoint ID. A port plugged
 * ahead of its endpoint (RequestAddress, the warm pool) has none yet: the key is written when the
 * endpoint is known (endpointIds), since OVSDB takes no empty value and nothing wires by it.
 */
function endpointIds(endpointId: string, hybrid: boolean): string[] {
  if (!endpointId) return [];
  return hybrid
    ? [`external_ids:vm-uuid=${endpointId}`, `external_ids:vm-id=${endpointId}`]
    : [`external_ids:vm-uuid=${endpointId}`];
}

function externalIds(port: Port, endpointId: string, hybrid: boolean): string[] {
  return [
    `external_ids:iface-id=${port.id}`,
    'external_ids:iface-status=active',
    `external_ids:attached-mac=${port.mac_address.toLowerCase()}`,
    ...endpointIds(endpointId, hybrid),
    'external_ids:owner=kuryr',
  ];
}

/**
 * Writes the endpoint's ID (vm-uuid, and vm-id on a hybrid plug) on the port's OVS interface,
 * key by key, once Docker has named the endpoint. No-op for a port not in OVS.
 */
export async function identifyOvsPort(
  port: Pick<Port, 'id' | 'binding:vif_details'>,
  tap: string,
  endpointId: string,
  opts: Pick<OvsOptions, 'vsctl'> = {},
): Promise<void> {
  const hybrid = isHybridPlug(port['binding:vif_details']);
  const iface = hybrid ? hybridNames(port.id).qvo : tap;
  const ids = endpointIds(endpointId, hybrid);
  if (!ids.length) return;
  await runVsctl(opts.vsctl ?? DEFAULT_VSCTL, ['--if-exists', 'set', 'Interface', iface, ...ids]);
}

/**
 * add-port (no-op when already there, on this bridge) and (re)write the Interface's external_ids,
 * key by key (`external_ids:k=v`): keys others wrote (ovn-controller's ovn-installed) stay.
 */
function addPortArgs(bridge: string, name: string, ids: string[]): string[] {
  return ['--', '--may-exist', 'add-port', bridge, name, '--', 'set', 'Interface', name, ...ids];
}

function readMtu(dev: string): number | undefined {
  try {
    const mtu = Number.parseInt(readFileSync(`/sys/class/net/${dev}/mtu`, 'utf8'), 10);
    return Number.isFinite(mtu) ? mtu : undefined;
  } catch {
    return undefined;
  }
}

async function ensureQbr(qbr: string): Promise<void> {
  if (!linkExists(qbr)) {
    try {
      await runIpBatch([`link add ${qbr} type bridge forward_delay 0 stp_state 0`]);
    } catch (err) {
      if (!(err instanceof HostNetworkError) || !linkExists(qbr)) throw err; // lost a race: fine
    }
  }
  await runIpBatch([`link set dev ${qbr} up`]);
}

async function ensureQvbQvo(qvb: string, qvo: string, mtu: number | undefined): Promise<void> {
  const both = linkExists(qvb) && linkExists(qvo);
  if (!both) {
    // Half a pair (the other end moved away or a crash in between): start over.
    await deleteLink(qvb);
    await deleteLink(qvo);
    const m = mtu ? ` mtu ${mtu}` : '';
    await runIpBatch([`link add ${qvb}${m} type veth peer name ${qvo}${m}`]);
  } else if (mtu) {
    await runIpBatch([`link set dev ${qvb} mtu ${mtu}`, `link set dev ${qvo} mtu ${mtu}`]);
  }
}

async function removeHybridLinks(qbr: string, qvb: string, qvo: string): Promise<void> {
  await deleteLink(qvb); // takes qvo with it
  await deleteLink(qvo);
  await deleteLink(qbr); // releases the tap
}

/**
 * Plugs the (existing) host end `tap` of the port's veth into OVS, directly or through the
 * qbr/qvb/qvo hybrid. Idempotent: plugging an already plugged port only re-asserts its state.
 */
export async function plugOvs(port: Port, tap: string, opts: OvsPlugOptions): Promise<void> {
  const details = port['binding:vif_details'];
  const vsctl = opts.vsctl ?? DEFAULT_VSCTL;
  const bridge = ovsBridgeName(details, opts.bridge);
  const { qbr, qvb, qvo } = hybridNames(port.id);
  await fixOffloadsFor(bridge, vsctl, opts);
  if (!isHybridPlug(details)) {
    // Leftovers of an earlier hybrid plug of this port would keep the tap in qbr: remove them.
    const leftover = linkExists(qbr) || linkExists(qvb) || linkExists(qvo);
    const dropQvo = leftover ? ['--', '--if-exists', 'del-port', qvo] : [];
    if (leftover) await removeHybridLinks(qbr, qvb, qvo);
    await runVsctl(vsctl, [
      ...dropQvo,
      ...addPortArgs(bridge, tap, externalIds(port, opts.endpointId, false)),
    ]);
    return;
  }
  const mtu = readMtu(tap);
  await ensureQbr(qbr);
  await ensureQvbQvo(qvb, qvo, mtu);
  await runIpBatch([
    `link set dev ${tap} master ${qbr}`,
    `link set dev ${tap} up`,
    `link set dev ${qvb} master ${qbr}`,
    `link set dev ${qvb} up`,
    `link set dev ${qvo} up`,
  ]);
  // In the same transaction, take the tap out of OVS in case it was plugged non-hybrid before.
  await runVsctl(vsctl, [
    '--',
    '--if-exists',
    'del-port',
    tap,
    ...addPortArgs(bridge, qvo, externalIds(port, opts.endpointId, true)),
  ]);
}

/**
 * Undoes plugOvs: removes the OVS port (tap or qvo, from whichever bridge holds it) and the hybrid
 * qbr/qvb/qvo links named after the port. Whatever is already gone is fine. The tap itself is
 * left to the caller (it is half of the container's veth pair).
 */
export async function unplugOvs(
  port: Pick<Port, 'id' | 'binding:vif_details'>,
  tap: string,
  opts: OvsOptions,
): Promise<void> {
  const vsctl = opts.vsctl ?? DEFAULT_VSCTL;
  const { qbr, qvb, qvo } = hybridNames(port.id);
  // Both possible OVS ports, in one transaction: the vif_details seen at unplug time need not be
  // the ones the port was plugged with (the port may be gone from Neutron by now). del-port without
  // a bridge name removes the port from whatever bridge has it (opts.bridge may have changed).
  await runVsctl(vsctl, ['--', '--if-exists', 'del-port', tap, '--', '--if-exists', 'del-port', qvo]);
  await removeHybridLinks(qbr, qvb, qvo);
}
