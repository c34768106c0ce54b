// Two daemons sharing one real redis-server (--redis) enforce one per-client cap between them.
// With Redis gone, connections are still served under the local limits, the loss is counted and
// visible, and /readyz fails only with --redis-required; with Redis back, limits are shared again.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { connect, rawOutcome, spawnDaemon, startDaemon, tempDir, type InProcessDaemon } from './helpers/daemon';
import { metricOf } from './helpers/metrics';
import { loadConfig } from '../src/config/config';
import { startRedis, type RedisServer } from './helpers/redis-server';

async function readyz(d: InProcessDaemon): Promise<number> {
  const admin = d.supervisor.adminAddress!;
  const res = await fetch(`http://127.0.0.1:${admin.port}/readyz`);
  await res.arrayBuffer();
  return res.status;
}

/** Polls the daemon's tls_echod_redis_up until it reads `want`. */
async function redisUp(d: InProcessDaemon, want: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await metricOf(d.supervisor, 'tls_echod_redis_up')) !== want) {
    if (Date.now() > deadline) throw new Error(`tls_echod_redis_up never read ${want}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Polls Redis until client `key` holds `want` leases in all. */
async function leasesInRedis(t: TestContext, redis: RedisServer, prefix: string, key: string, want: number): Promise<void> {
  const client = new Redis({ host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  t.after(() => client.disconnect());
  let held: number;
  const deadline = Date.now() + 10_000;
  while ((held = await client.zcard(`${prefix}{${key}}:conns`)) !== want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  client.disconnect();
  assert.equal(held, want, `leases of ${key} in Redis`);
}

test('redis-limits: two daemons share one per-IP cap; without Redis the local limits serve; with it back, shared again', async (t) => {
  const redis = await startRedis(t);
  const prefix = `redis-limits-${process.pid}:`;
  const flags = { redis: redis.url, redisPrefix: prefix, maxConnsPerIp: '2', admin: '127.0.0.1:0' };
  const one = await startDaemon(t, { ...flags, redisRequired: true });
  const two = await startDaemon(t, flags);
  await redisUp(one, 1);
  await redisUp(two, 1);
  assert.equal(await readyz(one), 200);

  await connect(t, one.port, one.ca, { localAddress: '127.0.0.2' });
  await connect(t, two.port, two.ca, { localAddress: '127.0.0.2' });
  // Each daemon holds one connection of 127.0.0.2: under the cap locally, at it in all.
  assert.deepEqual(await rawOutcome(one.port, '127.0.0.2'), { reset: true, received: 0 });
  assert.deepEqual(await rawOutcome(two.port, '127.0.0.2'), { reset: true, received: 0 });
  assert.equal(await metricOf(one.supervisor, 'tls_echod_connections_refused_total', { reason: 'ip-limit' }), 1);
  assert.equal(await metricOf(two.supervisor, 'tls_echod_connections_refused_total', { reason: 'ip-limit' }), 1);
  await connect(t, one.port, one.ca, { localAddress: '127.0.0.3' });
  await connect(t, two.port, two.ca, { localAddress: '127.0.0.3' });
  assert.equal(await metricOf(one.supervisor, 'tls_echod_redis_errors_total'), 0);

  // Redis gone: no accept waits on it, the local limits decide, and it shows.
  await redis.stop();
  await redisUp(one, 0);
  await redisUp(two, 0);
  assert.equal(await readyz(one), 503, '--redis-required: not ready without Redis');
  assert.equal(await readyz(two), 200, 'without --redis-required, still ready');
  await connect(t, one.port, one.ca, { localAddress: '127.0.0.2' });
  assert.deepEqual(await rawOutcome(one.port, '127.0.0.2'), { reset: true, received: 0 }, 'the local cap still holds');
  await connect(t, two.port, two.ca, { localAddress: '127.0.0.4' });
  assert.ok((await metricOf(one.supervisor, 'tls_echod_redis_errors_total')) >= 1);
  assert.equal(await metricOf(one.supervisor, 'tls_echod_connections_refused_total', { reason: 'ip-limit' }), 2);

  // Redis back, empty: the daemons put back the leases of the connections they hold
  // (one holds two of 127.0.0.2, two holds one), and the shared cap applies again.
  await redis.start();
  await redisUp(one, 1);
  await redisUp(two, 1);
  assert.equal(await readyz(one), 200);
  await leasesInRedis(t, redis, prefix, '127.0.0.2', 3);
  assert.deepEqual(await rawOutcome(two.port, '127.0.0.2'), { reset: true, received: 0 }, 'over the shared cap');
  assert.equal(await metricOf(two.supervisor, 'tls_echod_connections_refused_total', { reason: 'ip-limit' }), 2);
  await connect(t, two.port, two.ca, { localAddress: '127.0.0.5' });
  await leasesInRedis(t, redis, prefix, '127.0.0.5', 1);

  // The local counts stayed exact through it all: sessions end, every count comes back to zero.
  await one.stop();
  await two.stop();
  assert.equal(one.supervisor.counts.ipsHeld, 0);
  assert.equal(two.supervisor.counts.ipsHeld, 0);
  await leasesInRedis(t, redis, prefix, '127.0.0.2', 0);
  await leasesInRedis(t, redis, prefix, '127.0.0.3', 0);
});

test('redis-hung: a connection waiting on a Redis that hangs is served by the local limits after --redis-timeout, or refused if the daemon stops meanwhile', async (t) => {
  const redis = await startRedis(t);
  const d = await startDaemon(t, { redis: redis.url, redisPrefix: `redis-hung-${process.pid}:`, redisTimeout: '300' });
  await redisUp(d, 1);
  redis.hang(t);
  const start = performance.now();
  await connect(t, d.port, d.ca, { localAddress: '127.0.0.2' });
  const waited = performance.now() - start;
  assert.ok(waited >= 250 && waited < 300 + 1000, `served after ${Math.round(waited)} ms`);
  assert.equal(await metricOf(d.supervisor, 'tls_echod_redis_up'), 0);

  // Stopping while a connection waits: it is refused as `shutdown`, and nothing stays held.
  const outcome = rawOutcome(d.port, '127.0.0.3');
  await new Promise((r) => setTimeout(r, 50));
  const stopped = d.stop();
  assert.deepEqual(await outcome, { reset: true, received: 0 });
  await stopped;
  assert.equal(await metricOf(d.supervisor, 'tls_echod_connections_refused_total', { reason: 'shutdown' }), 1);
  assert.equal(d.supervisor.counts.ipsHeld, 0);
});

test('redis-kill-9: the leases of a daemon killed with -9 expire within 30 s; a daemon started without Redis serves', async (t) => {
  const redis = await startRedis(t);
  const prefix = `redis-kill-${process.pid}:`;
  const certDir = tempDir(t);
  const daemon = await spawnDaemon(t, ['--workers', '0', '--cert-dir', certDir, '--redis', redis.url, '--redis-prefix', prefix, '--max-conns-per-ip', '2']);
  const ca = readFileSync(path.join(certDir, 'ca.pem'));
  await connect(t, daemon.port, ca, { localAddress: '127.0.0.2' });
  await connect(t, daemon.port, ca, { localAddress: '127.0.0.2' });
  await leasesInRedis(t, redis, prefix, '127.0.0.2', 2);
  daemon.child.kill('SIGKILL');
  await daemon.exited();

  const client = new Redis({ host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  t.after(() => client.disconnect());
  const zkey = `${prefix}{127.0.0.2}:conns`;
  const [seconds, micros] = await client.time();
  const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  const expiries = (await client.zrangebyscore(zkey, '-inf', '+inf', 'WITHSCORES')).filter((_, i) => i % 2 === 1).map(Number);
  assert.equal(expiries.length, 2);
  for (const at of expiries) assert.ok(at > now && at <= now + 30_000, `a lease expires ${at - now} ms from now`);
  assert.ok((await client.pttl(zkey)) <= 31_000, 'and so does the key');

  // The other instance sees them until then.
  const other = await startDaemon(t, { redis: redis.url, redisPrefix: prefix, maxConnsPerIp: '2' });
  await redisUp(other, 1);
  assert.deepEqual(await rawOutcome(other.port, '127.0.0.2'), { reset: true, received: 0 });

  // Started while Redis is down: serving on the local limits from the first connection.
  await redis.stop();
  const alone = await startDaemon(t, { redis: redis.url, redisPrefix: prefix, maxConnsPerIp: '2' });
  await connect(t, alone.port, alone.ca, { localAddress: '127.0.0.2' });
  assert.equal(await metricOf(alone.supervisor, 'tls_echod_redis_up'), 0);
});

test('redis-reload: a new --redis-prefix applies to new connections; leases held stay where they were made', async (t) => {
  const redis = await startRedis(t);
  const certDir = tempDir(t);
  const before = `redis-reload-a-${process.pid}:`;
  const after = `redis-reload-b-${process.pid}:`;
  const base = { listen: '127.0.0.1:0', workers: '0', logLevel: 'error', drainTimeout: '100', certDir, redis: redis.url };
  const d = await startDaemon(t, { ...base, redisPrefix: before }, { reloadConfig: () => loadConfig({ flags: { ...base, redisPrefix: after }, env: {} }) });
  await redisUp(d, 1);
  const first = await connect(t, d.port, d.ca, { localAddress: '127.0.0.2' });
  await leasesInRedis(t, redis, before, '127.0.0.2', 1);
  assert.equal(await d.supervisor.reload(), true);
  await connect(t, d.port, d.ca, { localAddress: '127.0.0.2' });
  await leasesInRedis(t, redis, after, '127.0.0.2', 1);
  first.destroy();
  await leasesInRedis(t, redis, before, '127.0.0.2', 0);
  await leasesInRedis(t, redis, after, '127.0.0.2', 1);
});
