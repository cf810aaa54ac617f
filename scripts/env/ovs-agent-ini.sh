# ovs_agent_ini LOCAL_IP OVSDB OF_IP: neutron-openvswitch-agent's configuration on this machine's
# userspace datapath (every bridge netdev), VXLAN with l2population, the openvswitch firewall. The
# root's agent (backends.sh) and each simulated host's (hosts.sh) differ only in the addresses.
ovs_agent_ini() {
  cat <<INI
[ovs]
integration_bridge = br-int
tunnel_bridge = br-tun
local_ip = $1
datapath_type = netdev
ovsdb_connection = $2
of_listen_address = $3
[agent]
tunnel_types = vxlan
l2_population = true
polling_interval = 2
[securitygroup]
firewall_driver = openvswitch
enable_security_group = true
INI
}
