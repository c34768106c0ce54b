// `npm run bench`: tls-echod (--workers 0 started two ways, and --workers auto) against the bare Node TLS echo
// server of scripts/baseline-server.ts, on this machine, in the same run, under the same load
// from the project's own generator (src/client/load-generator.ts). Prints a table of ratios to the
// baseline and the targets from the issue; exits 0 even when a target is missed (it is a
// benchmark, not a test). Method and results: docs/benchmark.md.
//
//   npm run bench [-- --quick] [-- --only pingpong,stream] [-- --json] [-- --save out.json]
//
// Why the numbers are per server CPU-second: on a 2-core machine the server gets one core and
// the generator the other, and a Node TLS client spends more CPU on an ECDSA handshake than
// the server does, so the server can't be driven to 100 % of its core there. Every run therefore
// samples the server's CPU time (utime+stime of its whole process tree, /proc/<pid>/stat) over
// the generator's measured window, and the headline figure is operations per second of server
// CPU: the rate one saturated core would reach. Raw rates and CPU shares are printed too.
//
// The machine may be shared: before each run the benchmark waits (within a budget) for other
// processes to go quiet, runs again once a run during which they were busy, and says so.
//
// This file is the entry point; the pieces are in scripts/bench/: settings.ts (constants, command
// line, scenarios), machine.ts (CPUs, pinning, /proc), servers.ts (the servers, CPU accounting),
// sidecars.ts (HAProxy and redis-server beside the daemon), ports.ts, runs.ts (running the
// scenarios), report.ts (rows, verdicts, tables) and number-format.ts.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { inspectMachine } from './bench/machine';
import { pct } from './bench/number-format';
import { buildRows, median, renderSummary, saturated, type ScenarioResults } from './bench/report';
import { runIdleScenario, runThroughputScenario, type Context } from './bench/runs';
import { generateCerts, liveServers } from './bench/servers';
import { NOISY_OTHER_SHARE, parseSettings, RERUN_OTHER_SHARE, SATURATED_SHARE, SERVER_LABELS, THROUGHPUT_SCENARIOS, type ServerKind } from './bench/settings';
import { liveSidecars, sidecarMissing } from './bench/sidecars';

/** Where the Go generator's source sits next to this project (shared/bench/tlsload), from dist/scripts/. */
const TLSLOAD_SOURCE = path.resolve(__dirname, '..', '..', '..', 'shared', 'bench', 'tlsload');

/**
 * Builds the Go generator into `workDir` when its source and a Go toolchain are here: only it
 * can saturate the server with ECDSA handshakes, where the targets are judged. Undefined (the
 * run goes on without the cross-check) when either is missing or the build fails.
 */
function buildTlsload(workDir: string, log: (line: string) => void): string | undefined {
  if (!existsSync(path.join(TLSLOAD_SOURCE, 'main.go'))) return undefined;
  const bin = path.join(workDir, 'tlsload');
  const r = spawnSync('go', ['build', '-o', bin, '.'], { cwd: TLSLOAD_SOURCE, encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) {
    log(`bench: not using the Go generator (${r.error !== undefined ? 'no Go toolchain: apt-get install golang-go' : `go build failed: ${r.stderr.trim().split('\n')[0]}`})`);
    return undefined;
  }
  log(`bench: built the Go generator from ${TLSLOAD_SOURCE}`);
  return bin;
}

async function main(): Promise<void> {
  const settings = parseSettings(process.argv.slice(2));
  const startedAt = performance.now();
  const log = (line: string): void => void process.stderr.write(line + '\n');
  const notes: string[] = [];
  const machine = inspectMachine(settings, notes);
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'tls-echod-bench-'));
  const controller = new AbortController();
  const onSigint = (): void => {
    if (controller.signal.aborted) process.exit(130);
    log('interrupted: finishing the current run, then printing what was measured (Ctrl-C again to quit now)');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  // SIGTERM too: a process killed by a signal it doesn't handle runs no 'exit' hook below.
  process.on('SIGTERM', onSigint);
  // Whatever happens, no server outlives the benchmark.
  process.on('exit', () => {
    for (const s of liveServers) s.child.kill('SIGKILL');
    for (const s of liveSidecars) s.child.kill('SIGKILL');
    rmSync(workDir, { recursive: true, force: true });
  });
  log(`bench: ${machine.cpuModel}, ${machine.cpus} CPU(s), Node ${machine.node}; ${machine.pinNote}`);
  const certDirs = generateCerts(workDir);
  const tlsload = settings.tlsload === 'off' ? undefined : settings.tlsload ?? buildTlsload(workDir, log);
  const ctx: Context = { settings: { ...settings, tlsload }, machine, workDir, certDirs, notes, log, signal: controller.signal, noisyStarts: 0, quietWaitedMs: 0, rerunRuns: 0 };
  const results: ScenarioResults = { throughput: new Map(), idle: [] };
  for (const sc of THROUGHPUT_SCENARIOS) {
    if (!settings.only.includes(sc.name) || controller.signal.aborted) continue;
    const missing = sc.option === undefined ? undefined : sidecarMissing(sc.option);
    if (missing !== undefined) {
      notes.push(`${sc.name}: skipped, ${missing}.`);
      continue;
    }
    log(`${sc.name}: ${sc.mode}, ${sc.connections} connections, ${sc.sizeBytes}-byte ${sc.mode === 'stream' ? 'writes' : 'echoes'}, ${sc.keyType}`);
    if (sc.option === undefined) {
      results.throughput.set(sc.name, await runThroughputScenario(ctx, sc));
      continue;
    }
    // A reported row that depends on another program (HAProxy, redis-server) must not cost the
    // judged figures of a long run: its failure is a note.
    try {
      results.throughput.set(sc.name, await runThroughputScenario(ctx, sc));
    } catch (err) {
      log(`${sc.name}: failed: ${(err as Error).message}`);
      notes.push(`${sc.name}: not measured: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  if (settings.only.includes('idle') && !controller.signal.aborted) {
    log(`idle: ${settings.idleSessions} idle sessions, RSS of each server (all its processes) before and after`);
    results.idle = await runIdleScenario(ctx);
  }
  const elapsedSec = (performance.now() - startedAt) / 1000;
  if (controller.signal.aborted) notes.push('Interrupted: the figures cover only the runs that finished; the run cut short is left out or incomplete.');
  const rows = buildRows(results);
  if (ctx.quietWaitedMs > 1000) notes.push(`Waited ${Math.round(ctx.quietWaitedMs / 1000)} s in all for other processes on the machine to go quiet before runs.`);
  if (ctx.rerunRuns > 0) notes.push(`${ctx.rerunRuns} run(s) were discarded and run again because other processes used more than ${pct(RERUN_OTHER_SHARE)} of a core during them (or the server exited).`);
  if (ctx.noisyStarts > 0) notes.push(`${ctx.noisyStarts} run(s) started while other processes were still busy after --quiet-wait ran out: those figures are noisy.`);
  const others = [...results.throughput.values()].flatMap((s) => s.runs.map((r) => r.otherCpu));
  const noisy = median(others);
  if (Number.isFinite(noisy) && noisy > NOISY_OTHER_SHARE) {
    notes.push(`Other processes used a median ${pct(noisy)} of a core during the runs: the machine was not quiet, expect noise.`);
  }
  for (const [name, s] of results.throughput) {
    const option = THROUGHPUT_SCENARIOS.find((sc) => sc.name === name)?.option;
    const cpuOf = (kind: ServerKind): number => median(s.runs.filter((r) => r.server === kind).map((r) => r.serverCpu));
    if (option !== undefined) {
      // The Go generator does not run here: a side below saturation is a partial-load figure.
      const [direct, withOption] = [cpuOf('workers-0'), cpuOf(option)];
      if (direct < SATURATED_SHARE || withOption < SATURATED_SHARE) {
        notes.push(
          `${name}: the generator could not saturate the server (--workers 0 at ${pct(direct)} of its core, ` +
            `${SERVER_LABELS[option]} at ${pct(withOption)} with its sidecar), so the ratio compares figures extrapolated from partial load.`,
        );
      }
    } else if (s.runs.length > 0 && !saturated(s.runs)) {
      const cpu = median(s.runs.filter((r) => r.server === 'workers-0').map((r) => r.serverCpu));
      const handshakes = name.startsWith('handshake');
      notes.push(
        `${name}: the generator could not saturate the server (--workers 0 at ${pct(cpu)} of its core), so its per-core-s figure is extrapolated from partial load` +
          (saturated(s.crossCheck)
            ? '; the target is judged on the Go generator\'s run instead, which saturated it.'
            : handshakes
              ? `, where the daemon's extra cost per connection has measured smaller than at saturation (docs/benchmark.md); --tlsload <binary> measures at saturation.`
              : '.'),
      );
    }
    const errors = [...s.runs, ...s.crossCheck].filter((r) => r.errors > 0);
    if (errors.length > 0) notes.push(`${name}: ${errors.length} run(s) saw errors, first: ${errors[0]!.firstError ?? '?'}`);
  }
  const json = {
    machine,
    settings: ctx.settings,
    elapsedSec: Math.round(elapsedSec),
    rows,
    scenarios: Object.fromEntries([...results.throughput].map(([k, v]) => [k, v])),
    idle: results.idle,
    notes,
  };
  if (settings.save !== undefined) writeFileSync(settings.save, JSON.stringify(json, null, 2) + '\n');
  if (settings.json) process.stdout.write(JSON.stringify(json) + '\n');
  else process.stdout.write(renderSummary(rows, results, machine, ctx.settings, notes, elapsedSec));
  process.off('SIGINT', onSigint);
  process.off('SIGTERM', onSigint);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
