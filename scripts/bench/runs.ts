// Running the scenarios: each throughput scenario against every server, in rounds that go back
// and forth over them (the project's generator, and the Go tlsload cross-check when asked); the
// idle-session RSS test; and the RunRecord/IdleRecord each run leaves for the summary.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientCertificate } from '../../src/client/check-options';
import { runLoad, type LoadMode, type LoadResult } from '../../src/client/load-generator';
import type { Machine } from './machine';
import { fmt, pct } from './number-format';
import { BENCH_CLIENT, CpuSampler, ServerProcess, waitForQuiet, type CpuShares } from './servers';
import {
  FD_HEADROOM,
  IDLE_RAMP_PER_SEC,
  IDLE_RSS_READING_INTERVAL_MS,
  IDLE_RSS_READINGS,
  IDLE_SLOW_RAMP_PER_SEC,
  MAX_RERUNS,
  QUIET_BUDGET_MS,
  QUIET_OTHER_SHARE,
  RERUN_OTHER_SHARE,
  SERVER_LABELS,
  type KeyType,
  type ScenarioName,
  type ServerKind,
  type Settings,
  type ThroughputScenario,
} from './settings';
import { SIDECAR_NAMES } from './sidecars';

export interface RunRecord {
  readonly server: ServerKind;
  readonly round: number;
  readonly generator: 'tls-echod bench' | 'tlsload (Go)';
  readonly opsPerSec: number;
  readonly mbPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly firstError: string | null;
  /** Server CPU over the measured window, in cores (1 = one full core); with its sidecar's. */
  readonly serverCpu: number;
  /** Of serverCpu: the sidecar's (HAProxy, redis-server), for the OPTION_KINDS only. */
  readonly sidecarCpu?: number;
  readonly generatorCpu: number;
  readonly otherCpu: number;
  /** Operations (or MB) per second of server CPU: the rate of one saturated core. */
  readonly opsPerCoreSec: number;
  readonly mbPerCoreSec: number;
  /** Log written to stdout during the run (bytes): the daemon's, or the floor's session lines; 0 for the baseline. */
  readonly logBytes: number;
}

export interface IdleRecord {
  readonly server: ServerKind;
  readonly round: number;
  readonly established: number;
  readonly rssBeforeKiB: number;
  readonly rssAfterKiB: number;
  readonly perSessionKiB: number;
  /** New connections per second while opening. */
  readonly rampPerSec: number;
  readonly workers: number | undefined;
  readonly errors: number;
  readonly firstError: string | null;
}

export interface Context {
  readonly settings: Settings;
  readonly machine: Machine;
  readonly workDir: string;
  readonly certDirs: Readonly<Record<KeyType, string>>;
  readonly notes: string[];
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
  /** Runs that started while others still used the machine (after the quiet wait ran out). */
  noisyStarts: number;
  quietWaitedMs: number;
  /** Runs discarded and run again (server died, or others used the machine). */
  rerunRuns: number;
}

/** Before a run: waits for the machine to go quiet (bounded), and counts the runs that start noisy. */
async function settle(ctx: Context): Promise<void> {
  const budget = (ctx.settings.quick ? QUIET_BUDGET_MS.quick : QUIET_BUDGET_MS.full) - ctx.quietWaitedMs;
  const maxWaitMs = Math.min(ctx.settings.quietWaitMs, Math.max(0, budget));
  if (ctx.settings.quietWaitMs === 0) return;
  const q = await waitForQuiet(ctx.machine.clockTicksPerSec, maxWaitMs, ctx.signal);
  ctx.quietWaitedMs += q.waitedMs;
  if (q.otherShare >= QUIET_OTHER_SHARE) {
    ctx.noisyStarts++;
    ctx.log(`  (other processes are using ${pct(q.otherShare)} of a core; running anyway after waiting ${Math.round(q.waitedMs / 1000)} s)`);
  } else if (q.waitedMs > 500) {
    ctx.log(`  (waited ${fmt(q.waitedMs / 1000, 1)} s for other processes to go quiet)`);
  }
}

function generatorProcesses(ctx: Context, mode: LoadMode): number {
  // One Node process drives one core. With more than one core for the load, handshakes (the
  // client-heavy case) get one generator process per core.
  const cores = ctx.machine.pinning?.load.length ?? 1;
  return mode === 'handshake' ? Math.max(1, Math.min(cores, 8)) : 1;
}

async function throughputRun(ctx: Context, sc: ThroughputScenario, server: ServerProcess, round: number): Promise<RunRecord> {
  const { settings } = ctx;
  await settle(ctx);
  const sampler = new CpuSampler(server, ctx.machine.clockTicksPerSec);
  const logBefore = server.kind === 'baseline' ? 0 : server.logBytes();
  let goAt: number | undefined;
  let result: LoadResult;
  try {
    result = await runLoad({
      host: '127.0.0.1',
      port: server.port,
      mode: sc.mode,
      connections: sc.connections,
      sizeBytes: sc.sizeBytes,
      warmupMs: settings.warmupMs,
      durationMs: settings.durationMs,
      processes: generatorProcesses(ctx, sc.mode),
      clientCert: clientCertOf(ctx, sc),
      signal: ctx.signal,
      // Only to learn when the clock started, so the CPU window matches the measured window.
      onProgress: (p) => {
        goAt ??= performance.now() - p.elapsedSec * 1000;
      },
    });
  } finally {
    sampler.stop();
  }
  const from = goAt === undefined ? undefined : goAt + settings.warmupMs;
  const cpu = sampler.shares(from, from === undefined ? undefined : from + result.durationSec * 1000);
  return runRecord(server, round, 'tls-echod bench', cpu, logBefore, {
    ops: result.ops,
    bytes: result.bytes,
    opsPerSec: result.opsPerSec,
    mbPerSec: result.mbPerSec,
    p50Ms: result.latencyMs.p50,
    p99Ms: result.latencyMs.p99,
    errors: result.errors,
    firstError: result.firstError,
  });
}

/** What a generator reports for the measured window: its figures, and the operations and bytes behind the per-core rates. */
type Measured = Pick<RunRecord, 'opsPerSec' | 'mbPerSec' | 'p50Ms' | 'p99Ms' | 'errors' | 'firstError'> & { readonly ops: number; readonly bytes: number };

/** A run's record: the generator's figures, the CPU shares over the window, and per-core rates. */
function runRecord(server: ServerProcess, round: number, generator: RunRecord['generator'], cpu: CpuShares, logBefore: number, m: Measured): RunRecord {
  const { ops, bytes, ...figures } = m;
  const serverSeconds = cpu.serverSeconds > 0 ? cpu.serverSeconds : NaN;
  return {
    server: server.kind,
    round,
    generator,
    ...figures,
    serverCpu: cpu.server,
    ...(server.sidecar === undefined ? {} : { sidecarCpu: cpu.sidecar }),
    generatorCpu: cpu.generator,
    otherCpu: cpu.other,
    opsPerCoreSec: ops / serverSeconds,
    mbPerCoreSec: bytes / 1e6 / serverSeconds,
    logBytes: server.kind === 'baseline' ? 0 : server.logBytes() - logBefore,
  };
}

interface TlsloadJson {
  ops: number;
  ops_per_sec: number;
  mb_per_sec: number;
  bytes_echoed: number;
  errors: number;
  p50_ms: number;
  p99_ms: number;
  first_error?: string;
}

/** One run of the Go generator (it inherits this process's CPU affinity). */
async function tlsloadRun(ctx: Context, bin: string, sc: ThroughputScenario, server: ServerProcess, round: number): Promise<RunRecord> {
  const args = (ms: number): string[] => ['-addr', `127.0.0.1:${server.port}`, '-mode', sc.mode, '-c', String(sc.connections), '-size', String(sc.sizeBytes), '-d', `${ms}ms`, '-json'];
  const run = (ms: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const child = spawn(bin, args(ms), { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.once('error', reject);
      child.once('close', () => resolve(out));
    });
  // tlsload has no warmup of its own: a short run first, not counted.
  await settle(ctx);
  if (ctx.settings.warmupMs > 0) await run(ctx.settings.warmupMs);
  const sampler = new CpuSampler(server, ctx.machine.clockTicksPerSec);
  const logBefore = server.kind === 'baseline' ? 0 : server.logBytes();
  let text: string;
  try {
    text = await run(ctx.settings.durationMs);
  } finally {
    sampler.stop();
  }
  const cpu = sampler.shares();
  let j: TlsloadJson;
  try {
    j = JSON.parse(text.trim().split('\n').pop() ?? '') as TlsloadJson;
  } catch {
    throw new Error(`tlsload printed no JSON result: ${text.slice(0, 300)}`);
  }
  return runRecord(server, round, 'tlsload (Go)', cpu, logBefore, {
    ops: j.ops,
    bytes: j.bytes_echoed,
    opsPerSec: j.ops_per_sec,
    mbPerSec: j.mb_per_sec,
    p50Ms: j.p50_ms,
    p99Ms: j.p99_ms,
    errors: j.errors,
    firstError: j.first_error ?? null,
  });
}

function describeRun(r: RunRecord, sc: ThroughputScenario): string {
  const rate = sc.mode === 'stream' ? `${fmt(r.mbPerSec, 0)} MB/s` : `${fmt(r.opsPerSec, 0)}/s`;
  const perCore = sc.mode === 'stream' ? `${fmt(r.mbPerCoreSec, 0)} MB/core-s` : `${fmt(r.opsPerCoreSec, 0)}/core-s`;
  const errors = r.errors > 0 ? `, ${r.errors} errors (${r.firstError ?? '?'})` : '';
  const sidecar = sc.option === undefined || r.sidecarCpu === undefined ? '' : ` (${SIDECAR_NAMES[sc.option]} ${pct(r.sidecarCpu)})`;
  return `${rate}, server CPU ${pct(r.serverCpu)}${sidecar}, generator ${pct(r.generatorCpu)}, other ${pct(r.otherCpu)} -> ${perCore}, p99 ${r.p99Ms.toFixed(2)} ms${errors}`;
}

/** Whether the floor runs in this scenario: where per-connection work dominates, the handshakes. */
function withFloor(ctx: Context, sc: ThroughputScenario): boolean {
  return ctx.settings.floor && sc.perSessionHeavy;
}

/**
 * The order round `round` (from 1) visits `kinds` in: as given in odd rounds, reversed in even
 * ones (A/B/C, C/B/A, A/B/C, ...). This machine's handshake rates drift by up to 15 % within a
 * few minutes, the same way for every server (measured); in a fixed order a drift counts against
 * whichever server always runs later, while back-and-forth cancels a steady drift over two rounds.
 */
export function roundOrder<T>(kinds: readonly T[], round: number): T[] {
  return round % 2 === 1 ? [...kinds] : [...kinds].reverse();
}

/** The certificate the generator presents in a mutual TLS scenario (issued by generateCerts); undefined in the others. */
function clientCertOf(ctx: Context, sc: ThroughputScenario): ClientCertificate | undefined {
  if (sc.clientAuth !== true) return undefined;
  const prefix = path.join(ctx.certDirs[sc.keyType], 'clients', BENCH_CLIENT);
  return { cert: readFileSync(`${prefix}.pem`, 'utf8'), key: readFileSync(`${prefix}-key.pem`, 'utf8'), name: `CN=${BENCH_CLIENT}` };
}

/** Servers of a throughput scenario; see roundOrder for the order of each round. */
function throughputServers(ctx: Context, sc: ThroughputScenario): ServerKind[] {
  // A scale-out option is measured against the same daemon without it, nothing else.
  if (sc.option !== undefined) return ['workers-0', sc.option];
  // Mutual TLS is reported, not judged: the baseline and the daemon as npm start runs it are enough.
  if (sc.clientAuth === true) return ['baseline', 'workers-0'];
  const kinds: ServerKind[] = ['baseline', 'workers-0', 'workers-0-bin', 'workers-auto'];
  if (ctx.settings.logCompare && sc.perSessionHeavy) kinds.push('workers-0-log-warn');
  if (withFloor(ctx, sc)) kinds.push('floor');
  return kinds;
}

/**
 * Scenarios the Go generator runs too. ECDSA handshakes because one Node generator can't saturate
 * the server there (the Go run carries the verdict); RSA handshakes because the Node generator
 * saturates the server only just (its own CPU at 86-93 %), and its figure has missed in slow
 * hours that a Go run right after did not reproduce; ping-pong as a check of the generator.
 */
const TLSLOAD_SCENARIOS: ReadonlySet<ScenarioName> = new Set<ScenarioName>(['handshake-ecdsa', 'handshake-rsa', 'pingpong']);

/** Servers of the Go cross-check: the judged ones, and the floor beside them; see roundOrder for the order of each round. */
function crossCheckServers(ctx: Context, sc: ThroughputScenario): ServerKind[] {
  const kinds: ServerKind[] = ['baseline', 'workers-0', 'workers-0-bin'];
  if (withFloor(ctx, sc)) kinds.push('floor');
  return kinds;
}

async function startServer(ctx: Context, kind: ServerKind, sc: { keyType: KeyType; clientAuth?: true }): Promise<ServerProcess> {
  return ServerProcess.start({ kind, certDir: ctx.certDirs[sc.keyType], machine: ctx.machine, settings: ctx.settings, workDir: ctx.workDir, clientAuth: sc.clientAuth === true });
}

export async function runThroughputScenario(ctx: Context, sc: ThroughputScenario): Promise<{ runs: RunRecord[]; crossCheck: RunRecord[]; workers: Partial<Record<ServerKind, number>> }> {
  const kinds = throughputServers(ctx, sc);
  const servers = new Map<ServerKind, ServerProcess>();
  const workers: Partial<Record<ServerKind, number>> = {};
  const runs: RunRecord[] = [];
  const crossCheck: RunRecord[] = [];
  const ensure = async (kind: ServerKind): Promise<ServerProcess> => {
    let s = servers.get(kind);
    if (s === undefined || s.exited) {
      if (s !== undefined) ctx.notes.push(`${sc.name}: ${SERVER_LABELS[kind]} exited during the scenario (killed from outside?) and was restarted.`);
      // What is left of it: the daemon when only its sidecar exited, or the sidecar.
      await s?.stop();
      s = await startServer(ctx, kind, sc);
      servers.set(kind, s);
      if (s.workers !== undefined) workers[kind] = s.workers;
    }
    return s;
  };
  // A server killed from outside, or other processes busy during the run: that run is run again, once.
  const measure = async (kind: ServerKind, what: string, run: (server: ServerProcess) => Promise<RunRecord>): Promise<RunRecord> => {
    for (let attempt = 1; ; attempt++) {
      const server = await ensure(kind);
      const r = await run(server);
      const label = `  ${what} ${SERVER_LABELS[kind].padEnd(12)} ${describeRun(r, sc)}`;
      const why = server.exited ? 'the server exited' : r.otherCpu > RERUN_OTHER_SHARE ? 'other processes were busy' : undefined;
      const reruns = ctx.settings.quick ? MAX_RERUNS.quick : MAX_RERUNS.full;
      if (why !== undefined && attempt === 1 && !ctx.signal.aborted && (server.exited || ctx.rerunRuns < reruns)) {
        ctx.log(`${label} (discarded: ${why}; again)`);
        ctx.rerunRuns++;
        continue;
      }
      ctx.log(label);
      return r;
    }
  };
  try {
    for (const kind of kinds) {
      const server = await ensure(kind);
      const soakMs = Math.round(ctx.settings.soakMs * sc.soakShare);
      if (soakMs > 0 && !ctx.signal.aborted) {
        const processes = generatorProcesses(ctx, sc.mode);
        await runLoad({ host: '127.0.0.1', port: server.port, mode: sc.mode, connections: sc.connections, sizeBytes: sc.sizeBytes, warmupMs: 0, durationMs: soakMs, processes, clientCert: clientCertOf(ctx, sc), signal: ctx.signal });
      }
    }
    for (let round = 1; round <= ctx.settings.rounds && !ctx.signal.aborted; round++) {
      for (const kind of roundOrder(kinds, round)) {
        if (ctx.signal.aborted) break;
        runs.push(await measure(kind, `${sc.name} round ${round}/${ctx.settings.rounds}`, (server) => throughputRun(ctx, sc, server, round)));
      }
    }
    const bin = ctx.settings.tlsload;
    if (bin !== undefined && TLSLOAD_SCENARIOS.has(sc.name)) {
      for (let round = 1; round <= Math.max(2, ctx.settings.rounds) && !ctx.signal.aborted; round++) {
        for (const kind of roundOrder(crossCheckServers(ctx, sc), round)) {
          crossCheck.push(await measure(kind, `${sc.name} tlsload round ${round}`, (server) => tlsloadRun(ctx, bin, sc, server, round)));
        }
      }
    }
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()));
  }
  const redisDown = [...servers.values()].reduce((n, s) => n + s.redisDownLines(), 0);
  if (redisDown > 0) {
    ctx.notes.push(`${sc.name}: the daemon logged ${redisDown} line(s) saying Redis failed (sampled): for some connections the local limits decided, not Redis.`);
  }
  return { runs, crossCheck, workers };
}

/** Polls for the generator's --ready-file; undefined if the run ends (or `ms` pass) first. */
async function waitForReadyFile(file: string, done: () => boolean, ms: number): Promise<number | undefined> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline && !done()) {
    if (existsSync(file)) return Number(readFileSync(file, 'utf8').trim());
    await sleep(50);
  }
  return undefined;
}

async function idleRun(ctx: Context, kind: ServerKind, round: number, rampPerSec: number): Promise<IdleRecord> {
  const n = ctx.settings.idleSessions;
  const server = await startServer(ctx, kind, { keyType: 'ecdsa-p256' });
  try {
    // A few handshakes first so one-time costs (lazy TLS and JIT set-up, first log line) are
    // in the "before" figure and not spread over the sessions.
    await runLoad({ host: '127.0.0.1', port: server.port, mode: 'handshake', connections: 8, warmupMs: 0, durationMs: 300, signal: ctx.signal });
    await settle(ctx);
    const before = server.rssKiB();
    const readyFile = path.join(ctx.workDir, `ready-${kind}-${round}-${rampPerSec}-${Date.now()}`);
    // Stopped once RSS is read, or by Ctrl-C (also one that came before this line).
    const abort = new AbortController();
    let finished = false;
    const load = runLoad({
      host: '127.0.0.1',
      port: server.port,
      mode: 'idle',
      connections: n,
      rampPerSec,
      // Held far longer than needed: the run is aborted once RSS is read (the daemon's idle timeout is 60 s).
      durationMs: 50_000,
      readyFile,
      timeoutMs: 30_000,
      signal: AbortSignal.any([ctx.signal, abort.signal]),
    }).finally(() => (finished = true));
    const established = await waitForReadyFile(readyFile, () => finished, 45_000);
    let after = 0;
    if (established !== undefined) {
      // The lowest of a few readings: garbage from the handshakes that a collection has not
      // reclaimed yet is not memory the sessions hold.
      const readings: number[] = [];
      for (let i = 0; i < IDLE_RSS_READINGS; i++) {
        await sleep(IDLE_RSS_READING_INTERVAL_MS);
        readings.push(server.rssKiB());
      }
      after = Math.min(...readings);
    }
    abort.abort();
    const result = await load;
    const count = established ?? 0;
    return {
      server: kind,
      round,
      established: count,
      rssBeforeKiB: before,
      rssAfterKiB: after,
      perSessionKiB: count > 0 ? (after - before) / count : NaN,
      rampPerSec,
      workers: server.workers,
      errors: result.errors,
      firstError: result.firstError,
    };
  } finally {
    await server.stop();
  }
}

function describeIdle(r: IdleRecord): string {
  const errors = r.errors > 0 ? `, ${r.errors} errors (${r.firstError ?? '?'})` : '';
  return `${r.established} sessions at ${r.rampPerSec}/s, RSS ${fmt(r.rssBeforeKiB / 1024, 1)} -> ${fmt(r.rssAfterKiB / 1024, 1)} MiB = ${fmt(r.perSessionKiB, 1)} KiB/session${errors}`;
}

export async function runIdleScenario(ctx: Context): Promise<IdleRecord[]> {
  const need = ctx.settings.idleSessions + FD_HEADROOM;
  if (ctx.machine.fdLimit < need) {
    ctx.notes.push(`idle: skipped, the open-file limit ${ctx.machine.fdLimit} is below ${need}.`);
    return [];
  }
  const records: IdleRecord[] = [];
  for (let round = 1; round <= ctx.settings.idleRounds && !ctx.signal.aborted; round++) {
    for (const kind of roundOrder(['baseline', 'workers-0', 'workers-0-bin', 'workers-auto'] as const, round)) {
      if (ctx.signal.aborted) break;
      let r = await idleRun(ctx, kind, round, IDLE_RAMP_PER_SEC);
      ctx.log(`  idle round ${round}/${ctx.settings.idleRounds} ${SERVER_LABELS[kind].padEnd(12)} ${describeIdle(r)}`);
      if (r.established < ctx.settings.idleSessions && ctx.settings.quick) {
        ctx.notes.push(
          `idle: ${SERVER_LABELS[kind]} established only ${r.established} of ${ctx.settings.idleSessions} sessions opened at ${IDLE_RAMP_PER_SEC}/s ` +
            `(first error: ${r.firstError ?? 'none'}); its figure is per established session (the full run measures again at ${IDLE_SLOW_RAMP_PER_SEC}/s).`,
        );
      } else if (r.established < ctx.settings.idleSessions && !ctx.signal.aborted) {
        // Not a memory figure at 5000 sessions: say so, and measure again opening them more slowly.
        ctx.notes.push(
          `idle: ${SERVER_LABELS[kind]} round ${round} established only ${r.established} of ${ctx.settings.idleSessions} sessions opened at ${IDLE_RAMP_PER_SEC}/s ` +
            `(first error: ${r.firstError ?? 'none'}); measured again at ${IDLE_SLOW_RAMP_PER_SEC}/s, which is the figure shown.`,
        );
        r = await idleRun(ctx, kind, round, IDLE_SLOW_RAMP_PER_SEC);
        ctx.log(`  idle round ${round}/${ctx.settings.idleRounds} ${SERVER_LABELS[kind].padEnd(12)} ${describeIdle(r)} (again, slower)`);
        if (r.established < ctx.settings.idleSessions) {
          ctx.notes.push(`idle: ${SERVER_LABELS[kind]} round ${round} established only ${r.established} of ${ctx.settings.idleSessions} even at ${IDLE_SLOW_RAMP_PER_SEC}/s.`);
        }
      }
      records.push(r);
    }
  }
  return records;
}
