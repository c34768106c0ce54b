// Shared limits against a real redis-server: two instances sharing it enforce one cap and one rate;
// the leases of an instance that stops without releasing expire within the lease time; a dead or
// hung Redis answers 'unavailable' within the timeout; a Redis back on its port is used again,
// and the leases held through the outage come back.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { SharedLimits, redactRedisUrl, redisOptionsOf, type SharedLimitsOptions, type SharedLimitsSettings } from '../../src/shared-limits/shared-limits';
import { until } from '../helpers/daemon';
import { startRedis, type RedisServer } from '../helpers/redis-server';

let prefixes = 0;

function settings(overrides: Partial<SharedLimitsSettings> = {}): SharedLimitsSettings {
  return { prefix: `test${process.pid}-${prefixes++}:`, timeoutMs: 50, connRatePerSec: 1000, connBurst: 1000, maxConnsPerIp: 1000, ...overrides };
}

async function open(t: TestContext, redis: RedisServer, s: SharedLimitsSettings, options: Partial<SharedLimitsOptions> = {}): Promise<SharedLimits> {
  const limits = await SharedLimits.open(s, { url: redis.url, ...options });
  t.after(() => limits.close());
  await until(() => limits.up, 5000, 'shared limits connected');
  return limits;
}

/** A plain client, to look at what the shared limits keep in Redis. */
function inspector(t: TestContext, redis: RedisServer): Redis {
  const client = new Redis({ port: redis.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  t.after(() => client.disconnect());
  return client;
}

async function acquireTimed(limits: SharedLimits, key: string): Promise<{ verdict: string; ms: number }> {
  const start = performance.now();
  const verdict = await limits.acquire(key);
  return { verdict, ms: performance.now() - start };
}

test('shared-cap: two instances enforce one per-client cap between them; other clients are unaffected', async (t) => {
  const redis = await startRedis(t);
  const s = settings({ maxConnsPerIp: 3 });
  const a = await open(t, redis, s);
  const b = await open(t, redis, s);
  assert.equal(await a.acquire('127.0.0.2'), 'ok');
  assert.equal(await a.acquire('127.0.0.2'), 'ok');
  assert.equal(await b.acquire('127.0.0.2'), 'ok');
  assert.equal(await b.acquire('127.0.0.2'), 'ip-limit');
  assert.equal(await a.acquire('127.0.0.2'), 'ip-limit');
  assert.equal(await b.acquire('127.0.0.3'), 'ok', 'another client');
  a.release('127.0.0.2');
  assert.equal(await b.acquire('127.0.0.2'), 'ok', 'a release frees a slot for the other instance');
  assert.equal(a.leasesHeld, 1);
  assert.equal(b.leasesHeld, 3);
  // Refused acquires hold nothing; an extra release changes nothing.
  b.release('127.0.0.9');
  assert.equal(b.leasesHeld, 3);
});

test('shared-rate: two instances draw on one token bucket per client', async (t) => {
  const redis = await startRedis(t);
  // Four tokens, one more a second: the few ms the test takes refill none.
  const s = settings({ connRatePerSec: 1, connBurst: 4 });
  const a = await open(t, redis, s);
  const b = await open(t, redis, s);
  for (const limits of [a, b, a, b]) {
    assert.equal(await limits.acquire('10.0.0.1'), 'ok');
    limits.release('10.0.0.1');
  }
  assert.equal(await a.acquire('10.0.0.1'), 'rate-limited');
  assert.equal(await b.acquire('10.0.0.1'), 'rate-limited');
  assert.equal(await b.acquire('2001:db8:1:2::/64'), 'ok', 'another client has its own bucket');
  // The bucket key expires once it would have refilled: Redis doesn't fill up.
  const pttl = await inspector(t, redis).pttl(`${s.prefix}{10.0.0.1}:rate`);
  assert.ok(pttl > 0 && pttl <= 4000 + 1000, `bucket TTL ${pttl} ms`);
});

test('lease-expiry: the leases of an instance that stops without releasing expire within the lease time', async (t) => {
  const redis = await startRedis(t);
  const leaseMs = 400;
  const s = settings({ maxConnsPerIp: 2 });
  const a = await open(t, redis, s, { leaseMs });
  const b = await open(t, redis, s);
  assert.equal(await a.acquire('127.0.0.2'), 'ok');
  assert.equal(await a.acquire('127.0.0.2'), 'ok');
  // Held past several lease lifetimes: a's refreshes keep them.
  await new Promise((r) => setTimeout(r, 3 * leaseMs));
  assert.equal(await b.acquire('127.0.0.2'), 'ip-limit', 'refreshed leases still count');
  const zkey = `${s.prefix}{127.0.0.2}:conns`;
  const ttl = await inspector(t, redis).pttl(zkey);
  assert.ok(ttl > 0 && ttl <= leaseMs + 1000, `the lease set expires too (TTL ${ttl} ms)`);

  // As after kill -9: the connection goes, nothing is released.
  a.destroy();
  const stoppedAt = performance.now();
  let verdict = await b.acquire('127.0.0.2');
  while (verdict !== 'ok') {
    assert.ok(performance.now() - stoppedAt < leaseMs + 500, `still ${verdict} ${Math.round(performance.now() - stoppedAt)} ms after the instance stopped`);
    await new Promise((r) => setTimeout(r, 20));
    verdict = await b.acquire('127.0.0.2');
  }
  assert.ok(performance.now() - stoppedAt >= leaseMs / 4, 'the leases did not vanish at once (they expire)');
});

test('redis-down: a killed Redis answers unavailable at once, a hung one within --redis-timeout; in-flight commands are bounded', async (t) => {
  const redis = await startRedis(t);
  const errors: string[] = [];
  const ups: boolean[] = [];
  const limits = await open(t, redis, settings({ timeoutMs: 50 }), { maxInFlight: 3, onError: (what) => errors.push(what), onUp: (up) => ups.push(up) });

  // Hung: the process is stopped, the connection stays open.
  const resume = redis.hang(t);
  const hung = await Promise.all([1, 2, 3, 4, 5].map((i) => acquireTimed(limits, `10.0.1.${i}`)));
  for (const { verdict, ms } of hung) {
    assert.equal(verdict, 'unavailable');
    assert.ok(ms < 50 + 250, `answered after ${Math.round(ms)} ms`);
  }
  assert.ok(hung.filter((h) => h.ms < 25).length >= 2, 'past maxInFlight, acquire answers at once');
  assert.equal(limits.up, false);
  assert.equal(limits.leasesHeld, 5, 'an unanswered acquire still holds a lease, for when Redis is back');

  resume();
  await redis.stop();
  await until(() => !limits.up && limits.inFlight === 0, 5000, 'the connection to be seen closed');
  const dead = await acquireTimed(limits, '10.0.2.1');
  assert.equal(dead.verdict, 'unavailable');
  assert.ok(dead.ms < 50, `answered after ${Math.round(dead.ms)} ms`);
  assert.ok(errors.includes('acquire'));
  assert.deepEqual(ups.slice(-1), [false]);
  // Releasing while Redis is down drops the lease here, and throws nothing.
  limits.release('10.0.2.1');
  assert.equal(limits.leasesHeld, 5);
});

test('redis-restart: shared limits resume, and leases held through the outage count again', async (t) => {
  const redis = await startRedis(t);
  const s = settings({ maxConnsPerIp: 2 });
  const a = await open(t, redis, s);
  const b = await open(t, redis, s);
  await redis.stop();
  await until(() => !a.up && !b.up, 5000, 'both to see Redis gone');
  // Admitted by the local limits meanwhile: a holds two leases Redis never saw.
  assert.equal(await a.acquire('127.0.0.2'), 'unavailable');
  assert.equal(await a.acquire('127.0.0.2'), 'unavailable');

  await redis.start();
  await until(() => a.up && b.up, 10_000, 'both to reconnect');
  const zkey = `${s.prefix}{127.0.0.2}:conns`;
  const client = inspector(t, redis);
  let held: number;
  const deadline = Date.now() + 5000;
  while ((held = await client.zcard(zkey)) < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(held, 2, "a's leases are back in Redis");
  assert.equal(await b.acquire('127.0.0.2'), 'ip-limit', 'the cap is shared again');
  a.release('127.0.0.2');
  await until(() => a.leasesHeld === 1);
  let verdict = await b.acquire('127.0.0.2');
  for (let i = 0; verdict !== 'ok' && i < 50; i++) verdict = await b.acquire('127.0.0.2');
  assert.equal(verdict, 'ok');
});

test('redis-url: options from the URL, the password never in what is logged', () => {
  assert.deepEqual(redisOptionsOf('redis://127.0.0.1:6390/2', undefined), { host: '127.0.0.1', port: 6390, db: 2 });
  assert.deepEqual(redisOptionsOf('rediss://user:p%40ss@cache.example:6380', 'env'), { username: 'user', password: 'p@ss', host: 'cache.example', port: 6380, tls: {} });
  assert.deepEqual(redisOptionsOf('redis://[::1]', 'from-env'), { password: 'from-env', host: '::1', port: 6379 });
  assert.deepEqual(redisOptionsOf('unix:///run/redis/redis.sock', 'pw'), { password: 'pw', path: '/run/redis/redis.sock' });
  assert.equal(redactRedisUrl('redis://user:secret@host:6379/0'), 'redis://user:***@host:6379/0');
  assert.equal(redactRedisUrl('redis://:secret@host'), 'redis://:***@host');
  assert.equal(redactRedisUrl('unix:///tmp/r.sock'), 'unix:///tmp/r.sock');
});
