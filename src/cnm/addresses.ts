// Address arithmetic on Docker's "ip/prefix" strings.
import ipaddr from 'ipaddr.js';
import { InvalidRequestError } from '../util/errors.js';

export interface ParsedCidr {
  address: string;
  prefixLength: number;
  version: 4 | 6;
}

/** ipaddr.js also accepts legacy IPv4 forms ("10/8", "010.0.0.1"): Docker and Neutron do not. */
function strictIpv4(value: string, cidr: boolean): boolean {
  if (value.includes(':')) return true;
  return cidr ? ipaddr.IPv4.isValidCIDRFourPartDecimal(value) : ipaddr.IPv4.isValidFourPartDecimal(value);
}

export function parseCidr(value: string, what: string): ParsedCidr {
  try {
    if (!strictIpv4(value, true)) throw new Error('not dotted-quad');
    const [addr, len] = ipaddr.parseCIDR(value);
    return { address: addr.toString(), prefixLength: len, version: addr.kind() === 'ipv4' ? 4 : 6 };
  } catch {
    throw new InvalidRequestError(`${what}: '${value}' is not an address/prefix (CIDR)`);
  }
}

export function parseIp(value: string, what: string): string {
  if (!ipaddr.isValid(value) || !strictIpv4(value, false))
    throw new InvalidRequestError(`${what}: '${value}' is not an IP address`);
  return ipaddr.parse(value).toString();
}

/** "10.0.0.1/24" -> "10.0.0.1"; a bare address is returned unchanged. */
export function stripPrefix(value: string): string {
  return value.split('/')[0] ?? value;
}

/** The canonical network form of a CIDR ("10.0.0.7/24" -> "10.0.0.0/24"). */
export function networkOf(cidr: string): string {
  const [addr, len] = ipaddr.parseCIDR(cidr);
  const net =
    addr.kind() === 'ipv4'
      ? ipaddr.IPv4.networkAddressFromCIDR(cidr)
      : ipaddr.IPv6.networkAddressFromCIDR(cidr);
  return `${net.toString()}/${len}`;
}

export function contains(cidr: string, ip: string): boolean {
  const [net, len] = ipaddr.parseCIDR(cidr);
  const addr = ipaddr.parse(ip);
  return addr.kind() === net.kind() && addr.match(net, len);
}

/** First usable host address, Neutron's default gateway ("10.0.0.0/24" -> "10.0.0.1"). */
export function firstHost(cidr: string): string {
  const bytes = ipaddr.parseCIDR(networkOf(cidr))[0].toByteArray();
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = ((bytes[i] ?? 0) + 1) & 0xff;
    if (bytes[i] !== 0) break;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function prefixLength(cidr: string): number {
  return ipaddr.parseCIDR(cidr)[1];
}

export function sameIp(a: string, b: string): boolean {
  return ipaddr.isValid(a) && ipaddr.isValid(b) && ipaddr.parse(a).toString() === ipaddr.parse(b).toString();
}

// ---------------------------------------------------------------- ranges (BigInt arithmetic)
export function toBig(ip: string): bigint {
  return ipaddr
    .parse(ip)
    .toByteArray()
    .reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

export function fromBig(n: bigint, version: 4 | 6): string {
  const bytes: number[] = [];
  for (let i = 0; i < (version === 4 ? 4 : 16); i++) {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/** First and last address of a CIDR, as numbers. */
export function bounds(cidr: string): { first: bigint; last: bigint; version: 4 | 6 } {
  const [addr, len] = ipaddr.parseCIDR(cidr);
  const version = addr.kind() === 'ipv4' ? 4 : 6;
  const bits = BigInt(version === 4 ? 32 : 128);
  const size = 1n << (bits - BigInt(len));
  const first = (toBig(addr.toString()) / size) * size;
  return { first, last: first + size - 1n, version };
}

export interface AddressRange {
  start: string;
  end: string;
}

/**
 * Neutron allocation pools for `range` (a CIDR inside `subnet`) minus the given addresses: usable
 * host addresses only (IPv4 drops the subnet's network and broadcast addresses).
 */
export function allocationPools(subnet: string, range: string, exclude: string[]): AddressRange[] {
  const s = bounds(subnet);
  const r = bounds(range);
  let first = r.first > s.first ? r.first : s.first + 1n;
  let last = r.last;
  if (s.version === 4 && last >= s.last) last = s.last - 1n;
  if (first <= s.first) first = s.first + 1n;
  const holes = exclude
    .map(toBig)
    .filter((n) => n >= first && n <= last)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const pools: AddressRange[] = [];
  let cursor = first;
  for (const hole of holes) {
    if (hole > cursor) pools.push({ start: fromBig(cursor, s.version), end: fromBig(hole - 1n, s.version) });
    cursor = hole + 1n;
  }
  if (cursor <= last) pools.push({ start: fromBig(cursor, s.version), end: fromBig(last, s.version) });
  return pools;
}

export function overlaps(a: string, b: string): boolean {
  const x = bounds(a);
  const y = bounds(b);
  return x.version === y.version && x.first <= y.last && y.first <= x.last;
}

/** The first block of `/blockLength` inside one of `prefixes` that overlaps none of `taken`. */
export function firstFreeBlock(prefixes: string[], blockLength: number, taken: string[]): string | undefined {
  for (const prefix of prefixes) {
    const p = bounds(prefix);
    const bits = BigInt(p.version === 4 ? 32 : 128);
    if (blockLength < prefixLength(prefix)) continue; // block larger than this prefix
    const size = 1n << (bits - BigInt(blockLength));
    for (let start = p.first; start + size - 1n <= p.last; start += size) {
      const candidate = `${fromBig(start, p.version)}/${blockLength}`;
      if (!taken.some((t) => overlaps(t, candidate))) return candidate;
    }
  }
  return undefined;
}
