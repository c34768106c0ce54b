// The benchmark's knobs: the tuning constants, the command line (Settings, parsing, --help
// text), and what is measured (the scenarios and the servers they run against).

import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { LoadMode } from '../../src/client/load-generator';

/** The per-IP protections stay on but are raised above the benchmark's own load (all from 127.0.0.1). */
export const DAEMON_PROTECTION_FLAGS = ['--conn-rate', '1000000', '--conn-burst', '1000000', '--max-conns-per-ip', '100000'];
/** The daemon behind HAProxy (handshake-haproxy): a PROXY header on every connection from it. */
export const PROXY_PROTOCOL_FLAGS = ['--proxy-protocol', '--trusted-proxy', '127.0.0.1/32'];
/** How long a server gets to print its listening line (ms); --workers auto forks first. */
export const START_TIMEOUT_MS = 20_000;
/** SIGTERM, then this long for the daemon's drain before SIGKILL (ms). */
export const STOP_TIMEOUT_MS = 15_000;
/** CPU sampling period during a run (ms); the window bounds are interpolated between samples. */
export const SAMPLE_INTERVAL_MS = 100;
/** A server below this share of its core during a run was not the bottleneck. */
export const SATURATED_SHARE = 0.9;
/** Other processes using more than this share of a core on average make the run noisy. */
export const NOISY_OTHER_SHARE = 0.1;
/** Idle test: new connections per second while opening (the generator's default), and the retry rate. */
export const IDLE_RAMP_PER_SEC = 2000;
export const IDLE_SLOW_RAMP_PER_SEC = 500;
/** Idle test: RSS readings once the sessions are open, and the time between them (ms). */
export const IDLE_RSS_READINGS = 4;
export const IDLE_RSS_READING_INTERVAL_MS = 500;
/** Before each run: probe length (ms), and the share of a core others may use for the machine to count as quiet. */
export const QUIET_PROBE_MS = 300;
export const QUIET_OTHER_SHARE = 0.15;
/** A run during which others used more than this share of a core is run again (once). */
export const RERUN_OTHER_SHARE = 0.25;
/** Bounds on the time spent waiting out other people's load, over the whole benchmark (full, quick). */
export const QUIET_BUDGET_MS = { full: 40_000, quick: 5_000 };
export const MAX_RERUNS = { full: 6, quick: 1 };
/** Fd headroom on top of the idle sessions, for the generator and for each server (listeners, logs, IPC). */
export const FD_HEADROOM = 1000;

// ---------------------------------------------------------------------------------------------
// Settings

const SCENARIOS = ['handshake-ecdsa', 'handshake-rsa', 'handshake-mtls', 'handshake-haproxy', 'handshake-redis', 'pingpong', 'stream', 'idle'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/**
 * --workers 0 with a scale-out option (issue 16), each with the process it needs beside it
 * (scripts/bench/sidecars.ts): behind HAProxy sending PROXY v2 (--proxy-protocol), and with
 * --redis and a redis-server of its own. Each is measured against --workers 0 without it.
 */
export const OPTION_KINDS = ['workers-0-haproxy', 'workers-0-redis'] as const;
export type OptionKind = (typeof OPTION_KINDS)[number];

/**
 * Every server the benchmark can run, in the order a round visits them (and the report lists
 * them). 'workers-0' is the daemon started as `node dist/src/cli.js serve` (what `npm start`
 * and the systemd wrapper run); 'workers-0-bin' is the same started through the bin's shebang,
 * as an installed `tls-echod` is: the targets must hold for both. 'floor' is
 * scripts/floor-server.ts: the least per-connection work the requirements ask for, shown next
 * to the baseline but never judged. OPTION_KINDS run only in their own scenarios.
 */
export const SERVER_KINDS = ['baseline', 'workers-0', 'workers-0-bin', 'workers-auto', 'workers-0-log-warn', 'floor', ...OPTION_KINDS] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];
export const SERVER_LABELS: Readonly<Record<ServerKind, string>> = {
  baseline: 'baseline',
  'workers-0': 'workers 0',
  'workers-0-bin': 'workers 0, bin',
  'workers-auto': 'workers auto',
  'workers-0-log-warn': 'workers 0, --log-level warn',
  floor: 'floor',
  'workers-0-haproxy': 'workers 0 behind HAProxy',
  'workers-0-redis': 'workers 0, --redis',
};

export type KeyType = 'ecdsa-p256' | 'rsa-2048';

export interface Settings {
  readonly quick: boolean;
  readonly rounds: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly idleSessions: number;
  readonly idleRounds: number;
  readonly only: readonly ScenarioName[];
  readonly json: boolean;
  readonly save: string | undefined;
  readonly pin: boolean;
  readonly tlsload: string | undefined;
  readonly logCompare: boolean;
  /** Also run the handshake scenarios against scripts/floor-server.ts. */
  readonly floor: boolean;
  readonly daemonArgs: readonly string[];
  /** Extra node flags for every tls-echod process (e.g. V8 heap flags). */
  readonly daemonNodeArgs: readonly string[];
  readonly cpuProfDir: string | undefined;
  /** Longest wait for the machine to be quiet before each run (ms); 0 = don't wait. */
  readonly quietWaitMs: number;
  /** Unmeasured load per server before its first round (ms); handshake scenarios get half. */
  readonly soakMs: number;
}

const USAGE = `usage: npm run bench -- [options]

Runs tls-echod (--workers 0 started as 'node dist/src/cli.js serve' and through the bin's
shebang; --workers auto), the bare baseline server and (for handshakes) the floor server side
by side and prints ratios to the baseline; handshake-haproxy and handshake-redis run --workers 0
behind HAProxy (PROXY v2) and with --redis, against itself without. Scenarios: ${SCENARIOS.join(', ')}.

  --quick               about a minute: 1 round, short runs, no logging comparison, no floor
  --only <list>         comma-separated scenarios to run (repeatable)
  --rounds <n>          rounds per scenario, back and forth over the servers (default 5; quick 1)
  --duration <s>        measured seconds per run (default 3; quick 1.5)
  --warmup <s>          unmeasured seconds before each run (default 1; quick 0.5)
  --soak <s>            unmeasured seconds of load per server before its first round (default 6; quick 1;
                        handshake scenarios get half)
  --idle-sessions <n>   idle sessions for the RSS figure (default 5000)
  --log-compare / --no-log-compare
                        also run handshakes against --workers 0 --log-level warn (default on; quick off)
  --floor / --no-floor  also run handshakes against scripts/floor-server.ts, the least per-connection work
                        the requirements ask for (default on; quick off)
  --quiet-wait <s>      before each run, wait up to this long for other processes to go quiet (default 20; quick 5; 0 = off)
  --no-pin              don't pin server and generator to different cores
  --tlsload <binary>    cross-check the handshake scenarios and pingpong with shared/bench/tlsload (Go); by default it is
                        built from ../shared/bench/tlsload when Go is installed; 'off' skips it
  --daemon-arg <arg>    extra argument for every tls-echod serve (repeatable), e.g. --daemon-arg=--bandwidth=1000000000
  --daemon-node-arg <a> extra node flag for every tls-echod serve (repeatable; NODE_OPTIONS for the bin), e.g. --daemon-node-arg=--max-semi-space-size=2
  --cpu-prof <dir>      run the --workers 0 daemon under node --cpu-prof (slows it; for profiling only)
  --json                print the results as one JSON object instead of tables
  --save <file>         also write the JSON results to <file>
`;

/** A --x / --no-x pair for an extra comparison: --no-x wins, else --x, else on for full runs and off with --quick. */
function onUnlessQuick(on: boolean | undefined, off: boolean | undefined, quick: boolean): boolean {
  return off === true ? false : on === true || !quick;
}

/** The command line, parsed; throws on an unknown flag or a missing value. */
function parseFlags(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean' },
      only: { type: 'string', multiple: true },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      soak: { type: 'string' },
      'idle-sessions': { type: 'string' },
      'log-compare': { type: 'boolean' },
      'no-log-compare': { type: 'boolean' },
      floor: { type: 'boolean' },
      'no-floor': { type: 'boolean' },
      'no-pin': { type: 'boolean' },
      'quiet-wait': { type: 'string' },
      tlsload: { type: 'string' },
      'daemon-arg': { type: 'string', multiple: true },
      'daemon-node-arg': { type: 'string', multiple: true },
      'cpu-prof': { type: 'string' },
      json: { type: 'boolean' },
      save: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

export function parseSettings(argv: readonly string[]): Settings {
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(argv);
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  const { values } = parsed;
  if (values.help === true) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const quick = values.quick === true;
  const problems: string[] = [];
  const number = (text: string | undefined, flag: string, fallback: number, min: number, max: number): number => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || n < min || n > max) problems.push(`${flag}: must be a number from ${min} to ${max}, got ${JSON.stringify(text)}`);
    return n;
  };
  const only: ScenarioName[] = [];
  for (const name of (values.only ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '')) {
    if ((SCENARIOS as readonly string[]).includes(name)) only.push(name as ScenarioName);
    else problems.push(`--only: unknown scenario ${JSON.stringify(name)} (one of ${SCENARIOS.join(', ')})`);
  }
  const rounds = Math.round(number(values.rounds, '--rounds', quick ? 1 : 5, 1, 50));
  const settings: Settings = {
    quick,
    rounds,
    warmupMs: Math.round(number(values.warmup, '--warmup', quick ? 0.5 : 1, 0, 600) * 1000),
    durationMs: Math.round(number(values.duration, '--duration', quick ? 1.5 : 3, 0.5, 3600) * 1000),
    idleSessions: Math.round(number(values['idle-sessions'], '--idle-sessions', 5000, 1, 1_000_000)),
    idleRounds: values.rounds !== undefined ? rounds : quick ? 1 : 3,
    only: only.length > 0 ? only : SCENARIOS,
    json: values.json === true,
    save: values.save,
    pin: values['no-pin'] !== true,
    tlsload: values.tlsload,
    logCompare: onUnlessQuick(values['log-compare'], values['no-log-compare'], quick),
    floor: onUnlessQuick(values.floor, values['no-floor'], quick),
    daemonArgs: values['daemon-arg'] ?? [],
    daemonNodeArgs: values['daemon-node-arg'] ?? [],
    cpuProfDir: values['cpu-prof'] === undefined ? undefined : path.resolve(values['cpu-prof']),
    quietWaitMs: Math.round(number(values['quiet-wait'], '--quiet-wait', quick ? 5 : 20, 0, 3600) * 1000),
    soakMs: Math.round(number(values.soak, '--soak', quick ? 1 : 6, 0, 3600) * 1000),
  };
  if (settings.tlsload !== undefined && settings.tlsload !== 'off' && !existsSync(settings.tlsload)) {
    problems.push(`--tlsload ${settings.tlsload}: no such file (build it: cd ../shared/bench/tlsload && go build -o tlsload .)`);
  }
  if (problems.length > 0) {
    process.stderr.write(`bench: ${problems.join('\nbench: ')}\n\n${USAGE}`);
    process.exit(2);
  }
  return settings;
}

// ---------------------------------------------------------------------------------------------
// Scenarios

export interface ThroughputScenario {
  readonly name: Exclude<ScenarioName, 'idle'>;
  readonly keyType: KeyType;
  readonly mode: LoadMode;
  readonly connections: number;
  readonly sizeBytes: number;
  /** Handshakes are where the per-session log line costs; the logging variant runs there. */
  readonly perSessionHeavy: boolean;
  /**
   * Unmeasured load each server gets once, before its first round, as a share of --soak. V8
   * sizes the young generation from the allocation it has seen and optimises hot code late, so
   * a fresh process has shorter scavenge pauses (a different p99) and slower JavaScript than one
   * that has run for a while; this puts every server in its steady state first.
   */
  readonly soakShare: number;
  /**
   * Mutual TLS: the daemon runs with --client-auth require, the baseline with requestCert and
   * rejectUnauthorized, and the generator presents a client certificate from the local CA.
   * Only the baseline and --workers 0 run it; it is reported, not judged.
   */
  readonly clientAuth?: true;
  /**
   * A scale-out option (issue 16): only --workers 0 and this variant of it run, and the row is
   * the variant's ratio to --workers 0 without the option; reported, not judged.
   */
  readonly option?: OptionKind;
}

export const THROUGHPUT_SCENARIOS: readonly ThroughputScenario[] = [
  { name: 'handshake-ecdsa', keyType: 'ecdsa-p256', mode: 'handshake', connections: 32, sizeBytes: 64, perSessionHeavy: true, soakShare: 0.5 },
  { name: 'handshake-rsa', keyType: 'rsa-2048', mode: 'handshake', connections: 32, sizeBytes: 64, perSessionHeavy: true, soakShare: 0.5 },
  { name: 'handshake-mtls', keyType: 'ecdsa-p256', mode: 'handshake', connections: 32, sizeBytes: 64, perSessionHeavy: false, soakShare: 0.5, clientAuth: true },
  { name: 'handshake-haproxy', keyType: 'ecdsa-p256', mode: 'handshake', connections: 32, sizeBytes: 64, perSessionHeavy: false, soakShare: 0.5, option: 'workers-0-haproxy' },
  { name: 'handshake-redis', keyType: 'ecdsa-p256', mode: 'handshake', connections: 32, sizeBytes: 64, perSessionHeavy: false, soakShare: 0.5, option: 'workers-0-redis' },
  { name: 'pingpong', keyType: 'ecdsa-p256', mode: 'pingpong', connections: 64, sizeBytes: 64, perSessionHeavy: false, soakShare: 1 },
  // 16 KiB writes: one full TLS record each.
  { name: 'stream', keyType: 'ecdsa-p256', mode: 'stream', connections: 4, sizeBytes: 16 * 1024, perSessionHeavy: false, soakShare: 1 },
];
