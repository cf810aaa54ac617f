// vif_type "ovs" (ML2/openvswitch): the host end of the veth goes into the integration bridge as an
// OVS port whose Interface carries external_ids:iface-id=<port id>; that is how
// neutron-openvswitch-agent finds the port, tags it with the network's local VLAN and reports it
// up. With the iptables_hybrid firewall Neutron asks for the "hybrid plug" (vif_details
// ovs_hybrid_plug=true), as Nova/os-vif and kuryr-lib's libexec `ovs` script do it: the tap goes
// into a per-port Linux bridge qbr<port[:11]> (where iptables can filter), joined to br-int by a
// veth pair qvb<port[:11]> (in qbr) <-> qvo<port[:11]> (the OVS port carrying the external_ids).
import { type ExecFileException, execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Port } from '../neutron/types.js';
import { DriverError } from '../util/errors.js';
import { deleteLink, HostNetworkError, linkExists, runIpBatch } from './ip.js';

/** How ovs-vsctl is run on a real OVS host: it waits (at most 10 s) for ovs-vswitchd to apply. */
export const DEFAULT_VSCTL: readonly string[] = ['ovs-vsctl', '--timeout=10'];
const VSCTL_TIMEOUT_MS = 20_000;

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

function externalIds(port: Port, endpointId: string, hybrid: boolean): string[] {
  const ids = [
    `external_ids:iface-id=${port.id}`,
    'external_ids:iface-status=active',
    `external_ids:attached-mac=${port.mac_address.toLowerCase()}`,
    `external_ids:vm-uuid=${endpointId}`,
  ];
  // kuryr-lib's hybrid branch writes vm-id; write both so either reader finds it.
  if (hybrid) ids.push(`external_ids:vm-id=${endpointId}`);
  ids.push('external_ids:owner=kuryr');
  return ids;
}

/** add-port (no-op when already there, on this bridge) and (re)write the Interface's external_ids. */
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
