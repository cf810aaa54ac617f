// kuryr's config for drivers built in-process against the fake Neutron, read the way the daemon
// reads it (environment overrides, no file).
import { type Config, loadConfig } from '../../../src/config/config.js';

export function fakeNeutronConfig(
  neutronUrl: string,
  host: string,
  env: Record<string, string> = {},
): Config {
  return loadConfig({
    file: '/nonexistent/kuryr.conf',
    env: {
      KURYR_NEUTRON_AUTH_TYPE: 'noauth',
      KURYR_NEUTRON_ENDPOINT_OVERRIDE: neutronUrl,
      KURYR_NEUTRON_TIMEOUT: '5',
      KURYR_DEFAULT_HOST: host,
      KURYR_BINDING_ACTIVE_WAIT_TIMEOUT: '0',
      ...env,
    },
  });
}
