// When container starts last did something on this host. Background work that Docker does not
// wait for (warm-pool refills, endpoint identity writes) waits until starts pause: it would compete
// with them for neutron-server's one busy worker and for the CPU. One clock for all of it, so a
// burst's refills and writes see the same burst.

export class HostActivity {
  private last = 0;
  /** Starts waiting right now (for a port being made or wired): the host is not quiet while they wait. */
  private waiting = 0;

  /** A start did something (took a warm port, created an endpoint). */
  started(): void {
    this.last = Date.now();
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
   * Calls `fn` once no start was seen for `quietMs`, but no later than `maxMs` from now (a steady
   * stream of starts must not starve it). Returns a function that cancels the call if it has not
   * happened yet. The timers never keep the process alive.
   */
  afterQuiet(quietMs: number, maxMs: number, fn: () => void): () => void {
    const deadline = Date.now() + maxMs;
    let timer: NodeJS.Timeout | undefined;
    const check = () => {
      const quietFor = this.quietFor();
      if (quietFor >= quietMs || Date.now() >= deadline) {
        timer = undefined;
        fn();
        return;
      }
      timer = setTimeout(check, Math.min(quietMs - quietFor, deadline - Date.now()));
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
