// `kuryr` command line. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
import { Command } from 'commander';
import { ConfigError, DEFAULT_CONFIG_FILE, describeConfig, loadConfig } from '../config/config.js';
import { startDaemon } from '../daemon.js';
import { DockerEngine } from '../docker/engine.js';
import { createLogger } from '../log.js';
import { createNeutronClient } from '../neutron/from-config.js';
import { findGarbage, type Garbage, removeGarbage } from '../ops/gc.js';
import { statusChecks } from '../ops/status.js';
import { errorMessage } from '../util/errors.js';

const EXIT_CONFIG = 2;
const EXIT_GARBAGE = 3;

function load(file: string | undefined) {
  try {
    return loadConfig({ file: file ?? DEFAULT_CONFIG_FILE, explicitFile: file !== undefined });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kuryr: configuration error: ${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
}

const program = new Command()
  .name('kuryr')
  .description('Docker network and IPAM driver backed by OpenStack Neutron')
  .option('--config-file <path>', `kuryr.conf to read (default ${DEFAULT_CONFIG_FILE})`)
  .showHelpAfterError();

program
  .command('serve')
  .description('run the plugin daemon (listens on /run/docker/plugins/kuryr.sock by default)')
  .action(async () => {
    const config = load(program.opts().configFile);
    const logger = createLogger({ debug: config.DEFAULT.debug, file: config.DEFAULT.log_file || undefined });
    for (const w of config.warnings) logger.warn(w);
    let daemon: Awaited<ReturnType<typeof startDaemon>>;
    try {
      daemon = await startDaemon(config, logger);
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'cannot start');
      process.exitCode = 1;
      return;
    }
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down: finishing in-flight calls');
      await daemon.close();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
  });

const configCmd = program.command('config').description('inspect configuration');
configCmd
  .command('check')
  .description('print the effective configuration (secrets masked) and warnings')
  .action(() => {
    const config = load(program.opts().configFile);
    process.stdout.write(`${describeConfig(config)}\n`);
    for (const w of config.warnings) process.stderr.write(`warning: ${w}\n`);
  });

program
  .command('status')
  .description(
    'check Neutron, the L2 agent on this host, the plugin socket and Docker; count managed resources',
  )
  .option('--json', 'print the checks as JSON')
  .action(async (opts: { json?: boolean }) => {
    const config = load(program.opts().configFile);
    const neutron = createNeutronClient(config);
    const engine = new DockerEngine();
    try {
      const checks = await statusChecks(config, neutron, engine);
      if (opts.json) process.stdout.write(`${JSON.stringify(checks, null, 2)}\n`);
      else
        for (const c of checks)
          process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(14)} ${c.detail}\n`);
      process.exitCode = checks.every((c) => c.ok) ? 0 : 1;
    } finally {
      await Promise.all([neutron.close(), engine.close()]);
    }
  });

program
  .command('gc')
  .description('find (and with --apply remove) kuryr resources whose Docker networks or endpoints are gone')
  .option('--apply', 'delete what was found (default: only list it)')
  .option('--min-age <seconds>', 'leave unbound ports and empty pools younger than this alone', '600')
  .option('--json', 'print the findings as JSON')
  .addHelpText(
    'after',
    '\nExit codes: 0 nothing left behind (or all removed), 1 error, 3 garbage found (dry run).',
  )
  .action(async (opts: { apply?: boolean; minAge: string; json?: boolean }) => {
    const config = load(program.opts().configFile);
    const minAge = Number(opts.minAge);
    if (!Number.isFinite(minAge) || minAge < 0) {
      process.stderr.write(`kuryr gc: --min-age ${opts.minAge} is not a number of seconds\n`);
      process.exit(EXIT_CONFIG);
    }
    const neutron = createNeutronClient(config);
    const engine = new DockerEngine();
    try {
      const garbage = await findGarbage(neutron, await engine.networks(), {
        host: config.DEFAULT.host,
        subnetpoolPrefix: config.DEFAULT.subnetpool_name_prefix,
        minAgeMs: minAge * 1000,
      });
      const print = (verb: string, items: Garbage[]) => {
        for (const g of items) process.stdout.write(`${verb} ${g.kind} ${g.id} (${g.name}): ${g.why}\n`);
      };
      if (!opts.apply) {
        if (opts.json) process.stdout.write(`${JSON.stringify(garbage, null, 2)}\n`);
        else print('found', garbage);
        process.exitCode = garbage.length ? EXIT_GARBAGE : 0;
        return;
      }
      const { removed, failed } = await removeGarbage(neutron, garbage);
      if (opts.json) process.stdout.write(`${JSON.stringify({ removed, failed }, null, 2)}\n`);
      else {
        print('removed', removed);
        for (const f of failed) process.stdout.write(`FAILED ${f.item.kind} ${f.item.id}: ${f.error}\n`);
      }
      process.exitCode = failed.length ? 1 : 0;
    } finally {
      await Promise.all([neutron.close(), engine.close()]);
    }
  });

program.parseAsync().catch((err) => {
  process.stderr.write(`kuryr: ${errorMessage(err)}\n`);
  process.exit(1);
});
