#!/usr/bin/python3
"""Idempotent Keystone objects for the kuryr dev env (python3-keystoneclient).

Project "service"; users "neutron" (keystonemiddleware) and "kuryr", both
with role admin on "service" (binding:* is admin-only in Neutron); service
"network" with public/internal/admin endpoints. Input via environment:
KS_URL, NEUTRON_URL, ADMIN_PW, NEUTRON_SVC_PW, KURYR_PW.
"""
import os

from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client

env = os.environ
ks = client.Client(session=session.Session(auth=v3.Password(
    auth_url=env['KS_URL'] + '/v3', username='admin',
    password=env['ADMIN_PW'], project_name='admin',
    user_domain_name='Default', project_domain_name='Default')))

projects = ks.projects.list(name='service', domain='default')
service = projects[0] if projects else ks.projects.create('service', 'default')
admin = ks.roles.list(name='admin')[0]
for name, pw in (('neutron', env['NEUTRON_SVC_PW']), ('kuryr', env['KURYR_PW'])):
    users = ks.users.list(name=name, domain='default')
    if users:
        user = ks.users.update(users[0], password=pw)
    else:
        user = ks.users.create(name, domain='default', password=pw,
                               default_project=service)
    ks.roles.grant(admin, user=user, project=service)   # idempotent PUT

svcs = ks.services.list(type='network')
svc = svcs[0] if svcs else ks.services.create('neutron', type='network')
for iface in ('public', 'internal', 'admin'):
    if not ks.endpoints.list(service=svc, interface=iface):
        ks.endpoints.create(svc, env['NEUTRON_URL'], interface=iface,
                            region='RegionOne')
print('keystone: users neutron+kuryr (admin on service), network -> %s'
      % env['NEUTRON_URL'])
