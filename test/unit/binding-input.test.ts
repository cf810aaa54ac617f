// Values that reach `ip -batch` lines are validated first: a newline would be another command.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostNetworkError } from '../../src/binding/ip.js';
import { bridgeName } from '../../src/binding/linux-bridge.js';
import { ensureVeth } from '../../src/binding/veth.js';

const PORT = '0b7e6a52-8d0c-4c5e-9c1a-2f3d4e5f6a7b';

describe('host binding refuses unsafe values before running ip', () => {
  for (const [what, spec] of [
    ['a MAC with a newline', { portId: PORT, mac: '02:42:0a:00:00:01\nlink del dev eth0', mtu: 1450 }],
    ['a MAC of the wrong shape', { portId: PORT, mac: '02-42-0a-00-00-01', mtu: 1450 }],
    ['a port id that is not a UUID', { portId: 'abc def', mac: '02:42:0a:00:00:01', mtu: 1450 }],
    ['an MTU out of range', { portId: PORT, mac: '02:42:0a:00:00:01', mtu: 10 }],
  ] as const) {
    it(`rejects ${what}`, async () => {
      await assert.rejects(
        ensureVeth({ ...spec }),
        (err: Error) => err instanceof HostNetworkError && /refusing/.test(err.message),
      );
    });
  }

  it('accepts Neutron-style bridge names and refuses others', () => {
    assert.equal(bridgeName('becbd0c7-cc76-405c-953c-f722ea5c9d4e'), 'brqbecbd0c7-cc');
    assert.equal(bridgeName('x', { bridge_name: 'br-custom' }), 'br-custom');
    assert.throws(() => bridgeName('x', { bridge_name: 'br0 type dummy' }), HostNetworkError);
    assert.throws(() => bridgeName('x', { bridge_name: 'a-very-long-bridge-name' }), HostNetworkError);
  });
});
