// The Neutron resources we read and write, with only the fields we use.

/** A resource's created_at in ms (Neutron writes UTC without a zone, to the second); NaN if absent. */
export function createdAtMs(createdAt: string | undefined): number {
  if (!createdAt) return Number.NaN;
  return Date.parse(createdAt.endsWith('Z') ? createdAt : `${createdAt}Z`);
}

export interface Network {
  id: string;
  name: string;
  mtu?: number;
  shared?: boolean;
  status?: string;
  subnets: string[];
  tags: string[];
  project_id?: string;
  admin_state_up?: boolean;
  created_at?: string;
}

export interface HostRoute {
  destination: string;
  nexthop: string;
}

export interface Subnet {
  id: string;
  name: string;
  network_id: string;
  ip_version: 4 | 6;
  cidr: string;
  gateway_ip: string | null;
  subnetpool_id: string | null;
  host_routes: HostRoute[];
  allocation_pools?: { start: string; end: string }[];
  enable_dhcp?: boolean;
  tags: string[];
}

export interface SubnetPool {
  id: string;
  name: string;
  prefixes: string[];
  ip_version: 4 | 6;
  /** Neutron returns prefix lengths as strings ("24") although they are sent as numbers. */
  default_prefixlen: string | number;
  description?: string;
  shared?: boolean;
  tags: string[];
  created_at?: string;
}

export interface FixedIp {
  subnet_id: string;
  ip_address: string;
}

export interface Port {
  id: string;
  name: string;
  network_id: string;
  mac_address: string;
  fixed_ips: FixedIp[];
  device_id: string;
  device_owner: string;
  status: string;
  admin_state_up?: boolean;
  project_id?: string;
  'binding:host_id'?: string;
  'binding:vif_type'?: string;
  'binding:vif_details'?: Record<string, unknown>;
  'binding:vnic_type'?: string;
  security_groups?: string[];
  tags: string[];
  /** kuryr's warm-pool ports carry the marker of the bulk create that made them. */
  description?: string;
  created_at?: string;
}

export interface SecurityGroup {
  id: string;
  name: string;
  description?: string;
  tags: string[];
}

export interface SecurityGroupRule {
  id: string;
  security_group_id: string;
  direction: 'ingress' | 'egress';
  ethertype: 'IPv4' | 'IPv6';
  protocol: string | null;
  port_range_min: number | null;
  port_range_max: number | null;
}

export interface Extension {
  alias: string;
  name: string;
}

export interface Agent {
  id: string;
  agent_type: string;
  host: string;
  alive: boolean;
  admin_state_up: boolean;
}

/** Resource collections keyed by their URL path, with singular body key and type. */
export interface ResourceMap {
  networks: Network;
  subnets: Subnet;
  subnetpools: SubnetPool;
  ports: Port;
  'security-groups': SecurityGroup;
  'security-group-rules': SecurityGroupRule;
  extensions: Extension;
  agents: Agent;
}

export type Collection = keyof ResourceMap;

export const singular: Record<Collection, string> = {
  networks: 'network',
  subnets: 'subnet',
  subnetpools: 'subnetpool',
  ports: 'port',
  'security-groups': 'security_group',
  'security-group-rules': 'security_group_rule',
  extensions: 'extension',
  agents: 'agent',
};

/** Collections whose bodies use a different plural key than the URL path. */
export const pluralKey: Record<Collection, string> = {
  networks: 'networks',
  subnets: 'subnets',
  subnetpools: 'subnetpools',
  ports: 'ports',
  'security-groups': 'security_groups',
  'security-group-rules': 'security_group_rules',
  extensions: 'extensions',
  agents: 'agents',
};
