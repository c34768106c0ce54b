// The soak's pass criteria (scripts/soak/checks.ts) on synthetic samples: each passes on a
// healthy run and fails when its bound is crossed, so a soak that passes means something.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import {
  checkBackToIdle, checkGrowth, checkIdentity, checkP99, checkSessionLines, killAllowance, quantile, warmupSeconds,
} from '../../scripts/soak/checks';
import type { Sample } from '../../scripts/soak/sample';
import { parseSettings } from '../../scripts/soak/settings';
import { sparkline } from '../../scripts/soak/plot';

const MIB = 1024 * 1024;

function sample(over: Partial<Sample> = {}): Sample {
  return {
    tS: 0, supervisorRss: 60 * MIB, supervisorFds: 25, workerRss: 120 * MIB, workerFds: 40, workers: [[60 * MIB, 20], [60 * MIB, 20]], survivorRss: 60 * MIB,
    sessionsActive: 0, pending: 0, accepted: 0, refused: 0, refusedPendingTimeout: 0, refusedPoolFull: 0, sessionsClosed: 0,
    handshakeFailures: 0, heapUsed: 10 * MIB, clientEntries: 0, clientEntriesHolding: 0, activeResources: 8, activeTimers: 0,
    ...over,
  };
}

/** A run of `n` one-second samples whose supervisor RSS is `rssMib(t)`. */
function run(n: number, rssMib: (t: number) => number): Sample[] {
  return Array.from({ length: n }, (_, t) => sample({ tS: t, supervisorRss: rssMib(t) * MIB }));
}

test('warm-up: 20 % or 30 s, whichever is longer, never more than half the run', () => {
  assert.equal(warmupSeconds(600, 0.2, 30), 120);
  assert.equal(warmupSeconds(100, 0.2, 30), 30);
  assert.equal(warmupSeconds(40, 0.2, 30), 20);
});

test('rss-growth: flat and noisy passes; a steady climb past the bound fails', () => {
  const read = (s: Sample): number => s.supervisorRss;
  const noisy = run(180, (t) => 80 + (t % 7 === 0 ? 12 : 0));
  assert.equal(checkGrowth('rss', noisy, read, 36, 0.1).pass, true);
  const leak = run(180, (t) => 80 + t * 0.2);
  const r = checkGrowth('rss', leak, read, 36, 0.1);
  assert.equal(r.pass, false, r.measured);
  assert.match(r.measured, /\+\d+\.\d %/);
  // A deliberately broken bound: the same leak passes only when 50 % growth is allowed.
  assert.equal(checkGrowth('rss', leak, read, 36, 0.5).pass, true);
  // Too few samples after warm-up: not judged, and says so.
  assert.match(checkGrowth('rss', run(20, () => 80), read, 15, 0.1).measured, /not judged/);
});

test('back-to-idle: each count that stays up fails its own check', () => {
  const idle = sample();
  assert.ok(checkBackToIdle(idle, sample({ supervisorFds: 27, activeResources: 10 }), 2, 3).every((c) => c.pass));
  const cases: Array<[Partial<Sample>, string]> = [
    [{ supervisorFds: 33 }, 'supervisor descriptors back to idle'],
    [{ workerFds: 45 }, 'worker descriptors back to idle'],
    [{ sessionsActive: 1 }, 'sessions active at quiescence'],
    [{ pending: 2 }, 'connections pending at quiescence'],
    [{ clientEntriesHolding: 1 }, 'client entries holding connections at quiescence'],
    [{ clientEntries: 5 }, 'client entries at quiescence'],
    [{ activeResources: 14 }, 'supervisor active resources back to idle'],
  ];
  for (const [over, name] of cases) {
    const failed = checkBackToIdle(idle, sample(over), 2, 3).filter((c) => !c.pass).map((c) => c.name);
    assert.deepEqual(failed, [name], JSON.stringify(over));
  }
});

test('identity: exact without pool-full; a gap up to pool-full allowed; a lost or double count fails', () => {
  const base = { accepted: 100, sessionsClosed: 70, handshakeFailures: 20, sessionsActive: 3, pending: 2, refusedPendingTimeout: 5 };
  assert.equal(checkIdentity(sample(base)).pass, true);
  assert.equal(checkIdentity(sample({ ...base, accepted: 101 })).pass, false, 'one accepted, never accounted for');
  assert.equal(checkIdentity(sample({ ...base, sessionsClosed: 71 })).pass, false, 'one closed twice');
  assert.equal(checkIdentity(sample({ ...base, accepted: 104, refusedPoolFull: 4 })).pass, true);
  assert.equal(checkIdentity(sample({ ...base, accepted: 105, refusedPoolFull: 4 })).pass, false);
});

test('session-lines: one per closed session, less those lost with killed workers', () => {
  const ok = checkSessionLines({ lines: 95, duplicates: 0, closed: 100, lost: 3, killAllowance: 5 });
  assert.ok(ok.every((c) => c.pass));
  assert.equal(checkSessionLines({ lines: 95, duplicates: 1, closed: 100, lost: 3, killAllowance: 5 })[0]!.pass, false, 'a sessionId twice');
  assert.equal(checkSessionLines({ lines: 90, duplicates: 0, closed: 100, lost: 3, killAllowance: 5 })[1]!.pass, false, 'more missing than a kill can lose');
  assert.equal(checkSessionLines({ lines: 98, duplicates: 0, closed: 100, lost: 3, killAllowance: 5 })[1]!.pass, false, 'more lines than sessions');
});

test('kill-allowance: the sessions closed around each kill', () => {
  const samples = [0, 10, 30, 60, 100].map((closed, tS) => sample({ tS, sessionsClosed: closed }));
  // The kill at 2.5 s falls in the interval ending at 3 s; it and the one before: 60 - 10.
  assert.equal(killAllowance(samples, [2.5]), 50);
  assert.equal(killAllowance(samples, []), 0);
});

test('p99: within the bound passes; a slow tail or too few round trips fails', () => {
  const fast = Array.from({ length: 1000 }, (_, i) => 10 + (i % 50));
  assert.equal(quantile(fast, 0.99), 59);
  assert.equal(checkP99(fast, 250, 500).pass, true);
  const slowTail = [...fast.slice(0, 980), ...Array<number>(20).fill(400)];
  assert.equal(checkP99(slowTail, 250, 500).pass, false);
  assert.equal(checkP99(fast.slice(0, 100), 250, 500).pass, false, 'too few round trips to judge');
});

test('settings: defaults, and a bad flag exits 2 naming the fix', () => {
  const s = parseSettings('soak', [], new Date('2026-12-02T15:00:00.000Z'));
  assert.equal(s.minutes, 3);
  assert.match(s.outDir, /soak-results\/2026-12-02T15-00-00-000Z$/);
  assert.equal(parseSettings('soak', ['--minutes', '0.5', '--seed', '7']).seed, 7);
  for (const [args, says] of [[['--minutes', 'three'], /--minutes three: give a number of minutes/], [['--seed=-1'], /--seed -1: give a whole number/], [['--hours', '1'], /the flags are --minutes, --out and --seed/]] as const) {
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'scripts', 'soak.js'), ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, says);
  }
});

test('sparkline: one bar per bucket, scaled from min to max', () => {
  assert.equal(sparkline([0, 1, 2, 3, 4, 5, 6, 7]), '▁▂▃▄▅▆▇█');
  assert.equal(sparkline([5, 5, 5]), '▁▁▁');
  assert.equal(sparkline(Array.from({ length: 600 }, (_, i) => i), 60).length, 60);
});
