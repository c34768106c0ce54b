// The soak's pass criteria, as pure functions of the samples and counts: each returns a result
// with the bound it judged against and what it measured, so the summary can print both and
// test/soak/checks.test.ts can make each one fail on synthetic samples.

import type { Sample } from './sample';

export interface CheckResult {
  readonly name: string;
  readonly pass: boolean;
  readonly bound: string;
  readonly measured: string;
}

const MIB = 1024 * 1024;
const mib = (bytes: number): string => `${(bytes / MIB).toFixed(1)} MiB`;

/** Seconds of warm-up not judged for growth: 20 % of the run or 30 s, whichever is longer, but at most half. */
export function warmupSeconds(runS: number, share: number, minS: number): number {
  return Math.min(runS / 2, Math.max(runS * share, minS));
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The q-quantile (0..1) by nearest rank. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * RSS growth of one series over the loaded phase: the baseline is the median of the first 10
 * samples after warm-up, the end the median of the last quarter; the end may exceed the
 * baseline by at most `bound` (a share). Medians, because RSS steps with V8's heap growth and
 * the load's bursts; a leak moves the median. Fewer than 12 samples after warm-up: not judged.
 */
export function checkGrowth(name: string, samples: readonly Sample[], read: (s: Sample) => number, warmupS: number, bound: number): CheckResult {
  const after = samples.filter((s) => s.tS >= warmupS).map(read);
  const boundText = `last quarter's median <= baseline +${Math.round(bound * 100)} %`;
  if (after.length < 12) return { name, pass: true, bound: boundText, measured: `not judged: ${after.length} samples after warm-up (run longer)` };
  const baseline = median(after.slice(0, 10));
  const end = median(after.slice(Math.floor((after.length * 3) / 4)));
  const growth = end / baseline - 1;
  return { name, pass: growth <= bound, bound: boundText, measured: `${mib(baseline)} -> ${mib(end)} (${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(1)} %)` };
}

/** `value` at most `max`: a count that must come back to its idle level. */
export function checkAtMost(name: string, value: number, max: number, what: string): CheckResult {
  return { name, pass: value <= max, bound: `<= ${max} (${what})`, measured: String(value) };
}

/** The state at quiescence against the idle baseline taken before the load started. */
export function checkBackToIdle(idle: Sample, final: Sample, fdSlack: number, resourceSlack: number): CheckResult[] {
  const workers = Math.max(1, final.workers.length);
  return [
    checkAtMost('supervisor descriptors back to idle', final.supervisorFds, idle.supervisorFds + fdSlack, `idle ${idle.supervisorFds} + ${fdSlack}`),
    checkAtMost('worker descriptors back to idle', final.workerFds, idle.workerFds + fdSlack * workers, `idle ${idle.workerFds} + ${fdSlack} per worker`),
    checkAtMost('sessions active at quiescence', final.sessionsActive, 0, 'none'),
    checkAtMost('connections pending at quiescence', final.pending, 0, 'none'),
    checkAtMost('client entries holding connections at quiescence', final.clientEntriesHolding, 0, 'none'),
    checkAtMost('client entries at quiescence', final.clientEntries, 0, 'swept'),
    checkAtMost('supervisor active resources back to idle', final.activeResources, idle.activeResources + resourceSlack, `idle ${idle.activeResources} + ${resourceSlack}`),
  ];
}

/**
 * The metrics identity (from supervisor.ts): every accepted connection is, at any moment,
 * exactly one of: a session closed (any reason, a worker's kill -9 counted as `error`), a
 * handshake failure, a session slot held (sessions_active), waiting (pending), or refused after
 * acceptance — pending-timeout always, pool-full when the pending queue was full. pool-full is
 * also counted for refusals before acceptance (too many headers in flight, a full scenario
 * pool), which the metrics don't tell apart: so accepted minus the rest must lie in
 * [0, refused{pool-full}], and equal 0 when there was no pool-full refusal.
 */
export function checkIdentity(s: Sample): CheckResult {
  const accounted = s.sessionsClosed + s.handshakeFailures + s.sessionsActive + s.pending + s.refusedPendingTimeout;
  const gap = s.accepted - accounted;
  return {
    name: 'metrics identity',
    pass: gap >= 0 && gap <= s.refusedPoolFull,
    bound: `accepted - (closed + handshake failures + active + pending + refused{pending-timeout}) in [0, refused{pool-full}=${s.refusedPoolFull}]`,
    measured: `${s.accepted} - ${accounted} = ${gap}`,
  };
}

export interface SessionLineCounts {
  /** `session ended` lines in the log, and how many repeated a sessionId already seen. */
  readonly lines: number;
  readonly duplicates: number;
  /** Sessions closed per /metrics (sum over reasons). */
  readonly closed: number;
  /** `sessionsLost` summed over `worker exited` lines: counted closed, and their worker died before any line. */
  readonly lost: number;
  /** Lines a kill -9 may have taken with it (the worker's last 100 ms, not yet written): see killAllowance. */
  readonly killAllowance: number;
}

/**
 * One `session ended` line per session: no sessionId twice, and lines = closed - lost, less at
 * most the lines that died unwritten in killed workers. Every closed session with a completed
 * handshake logs its line; handshake failures are counted apart and log none.
 */
export function checkSessionLines(c: SessionLineCounts): CheckResult[] {
  const expected = c.closed - c.lost;
  const missing = expected - c.lines;
  return [
    checkAtMost('session lines: no sessionId twice', c.duplicates, 0, 'exactly one line per session'),
    {
      name: 'session lines: one per closed session',
      pass: missing >= 0 && missing <= c.killAllowance,
      bound: `closed ${c.closed} - lost with killed workers ${c.lost} - lines = 0 .. ${c.killAllowance} (unwritten at a kill -9)`,
      measured: `${c.lines} lines, ${missing} missing`,
    },
  ];
}

/**
 * Lines a kill -9 can lose: a worker writes its session lines every 100 ms, so at most those of
 * sessions it closed in the 100 ms before the kill. Bounded here by every session closed in the
 * sample interval holding each kill (a wide bound, but exact accounting isn't possible).
 */
export function killAllowance(samples: readonly Sample[], killTimesS: readonly number[]): number {
  let allowance = 0;
  for (const t of killTimesS) {
    // The interval holding the kill and the one before it: the 100 ms may straddle a sample.
    const i = samples.findIndex((s) => s.tS >= t);
    if (i < 0) continue;
    allowance += samples[i]!.sessionsClosed - samples[Math.max(0, i - 2)]!.sessionsClosed;
  }
  return allowance;
}

/** The control client's p99 round trip within `boundMs`, over at least `minRoundTrips`. */
export function checkP99(latenciesMs: readonly number[], boundMs: number, minRoundTrips: number): CheckResult {
  const p99 = quantile(latenciesMs, 0.99);
  return {
    name: 'control client p99',
    pass: latenciesMs.length >= minRoundTrips && p99 <= boundMs,
    bound: `<= ${boundMs} ms over >= ${minRoundTrips} round trips`,
    measured: `${Number.isNaN(p99) ? '-' : p99.toFixed(1)} ms over ${latenciesMs.length} (p50 ${quantile(latenciesMs, 0.5).toFixed(1)}, max ${latenciesMs.length ? Math.max(...latenciesMs).toFixed(1) : '-'})`,
  };
}

/** A condition that must hold, with what was seen. */
export function checkThat(name: string, pass: boolean, bound: string, measured: string): CheckResult {
  return { name, pass, bound, measured };
}
