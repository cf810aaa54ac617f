// Docker's PoolID for a kuryr pool, and how it maps to Neutron.
import { InvalidRequestError } from '../util/errors.js';

/**
 * Docker's PoolID, one of:
 *  - `<subnetpool-id>`: a subnetpool kuryr made for one `--subnet` (also kuryr-libnetwork's form);
 *  - `<subnetpool-id>/<cidr>`: one subnet carved out of a shared subnetpool (default pools,
 *    `neutron.pool.*`);
 *  - `subnet:<subnet-id>`: an existing Neutron subnet (`neutron.subnet.*`).
 */
export type PoolRef =
  | { kind: 'own'; subnetpoolId: string }
  | { kind: 'carved'; subnetpoolId: string; cidr: string }
  | { kind: 'subnet'; subnetId: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SUBNET_PREFIX = 'subnet:';

export function parsePoolId(poolId: string): PoolRef {
  const bad = () => new InvalidRequestError(`PoolID '${poolId}' was not issued by kuryr`);
  if (poolId.startsWith(SUBNET_PREFIX)) {
    const subnetId = poolId.slice(SUBNET_PREFIX.length);
    if (!UUID.test(subnetId)) throw bad();
    return { kind: 'subnet', subnetId };
  }
  const slash = poolId.indexOf('/');
  const subnetpoolId = slash < 0 ? poolId : poolId.slice(0, slash);
  if (!UUID.test(subnetpoolId)) throw bad();
  return slash < 0
    ? { kind: 'own', subnetpoolId }
    : { kind: 'carved', subnetpoolId, cidr: poolId.slice(slash + 1) };
}

export function formatPoolId(ref: PoolRef): string {
  if (ref.kind === 'subnet') return SUBNET_PREFIX + ref.subnetId;
  return ref.kind === 'carved' ? `${ref.subnetpoolId}/${ref.cidr}` : ref.subnetpoolId;
}
