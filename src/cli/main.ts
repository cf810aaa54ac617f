#!/usr/bin/env node
// `kuryr` command line. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
import { Command } from 'commander';
import { ConfigError, DEFAULT_CONFIG_FILE, describeConfig, loadConfig } from '../config/config.js';
import { startDaemon } from '../daemon.js';
import { createLogger } from '../log.js';
import { errorMessage } from '../util/errors.js';

const EXIT_CONFIG = 2;

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

program.parseAsync().catch((err) => {
  process.stderr.write(`kuryr: ${errorMessage(err)}\n`);
  process.exit(1);
});
