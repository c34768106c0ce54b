// --proxy-protocol behind the real HAProxy (mode tcp): one frontend sending PROXY v1
// (`send-proxy`) to one tls-echod, another sending v2 (`send-proxy-v2`) to a second. Clients
// from 127.0.0.2 and 127.0.0.3 reach both through HAProxy (which connects from 127.0.0.1), and
// each instance logs and limits them as themselves.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { freePort, roundTrip, spawnDaemon, tempDir, type CliDaemon } from './helpers/daemon';
import { startHaproxy, through } from './helpers/haproxy';

interface Instance {
  readonly daemon: CliDaemon;
  readonly ca: Buffer;
}

async function startInstance(t: TestContext): Promise<Instance> {
  const dir = tempDir(t);
  const daemon = await spawnDaemon(t, [
    '--workers', '0', '--cert-dir', dir, '--log-level', 'info',
    '--proxy-protocol', '--trusted-proxy', '127.0.0.1/32', '--max-conns-per-ip', '1',
  ]);
  return { daemon, ca: readFileSync(path.join(dir, 'ca.pem')) };
}

test('haproxy: send-proxy (v1) and send-proxy-v2 in front of two instances; clients seen, logged and limited as themselves', async (t) => {
  const v1 = await startInstance(t);
  const v2 = await startInstance(t);
  const [frontV1, frontV2] = [await freePort(), await freePort()];
  await startHaproxy(
    t,
    [
      'global',
      '  maxconn 100',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 30s',
      '  timeout server 30s',
      `frontend fe_v1`,
      `  bind 127.0.0.1:${frontV1}`,
      '  default_backend be_v1',
      `frontend fe_v2`,
      `  bind 127.0.0.1:${frontV2}`,
      '  default_backend be_v2',
      'backend be_v1',
      `  server s1 127.0.0.1:${v1.daemon.port} send-proxy`,
      'backend be_v2',
      `  server s2 127.0.0.1:${v2.daemon.port} send-proxy-v2`,
      '',
    ].join('\n'),
    [frontV1, frontV2],
  );

  for (const [name, front, instance] of [['v1', frontV1, v1], ['v2', frontV2, v2]] as const) {
    // 127.0.0.2 and 127.0.0.3: two clients, each allowed one connection.
    const first = await through(t, front, instance.ca, '127.0.0.2');
    assert.ok(first instanceof tls.TLSSocket, `${name}: 127.0.0.2 served (${String(first)})`);
    assert.deepEqual(await roundTrip(first, Buffer.from('one')), Buffer.from('one'));
    // A second from 127.0.0.2 is over its cap: refused, even though HAProxy connects from 127.0.0.1 for both.
    const second = await through(t, front, instance.ca, '127.0.0.2');
    assert.ok(second instanceof Error, `${name}: a second connection from 127.0.0.2 is refused`);
    const refused = await instance.daemon.waitForLine((l) => l.message === 'connection refused' && l.reason === 'ip-limit');
    assert.equal(refused.remoteAddress, '127.0.0.2', name);
    assert.equal(refused.proxyAddress, '127.0.0.1', name);
    // The other client is served meanwhile.
    const other = await through(t, front, instance.ca, '127.0.0.3');
    assert.ok(other instanceof tls.TLSSocket, `${name}: 127.0.0.3 served (${String(other)})`);
    assert.deepEqual(await roundTrip(other, Buffer.from('two')), Buffer.from('two'));
    const otherPort = other.localPort;
    other.end();
    const line = await instance.daemon.waitForLine((l) => l.message === 'session ended' && l.remoteAddress === '127.0.0.3');
    assert.equal(line.proxyAddress, '127.0.0.1', name);
    assert.equal(line.remotePort, otherPort, `${name}: the client's own port`);
    first.end();
    await instance.daemon.waitForLine((l) => l.message === 'session ended' && l.remoteAddress === '127.0.0.2');
  }
});
