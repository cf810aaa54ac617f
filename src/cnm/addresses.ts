// Address arithmetic on Docker's "ip/prefix" strings.
import ipaddr from 'ipaddr.js';
import { InvalidRequestError } from '../util/errors.js';

export interface ParsedCidr {
  address: string;
  prefixLength: number;
  version: 4 | 6;
}

export function parseCidr(value: string, what: string): ParsedCidr {
  try {
    const [addr, len] = ipaddr.parseCIDR(value);
    return { address: addr.toString(), prefixLength: len, version: addr.kind() === 'ipv4' ? 4 : 6 };
  } catch {
    throw new InvalidRequestError(`${what}: '${value}' is not an address/prefix (CIDR)`);
  }
}

export function parseIp(value: string, what: string): string {
  if (!ipaddr.isValid(value)) throw new InvalidRequestError(`${what}: '${value}' is not an IP address`);
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
