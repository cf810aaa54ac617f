// Binding a Neutron port to this host: the port attributes that make ML2 bind it here, the host
// side (veth plugged for the vif_type) and waiting for the agent to report it ACTIVE. Shared by
// IPAM, which creates ports already bound so the agent starts wiring as early as possible, and by
// the endpoint handlers, which bind ports made elsewhere (a user's port, kuryr-libnetwork's).
import { setTimeout as sleep } from 'node:timers/promises';
import type { BoundInterface, HostBinder } from '../binding/index.js';
import { createdAtMs, type Port } from '../neutron/types.js';
import type { Catalog, NeutronReader } from './catalog.js';
import { isExistingPort, isKuryrCreatedPort } from './existing-ports.js';
import { HostActivity } from './host-activity.js';
import { DEVICE_OWNER, UNBOUND_PORT_NAME } from './naming.js';

const DEFAULT_MTU = 1500;
export const UNBOUND = new Set(['unbound', 'binding_failed']);

export class PortBinding {
  readonly active: ActiveWaiter;

  constructor(
    readonly catalog: Catalog,
    readonly binder: HostBinder,
    readonly host: string,
    private readonly activity = new HostActivity(),
  ) {
    this.active = new ActiveWaiter(catalog.reader);
  }

  /**
   * A start (Join) waits for its port to turn ACTIVE. The wait is host activity: background writes
   * and refills landing now would slow the agent and neutron-server's RPC worker, the two things
   * the start waits for. (The pool watching its own ports wire is not a start: it uses `active`.)
   */
  startWaitsActive(portId: string, timeoutMs: number): Promise<string> {
    return this.activity.during(this.active.wait(portId, timeoutMs));
  }

  /** Port attributes that bind it to this host (set together: DVR needs them in one update). */
  bindAttrs(): Record<string, string> {
    return { 'binding:host_id': this.host, device_owner: DEVICE_OWNER };
  }

  isBoundHere(port: Port): boolean {
    return port['binding:host_id'] === this.host && !UNBOUND.has(port['binding:vif_type'] ?? 'unbound');
  }

  /** Creates (or re-creates, idempotently) the host side of a bound port. */
  async plugHost(port: Port): Promise<BoundInterface> {
    const net = await this.catalog.networkById(port.network_id);
    return this.binder.bind(port, net.mtu ?? DEFAULT_MTU);
  }

  /**
   * The host side exists already in the normal case (RequestAddress made it): a file-system check,
   * no `ip` processes on the container-start path. Only a port plugged elsewhere, or a host that
   * rebooted, gets it made here.
   */
  async ensureHost(port: Port): Promise<void> {
    if (!this.hasHostSide(port)) await this.plugHost(port);
  }

  /**
   * Lets go of a port: its host side (veth) first if it is bound here, then the port itself is
   * deleted, or, if it is a user's port kuryr took, handed back as it was.
   */
  async release(port: Port): Promise<void> {
    // The host side first; when that fails (Open vSwitch not up yet while Docker cleans up after a
    // reboot), the Neutron port still goes, or is handed back: the container is gone either way.
    // The failure is reported all the same, and `kuryr gc` finds what it left on the host.
    let unbindFailure: unknown;
    if (port['binding:host_id'] === this.host)
      await this.binder.unbind(port).catch((err: unknown) => {
        unbindFailure = err;
      });
    if (isExistingPort(port)) await this.catalog.handBackPort(port);
    else await this.catalog.deletePort(port.id);
    if (unbindFailure) throw unbindFailure;
  }

  /**
   * Ports a killed daemon left for starts that never finished, made before `before` (ms) and bound
   * here: RequestAddress done but no endpoint (no device; a user's port is never in this state),
   * or CreateEndpoint done but no Join, Docker rolling the start back while no driver answered
   * (a device, and both veth ends still on the host). Docker never calls for those again. Deleted
   * (a user's port handed back) with their veth; returns how many. A container's port is never
   * one: its veth's container end is in the container.
   */
  async reapInterruptedStarts(before: number): Promise<number> {
    const bound = await this.catalog.reader.list('ports', {
      'binding:host_id': this.host,
      device_owner: DEVICE_OWNER,
    });
    const left = bound.filter((p) => {
      if (createdAtMs(p.created_at) >= before) return false;
      const veth = this.binder.vethState(p);
      if (p.device_id) return veth === 'on-host';
      return p.name === UNBOUND_PORT_NAME && isKuryrCreatedPort(p) && veth !== 'in-container';
    });
    for (const p of left) await this.release(p);
    return left.length;
  }

  /** The veth's host end is there. */
  hasHostSide(port: Pick<Port, 'id'>): boolean {
    return this.binder.vethState(port) !== 'absent';
  }

  /** The veth's container end has been moved out of the host: a container holds the port. */
  inContainer(port: Pick<Port, 'id'>): boolean {
    return this.binder.vethState(port) === 'in-container';
  }

  /** Given to an endpoint: a container holds its veth, or its host side records the endpoint. */
  claimed(port: Pick<Port, 'id'>): boolean {
    return this.inContainer(port) || this.binder.recordedEndpoint(port) !== undefined;
  }

  /** This host's ports whose veth records an endpoint that Neutron's device_id does not show yet. */
  async recordedButUnwritten(): Promise<{ port: Port; endpointId: string }[]> {
    const ports = await this.catalog.reader.list('ports', {
      'binding:host_id': this.host,
      device_owner: DEVICE_OWNER,
    });
    const found: { port: Port; endpointId: string }[] = [];
    for (const port of ports) {
      const endpointId = port.device_id ? undefined : this.binder.recordedEndpoint(port);
      if (endpointId) found.push({ port, endpointId });
    }
    return found;
  }
}

/**
 * Waits for ports to turn ACTIVE. All ports being waited for are polled together, one Neutron
 * request per tick however many containers start at once.
 */
export class ActiveWaiter {
  private readonly waiting = new Map<string, { resolve: (status: string) => void; deadline: number }[]>();
  private loop?: Promise<void>;

  constructor(
    private readonly neutron: NeutronReader,
    private readonly tickMs = 250,
  ) {}

  /** Resolves with the port's status: 'ACTIVE', or the last status seen when `timeoutMs` ran out. */
  wait(portId: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve) => {
      const list = this.waiting.get(portId) ?? [];
      list.push({ resolve, deadline: Date.now() + timeoutMs });
      this.waiting.set(portId, list);
      this.loop ??= this.run().finally(() => {
        this.loop = undefined;
      });
    });
  }

  private async run(): Promise<void> {
    const last = new Map<string, string>();
    while (this.waiting.size > 0) {
      await sleep(this.tickMs);
      const ids = [...this.waiting.keys()];
      try {
        for (let i = 0; i < ids.length; i += 100) {
          const ports = await this.neutron.list('ports', {
            id: ids.slice(i, i + 100),
            fields: ['id', 'status'],
          });
          for (const p of ports) last.set(p.id, p.status);
        }
      } catch {
        // Neutron hiccup: keep waiting until the deadlines
      }
      const now = Date.now();
      for (const id of ids) {
        const status = last.get(id) ?? 'UNKNOWN';
        const list = this.waiting.get(id) ?? [];
        const keep = list.filter((w) => {
          if (status === 'ACTIVE' || now >= w.deadline) {
            w.resolve(status);
            return false;
          }
          return true;
        });
        if (keep.length) this.waiting.set(id, keep);
        else this.waiting.delete(id);
      }
    }
  }
}
