// A minimal Docker Engine API client (unix socket) for the operator commands: which networks and
// endpoints Docker has, and whether it activated our plugin. The plugin itself never calls Docker.
import { Agent, request } from 'undici';

export interface EngineNetwork {
  Id: string;
  Name: string;
  Driver: string;
  IPAM?: { Driver?: string };
  Containers?: Record<string, { EndpointID: string }>;
}

export class DockerEngine {
  private readonly agent: Agent;

  constructor(
    socketPath = '/var/run/docker.sock',
    private readonly timeoutMs = 10_000,
  ) {
    this.agent = new Agent({ connect: { socketPath } });
  }

  private async get<T>(path: string): Promise<T> {
    const res = await request(`http://docker${path}`, {
      dispatcher: this.agent,
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await res.body.text();
    if (res.statusCode >= 400) throw new Error(`Docker API GET ${path}: ${res.statusCode} ${text.trim()}`);
    return JSON.parse(text) as T;
  }

  async info(): Promise<{ Plugins?: { Network?: string[] }; ServerVersion?: string }> {
    return this.get('/info');
  }

  /** All networks with their endpoints (the list call omits them, so each is inspected). */
  async networks(): Promise<EngineNetwork[]> {
    const list = await this.get<EngineNetwork[]>('/networks');
    return Promise.all(list.map((n) => this.get<EngineNetwork>(`/networks/${n.Id}`)));
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
