// Load generator for TLS echo servers, used by `tls-echod bench` and scripts/bench.ts. Modes
// follow the Go tool in shared/bench/tlsload: handshake, pingpong, stream and idle. Every echoed
// byte is compared with what was sent; a difference is an error (and a mismatch).
//
// Cheap per message: each connection owns one message buffer, stamped with a sequence number
// instead of refilled; stream mode writes slices of one shared pattern and checks the echo at a
// running offset; latencies go into a fixed-bucket histogram; timeouts are found by one
// watchdog scan instead of a timer per operation. A single Node process can't drive a server
// to saturation with handshakes, so `processes > 1` forks generator processes (each with its
// share of the connections) and merges their counters and histograms.
//
// This file runs the load across processes. The parts: load-options.ts (options, defaults,
// validation), load-share.ts (one share, run in this process), load-child-process.ts (a share in
// a forked process), load-drivers.ts (the per-mode connection drivers), latency-histogram.ts,
// load-result.ts (the merged result) and load-report.ts (text output).

import { renameSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { ConfigError } from '../errors';
import { ChildHandle } from './load-child-process';
import { PHASE_ORDER, resolveLoadOptions, type LoadOptions, type LoadPhase } from './load-options';
import { mergeResults, type LoadResult } from './load-result';
import { failedResult, LocalHandle, type Counters, type RunHandle } from './load-share';

// The types that callers of runLoad name (scripts/bench, the tests), so they import it from one place.
export type { LoadMode } from './load-options';
export type { LoadResult } from './load-result';

/**
 * Runs a load against an echo server and resolves with the merged result. Network failures and
 * echo mismatches are counted in the result, never thrown; invalid options throw ConfigError.
 * Everything it opens (sockets, timers, child processes) is closed before it resolves.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const opts = resolveLoadOptions(options);
  if (opts.ca !== undefined) {
    try {
      tls.createSecureContext({ ca: opts.ca });
    } catch (err) {
      throw new ConfigError([`--ca: not a usable PEM CA certificate (${(err as Error).message}); give the CA that signed the server's certificate`]);
    }
  }
  if (opts.clientCert !== undefined) {
    try {
      tls.createSecureContext({ cert: opts.clientCert.cert, key: opts.clientCert.key });
    } catch (err) {
      throw new ConfigError([`--cert/--key: not a usable PEM certificate and matching key (${(err as Error).message})`]);
    }
  }
  let readyReports = 0;
  let readyEstablished = 0;
  let readyFileError: string | undefined;
  const handles: RunHandle[] = [];
  const onIdleReady = (established: number): void => {
    readyEstablished += established;
    if (++readyReports < handles.length || opts.readyFile === undefined) return;
    try {
      writeReadyFile(opts.readyFile, readyEstablished);
    } catch (err) {
      readyFileError = `--ready-file ${opts.readyFile}: ${(err as Error).message}`;
    }
  };
  if (opts.processes === 1) {
    handles.push(new LocalHandle(opts, onIdleReady));
  } else {
    splitEvenly(opts.connections, opts.processes).forEach((connections, i) => {
      const share = { ...opts, connections, processes: 1, rampPerSec: opts.rampPerSec / opts.processes, readyFile: undefined };
      handles.push(new ChildHandle(share, i, onIdleReady));
    });
  }
  const stopAll = (): void => handles.forEach((h) => h.stop());
  const { signal, onProgress } = options;
  if (signal?.aborted === true) stopAll();
  else signal?.addEventListener('abort', stopAll, { once: true });
  let meter: NodeJS.Timeout | undefined;
  try {
    await Promise.all(handles.map((h) => h.ready));
    const goAt = performance.now();
    for (const h of handles) h.go();
    if (onProgress !== undefined) {
      let last = { at: goAt, ops: 0, bytes: 0 };
      meter = setInterval(() => {
        const now = performance.now();
        const c = sumCounters(handles.map((h) => h.counters()));
        const seconds = (now - last.at) / 1000;
        onProgress({
          elapsedSec: (now - goAt) / 1000,
          phase: c.phase,
          ops: c.opsTotal,
          opsPerSec: seconds > 0 ? (c.opsTotal - last.ops) / seconds : 0,
          mbPerSec: seconds > 0 ? (c.bytesTotal - last.bytes) / seconds / 1e6 : 0,
          errors: c.errors,
          established: c.established,
        });
        last = { at: now, ops: c.opsTotal, bytes: c.bytesTotal };
      }, 1000);
    }
    const results = await Promise.all(handles.map((h) => h.result));
    if (readyFileError !== undefined) results.push(failedResult(readyFileError));
    return mergeResults(opts, results);
  } finally {
    if (meter !== undefined) clearInterval(meter);
    signal?.removeEventListener('abort', stopAll);
  }
}

function sumCounters(all: readonly Counters[]): Counters {
  let phase: LoadPhase = 'draining';
  let opsTotal = 0;
  let bytesTotal = 0;
  let errors = 0;
  let established = 0;
  for (const c of all) {
    opsTotal += c.opsTotal;
    bytesTotal += c.bytesTotal;
    errors += c.errors;
    established += c.established;
    if (PHASE_ORDER.indexOf(c.phase) < PHASE_ORDER.indexOf(phase)) phase = c.phase;
  }
  return { opsTotal, bytesTotal, errors, established, phase };
}

function splitEvenly(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

/** Written whole or not at all (rename), so a reader never sees a partial count. */
function writeReadyFile(path: string, established: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${established}\n`);
  renameSync(tmp, path);
}
