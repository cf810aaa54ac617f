// The walking skeleton, for real: docker network create / run / rm against real Neutron and the
// Linux bridge agent; two containers ping each other over Neutron.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { dockerIdTags, subnetPoolName } from '../../src/cnm/naming.js';
import {
  cleanupDocker,
  containerNet,
  createKuryrNetwork,
  docker,
  HOST,
  hostLinks,
  IMAGE,
  isIdleWarmPort,
  type KuryrProcess,
  networkId,
  neutron,
  neutronNetworksOf,
  pingUntilReply,
  portOfEndpoint,
  startKuryr,
  uniqueName,
  waitFor,
  waitPortActive,
} from './harness.js';

describe('walking skeleton: two containers on a kuryr network', () => {
  let kuryr: KuryrProcess;
  const net = uniqueName('n1');
  const c1 = uniqueName('c1');
  const c2 = uniqueName('c2');
  const subnet = '10.30.0.0/24';
  let dockerNet = '';
  let neutronNet = '';

  before(async () => {
    kuryr = await startKuryr();
  });
  after(async () => {
    await cleanupDocker([c1, c2], [net]);
    await kuryr.stop();
  });

  it('docker network create makes exactly one tagged Neutron network with the subnet and gateway', async () => {
    await createKuryrNetwork('--subnet', subnet, '--gateway', '10.30.0.1', net);
    dockerNet = await networkId(net);
    const nets = await neutronNetworksOf(dockerNet);
    assert.equal(nets.length, 1, 'one Neutron network carries the Docker network tags');
    const [n] = nets;
    assert.ok(n);
    neutronNet = n.id;
    for (const tag of dockerIdTags(dockerNet)) assert.ok(n.tags.includes(tag), `tag ${tag}`);
    const subnets = await neutron.list('subnets', { network_id: n.id });
    assert.equal(subnets.length, 1);
    assert.equal(subnets[0]?.cidr, subnet);
    assert.equal(subnets[0]?.gateway_ip, '10.30.0.1');
    assert.ok(subnets[0]?.subnetpool_id, 'subnet comes from a kuryr subnetpool');
  });

  it('docker run binds a Neutron port per container that turns ACTIVE, and the containers ping each other', async () => {
    await docker('run', '-d', '--name', c1, '--net', net, IMAGE, 'sleep', '3600');
    await docker('run', '-d', '--name', c2, '--net', net, IMAGE, 'sleep', '3600');
    const nets = [await containerNet(c1, net), await containerNet(c2, net)];
    for (const [i, c] of [c1, c2].entries()) {
      const info = nets[i];
      assert.ok(info);
      const port = await waitPortActive(info.endpointId);
      assert.ok(['kuryr:container', 'compute:kuryr'].includes(port.device_owner), port.device_owner);
      assert.equal(port['binding:host_id'], HOST);
      assert.equal(port.device_id, info.endpointId);
      assert.equal(port.network_id, neutronNet);
      assert.deepEqual(
        port.fixed_ips.map((f) => f.ip_address),
        [info.ip],
      );
      assert.equal(port.mac_address, info.mac.toLowerCase());
      // Docker's IDs are tagged behind the answer (docker run does not wait for them).
      const tags = dockerIdTags(info.endpointId);
      const tagged = await waitFor(
        `port ${port.id} tagged ${tags.join(', ')}`,
        async () => {
          const p = await portOfEndpoint(info.endpointId);
          return p && tags.every((t) => p.tags.includes(t)) ? p : undefined;
        },
        10_000,
        100,
      );
      assert.equal(tagged.id, port.id);
      // What the container really has, read inside it.
      const addr = await docker('exec', c, 'ip', '-o', '-4', 'addr', 'show', 'eth0');
      assert.match(addr, new RegExp(`inet ${info.ip.replace(/\./g, '\\.')}/24`));
      assert.equal(await docker('exec', c, 'cat', '/sys/class/net/eth0/address'), port.mac_address);
      assert.ok(
        (await hostLinks(`tap${port.id.slice(0, 11)}`)).length === 1,
        'host end of the veth is on the host',
      );
    }
    await pingUntilReply(c1, nets[1]?.ip ?? '');
    await pingUntilReply(c2, nets[0]?.ip ?? '');
  });

  it('docker rm -f deletes the ports or gives them back to the warm pool; docker network rm leaves nothing in Neutron or on the host', async () => {
    const endpoints = [(await containerNet(c1, net)).endpointId, (await containerNet(c2, net)).endpointId];
    const portIds = await Promise.all(endpoints.map(async (e) => (await portOfEndpoint(e))?.id ?? ''));
    await docker('rm', '-f', c1, c2);
    for (const e of endpoints)
      assert.equal(await portOfEndpoint(e, 0), undefined, `no port names endpoint ${e} any more`);
    for (const id of portIds) {
      const tap = `tap${id.slice(0, 11)}`;
      const [p] = await neutron.list('ports', { id });
      // Deleted with its veth, or an idle warm port again, its veth kept plugged.
      assert.deepEqual(await hostLinks(tap), p && isIdleWarmPort(p) ? [tap] : [], `port ${id}: ${p?.name}`);
    }
    await docker('network', 'rm', net);
    for (const id of portIds) assert.deepEqual(await hostLinks(`tap${id.slice(0, 11)}`), []);
    assert.deepEqual(await neutronNetworksOf(dockerNet), []);
    assert.deepEqual(await neutron.list('subnets', { network_id: neutronNet }), []);
    assert.deepEqual(await neutron.list('ports', { network_id: neutronNet }), []);
    assert.deepEqual(await neutron.list('subnetpools', { name: subnetPoolName('kuryrPool', subnet) }), []);
    await waitFor(
      'network to be gone',
      async () => (await neutron.list('networks', { id: neutronNet })).length === 0,
      5_000,
    );
  });
});
