// What a load reports at the end (LoadResult) and how the shares' results, one per generator
// process, merge into it: counters add up, histograms merge, error kinds stay bounded.

import { formatHostPort } from '../config/config';
import { LatencyHistogram } from './latency-histogram';
import type { LoadMode, ResolvedLoadOptions } from './load-options';
import { MAX_ERROR_KINDS, type LocalResult } from './load-share';

export interface LatencySummary {
  /** Samples (operations measured). */
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export interface LoadResult {
  readonly mode: LoadMode;
  readonly target: string;
  readonly connections: number;
  readonly processes: number;
  readonly sizeBytes: number;
  /** The client certificate presented (`CN=alice`); null when none. */
  readonly clientCert: string | null;
  /** Length of the measured window (s). Idle mode: the whole run. */
  readonly durationSec: number;
  /** Handshakes (handshake), messages (pingpong), chunks of sizeBytes (stream), connections established (idle). */
  readonly ops: number;
  /** Idle mode: connections established per second of ramp. */
  readonly opsPerSec: number;
  /** Bytes echoed and verified in the window (counted once, not per direction). */
  readonly bytes: number;
  /** 1 MB = 10^6 bytes. */
  readonly mbPerSec: number;
  /** Failed connects, timeouts, resets, early closes and mismatches, warmup included. */
  readonly errors: number;
  /** Errors where bytes came back different from what was sent. */
  readonly mismatches: number;
  readonly firstError: string | null;
  /** Errors by code (ECONNREFUSED, TIMEOUT, ECHO_MISMATCH, ...); at most 16 kinds plus OTHER. */
  readonly errorKinds: Readonly<Record<string, number>>;
  /** Operation latency in ms: connect to echo verified (handshake, idle), one echo (pingpong), one chunk's echo (stream). */
  readonly latencyMs: LatencySummary;
  /** Idle mode: connections that opened and echoed. */
  readonly established: number | null;
  /** Idle mode: of those, the ones that still echoed after the hold. */
  readonly stillAlive: number | null;
}

export function mergeResults(opts: ResolvedLoadOptions, results: readonly LocalResult[]): LoadResult {
  const histogram = new LatencyHistogram();
  const errorKinds = new Map<string, number>();
  let ops = 0;
  let bytes = 0;
  let errors = 0;
  let mismatches = 0;
  let established = 0;
  let stillAlive = 0;
  let measuredMs = 0;
  let rampMs = 0;
  let firstError: string | null = null;
  for (const r of results) {
    histogram.merge(r.histogram);
    ops += r.ops;
    bytes += r.bytes;
    errors += r.errors;
    mismatches += r.mismatches;
    established += r.established;
    stillAlive += r.stillAlive;
    measuredMs = Math.max(measuredMs, r.measuredMs);
    rampMs = Math.max(rampMs, r.rampMs);
    firstError ??= r.firstError;
    for (const [kind, n] of Object.entries(r.errorKinds)) {
      const key = errorKinds.has(kind) || errorKinds.size < MAX_ERROR_KINDS ? kind : 'OTHER';
      errorKinds.set(key, (errorKinds.get(key) ?? 0) + n);
    }
  }
  const seconds = measuredMs / 1000;
  const idle = opts.mode === 'idle';
  const ms = (micros: number): number => Math.round(micros) / 1000;
  return {
    mode: opts.mode,
    target: formatHostPort(opts.host, opts.port),
    connections: opts.connections,
    processes: opts.processes,
    sizeBytes: opts.sizeBytes,
    clientCert: opts.clientCert?.name ?? null,
    durationSec: Math.round(seconds * 1000) / 1000,
    ops,
    opsPerSec: round1(idle ? (rampMs > 0 ? established / (rampMs / 1000) : 0) : seconds > 0 ? ops / seconds : 0),
    bytes,
    mbPerSec: Math.round((seconds > 0 ? bytes / seconds / 1e6 : 0) * 1000) / 1000,
    errors,
    mismatches,
    firstError,
    errorKinds: Object.fromEntries(errorKinds),
    latencyMs: {
      count: histogram.count,
      mean: ms(histogram.mean),
      p50: ms(histogram.valueAtPercentile(50)),
      p90: ms(histogram.valueAtPercentile(90)),
      p99: ms(histogram.valueAtPercentile(99)),
      max: ms(histogram.max),
    },
    established: idle ? established : null,
    stillAlive: idle ? stillAlive : null,
  };
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
