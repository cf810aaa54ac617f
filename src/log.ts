// Structured JSON logs (one line per event) for machines; readable lines when a human watches a
// terminal. Secrets never reach the logger: handlers log IDs, never request bodies or headers.
import { type Logger, pino } from 'pino';

export function createLogger(opts: { debug: boolean; file?: string; pretty?: boolean }): Logger {
  const level = opts.debug ? 'debug' : 'info';
  if (opts.file)
    return pino(
      { level, base: { svc: 'kuryr' } },
      pino.destination({ dest: opts.file, mkdir: true, sync: false }),
    );
  if (opts.pretty ?? process.stdout.isTTY) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { colorize: true, singleLine: true } },
    });
  }
  return pino({ level, base: { svc: 'kuryr' } });
}
