// `-o` / `--ipam-opt`: kuryr-libnetwork's neutron.* names, Docker's own keys passed over, anything
// else refused with the list of what is supported.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseNeutronOptions } from '../../src/cnm/options.js';

describe('neutron.* options', () => {
  it('passes over the keys Docker 27/28 leave among the driver options', () => {
    const opts = parseNeutronOptions(
      {
        'com.docker.network.enable_ipv6': 'true',
        'com.docker.network.enable_ipv4': 'false',
        'neutron.net.name': 'prod',
      },
      '-o',
    );
    assert.deepEqual(opts.net, { name: 'prod' });
  });

  it('refuses them in --ipam-opt, and any unknown key, saying what is supported', () => {
    assert.throws(
      () => parseNeutronOptions({ 'com.docker.network.enable_ipv6': 'true' }, '--ipam-opt'),
      /unknown option --ipam-opt com\.docker\.network\.enable_ipv6; kuryr supports neutron\.net\.uuid/,
    );
    assert.throws(
      () => parseNeutronOptions({ 'neutron.nett.name': 'x' }, '-o'),
      /unknown option -o neutron\.nett\.name/,
    );
  });
});
