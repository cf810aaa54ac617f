// Builds the Neutron client from the [neutron] section of kuryr.conf.
import { readFileSync } from 'node:fs';
import { Agent } from 'undici';
import type { Config } from '../config/config.js';
import { type Authenticator, KeystoneAuth, NoAuth } from './auth.js';
import { NeutronClient, type NeutronClientOptions } from './client.js';

export function createNeutronClient(config: Config, onCall?: NeutronClientOptions['onCall']): NeutronClient {
  const n = config.neutron;
  const timeoutMs = Math.max(1, n.timeout) * 1000;
  const tls = { rejectUnauthorized: !n.insecure, ...(n.cafile ? { ca: readFileSync(n.cafile) } : {}) };
  const dispatcher = new Agent({ keepAliveTimeout: 30_000, connections: 64, connect: tls });
  let auth: Authenticator;
  if (n.auth_type === 'noauth') {
    auth = new NoAuth(n.endpoint_override);
  } else {
    const method =
      n.auth_type === 'token' || n.auth_type === 'v3token'
        ? { kind: 'token' as const, token: n.token }
        : n.auth_type === 'v3applicationcredential'
          ? {
              kind: 'applicationCredential' as const,
              id: n.application_credential_id,
              secret: n.application_credential_secret,
            }
          : {
              kind: 'password' as const,
              username: n.username,
              password: n.password,
              userDomainName: n.user_domain_name || undefined,
              userDomainId: n.user_domain_id || undefined,
            };
    auth = new KeystoneAuth({
      authUrl: n.auth_url,
      method,
      projectName: n.project_name || undefined,
      projectId: n.project_id || undefined,
      projectDomainName: n.project_domain_name || undefined,
      projectDomainId: n.project_domain_id || undefined,
      regionName: n.region_name || undefined,
      interface: n.endpoint_type,
      endpointOverride: n.endpoint_override || undefined,
      timeoutMs,
      dispatcher,
    });
  }
  return new NeutronClient({ auth, timeoutMs, dispatcher, onCall });
}
