// Host network changes through iproute2's `ip`. Node has no maintained netlink binding, and `ip`
// is what every Neutron agent host already has; `-batch` keeps it to one process per operation.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { DriverError } from '../util/errors.js';

const IP_TIMEOUT_MS = 10_000;

export class HostNetworkError extends DriverError {}

export function runIp(args: string[], stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', args, { timeout: IP_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err) {
        const what = stdin ? stdin.trim().replace(/\n/g, '; ') : args.join(' ');
        reject(
          new HostNetworkError(
            `host networking failed: ip ${what}: ${stderr.trim() || err.message}. kuryr needs root or CAP_NET_ADMIN`,
          ),
        );
      } else resolve(stdout);
    });
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}

/** Runs several `ip` commands (one per line, without the leading "ip") in one process. */
export function runIpBatch(commands: string[]): Promise<string> {
  return runIp(['-batch', '-'], `${commands.join('\n')}\n`);
}

export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** Deletes a link; a link that is already gone is not an error. */
export async function deleteLink(name: string): Promise<boolean> {
  if (!linkExists(name)) return false;
  try {
    await runIp(['link', 'del', 'dev', name]);
    return true;
  } catch (err) {
    if (!linkExists(name)) return false; // lost a race with another delete: fine
    throw err;
  }
}
