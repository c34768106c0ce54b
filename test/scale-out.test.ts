// docs/scale-out.md end to end: the HAProxy configuration printed there (only its addresses
// changed), two tls-echod instances behind it with --proxy-protocol and --redis sharing one real
// redis-server. A client is seen as itself on both instances, one cap holds across them, another
// client is served meanwhile, and HAProxy's health checks are no protocol errors.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { cleanEnv, freePort, roundTrip, spawnDaemon, tempDir, type CliDaemon, type ClientOptions } from './helpers/daemon';
import { spawnOwned, which } from './helpers/external-tools';
import { startRedis } from './helpers/redis-server';

const PAGE = readFileSync(path.join(__dirname, '..', '..', 'docs', 'scale-out.md'), 'utf8');
const HAPROXY = which('haproxy') ?? '/usr/sbin/haproxy';

/** The page's ```haproxy block with its addresses swapped for this test's. */
function documentedConfig(front: number, servers: readonly number[]): string {
  const block = /^```haproxy\n([\s\S]*?)^```$/m.exec(PAGE);
  assert.ok(block !== null, 'docs/scale-out.md has a ```haproxy block');
  let config = block[1]!.replace('bind 0.0.0.0:4433', `bind 127.0.0.1:${front}`);
  servers.forEach((port, i) => (config = config.replace(`10.0.0.1${i + 1}:4433`, `127.0.0.1:${port}`)));
  assert.doesNotMatch(config, /10\.0\.0\./, 'every documented address was replaced');
  return config;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
async function accepting(port: number, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const socket = net.connect({ host: '127.0.0.1', port });
    const ok = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    socket.destroy();
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing accepting on ${port} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A TLS session from `localAddress` through the balancer, or the error that ended it first. */
async function through(t: TestContext, port: number, ca: Buffer, localAddress: string): Promise<tls.TLSSocket | Error> {
  const options: ClientOptions = { localAddress };
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...options });
  t.after(() => socket.destroy());
  return new Promise((resolve) => {
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', (err) => resolve(err));
    socket.once('close', () => resolve(new Error('closed before the handshake')));
  });
}

test('scale-out: the documented HAProxy config, two instances, one Redis: clients seen and limited as themselves across both', async (t) => {
  const redis = await startRedis(t);
  const certDir = tempDir(t);
  const instances: CliDaemon[] = [];
  for (let i = 0; i < 2; i++) {
    // One certificate for both, as the page says; the first instance makes it.
    instances.push(
      await spawnDaemon(t, [
        '--workers', '0', '--cert-dir', certDir,
        '--proxy-protocol', '--trusted-proxy', '127.0.0.1/32',
        '--redis', redis.url, '--max-conns-per-ip', '1',
      ]),
    );
  }
  const ca = readFileSync(path.join(certDir, 'ca.pem'));
  const front = await freePort();
  const config = path.join(tempDir(t), 'haproxy.cfg');
  writeFileSync(config, documentedConfig(front, instances.map((d) => d.port)));
  const haproxy = spawnOwned(t, HAPROXY, ['-db', '-f', config], cleanEnv());
  let output = '';
  haproxy.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  haproxy.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  t.after(async () => {
    if (haproxy.exitCode === null && haproxy.signalCode === null) {
      haproxy.kill('SIGKILL');
      await once(haproxy, 'exit');
    }
  });
  try {
    await accepting(front);
  } catch (err) {
    throw new Error(`haproxy did not start: ${(err as Error).message}; its output: ${output}`, { cause: err });
  }

  // 127.0.0.2's one connection, on whichever instance leastconn picks.
  const first = await through(t, front, ca, '127.0.0.2');
  assert.ok(first instanceof tls.TLSSocket, `127.0.0.2 served (${String(first)})`);
  assert.deepEqual(await roundTrip(first, Buffer.from('one')), Buffer.from('one'));
  // leastconn sends the next to the other instance, which has no local count for 127.0.0.2: the
  // refusal comes from the cap shared in Redis.
  const second = await through(t, front, ca, '127.0.0.2');
  assert.ok(second instanceof Error, 'a second connection from 127.0.0.2 is refused');
  const refusal = await Promise.any(instances.map((d) => d.waitForLine((l) => l.message === 'connection refused' && l.reason === 'ip-limit' && l.remoteAddress === '127.0.0.2')));
  const refusedBy = instances.findIndex((d) => d.lines.includes(refusal));
  assert.equal(refusal.remoteAddress, '127.0.0.2');
  assert.equal(refusal.proxyAddress, '127.0.0.1');

  // Another client is served meanwhile, and logged as itself.
  const other = await through(t, front, ca, '127.0.0.3');
  assert.ok(other instanceof tls.TLSSocket, `127.0.0.3 served (${String(other)})`);
  assert.deepEqual(await roundTrip(other, Buffer.from('two')), Buffer.from('two'));
  other.end();
  first.end();
  const ends = await Promise.all(
    ['127.0.0.2', '127.0.0.3'].map((client) =>
      Promise.any(instances.map((d) => d.waitForLine((l) => l.message === 'session ended' && l.remoteAddress === client))),
    ),
  );
  for (const line of ends) assert.equal(line.proxyAddress, '127.0.0.1');
  // The refusal came from the instance that does not hold 127.0.0.2's session: it had no local
  // count for it, so only the cap shared in Redis can have refused.
  const servedBy = instances.findIndex((d) => d.lines.includes(ends[0]!));
  assert.notEqual(refusedBy, servedBy, 'refused by the other instance');

  // HAProxy's first health checks (a v2 LOCAL header, then a close) have reached both instances
  // by now: none of them is a protocol error.
  for (const d of instances) {
    assert.ok(!d.lines.some((l) => l.message === 'connection refused' && l.reason === 'proxy-header-invalid'), 'no invalid header from the balancer');
  }
});
