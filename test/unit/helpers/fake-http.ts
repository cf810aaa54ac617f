// A tiny in-process HTTP server on 127.0.0.1 (random port) that records every request and lets a
// test decide how to answer. Used as a fake Neutron and a fake Keystone.
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  /** Path plus query string, as received. */
  url: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: string;
  /** Parsed body when it was JSON. */
  json: unknown;
}

export type Handler = (req: RecordedRequest, res: ServerResponse) => void;

export class FakeHttpServer {
  readonly requests: RecordedRequest[] = [];
  /** Replace per test; the default answers 404 with a Neutron-style error. */
  handler: Handler = (_req, res) =>
    sendJson(res, 404, { NeutronError: { type: 'HTTPNotFound', message: 'no route' } });

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<FakeHttpServer> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const fake = new FakeHttpServer(server, `http://127.0.0.1:${port}`);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = body ? JSON.parse(body) : undefined;
        } catch {
          json = undefined;
        }
        const u = new URL(req.url ?? '/', fake.url);
        const recorded: RecordedRequest = {
          method: req.method ?? '',
          url: req.url ?? '',
          path: u.pathname,
          query: u.searchParams,
          headers: req.headers,
          body,
          json,
        };
        fake.requests.push(recorded);
        fake.handler(recorded, res);
      });
    });
    return fake;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
