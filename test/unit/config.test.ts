// loadConfig with temporary kuryr.conf files and explicit environment objects.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, describeConfig, loadConfig } from '../../src/config/config.js';

/** The sample from kuryr-libnetwork's README. */
const README_CONF = `[DEFAULT]
bindir = /usr/local/libexec/kuryr

[neutron]
auth_url = http://127.0.0.1:5000/v3/
username = admin
user_domain_name = Default
password = secret
project_name = service
project_domain_name = Default
auth_type = password
`;

describe('loadConfig', () => {
  let dir: string;
  let n = 0;

  /** Writes a config file in the temp dir and returns its path. */
  function conf(text: string): string {
    const file = join(dir, `kuryr-${++n}.conf`);
    writeFileSync(file, text);
    return file;
  }

  const load = (text: string, env: NodeJS.ProcessEnv = {}) =>
    loadConfig({ file: conf(text), explicitFile: true, env });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kuryr-config-test-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  describe("kuryr-libnetwork's README file", () => {
    it('loads with no warnings and the values from the file', () => {
      const c = load(README_CONF);
      assert.deepEqual(c.warnings, []);
      assert.equal(c.DEFAULT.bindir, '/usr/local/libexec/kuryr');
      assert.equal(c.neutron.auth_url, 'http://127.0.0.1:5000/v3/');
      assert.equal(c.neutron.username, 'admin');
      assert.equal(c.neutron.user_domain_name, 'Default');
      assert.equal(c.neutron.password, 'secret');
      assert.equal(c.neutron.project_name, 'service');
      assert.equal(c.neutron.project_domain_name, 'Default');
      assert.equal(c.neutron.auth_type, 'password');
      assert.equal(c.sources['neutron.password'], 'file');
      assert.equal(c.sources['DEFAULT.bindir'], 'file');
    });

    it("uses kuryr-libnetwork's defaults for everything else", () => {
      const c = load(README_CONF);
      assert.equal(c.DEFAULT.capability_scope, 'local');
      assert.equal(c.DEFAULT.local_default_address_space, 'no_address_space');
      assert.equal(c.DEFAULT.global_default_address_space, 'no_address_space');
      assert.equal(c.DEFAULT.subnetpool_name_prefix, 'kuryrPool');
      assert.equal(c.DEFAULT.kuryr_uri, 'http://127.0.0.1:23750');
      assert.equal(c.DEFAULT.process_external_connectivity, true);
      assert.equal(c.neutron.default_subnetpool_v4, 'kuryr');
      assert.equal(c.neutron.default_subnetpool_v6, 'kuryr6');
      assert.equal(c.neutron.endpoint_type, 'public');
      assert.equal(c.neutron.enable_dhcp, true);
      assert.equal(c.neutron.timeout, 30);
      assert.equal(c.binding.veth_dst_prefix, 'eth');
      assert.equal(c.binding.default_driver, 'kuryr.lib.binding.drivers.veth');
      assert.equal(c.sources['DEFAULT.capability_scope'], 'default');
      assert.equal(c.DEFAULT.host, hostname());
    });
  });

  describe('environment overrides', () => {
    it('KURYR_NEUTRON_PASSWORD overrides the file', () => {
      const c = load(README_CONF, { KURYR_NEUTRON_PASSWORD: 'from-env' });
      assert.equal(c.neutron.password, 'from-env');
      assert.equal(c.sources['neutron.password'], 'env');
    });

    it("kuryr-libnetwork's CAPABILITY_SCOPE overrides capability_scope", () => {
      const c = load(`${README_CONF}\n[DEFAULT]\ncapability_scope = local\n`, { CAPABILITY_SCOPE: 'global' });
      assert.equal(c.DEFAULT.capability_scope, 'global');
      assert.equal(c.sources['DEFAULT.capability_scope'], 'env');
    });

    it('an invalid CAPABILITY_SCOPE from the environment is rejected too', () => {
      assert.throws(() => load(README_CONF, { CAPABILITY_SCOPE: 'galaxy' }), ConfigError);
    });

    it('typed values from the environment are parsed (bool, float)', () => {
      const c = load(README_CONF, {
        KURYR_NEUTRON_INSECURE: 'yes',
        KURYR_NEUTRON_TIMEOUT: '2.5',
        OS_KURYR_URI: 'http://0.0.0.0:2377',
      });
      assert.equal(c.neutron.insecure, true);
      assert.equal(c.neutron.timeout, 2.5);
      assert.equal(c.DEFAULT.kuryr_uri, 'http://0.0.0.0:2377');
    });

    it('does not read process.env when an env object is given', () => {
      const saved = process.env.KURYR_NEUTRON_USERNAME;
      process.env.KURYR_NEUTRON_USERNAME = 'should-not-be-used';
      try {
        assert.equal(load(README_CONF, {}).neutron.username, 'admin');
      } finally {
        if (saved === undefined) delete process.env.KURYR_NEUTRON_USERNAME;
        else process.env.KURYR_NEUTRON_USERNAME = saved;
      }
    });
  });

  describe('values and warnings', () => {
    it('unknown keys and sections produce warnings, not errors', () => {
      const c = load(
        `${README_CONF}\nfrobnicate = 1\n\n[neutron]\nauth_pluginn = password\n\n[mystery]\nx = 1\n`,
      );
      assert.equal(c.warnings.length, 3, c.warnings.join('\n'));
      assert.ok(c.warnings.some((w) => w.includes('[neutron] auth_pluginn')));
      assert.ok(c.warnings.some((w) => w.includes('frobnicate')));
      assert.ok(c.warnings.some((w) => w.includes('[mystery]')));
    });

    it('a key before any [section] is an error naming the line, as in oslo.config', () => {
      assert.throws(
        () => load(`capability_scope = global\n${README_CONF}`),
        (err: Error) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, /:1: "capability_scope" comes before any \[section\]/);
          return true;
        },
      );
    });

    it('oslo syntax: "key: value", quoted values and indented continuation lines', () => {
      const c = load(
        `[DEFAULT]\nbindir: /opt/kuryr\n[neutron]\nauth_type = noauth\nendpoint_override = "http://10.0.0.1:9696"\nregion_name = Region\n  One\n`,
      );
      assert.equal(c.DEFAULT.bindir, '/opt/kuryr');
      assert.equal(c.neutron.endpoint_override, 'http://10.0.0.1:9696');
      assert.equal(c.neutron.region_name, 'Region\nOne');
    });

    it('oslo options we do not need (e.g. [DEFAULT] log_dir, [neutron] auth_section) are silently accepted', () => {
      const c = load(
        `${README_CONF}\n[DEFAULT]\nlog_dir = /var/log/kuryr\n[neutron]\nauth_section = keystone_authtoken\n`,
      );
      assert.deepEqual(c.warnings, []);
    });

    it('the deprecated [binding] driver alias sets default_driver', () => {
      const c = load(`${README_CONF}\n[binding]\ndriver = kuryr.lib.binding.drivers.vlan\n`);
      assert.equal(c.binding.default_driver, 'kuryr.lib.binding.drivers.vlan');
      assert.deepEqual(c.warnings, []);
    });

    it('capability_scope = planet → ConfigError naming key, value and allowed values', () => {
      assert.throws(
        () => load(`${README_CONF}\n[DEFAULT]\ncapability_scope = planet\n`),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, /capability_scope/);
          assert.match(err.message, /planet/);
          assert.match(err.message, /local, global/);
          return true;
        },
      );
    });

    it('a bad boolean and a negative timeout are ConfigErrors naming the key', () => {
      assert.throws(
        () => load(`${README_CONF}\ninsecure = maybe\n`),
        /\[neutron\] insecure = "maybe": not a boolean/,
      );
      assert.throws(() => load(`${README_CONF}\ntimeout = -1\n`), /\[neutron\] timeout = "-1"/);
    });

    it('booleans accept oslo spellings (True, false, 1, off)', () => {
      const c = load(`${README_CONF}\ninsecure = True\nenable_dhcp = off\n[DEFAULT]\ndebug = 1\n`);
      assert.equal(c.neutron.insecure, true);
      assert.equal(c.neutron.enable_dhcp, false);
      assert.equal(c.DEFAULT.debug, true);
    });

    it('a password containing # and ; is read verbatim (oslo.config has no inline comments)', () => {
      const c = load(README_CONF.replace('password = secret', 'password = s3cr#t;pw'));
      assert.equal(c.neutron.password, 's3cr#t;pw');
    });
  });

  describe('authentication requirements', () => {
    it('noauth without endpoint_override is an error', () => {
      assert.throws(
        () => load('[neutron]\nauth_type = noauth\n'),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, /noauth/);
          assert.match(err.message, /endpoint_override/);
          return true;
        },
      );
    });

    it('noauth with endpoint_override is fine', () => {
      const c = load('[neutron]\nauth_type = noauth\nendpoint_override = http://127.0.0.1:9696\n');
      assert.equal(c.neutron.endpoint_override, 'http://127.0.0.1:9696');
    });

    it('password auth without a password names the missing key', () => {
      assert.throws(() => load(README_CONF.replace('password = secret\n', '')), /\[neutron\] password/);
    });

    it('a missing explicit file is an error; a missing default file is not', () => {
      assert.throws(
        () => loadConfig({ file: join(dir, 'nope.conf'), explicitFile: true, env: {} }),
        /cannot read config file/,
      );
      const c = loadConfig({
        file: join(dir, 'nope.conf'),
        env: { KURYR_NEUTRON_AUTH_TYPE: 'noauth', KURYR_NEUTRON_ENDPOINT_OVERRIDE: 'http://n:9696' },
      });
      assert.equal(c.neutron.auth_type, 'noauth');
    });
  });

  describe('describeConfig', () => {
    it('masks the password but shows other values and their sources', () => {
      const text = describeConfig(load(README_CONF.replace('password = secret', 'password = hunter2-xyz')));
      assert.ok(!text.includes('hunter2-xyz'), 'password shown in clear');
      assert.match(text, /^password = \*\*\* {4}# file$/m);
      assert.match(text, /^username = admin {4}# file$/m);
      assert.match(text, /^capability_scope = local {4}# default$/m);
      assert.match(text, /^\[neutron\]$/m);
    });

    it('masks an application credential secret from the environment', () => {
      const c = load(
        '[neutron]\nauth_type = v3applicationcredential\nauth_url = http://k:5000/v3\napplication_credential_id = ac\n',
        {
          KURYR_NEUTRON_APPLICATION_CREDENTIAL_SECRET: 'topsecret',
        },
      );
      const text = describeConfig(c);
      assert.ok(!text.includes('topsecret'));
      assert.match(text, /^application_credential_secret = \*\*\* {4}# env$/m);
    });
  });
});
