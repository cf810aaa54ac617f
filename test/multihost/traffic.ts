// Traffic checks between containers on different simulated hosts: ICMP (busybox ping), TCP (busybox
// nc; the image's static wget crashes) and UDP (socat run in the container's network namespace: busybox has no UDP tool).
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { hdocker, pingFrom, run, waitFor } from './hosts.js';

export { pingFrom };

/** A TCP server in the container answering `body` to every connection on `port` (busybox nc). */
export async function serveTcp(host: string, container: string, body: string, port = 8080): Promise<void> {
  await hdocker(host, 'exec', '-d', container, 'nc', '-ll', '-p', String(port), '-e', '/bin/echo', body);
}

/** Connects from the container to ip:port and returns what the server said (retries meanwhile). */
export async function tcpGet(host: string, container: string, ip: string, port = 8080): Promise<string> {
  return waitFor(
    `${container}@${host} to connect to ${ip}:${port}`,
    async () =>
      (await hdocker(host, 'exec', container, 'nc', '-w', '2', ip, String(port))).trim() || undefined,
    20_000,
    300,
  );
}

const pidOf = async (host: string, container: string) =>
  hdocker(host, 'inspect', '-f', '{{.State.Pid}}', container);

/** One UDP datagram from `from` to `to`'s address: true once it arrives (sent again until then). */
export async function udpReaches(
  src: { host: string; container: string },
  dst: { host: string; container: string; ip: string },
  port = 5001,
): Promise<boolean> {
  const [spid, dpid] = [await pidOf(src.host, src.container), await pidOf(dst.host, dst.container)];
  const rx = spawn(
    'nsenter',
    ['-t', dpid, '-n', 'timeout', '15', 'socat', '-u', `UDP-RECVFROM:${port}`, 'STDOUT'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let got = '';
  rx.stdout.on('data', (d) => {
    got += String(d);
  });
  const done = new Promise<void>((resolve) => rx.on('exit', () => resolve()));
  await sleep(300); // the receiver binds
  for (let i = 0; i < 20 && !got.includes('hello-udp'); i++) {
    await run('sh', [
      '-c',
      `echo hello-udp | nsenter -t ${spid} -n socat -u STDIN UDP-SENDTO:${dst.ip}:${port}`,
    ]);
    await sleep(300);
  }
  if (rx.exitCode === null) rx.kill();
  await done;
  return got.includes('hello-udp');
}
