// docs/scale-out.md end to end: the HAProxy configuration printed there (only its addresses
// changed), two tls-echod instances behind it with --proxy-protocol and --redis sharing one real
// redis-server. A client is seen as itself on both instances, one cap holds across them, another
// client is served meanwhile, and HAProxy's health checks are no protocol errors.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import tls from 'node:tls';
import { freePort, roundTrip, spawnDaemon, tempDir, type CliDaemon } from './helpers/daemon';
import { startHaproxy, through } from './helpers/haproxy';
import { startRedis } from './helpers/redis-server';

const PAGE = readFileSync(path.join(__dirname, '..', '..', 'docs', 'scale-out.md'), 'utf8');

/** The page's ```haproxy block with its addresses swapped for this test's. */
function documentedConfig(front: number, servers: readonly number[]): string {
  const block = /^```haproxy\n([\s\S]*?)^```$/m.exec(PAGE);
  assert.ok(block !== null, 'docs/scale-out.md has a ```haproxy block');
  let config = block[1]!.replace('bind 0.0.0.0:4433', `bind 127.0.0.1:${front}`);
  servers.forEach((port, i) => (config = config.replace(`10.0.0.1${i + 1}:4433`, `127.0.0.1:${port}`)));
  assert.doesNotMatch(config, /10\.0\.0\./, 'every documented address was replaced');
  return config;
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
  await startHaproxy(t, documentedConfig(front, instances.map((d) => d.port)), [front]);

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
