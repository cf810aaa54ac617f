// Bundles the CLI and daemon into one ESM file, dist/kuryr.mjs, the file that is run: Node then
// loads one module instead of ~400, which halves start-up time and trims idle memory (measured in
// docs/performance.md). pino stays external: its log transports (pino-pretty on a terminal) run in
// worker threads that load pino's own files from node_modules.
import { chmodSync } from 'node:fs';
import { build } from 'esbuild';

const outfile = new URL('../dist/kuryr.mjs', import.meta.url).pathname;
await build({
  entryPoints: [new URL('../src/cli/main.ts', import.meta.url).pathname],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['pino', 'pino-pretty'],
  // A small young generation, no GC helper threads and one malloc arena: the daemon's heap is a
  // few MB of short-lived garbage, and its RSS stays low and steady.
  banner: {
    js: [
      '#!/usr/bin/env -S MALLOC_ARENA_MAX=1 node --max-semi-space-size=1 --single-threaded-gc',
      "import { createRequire as __kuryrRequire } from 'node:module';",
      'const require = __kuryrRequire(import.meta.url);',
    ].join('\n'),
  },
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);
