#!/usr/bin/python3
"""Run neutron-linuxbridge-agent with a fix for ebtables-nft (Debian 12).

ebtables-nft 1.8.9 cannot delete "--among-src" rules by spec ("RULE_DELETE
failed (Invalid argument)", exit 4) and neutron's arp_protect.ebtables()
retries exit code 4 forever, which wedges the agent loop the first time an
already plugged port is updated (e.g. its security groups change).
Instead of deleting the per-VIF among-src rule we flush the per-VIF MAC chain
and re-append its final DROP; the caller then inserts the new RETURN rule.
Usage: lb-agent-launcher.py <neutron-linuxbridge-agent args...>
"""
import sys

# the eventlet entry point must be imported first (it monkey-patches)
from neutron.cmd.eventlet.plugins.linuxbridge_neutron_agent import main
from neutron.plugins.ml2.drivers.linuxbridge.agent import arp_protect


def _reset_vif_mac_chain(vif, current_rules):
    if any('-i %s' % vif in r and '--among-src' in r for r in current_rules):
        chain = arp_protect._mac_chain_name(vif)
        arp_protect.ebtables(['-F', chain])
        arp_protect.ebtables(['-A', chain, '-j', 'DROP'])


arp_protect._delete_vif_mac_rules = _reset_vif_mac_chain

if __name__ == '__main__':
    sys.argv[0] = 'neutron-linuxbridge-agent'
    sys.exit(main())
