// One run of the daemon under test, for `npm run soak` (load mix, chaos and net fuzz) and
// `npm run fuzz:net` (net fuzz only): start it, take the idle baseline, run the parts with the
// control client and the sampler for --minutes, stop the load, wait for the daemon to come back
// to idle, judge every check, and write daemon.log, samples.csv, summary.txt and plot.svg.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Chaos, type ChaosEvent } from './chaos';
import { checkAtMost, checkBackToIdle, checkGrowth, checkIdentity, checkP99, checkSessionLines, checkThat, killAllowance, warmupSeconds, type CheckResult } from './checks';
import { ControlClient } from './control';
import { DaemonUnderTest, listDescriptors, makeCertificates, SCENARIO_DOMAIN } from './daemon';
import { ECHO_SIZES, LoadMix } from './loads';
import { byLabel } from './metrics-text';
import { startNetFuzz, type NetFuzzStats } from './net-fuzz';
import { renderSvg, sparklines } from './plot';
import { Prng } from './prng';
import type { Sample } from './sample';
import { Sampler } from './sampler';
import {
  CONTROL_MIN_RATE_PER_S, CONTROL_P99_BOUND_MS, FD_SLACK, LIFETIME_BOUND_MS, QUIESCE_TIMEOUT_MS, RESOURCES_SLACK, SUPERVISOR_RSS_GROWTH_BOUND, SURVIVOR_RSS_GROWTH_BOUND,
  WARMUP_MIN_S, WARMUP_SHARE, WORKER_RSS_GROWTH_BOUND, type Settings,
} from './settings';
import { renderSummary } from './summary';

export type RunMode = 'soak' | 'fuzz-net';

/** Concurrency of the net fuzzer: beside the soak's load, and alone. */
const FUZZ_CONCURRENCY: Record<RunMode, number> = { soak: 4, 'fuzz-net': 16 };
const UNTRUSTED_SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];

const log = (line: string): void => void process.stdout.write(line + '\n');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the soak or the network fuzz; resolves with the exit code (0 pass, 1 a failed check). */
export async function run(mode: RunMode, settings: Settings): Promise<number> {
  mkdirSync(settings.outDir, { recursive: true });
  log(`${mode}: ${settings.minutes} min, seed ${settings.seed} (again: --seed ${settings.seed}), output in ${settings.outDir}`);
  const prng = new Prng(settings.seed);
  const daemon = await DaemonUnderTest.start(settings.outDir, makeCertificates(settings.outDir));
  // Whatever happens, the daemon doesn't outlive the run (a signal's default action runs no 'exit' hook).
  process.on('exit', () => daemon.child.kill('SIGKILL'));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  const startedAt = performance.now();
  // The load's own event-loop delay: the control client's round trips include it.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  // One worker is never killed, so a leak in the worker's code has the whole run to show.
  const survivor = Math.min(...daemon.workerPids());
  const sampler = new Sampler(daemon, path.join(settings.outDir, 'samples.csv'), startedAt, survivor);
  await sleep(1000);
  const idle = (await sampler.record())!;
  log(`${mode}: daemon ${daemon.pid}, workers ${daemon.workerPids().join(' ')}; idle: ${idle.supervisorFds} + ${idle.workerFds} descriptors, ${idle.activeResources} active resources`);

  sampler.start();
  const control = new ControlClient(daemon, new Prng(prng.int(0, 2 ** 31)));
  control.start();
  const loads = mode === 'soak' ? new LoadMix(daemon, new Prng(prng.int(0, 2 ** 31))) : undefined;
  loads?.start();
  const chaos = mode === 'soak' ? new Chaos(daemon, new Prng(prng.int(0, 2 ** 31)), startedAt, survivor) : undefined;
  chaos?.start();
  const fuzz = startNetFuzz(
    {
      host: '127.0.0.1',
      port: daemon.ports.main,
      trustedSource: '127.0.0.1',
      untrustedSources: UNTRUSTED_SOURCES,
      scenarioPort: daemon.ports.scenarios,
      scenarioDomain: SCENARIO_DOMAIN,
      ca: daemon.files.ca,
      clientCert: daemon.files.clientCert,
      lifetimeBoundMs: LIFETIME_BOUND_MS,
    },
    { concurrency: FUZZ_CONCURRENCY[mode], seed: prng.int(0, 2 ** 31) },
  );

  const runMs = settings.minutes * 60_000;
  const progressEvery = Math.max(10_000, runMs / 10);
  for (let elapsed = 0; elapsed < runMs && !daemon.exitedUnasked; elapsed += 1000) {
    await sleep(1000);
    if ((elapsed + 1000) % progressEvery < 1000) log(progress(sampler.samples, startedAt));
  }
  const loadEndS = (performance.now() - startedAt) / 1000;
  log(`${mode}: load stops; waiting up to ${QUIESCE_TIMEOUT_MS / 1000} s for the daemon to come back to idle`);
  await chaos?.stop();
  const [fuzzStats] = await Promise.all([fuzz.stop(), loads?.stop()]);
  await control.stop();
  sampler.stop();
  loopDelay.disable();
  const loadLoopDelay = { p99Ms: loopDelay.percentile(99) / 1e6, maxMs: loopDelay.max / 1e6 };
  const final = await quiesce(sampler, idle, daemon);
  await sleep(500); // the workers' last session lines (written every 100 ms)
  daemon.log.poll();

  const metrics = await daemon.scrape().catch(() => new Map<string, number>());
  writeFileSync(path.join(settings.outDir, 'quiescence.txt'), quiescenceReport(daemon, metrics));
  const checks = judge({ mode, settings, idle, final, loadEndS, samples: sampler.samples, daemon, control, loads, chaos: chaos?.events ?? [], fuzz: fuzzStats });
  const exit = await daemon.stop();
  checks.push(checkThat('daemon stops cleanly on SIGTERM', exit.code === 0, 'exit code 0', `code ${exit.code}, signal ${exit.signal}`));

  const title = mode === 'soak' ? 'tls-echod chaos soak' : 'tls-echod network fuzz';
  const loadedSamples = sampler.samples.filter((s) => s.tS <= loadEndS);
  const summary = renderSummary({
    title,
    seed: settings.seed,
    minutes: settings.minutes,
    loads: loads?.stats ?? {},
    control: control.stats,
    chaos: chaos?.events ?? [],
    fuzz: fuzzStats,
    loadLoopDelay,
    samples: loadedSamples,
    finalMetrics: {
      refused: byLabel(metrics, 'tls_echod_connections_refused_total'),
      closed: byLabel(metrics, 'tls_echod_sessions_closed_total'),
      handshakeFailures: byLabel(metrics, 'tls_echod_handshake_failures_total'),
    },
    checks,
  });
  writeFileSync(path.join(settings.outDir, 'summary.txt'), summary);
  writeFileSync(path.join(settings.outDir, 'plot.svg'), renderSvg(sampler.samples, chaos?.events ?? [], `${title}, seed ${settings.seed}`));
  writeFileSync(path.join(settings.outDir, 'chaos.json'), JSON.stringify(chaos?.events ?? [], null, 1) + '\n');
  log('');
  log(summary);
  for (const line of sparklines(sampler.samples)) log(line);
  const failed = checks.filter((c) => !c.pass);
  log('');
  log(failed.length === 0 ? `${mode}: PASS (${checks.length} checks); ${settings.outDir}` : `${mode}: FAIL: ${failed.map((c) => c.name).join('; ')}; ${settings.outDir}`);
  return failed.length === 0 ? 0 : 1;
}

function progress(samples: readonly Sample[], startedAt: number): string {
  const s = samples[samples.length - 1];
  const t = ((performance.now() - startedAt) / 1000).toFixed(0);
  if (s === undefined) return `  ${t} s`;
  return `  ${t} s: ${s.sessionsActive} sessions, ${s.pending} pending, ${s.accepted} accepted, ${s.refused} refused, RSS ${(s.supervisorRss / 2 ** 20).toFixed(0)}+${(s.workerRss / 2 ** 20).toFixed(0)} MiB, fds ${s.supervisorFds}+${s.workerFds}`;
}

/** Samples every 500 ms until the daemon is back to idle (or QUIESCE_TIMEOUT_MS); the last sample. */
async function quiesce(sampler: Sampler, idle: Sample, daemon: DaemonUnderTest): Promise<Sample> {
  const deadline = performance.now() + QUIESCE_TIMEOUT_MS;
  let last: Sample | undefined;
  while (performance.now() < deadline && !daemon.exitedUnasked) {
    last = (await sampler.record()) ?? last;
    if (last !== undefined && checkBackToIdle(idle, last, FD_SLACK, RESOURCES_SLACK).every((c) => c.pass)) break;
    await sleep(500);
  }
  return last ?? idle;
}

/** What the supervisor holds at the end, for a failed back-to-idle check: its descriptors and active resources by type. */
function quiescenceReport(daemon: DaemonUnderTest, metrics: ReadonlyMap<string, number>): string {
  const fds = listDescriptors(daemon.pid).map((d) => `  ${d}`);
  const resources = [...metrics].filter(([k]) => k.startsWith('nodejs_active_resources')).map(([k, v]) => `  ${k} ${v}`);
  return ['supervisor descriptors:', ...fds, 'supervisor active resources:', ...resources].join('\n') + '\n';
}

interface Judged {
  readonly mode: RunMode;
  readonly settings: Settings;
  readonly idle: Sample;
  readonly final: Sample;
  readonly loadEndS: number;
  readonly samples: readonly Sample[];
  readonly daemon: DaemonUnderTest;
  readonly control: ControlClient;
  readonly loads: LoadMix | undefined;
  readonly chaos: readonly ChaosEvent[];
  readonly fuzz: NetFuzzStats;
}

function judge(j: Judged): CheckResult[] {
  const tally = j.daemon.log.tally;
  const loaded = j.samples.filter((s) => s.tS <= j.loadEndS);
  const warmupS = warmupSeconds(j.loadEndS, WARMUP_SHARE, WARMUP_MIN_S);
  const kills = j.chaos.filter((e) => e.kind === 'kill-worker');
  const stderr = readFileSync(j.daemon.stderrFile, 'utf8').trim();
  const checks: CheckResult[] = [
    checkThat('daemon never exited', !j.daemon.exitedUnasked, 'alive until SIGTERM', j.daemon.exitedUnasked ? `exited: ${JSON.stringify(j.daemon.exit)}` : 'alive'),
    checkThat('no uncaught error', tally.notJson.length === 0 && stderr === '' && tally.unexpectedErrors.length === 0, 'no stderr, no non-JSON line, no unexpected error line',
      [stderr.split('\n')[0], tally.notJson[0], tally.unexpectedErrors[0]].filter((x) => x).join(' | ') || 'none'),
    checkThat('workers exit only when killed', tally.workerExits === kills.length, `worker exited lines = kills (${kills.length})`, `${tally.workerExits}`),
    checkGrowth('supervisor RSS growth', loaded, (s) => s.supervisorRss, warmupS, SUPERVISOR_RSS_GROWTH_BOUND),
    checkGrowth('workers RSS growth', loaded, (s) => s.workerRss, warmupS, WORKER_RSS_GROWTH_BOUND),
    checkGrowth('surviving worker RSS growth', loaded, (s) => s.survivorRss, warmupS, SURVIVOR_RSS_GROWTH_BOUND),
    ...checkBackToIdle(j.idle, j.final, FD_SLACK, RESOURCES_SLACK),
    checkIdentity(j.final),
    ...checkSessionLines({ lines: tally.sessionLines, duplicates: tally.duplicateSessionIds, closed: j.final.sessionsClosed, lost: tally.sessionsLost, killAllowance: killAllowance(j.samples, kills.map((k) => k.atS)) }),
    checkAtMost('control client mismatches', j.control.stats.mismatches, 0, 'never'),
    checkAtMost('control client stalls', j.control.stats.stalls, 0, 'no round trip over 5 s'),
    checkP99(j.control.stats.latenciesMs, CONTROL_P99_BOUND_MS, Math.floor(j.loadEndS * CONTROL_MIN_RATE_PER_S)),
    checkAtMost('net fuzz overdue connections', j.fuzz.overdue, 0, `each ended within ${LIFETIME_BOUND_MS} ms${j.fuzz.overdueExamples[0] ? `; e.g. ${j.fuzz.overdueExamples[0]}` : ''}`),
  ];
  if (j.loads !== undefined) checks.push(...judgeLoads(j.loads, j.chaos));
  return checks;
}

function judgeLoads(loads: LoadMix, chaos: readonly ChaosEvent[]): CheckResult[] {
  const all = Object.values(loads.stats);
  const sum = (read: (c: (typeof all)[number]) => number): number => all.reduce((n, c) => n + read(c), 0);
  const missingSizes = ECHO_SIZES.filter((size) => !loads.echoedSizes.has(size));
  const failedChaos = chaos.filter((e) => !e.ok);
  const s = loads.stats;
  return [
    checkAtMost('load echo mismatches', sum((c) => c.mismatch), 0, 'never'),
    checkThat('every echo size came back byte-exact', missingSizes.length === 0, ECHO_SIZES.join(', ') + ' B', missingSizes.length === 0 ? 'all' : `never: ${missingSizes.join(', ')}`),
    checkAtMost('connections ended late', sum((c) => c.late), 0, `daemon ends each within ${LIFETIME_BOUND_MS} ms of the client going quiet`),
    checkAtMost('steady loads timed out', ['echo', 'half-close', 'resumption', 'idle'].reduce((n, k) => n + (s[k]?.timeout ?? 0), 0), 0, 'no echo or idle session left hanging'),
    checkThat('half-closes echoed', (s['half-close']?.ok ?? 0) > 0 && (s['half-close']?.ok ?? 0) >= (s['half-close']?.started ?? 0) / 2, '>= half echoed whole after end()', `${s['half-close']?.ok ?? 0} of ${s['half-close']?.started ?? 0}`),
    checkThat('resumption happens', (s.resumption?.reused ?? 0) > 0, 'at least one session resumed', `${s.resumption?.reused ?? 0} of ${s.resumption?.started ?? 0}`),
    checkThat('floods refused in part', (s.flood?.refused ?? 0) > 0, 'some flood connections refused', `${s.flood?.refused ?? 0} of ${s.flood?.started ?? 0}`),
    checkThat('chaos events took effect', failedChaos.length === 0 && chaos.length > 0, 'each kill, rotation and broken reload as expected', failedChaos.length === 0 ? `${chaos.length} events` : failedChaos.map((e) => `${e.kind} at ${e.atS.toFixed(0)} s: ${e.detail}`).join('; ')),
  ];
}
