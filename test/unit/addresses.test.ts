// Address arithmetic on Docker's "ip/prefix" strings.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  contains,
  firstHost,
  networkOf,
  parseCidr,
  parseIp,
  prefixLength,
  sameIp,
  stripPrefix,
} from '../../src/cnm/addresses.js';
import { InvalidRequestError } from '../../src/util/errors.js';

describe('firstHost', () => {
  for (const [cidr, expected] of [
    ['10.0.0.0/24', '10.0.0.1'],
    ['10.0.0.77/24', '10.0.0.1'],
    ['192.168.10.0/23', '192.168.10.1'],
    ['172.16.255.0/16', '172.16.0.1'],
    ['10.0.0.0/8', '10.0.0.1'],
    ['fd00:1:2:3::/64', 'fd00:1:2:3::1'],
    ['fd00:1:2:3::abcd/64', 'fd00:1:2:3::1'],
    ['2001:db8::/32', '2001:db8::1'],
  ] as const) {
    it(`${cidr} -> ${expected}`, () => {
      assert.equal(firstHost(cidr), expected);
    });
  }
});

describe('networkOf', () => {
  for (const [cidr, expected] of [
    ['10.0.0.7/24', '10.0.0.0/24'],
    ['10.0.0.0/24', '10.0.0.0/24'],
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['192.168.1.129/25', '192.168.1.128/25'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['fd00::1234/64', 'fd00::/64'],
    ['2001:db8:abcd:12::1/56', '2001:db8:abcd::/56'],
    ['2001:DB8::1/48', '2001:db8::/48'],
  ] as const) {
    it(`${cidr} -> ${expected}`, () => {
      assert.equal(networkOf(cidr), expected);
    });
  }
});

describe('contains', () => {
  it('matches addresses inside an IPv4 network and rejects those outside', () => {
    assert.equal(contains('10.0.0.0/24', '10.0.0.255'), true);
    assert.equal(contains('10.0.0.0/24', '10.0.0.0'), true);
    assert.equal(contains('10.0.0.0/24', '10.0.1.0'), false);
    assert.equal(contains('10.0.0.5/24', '10.0.0.200'), true);
  });

  it('matches addresses inside an IPv6 network and rejects those outside', () => {
    assert.equal(contains('fd00::/64', 'fd00::ffff:1'), true);
    assert.equal(contains('fd00::/64', 'fd00:0:0:1::1'), false);
  });

  it('is false across address families, in both directions', () => {
    assert.equal(contains('10.0.0.0/8', 'fd00::1'), false);
    assert.equal(contains('::/0', '10.0.0.1'), false);
    assert.equal(contains('0.0.0.0/0', '::1'), false);
  });
});

describe('parseCidr', () => {
  it('parses IPv4 and IPv6 CIDRs, keeping the host part', () => {
    assert.deepEqual(parseCidr('10.0.0.7/24', 'Pool'), { address: '10.0.0.7', prefixLength: 24, version: 4 });
    assert.deepEqual(parseCidr('FD00::1/64', 'Pool'), { address: 'fd00::1', prefixLength: 64, version: 6 });
  });

  for (const bad of [
    '10.0.0.1',
    '10.0.0.0/33',
    'fd00::/129',
    'not-a-cidr',
    '',
    '10.0.0.0/-1',
    'fd00::/64/1',
  ]) {
    it(`rejects ${JSON.stringify(bad)} with an InvalidRequestError naming the field and value`, () => {
      assert.throws(
        () => parseCidr(bad, 'IPv4Data[0].Pool'),
        (err: unknown) => {
          assert.ok(err instanceof InvalidRequestError);
          assert.equal(err.status, 400);
          assert.equal(err.message, `IPv4Data[0].Pool: '${bad}' is not an address/prefix (CIDR)`);
          return true;
        },
      );
    });
  }
});

describe('legacy inet_aton address forms', () => {
  // ipaddr.parse() is lenient: "010.0.0.1" is read as octal (8.0.0.1), "10/8" as 0.0.0.10/8 and
  // "10.0.0/24" as 10.0.0.0/24. Go's net.ParseCIDR/ParseIP (Docker) and Neutron reject all of
  // these, so our validators must too, rather than silently working on a different address.
  it('parseCidr and parseIp reject non-dotted-quad IPv4 forms', () => {
    const accepted: string[] = [];
    for (const bad of ['010.0.0.1/24', '10/8', '10.0.0/24', '0x0a.0.0.0/8']) {
      try {
        accepted.push(`parseCidr(${bad}) = ${JSON.stringify(parseCidr(bad, 'Pool'))}`);
      } catch (err) {
        assert.ok(err instanceof InvalidRequestError);
      }
    }
    for (const bad of ['010.0.0.1', '10.0.1', '167772161']) {
      try {
        accepted.push(`parseIp(${bad}) = ${parseIp(bad, 'Address')}`);
      } catch (err) {
        assert.ok(err instanceof InvalidRequestError);
      }
    }
    assert.deepEqual(accepted, []);
  });
});

describe('other helpers', () => {
  it('parseIp normalises and rejects junk with a 400', () => {
    assert.equal(parseIp('FD00:0:0::1', 'Address'), 'fd00::1');
    assert.equal(parseIp('10.0.0.1', 'Address'), '10.0.0.1');
    assert.throws(() => parseIp('10.0.0.1/24', 'Address'), InvalidRequestError);
    assert.throws(() => parseIp('nope', 'Address'), /Address: 'nope' is not an IP address/);
  });

  it('stripPrefix, prefixLength and sameIp', () => {
    assert.equal(stripPrefix('10.0.0.1/24'), '10.0.0.1');
    assert.equal(stripPrefix('fd00::1'), 'fd00::1');
    assert.equal(prefixLength('fd00::/56'), 56);
    assert.equal(prefixLength('10.0.0.0/20'), 20);
    assert.equal(sameIp('fd00::1', 'FD00:0:0:0:0:0:0:1'), true);
    assert.equal(sameIp('10.0.0.1', '10.0.0.2'), false);
    assert.equal(sameIp('10.0.0.1', 'garbage'), false);
  });
});
