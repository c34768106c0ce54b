// What a load is asked to do: the modes and phases, the options with their defaults and limits,
// the progress reported while it runs, and the validation that phrases every problem in terms of
// the bench flags (all at once) before anything is opened.

import { isIP } from 'node:net';
import { ConfigError } from '../errors';
import type { ClientCertificate } from './check-options';

export type LoadMode = 'handshake' | 'pingpong' | 'stream' | 'idle';
export const LOAD_MODES: readonly LoadMode[] = ['handshake', 'pingpong', 'stream', 'idle'];

export type LoadPhase = 'connecting' | 'ramp' | 'warmup' | 'measure' | 'hold' | 'check' | 'draining';
export const PHASE_ORDER: readonly LoadPhase[] = ['connecting', 'ramp', 'warmup', 'measure', 'hold', 'check', 'draining'];

export interface LoadOptions {
  readonly host: string;
  readonly port: number;
  /** Default handshake. */
  readonly mode?: LoadMode | undefined;
  /** Concurrent connections (handshake: concurrent connect loops). Default 64. */
  readonly connections?: number | undefined;
  /** Measured time after the warmup (ms, default 5000). Idle mode: how long to hold, counted from the start. */
  readonly durationMs?: number | undefined;
  /** Time run but not counted before measuring (ms, default 1000; idle mode ignores it). */
  readonly warmupMs?: number | undefined;
  /** Bytes per echo (handshake, pingpong, idle) or per write (stream). Default 64. */
  readonly sizeBytes?: number | undefined;
  /** PEM CA to verify the server against; without it nothing is verified. */
  readonly ca?: string | Buffer | undefined;
  /** Skip verification even though `ca` is given. Default: true without `ca`, false with it. */
  readonly insecure?: boolean | undefined;
  /** SNI (and name verified); default: host when it is a name, none for an IP. */
  readonly servername?: string | undefined;
  readonly tls?: '1.2' | '1.3' | undefined;
  /** Present this certificate on every connection whose server asks for one (mutual TLS); default none. */
  readonly clientCert?: ClientCertificate | undefined;
  /** Handshake mode: offer the last session ticket (resumption). Default false: full handshakes. */
  readonly resume?: boolean | undefined;
  /** Idle mode: new connections per second while opening (default 2000). */
  readonly rampPerSec?: number | undefined;
  /** Idle mode: write the established count here once all connections are open. */
  readonly readyFile?: string | undefined;
  /** Generator processes (default 1 = in this process); connections are split between them. */
  readonly processes?: number | undefined;
  /** Longest a connect or one echo may take before it counts as an error (ms, default 10000). */
  readonly timeoutMs?: number | undefined;
  /** Called about once a second while the load runs. */
  readonly onProgress?: ((p: LoadProgress) => void) | undefined;
  /** Abort ends the run early; the result covers what was measured until then. */
  readonly signal?: AbortSignal | undefined;
}

export const LOAD_DEFAULTS = Object.freeze({
  mode: 'handshake' as LoadMode,
  connections: 64,
  durationMs: 5000,
  warmupMs: 1000,
  sizeBytes: 64,
  rampPerSec: 2000,
  processes: 1,
  timeoutMs: 10_000,
});

/** Largest --size: bounds the per-connection message buffers and the stream window. */
export const MAX_SIZE_BYTES = 16 * 1024 * 1024;
export const MAX_PROCESSES = 64;
export const MAX_CONNECTIONS = 1_000_000;

export interface LoadProgress {
  readonly elapsedSec: number;
  readonly phase: LoadPhase;
  /** Operations completed since the start, warmup included. */
  readonly ops: number;
  /** Operations in the last interval, per second. */
  readonly opsPerSec: number;
  readonly mbPerSec: number;
  readonly errors: number;
  readonly established: number;
}

/** LoadOptions with every default filled in. */
export interface ResolvedLoadOptions {
  readonly host: string;
  readonly port: number;
  readonly mode: LoadMode;
  readonly connections: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly sizeBytes: number;
  readonly ca: string | undefined;
  readonly insecure: boolean;
  readonly servername: string | undefined;
  readonly tls: '1.2' | '1.3' | undefined;
  /** Sent to generator processes with the rest, so each reads nothing itself. */
  readonly clientCert: ClientCertificate | undefined;
  readonly resume: boolean;
  readonly rampPerSec: number;
  readonly readyFile: string | undefined;
  readonly processes: number;
  readonly timeoutMs: number;
}

/** Every problem with `opts`, phrased in terms of the bench flags; empty when they are usable. */
export function loadOptionProblems(opts: LoadOptions): string[] {
  const problems: string[] = [];
  const whole = (v: number | undefined, flag: string, min: number, max: number, unit = ''): void => {
    if (v === undefined) return;
    if (!Number.isInteger(v) || v < min || v > max) problems.push(`${flag}: must be a whole number between ${min} and ${max}${unit}, got ${v}`);
  };
  const mode = opts.mode ?? LOAD_DEFAULTS.mode;
  if (!LOAD_MODES.includes(mode)) problems.push(`--mode: must be one of ${LOAD_MODES.join(', ')}, got ${JSON.stringify(mode)}`);
  if (typeof opts.host !== 'string' || opts.host === '') problems.push('<host:port>: give the server address, e.g. 127.0.0.1:4433');
  whole(opts.port, '<host:port>', 1, 65535, ' (port)');
  whole(opts.connections, '--connections', 1, MAX_CONNECTIONS);
  whole(opts.sizeBytes, '--size', mode === 'handshake' ? 0 : 1, MAX_SIZE_BYTES, ' (bytes)');
  whole(opts.rampPerSec, '--ramp', 1, 1_000_000, ' (connections/s)');
  whole(opts.processes, '--processes', 1, MAX_PROCESSES);
  whole(opts.timeoutMs, '--timeout', 1, 3_600_000, ' (ms)');
  if (opts.durationMs !== undefined && !(opts.durationMs > 0 && opts.durationMs <= 86_400_000)) {
    problems.push(`--duration: must be more than 0 and at most 86400 s, got ${opts.durationMs / 1000}`);
  }
  if (opts.warmupMs !== undefined && !(opts.warmupMs >= 0 && opts.warmupMs <= 3_600_000)) {
    problems.push(`--warmup: must be between 0 and 3600 s, got ${opts.warmupMs / 1000}`);
  }
  if (opts.processes !== undefined && opts.connections !== undefined && opts.processes > opts.connections) {
    problems.push(`--processes ${opts.processes} is more than --connections ${opts.connections}: each process needs at least one connection`);
  }
  if (opts.readyFile !== undefined && mode !== 'idle') problems.push('--ready-file only applies to --mode idle (drop it, or use --mode idle)');
  if (opts.rampPerSec !== undefined && mode !== 'idle') problems.push('--ramp only applies to --mode idle (drop it, or use --mode idle)');
  if (opts.resume === true && mode !== 'handshake') problems.push('--resume only applies to --mode handshake (drop it, or use --mode handshake)');
  if (opts.tls !== undefined && opts.tls !== '1.2' && opts.tls !== '1.3') problems.push(`--tls: must be 1.2 or 1.3, got ${JSON.stringify(opts.tls)}`);
  return problems;
}

export function resolveLoadOptions(opts: LoadOptions): ResolvedLoadOptions {
  const problems = loadOptionProblems(opts);
  if (problems.length > 0) throw new ConfigError(problems);
  const ca = opts.ca === undefined ? undefined : String(opts.ca);
  return {
    host: opts.host,
    port: opts.port,
    mode: opts.mode ?? LOAD_DEFAULTS.mode,
    connections: opts.connections ?? LOAD_DEFAULTS.connections,
    durationMs: opts.durationMs ?? LOAD_DEFAULTS.durationMs,
    warmupMs: opts.warmupMs ?? LOAD_DEFAULTS.warmupMs,
    sizeBytes: opts.sizeBytes ?? LOAD_DEFAULTS.sizeBytes,
    ca,
    insecure: opts.insecure ?? ca === undefined,
    servername: opts.servername ?? (isIP(opts.host) ? undefined : opts.host),
    tls: opts.tls,
    clientCert: opts.clientCert,
    resume: opts.resume ?? false,
    rampPerSec: opts.rampPerSec ?? LOAD_DEFAULTS.rampPerSec,
    readyFile: opts.readyFile,
    processes: Math.min(opts.processes ?? LOAD_DEFAULTS.processes, opts.connections ?? LOAD_DEFAULTS.connections),
    timeoutMs: opts.timeoutMs ?? LOAD_DEFAULTS.timeoutMs,
  };
}
