// When container starts last did something on this host. Background work that Docker does not
// wait for (warm-pool refills, endpoint identity writes) waits until starts pause: it would compete
// with them for neutron-server's one busy worker and for the CPU. One clock for all of it, so a
// burst's refills and writes see the same burst.

/**
 * How much longer a burst's quiet period is: Docker goes on starting a burst's containers (their
 * processes, on a CPU the burst saturates) for seconds after kuryr's last call for them, and
 * background work landing then slowed a 20-container burst over 10 networks by a third.
 */
export interface BurstTail {
  /** Extra quiet per container of the last burst, beyond the first. */
  perStartMs: number;
  /**
   * Starts closer than this to the one before are one burst. Starts further apart (a script
   * starting containers one by one) are bursts of one and add nothing: a tail longer than their
   * gap would hold background work back until its 30 s bound.
   */
  gapMs: number;
  /** The most extra quiet a burst asks for. */
  maxMs: number;
}

/** No extra quiet (unit tests of other things); the daemon passes DAEMON_BURST_TAIL. */
const NO_TAIL: BurstTail = { perStartMs: 0, gapMs: 0, maxMs: 0 };

/**
 * Measured here (2 cores, linuxbridge, 20 starts over 10 settled networks, 3 runs each): 4.9-6.6 s
 * with a 1 s quiet period, 3.8-4.4 s with 5 s (Docker's bridge: 4.2-4.7 s). Docker's bridge
 * takes about 200 ms per container in such a burst. Starts 0.5 s apart or more add nothing.
 */
export const DAEMON_BURST_TAIL: BurstTail = { perStartMs: 200, gapMs: 500, maxMs: 5_000 };

export class HostActivity {
  private last = 0;
  /** Starts waiting right now (for a port being made or wired): the host is not quiet while they wait. */
  private waiting = 0;
  /** When a container start last began, and how many began in its burst (tail.gapMs apart at most). */
  private lastStart = 0;
  private burstSize = 0;

  constructor(private readonly tail: BurstTail = NO_TAIL) {}

  /** A start did something (took a warm port, created an endpoint). */
  started(): void {
    this.last = Date.now();
  }

  /** A container start began (it asked for its port): activity, and counted for the burst's tail. */
  containerStarting(): void {
    this.started();
    this.burstSize = this.last - this.lastStart < this.tail.gapMs ? this.burstSize + 1 : 1;
    this.lastStart = this.last;
  }

  /** The quiet the last burst needs beyond `quietMs`: more containers, longer tail. */
  private tailMs(): number {
    return Math.min(this.tail.maxMs, this.tail.perStartMs * Math.max(0, this.burstSize - 1));
  }

  /**
   * A start waits for `work` (its port being made, or the agent wiring it): busy all along. Docker
   * serialises a network's starts, so during a burst the next start only comes once this one has
   * its port; the wait itself is no pause.
   */
  async during<T>(work: Promise<T>): Promise<T> {
    this.waiting++;
    try {
      return await work;
    } finally {
      this.waiting--;
      this.started();
    }
  }

  /** How long since a start last did something (ms); 0 while one waits. */
  private quietFor(): number {
    return this.waiting > 0 ? 0 : Date.now() - this.last;
  }

  /**
   * Calls `fn` once no start was seen for `quietMs` (longer after a burst: BurstTail), but no
   * later than `maxMs` from now (a steady stream of starts must not starve it). Returns a function
   * that cancels the call if it has not happened yet. The timers never keep the process alive.
   */
  afterQuiet(quietMs: number, maxMs: number, fn: () => void): () => void {
    const deadline = Date.now() + maxMs;
    let timer: NodeJS.Timeout | undefined;
    const check = () => {
      const quietFor = this.quietFor();
      const needed = quietMs + this.tailMs();
      if (quietFor >= needed || Date.now() >= deadline) {
        timer = undefined;
        fn();
        return;
      }
      timer = setTimeout(check, Math.min(needed - quietFor, deadline - Date.now()));
      timer.unref();
    };
    timer = setTimeout(check, Math.min(quietMs, maxMs));
    timer.unref();
    return () => {
      clearTimeout(timer);
      timer = undefined;
    };
  }
}
