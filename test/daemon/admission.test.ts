// Pure admission logic with an injected clock: CIDR matching, token buckets, per-IP counts,
// the bounds on the maps keyed by client address, and the pending queue.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Admission, ClientTable } from '../../src/daemon/admission';
import { CidrList, ipv6NetworkKey, normalizeAddress, parseCidr } from '../../src/config/cidr';
import { PendingQueue } from '../../src/daemon/pending-queue';

function list(...texts: string[]): CidrList {
  return new CidrList(texts.map((t) => parseCidr(t)!));
}

test('cidr: IPv4 and IPv6 blocks, bare addresses, and IPv4-mapped IPv6 treated as IPv4', () => {
  const l = list('10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::1');
  assert.ok(l.contains('10.255.0.1'));
  assert.ok(!l.contains('11.0.0.1'));
  assert.ok(l.contains('192.168.1.7'));
  assert.ok(!l.contains('192.168.1.8'));
  assert.ok(l.contains('2001:db8:1::5'));
  assert.ok(!l.contains('2001:db9::1'));
  assert.ok(l.contains('::1'));
  assert.ok(l.contains(normalizeAddress('::ffff:10.1.2.3')));
  assert.equal(normalizeAddress('::FFFF:127.0.0.2'), '127.0.0.2');
  assert.equal(normalizeAddress('::1'), '::1');
  assert.ok(list('::ffff:10.0.0.0/104').contains('10.9.9.9'), 'a mapped block matches the IPv4 addresses it covers');
  assert.ok(list('0.0.0.0/0').contains('8.8.8.8'));
  assert.ok(!list('0.0.0.0/0').contains('::2'), 'an IPv4 block never matches IPv6');
  for (const bad of ['10.0.0.0/33', '1.2.3', 'fe80::/129', 'x', '10.0.0.0/']) assert.equal(parseCidr(bad), undefined, bad);
});

// Found by test/properties/cidr.test.ts: a mapped address or block written any other way than
// ::ffff:a.b.c.d stayed IPv6, so it matched no IPv4 client (0:0:0:0:0:ffff:0:0 in 0:0:0:0:0:0:0:0/00).
test('cidr: an IPv4-mapped address or block is IPv4 in every textual form', () => {
  for (const text of ['0:0:0:0:0:ffff:a00:1', '::FFFF:A00:1', '0000:0000:0000:0000:0000:ffff:10.0.0.1', '::ffff:10.0.0.1']) {
    assert.equal(normalizeAddress(text), '10.0.0.1', text);
  }
  assert.equal(normalizeAddress('0:0:0:0:0:ffff:0:0'), '0.0.0.0');
  assert.equal(normalizeAddress('::ffff:10.0.0.1%eth0'), '::ffff:10.0.0.1%eth0', 'a zone is left alone');
  assert.equal(normalizeAddress('::fffe:a00:1'), '::fffe:a00:1');
  assert.deepEqual(parseCidr('0:0:0:0:0:ffff:a00:0/104'), { family: 4, network: 0x0a000000n, prefix: 8, text: '0:0:0:0:0:ffff:a00:0/104' });
  assert.ok(list('0:0:0:0:0:ffff:a00:0/104').contains('10.9.9.9'));
});

// Found by test/properties/cidr.test.ts: ::ffff:0.0.10.10/00 was refused while the same network
// written ::fffe:0:0/95 or ::/0 was accepted; a block wider than ::ffff:0:0/96 is IPv6 now.
test('cidr: a block wider than the mapped /96 is an IPv6 block, matching no IPv4 client', () => {
  assert.deepEqual(parseCidr('::ffff:0.0.10.10/00'), { family: 6, network: 0n, prefix: 0, text: '::ffff:0.0.10.10/00' });
  assert.equal(parseCidr('::ffff:0:0/95')?.network, parseCidr('::fffe:0:0/95')?.network);
  assert.ok(list('::/0').contains('2001:db8::1'));
  assert.ok(!list('::/0').contains('10.0.0.1'), '::/0 is every IPv6 client, not every client');
  assert.ok(!list('::ffff:0:0/95').contains(normalizeAddress('::ffff:10.0.0.1')));
});

// Found by test/properties/cidr.test.ts: an IPv4 address threw RangeError.
test('ipv6NetworkKey: an IPv4 address is its own key', () => {
  assert.equal(ipv6NetworkKey('192.0.2.1', 64), '192.0.2.1');
  assert.equal(ipv6NetworkKey('2001:db8:0:1:2:3:4:5', 64), '2001:db8:0:1:0:0:0:0/64');
});

test('client table: a burst, then the refill rate, per address', () => {
  let now = 0;
  const t = new ClientTable(10, 5, 1000, () => now);
  for (let i = 0; i < 5; i++) assert.equal(t.admit('a', 100), undefined);
  assert.equal(t.admit('a', 100), 'rate-limited', 'burst spent');
  assert.equal(t.admit('b', 100), undefined, 'another address has its own bucket');
  now += 100; // 10/s: one token per 100 ms
  assert.equal(t.admit('a', 100), undefined);
  assert.equal(t.admit('a', 100), 'rate-limited');
  now += 10_000;
  for (let i = 0; i < 5; i++) assert.equal(t.admit('a', 100), undefined, 'refilled to the burst, no more');
  assert.equal(t.admit('a', 100), 'rate-limited');
});

test('client table: the cap is checked before the bucket, so a client at its cap burns no tokens', () => {
  const now = 0;
  const t = new ClientTable(1, 3, 1000, () => now);
  assert.equal(t.admit('a', 1), undefined);
  for (let i = 0; i < 5; i++) assert.equal(t.admit('a', 1), 'ip-limit');
  t.release('a');
  assert.equal(t.admit('a', 1), undefined, 'tokens were left for it');
  assert.equal(t.heldBy('a'), 1);
});

test('client table: bounded under a flood of addresses, and never forgets a count', () => {
  let now = 0;
  const t = new ClientTable(1, 1, 1000, () => now);
  // Ten addresses hold a connection each, then a flood of new addresses passes through.
  for (let i = 0; i < 10; i++) assert.equal(t.admit(`192.168.0.${i}`, 10), undefined);
  // Each flood address connects twice (the second is rate limited) and its connection ends.
  for (let i = 0; i < 50_000; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    assert.equal(t.admit(ip, 10), undefined);
    assert.equal(t.admit(ip, 10), 'rate-limited');
    t.release(ip);
  }
  assert.ok(t.size <= 1000 + 10, `size ${t.size}`);
  for (let i = 0; i < 10; i++) assert.equal(t.heldBy(`192.168.0.${i}`), 1, 'entries holding connections survive');
  // The flood's entries go once their buckets have refilled.
  now += 5000;
  t.sweep();
  assert.equal(t.size, 10, 'only the addresses still holding connections are left');
  assert.equal(t.holding, 10);
  for (let i = 0; i < 10; i++) t.release(`192.168.0.${i}`);
  t.sweep();
  assert.equal(t.size, 0, 'refilled and holding nothing: forgotten');
  assert.equal(t.holding, 0);
});

test('client table: more addresses holding connections than the bound still leaves room for the rest', () => {
  const now = 0;
  const t = new ClientTable(1, 1, 100, () => now);
  for (let i = 0; i < 500; i++) assert.equal(t.admit(`192.168.${i >> 8}.${i & 255}`, 10), undefined);
  for (let i = 0; i < 5000; i++) {
    const ip = `10.0.${i >> 8}.${i & 255}`;
    assert.equal(t.admit(ip, 10), undefined, 'a new address is always admitted');
    t.release(ip);
  }
  assert.ok(t.size <= 100 + 500, `size ${t.size}`);
  assert.equal(t.holding, 500);
});

test('admission: deny wins over allow, allow-list excludes the rest, per-IP cap, release', () => {
  const now = 0;
  const a = new Admission({
    allow: [parseCidr('127.0.0.0/8')!],
    deny: [parseCidr('127.0.0.9')!],
    connRatePerSec: 1000,
    connBurst: 1000,
    maxConnsPerIp: 2,
    ipv6Prefix: 64,
  }, () => now);
  assert.equal(a.admit('127.0.0.9'), 'denied');
  assert.equal(a.admit('10.0.0.1'), 'denied');
  assert.equal(a.admit('127.0.0.2'), undefined);
  assert.equal(a.admit('127.0.0.2'), undefined);
  assert.equal(a.admit('127.0.0.2'), 'ip-limit');
  assert.equal(a.admit('127.0.0.3'), undefined);
  a.release('127.0.0.2');
  assert.equal(a.admit('127.0.0.2'), undefined);
  a.release('127.0.0.2');
  a.release('127.0.0.2');
  a.release('127.0.0.3');
  assert.equal(a.clients.holding, 0, 'no address holds a connection after they all ended');
  a.release('127.0.0.3');
  assert.equal(a.clients.heldBy('127.0.0.3'), 0, 'an extra release never goes negative');
  assert.equal(a.admit('127.0.0.3'), undefined);
  assert.equal(a.clients.heldBy('127.0.0.3'), 1);
});

test('admission: rate limit refuses with its own reason and recovers with time', () => {
  let now = 0;
  const a = new Admission({ allow: [], deny: [], connRatePerSec: 1, connBurst: 2, maxConnsPerIp: 100, ipv6Prefix: 64 }, () => now);
  assert.equal(a.admit('1.1.1.1'), undefined);
  assert.equal(a.admit('1.1.1.1'), undefined);
  assert.equal(a.admit('1.1.1.1'), 'rate-limited');
  now += 1000;
  assert.equal(a.admit('1.1.1.1'), undefined);
});

test('pending queue: bounded length, FIFO, and each entry expires after the timeout', () => {
  const now = 0;
  const expired: number[] = [];
  const q = new PendingQueue<number>(3, 100, (n) => expired.push(n), () => now);
  assert.ok(q.push(1));
  assert.ok(q.push(2));
  assert.ok(q.push(3));
  assert.ok(!q.push(4), 'full');
  assert.equal(q.shift(), 1);
  assert.ok(q.push(5));
  assert.equal(q.length, 3);
  assert.deepEqual(q.drain(), [2, 3, 5]);
  assert.equal(q.length, 0);
  assert.deepEqual(expired, []);
});

test('pending queue: the expiry timer fires for entries in order', async () => {
  const expired: number[] = [];
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  const q = new PendingQueue<number>(10, 20, (n) => {
    expired.push(n);
    if (expired.length === 2) resolve();
  });
  q.push(1);
  q.push(2);
  await done;
  assert.deepEqual(expired, [1, 2]);
  assert.equal(q.length, 0);
});

test('admission: IPv6 clients share a limit with their --ipv6-prefix network; IPv4 stays per address', () => {
  const settings = { allow: [], deny: [], connRatePerSec: 1000, connBurst: 1000, maxConnsPerIp: 1, ipv6Prefix: 64 };
  const a = new Admission(settings, () => 0);
  assert.equal(a.clientKey('2001:db8:1:2::1'), '2001:db8:1:2:0:0:0:0/64');
  assert.equal(a.clientKey('2001:db8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2:0:0:0:0/64');
  assert.equal(a.clientKey('10.1.2.3'), '10.1.2.3');
  assert.equal(a.admit('2001:db8:1:2::1'), undefined);
  assert.equal(a.admit('2001:db8:1:2::99'), 'ip-limit', 'another address of the same /64');
  assert.equal(a.admit('2001:db8:1:3::1'), undefined, 'another /64');
  assert.equal(a.admit('10.0.0.1'), undefined);
  assert.equal(a.admit('10.0.0.2'), undefined, 'IPv4 per address');
  a.release(a.clientKey('2001:db8:1:2::1'));
  assert.equal(a.admit('2001:db8:1:2::99'), undefined);

  // Any prefix length, not only whole groups; 128 is per address.
  a.update({ ...settings, ipv6Prefix: 56 });
  assert.equal(a.clientKey('2001:db8:1:2ff::1'), '2001:db8:1:200:0:0:0:0/56');
  a.update({ ...settings, ipv6Prefix: 128 });
  assert.equal(a.clientKey('2001:db8:1:2::1'), '2001:db8:1:2::1');
});

test('client table: a reload neither pays for the time before it at the new rate nor keeps the old burst', () => {
  // Found by test/properties/admission.test.ts: the sweep priced the time before the reload at
  // the new burst and forgot a bucket that was only half full, and a bucket touched in the
  // same millisecond as the reload kept the old burst.
  let now = 0;
  const t = new ClientTable(1, 1, 1000, () => now);
  assert.equal(t.admit('a', 10), undefined);
  t.release('a');
  now = 2000; // 1/s: the bucket of one is full again after a second
  t.setRate(1, 2);
  t.sweep();
  assert.equal(t.size, 1, 'one token of the new two: not yet the same as no entry');
  assert.equal(t.admit('a', 10), undefined);
  assert.equal(t.admit('a', 10), 'rate-limited', 'the larger burst is earned at the rate, not handed out by the reload');

  const u = new ClientTable(1, 10, 1000, () => now);
  assert.equal(u.admit('b', 10), undefined);
  u.release('b');
  u.setRate(1, 2);
  assert.equal(u.admit('b', 10), undefined);
  assert.equal(u.admit('b', 10), undefined);
  assert.equal(u.admit('b', 10), 'rate-limited', 'a smaller burst applies at once, in the same millisecond too');
});

test('client table: a client connecting at exactly its rate gets every token it earned', () => {
  // Found by test/properties/admission.test.ts: at 5/s a client earns 0.08 tokens per 16 ms;
  // summed in floating point, the token it had earned by 416 ms read 0.9999999999999 and it was
  // refused. Buckets now count thousandths of a token, whole numbers with a whole-ms clock.
  let now = 0;
  const t = new ClientTable(5, 2, 1000, () => now);
  const admittedAt: number[] = [];
  for (let i = 0; i < 26; i++) {
    now += 16;
    if (t.admit('10.0.0.1', 1) === undefined) {
      admittedAt.push(now);
      t.release('10.0.0.1');
    }
  }
  // The burst of two at once; then one token per 200 ms from the first connection at 16 ms.
  assert.deepEqual(admittedAt, [16, 32, 224, 416]);
});

test('admission and the pending queue run on a monotonic clock: the wall clock stepping back changes nothing', (t) => {
  // With Date.now() a step back of an hour (NTP, a resumed VM) stalled every bucket, and every
  // waiting connection, for the hour.
  let monotonic = 1000;
  t.mock.method(performance, 'now', () => monotonic);
  const wall = Date.now();
  let wallNow = wall;
  t.mock.method(Date, 'now', () => wallNow);
  t.mock.timers.enable({ apis: ['setTimeout'] });

  const a = new Admission({ allow: [], deny: [], connRatePerSec: 1, connBurst: 1, maxConnsPerIp: 10, ipv6Prefix: 64 });
  const expired: number[] = [];
  const q = new PendingQueue<number>(10, 100, (n) => expired.push(n));
  assert.equal(a.admit('10.0.0.1'), undefined);
  assert.equal(a.admit('10.0.0.1'), 'rate-limited');
  assert.ok(q.push(1));

  wallNow = wall - 3_600_000;
  monotonic += 1000;
  t.mock.timers.tick(1000);
  assert.equal(a.admit('10.0.0.1'), undefined, 'a second later the bucket has its token, whatever the wall clock says');
  assert.deepEqual(expired, [1], 'the waiting connection left at its deadline');
});

test('pending queue: a reload that shortens the timeout shortens the waits under way', (t) => {
  // Found by test/properties/pending-queue.test.ts: entries kept their deadline across a reload,
  // and the one timer serves the head, so a connection that came after the reload waited behind
  // an older one's later deadline: 50 ms and counting with a timeout of 1 ms.
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let now = 0;
  const expired: number[] = [];
  const q = new PendingQueue<number>(0, 1, (n) => expired.push(n), () => now);
  q.setLimits(1, 51);
  assert.ok(q.push(0));
  q.setLimits(2, 1);
  assert.ok(q.push(1));
  now += 1;
  t.mock.timers.tick(1);
  assert.deepEqual(expired, [0, 1], 'both leave within the new timeout, oldest first');
  assert.equal(q.length, 0);
});

test('client table: a flood that keeps the table just full pays for a sweep once per tenth of the bound', (t) => {
  // A sweep visits every entry. Entries refilling as fast as new addresses came freed one entry
  // per sweep, so every new address swept the whole table: at 100,000 new addresses a second
  // with --conn-rate 1 --conn-burst 1, about 45 µs per connection instead of 4.
  let now = 0;
  const table = new ClientTable(1, 1, 100, () => now);
  for (let i = 0; i < 100; i++, now += 10) assert.equal(table.admit(`10.0.0.${i}`, 1), undefined);
  for (let i = 0; i < 100; i++) table.release(`10.0.0.${i}`);
  const sweep = t.mock.method(table, 'sweep');
  // One new address every 10 ms: each time, the entry made 1000 ms earlier has just refilled.
  for (let i = 0; i < 100; i++, now += 10) {
    assert.equal(table.admit(`10.0.1.${i}`, 1), undefined);
    table.release(`10.0.1.${i}`);
  }
  assert.ok(sweep.mock.callCount() <= 10, `${sweep.mock.callCount()} sweeps for 100 new addresses`);
  assert.ok(table.size <= 100, `size ${table.size}`);
});
