// `npm run bench`: tls-echod (--workers 0 and --workers auto) against the bare Node TLS echo
// server of scripts/baseline-server.ts, on this machine, in the same run, under the same load
// from the project's own generator (src/load-generator.ts). Prints a table of ratios to the
// baseline and the targets from the issue; exits 0 even when a target is missed (it is a
// benchmark, not a test). Method and results: docs/benchmark.md (summary in README.md, "Benchmark").
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

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { runLoad, type LoadMode, type LoadResult } from '../src/load-generator';

const CLI = path.join(__dirname, '..', 'src', 'cli.js');
const BASELINE = path.join(__dirname, 'baseline-server.js');

/** The per-IP protections stay on but are raised above the benchmark's own load (all from 127.0.0.1). */
const DAEMON_PROTECTION_FLAGS = ['--conn-rate', '1000000', '--conn-burst', '1000000', '--max-conns-per-ip', '100000'];
/** How long a server gets to print its listening line (ms); --workers auto forks first. */
const START_TIMEOUT_MS = 20_000;
/** SIGTERM, then this long for the daemon's drain before SIGKILL (ms). */
const STOP_TIMEOUT_MS = 15_000;
/** CPU sampling period during a run (ms); the window bounds are interpolated between samples. */
const SAMPLE_INTERVAL_MS = 100;
/** A server below this share of its core during a run was not the bottleneck. */
const SATURATED_SHARE = 0.9;
/** Other processes using more than this share of a core on average make the run noisy. */
const NOISY_OTHER_SHARE = 0.1;
/** Idle test: new connections per second while opening (the generator's default), and the retry rate. */
const IDLE_RAMP_PER_SEC = 2000;
const IDLE_SLOW_RAMP_PER_SEC = 500;
/** Idle test: RSS readings once the sessions are open, and the time between them (ms). */
const IDLE_RSS_READINGS = 4;
const IDLE_RSS_READING_INTERVAL_MS = 500;
/** Before each run: probe length (ms), and the share of a core others may use for the machine to count as quiet. */
const QUIET_PROBE_MS = 300;
const QUIET_OTHER_SHARE = 0.15;
/** A run during which others used more than this share of a core is run again (once). */
const RERUN_OTHER_SHARE = 0.25;
/** Bounds on the time spent waiting out other people's load, over the whole benchmark (full, quick). */
const QUIET_BUDGET_MS = { full: 40_000, quick: 5_000 };
const MAX_RERUNS = { full: 6, quick: 1 };
/** Fd headroom on top of the idle sessions, for the generator and for each server (listeners, logs, IPC). */
const FD_HEADROOM = 1000;

// ---------------------------------------------------------------------------------------------
// Settings

const SCENARIOS = ['handshake-ecdsa', 'handshake-rsa', 'pingpong', 'stream', 'idle'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

type ServerKind = 'baseline' | 'workers-0' | 'workers-auto' | 'workers-0-log-warn';
const SERVER_LABELS: Readonly<Record<ServerKind, string>> = {
  baseline: 'baseline',
  'workers-0': 'workers 0',
  'workers-auto': 'workers auto',
  'workers-0-log-warn': 'workers 0, --log-level warn',
};

type KeyType = 'ecdsa-p256' | 'rsa-2048';

interface Settings {
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

Runs tls-echod (--workers 0, --workers auto) and the bare baseline server side by side and
prints ratios to the baseline. Scenarios: ${SCENARIOS.join(', ')}.

  --quick               about a minute: 1 round, short runs, no logging comparison
  --only <list>         comma-separated scenarios to run (repeatable)
  --rounds <n>          alternating rounds per scenario (default 3; quick 1)
  --duration <s>        measured seconds per run (default 3; quick 1.5)
  --warmup <s>          unmeasured seconds before each run (default 1; quick 0.5)
  --soak <s>            unmeasured seconds of load per server before its first round (default 6; quick 1;
                        handshake scenarios get half)
  --idle-sessions <n>   idle sessions for the RSS figure (default 5000)
  --log-compare / --no-log-compare
                        also run handshakes against --workers 0 --log-level warn (default on; quick off)
  --quiet-wait <s>      before each run, wait up to this long for other processes to go quiet (default 20; quick 5; 0 = off)
  --no-pin              don't pin server and generator to different cores
  --tlsload <binary>    cross-check handshake-ecdsa and pingpong with shared/bench/tlsload (Go)
  --daemon-arg <arg>    extra argument for every tls-echod serve (repeatable), e.g. --daemon-arg=--bandwidth=1000000000
  --daemon-node-arg <a> extra node flag for every tls-echod serve (repeatable), e.g. --daemon-node-arg=--max-semi-space-size=2
  --cpu-prof <dir>      run the --workers 0 daemon under node --cpu-prof (slows it; for profiling only)
  --json                print the results as one JSON object instead of tables
  --save <file>         also write the JSON results to <file>
`;

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

function parseSettings(argv: readonly string[]): Settings {
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
  const rounds = Math.round(number(values.rounds, '--rounds', quick ? 1 : 3, 1, 50));
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
    logCompare: values['no-log-compare'] === true ? false : values['log-compare'] === true || !quick,
    daemonArgs: values['daemon-arg'] ?? [],
    daemonNodeArgs: values['daemon-node-arg'] ?? [],
    cpuProfDir: values['cpu-prof'] === undefined ? undefined : path.resolve(values['cpu-prof']),
    quietWaitMs: Math.round(number(values['quiet-wait'], '--quiet-wait', quick ? 5 : 20, 0, 3600) * 1000),
    soakMs: Math.round(number(values.soak, '--soak', quick ? 1 : 6, 0, 3600) * 1000),
  };
  if (settings.tlsload !== undefined && !existsSync(settings.tlsload)) {
    problems.push(`--tlsload ${settings.tlsload}: no such file (build it: cd ../shared/bench/tlsload && go build -o tlsload .)`);
  }
  if (problems.length > 0) {
    process.stderr.write(`bench: ${problems.join('\nbench: ')}\n\n${USAGE}`);
    process.exit(2);
  }
  return settings;
}

// ---------------------------------------------------------------------------------------------
// The machine: CPUs, pinning, fd limits

interface Machine {
  readonly cpuModel: string;
  readonly cpus: number;
  readonly allowedCpus: readonly number[];
  readonly node: string;
  readonly kernel: string;
  readonly date: string;
  readonly loadAvgAtStart: readonly number[];
  readonly clockTicksPerSec: number;
  /** CPUs the servers run on and the CPUs of the generator; undefined when not pinned. */
  readonly pinning: { readonly server: readonly number[]; readonly load: readonly number[] } | undefined;
  readonly pinNote: string;
  readonly fdLimit: number;
  /** The tls-echod commit measured (with "+changes" when the tree differs from it). */
  readonly commit: string;
}

function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',')) {
    const [a, b] = part.split('-').map((s) => Number(s));
    if (a === undefined || !Number.isInteger(a)) continue;
    const end = b !== undefined && Number.isInteger(b) ? b : a;
    for (let i = a; i <= end; i++) out.push(i);
  }
  return out;
}

function readFileOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** The hard RLIMIT_NOFILE of `pid` (Node raises its own soft limit to the hard one at startup). */
function fdHardLimit(pid: number | 'self'): number {
  const line = readFileOr(`/proc/${pid}/limits`, '').split('\n').find((l) => l.startsWith('Max open files'));
  const hard = line?.trim().split(/\s+/)[4];
  return hard === 'unlimited' ? Infinity : Number(hard ?? NaN);
}

function gitCommit(): string {
  const cwd = path.join(__dirname, '..', '..');
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' });
  if (head.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no', 'src', 'scripts'], { cwd, encoding: 'utf8' });
  return head.stdout.trim() + (dirty.stdout?.trim() ? '+changes' : '');
}

function inspectMachine(settings: Settings, notes: string[]): Machine {
  const cpuinfo = readFileOr('/proc/cpuinfo', '');
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const allowed = parseCpuList(/^Cpus_allowed_list:\s*(.+)$/m.exec(readFileOr('/proc/self/status', ''))?.[1] ?? '');
  const allowedCpus = allowed.length > 0 ? allowed : os.cpus().map((_, i) => i);
  const ticks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim());
  let pinning: Machine['pinning'];
  let pinNote: string;
  const hasTaskset = spawnSync('taskset', ['-c', String(allowedCpus[0] ?? 0), 'true']).status === 0;
  if (!settings.pin) {
    pinNote = 'not pinned (--no-pin)';
  } else if (!hasTaskset) {
    pinNote = 'not pinned: taskset (util-linux) not found; install util-linux to pin server and generator to different cores';
  } else if (allowedCpus.length < 2) {
    pinNote = `not pinned: only ${allowedCpus.length} CPU available, server and generator share it`;
  } else {
    // One core for the server (the baseline is single-threaded; the targets compare one core's
    // worth), the rest for the generator and this process.
    const server = [allowedCpus[allowedCpus.length - 1]!];
    const load = allowedCpus.slice(0, -1);
    const r = spawnSync('taskset', ['-a', '-p', '-c', load.join(','), String(process.pid)], { encoding: 'utf8' });
    if (r.status === 0) {
      pinning = { server, load };
      pinNote = `server on CPU ${server.join(',')}, generator on CPU ${load.join(',')}`;
    } else {
      pinNote = `not pinned: taskset -p failed (${(r.stderr ?? '').trim()})`;
    }
  }
  if (pinning === undefined) notes.push(`Pinning: ${pinNote}.`);
  let fdLimit = fdHardLimit('self');
  const need = settings.idleSessions + FD_HEADROOM;
  if (settings.only.includes('idle') && fdLimit < need) {
    // Children inherit the raised limit; this only works with the privilege to raise a hard limit.
    const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${need}:${need}`], { encoding: 'utf8' });
    if (r.status === 0) fdLimit = fdHardLimit('self');
    if (fdLimit < need) {
      notes.push(`The open-file limit is ${fdLimit}, below the ${need} the idle test needs; raise it (ulimit -n 65536 as root, or LimitNOFILE) and run again.`);
    }
  }
  return {
    cpuModel,
    cpus: os.cpus().length,
    allowedCpus,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    date: new Date().toISOString(),
    loadAvgAtStart: os.loadavg().map((n) => Math.round(n * 100) / 100),
    clockTicksPerSec: Number.isFinite(ticks) && ticks > 0 ? ticks : 100,
    pinning,
    pinNote,
    fdLimit,
    commit: gitCommit(),
  };
}

// ---------------------------------------------------------------------------------------------
// /proc readers

interface ProcStat {
  readonly ppid: number;
  /** utime + stime, clock ticks, all threads. */
  readonly cpuTicks: number;
  /** cutime + cstime: children that have exited and been waited for. */
  readonly reapedChildTicks: number;
}

function readProcStat(pid: number | 'self'): ProcStat | undefined {
  const text = readFileOr(`/proc/${pid}/stat`, '');
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (fields.length < 13) return undefined;
  return { ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]), reapedChildTicks: Number(fields[13]) + Number(fields[14]) };
}

/** Direct children of `pid`, from /proc/<pid>/task/<tid>/children (or a scan of /proc). */
function childPids(pid: number | 'self'): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text !== '') out.push(...text.split(' ').map(Number));
    }
    return out;
  } catch {
    const parent = pid === 'self' ? process.pid : pid;
    for (const entry of readdirSync('/proc')) {
      if (/^\d+$/.test(entry) && readProcStat(Number(entry))?.ppid === parent) out.push(Number(entry));
    }
    return out;
  }
}

function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childPids(all[i]!));
  return all;
}

function vmRssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileOr(`/proc/${pid}/status`, ''));
  return m ? Number(m[1]) : 0;
}

/** Busy clock ticks of the whole machine (all CPUs), from /proc/stat. */
function systemBusyTicks(): number {
  const line = readFileOr('/proc/stat', '').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is already in user).
  return (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0);
}

/** CPU ticks of this process and its children, live and exited (so a child that exits mid-window still counts). */
function selfAndReapedTicks(): number {
  const s = readProcStat('self');
  return s === undefined ? 0 : s.cpuTicks + s.reapedChildTicks;
}

/** CPU ticks of this process, its generator children and every server we started (with their workers). */
function ourTicks(): number {
  const servers = new Set<number>();
  let sum = selfAndReapedTicks();
  for (const s of liveServers) {
    servers.add(s.pid);
    for (const pid of s.pids()) sum += readProcStat(pid)?.cpuTicks ?? 0;
  }
  for (const pid of childPids('self')) if (!servers.has(pid)) sum += readProcStat(pid)?.cpuTicks ?? 0;
  return sum;
}

/**
 * Waits (up to `maxWaitMs`) until processes other than ours use less than QUIET_OTHER_SHARE of a
 * core, so other people's builds and tests on a shared machine don't land in a run. Returns the
 * ms waited and the share of the last probe.
 */
async function waitForQuiet(ticksPerSec: number, maxWaitMs: number, signal: AbortSignal): Promise<{ waitedMs: number; otherShare: number }> {
  const start = performance.now();
  let share: number;
  do {
    const t0 = performance.now();
    const busy0 = systemBusyTicks();
    const ours0 = ourTicks();
    await sleep(QUIET_PROBE_MS);
    const seconds = (performance.now() - t0) / 1000;
    share = Math.max(0, systemBusyTicks() - busy0 - (ourTicks() - ours0)) / ticksPerSec / seconds;
    if (share < QUIET_OTHER_SHARE) break;
  } while (performance.now() - start < maxWaitMs && !signal.aborted);
  return { waitedMs: Math.round(performance.now() - start - QUIET_PROBE_MS), otherShare: share };
}

// ---------------------------------------------------------------------------------------------
// Servers

interface ServerStart {
  readonly kind: ServerKind;
  readonly certDir: string;
  readonly machine: Machine;
  readonly settings: Settings;
  readonly workDir: string;
}

const liveServers = new Set<ServerProcess>();

class ServerProcess {
  exited = false;
  port = 0;
  /** Worker count the daemon reported (auto resolves to the CPUs it may use). */
  workers: number | undefined;
  private readonly exitPromise: Promise<void>;

  private constructor(
    readonly kind: ServerKind,
    readonly child: ChildProcess,
    readonly stdoutPath: string,
    readonly stderrPath: string,
  ) {
    this.exitPromise = new Promise((resolve) =>
      child.once('exit', () => {
        this.exited = true;
        liveServers.delete(this);
        resolve();
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  static async start(o: ServerStart): Promise<ServerProcess> {
    const cert = path.join(o.certDir, 'server.pem');
    const key = path.join(o.certDir, 'server-key.pem');
    const nodeArgs: string[] = [];
    let fixedPort: number | undefined;
    let script: string;
    let args: string[];
    if (o.kind === 'baseline') {
      script = BASELINE;
      args = ['--cert', cert, '--key', key, '--listen', '127.0.0.1:0'];
    } else {
      script = CLI;
      // Log level info (the default) unless the comparison variant: the daemon runs as a user runs it.
      // At --log-level warn there is no "listening" line to read the port from: give it one that was free a moment ago.
      fixedPort = o.kind === 'workers-0-log-warn' ? await freePort() : undefined;
      args = ['serve', '--workers', o.kind === 'workers-auto' ? 'auto' : '0', '--listen', `127.0.0.1:${fixedPort ?? 0}`, '--cert', cert, '--key', key, ...DAEMON_PROTECTION_FLAGS];
      if (o.kind === 'workers-0-log-warn') args.push('--log-level', 'warn');
      args.push(...o.settings.daemonArgs);
      nodeArgs.push(...o.settings.daemonNodeArgs);
      if (o.kind === 'workers-0' && o.settings.cpuProfDir !== undefined) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', o.settings.cpuProfDir);
    }
    const stamp = `${o.kind}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    // stdout goes to a file, as journald or a log file would take it: no pipe for this process to drain.
    const stdoutPath = path.join(o.workDir, `${stamp}.stdout.log`);
    const stderrPath = path.join(o.workDir, `${stamp}.stderr.log`);
    const out = openSync(stdoutPath, 'a');
    const err = openSync(stderrPath, 'a');
    const command = [process.execPath, ...nodeArgs, script, ...args];
    const pin = o.machine.pinning;
    const child = pin
      ? spawn('taskset', ['-c', pin.server.join(','), ...command], { stdio: ['ignore', out, err] })
      : spawn(command[0]!, command.slice(1), { stdio: ['ignore', out, err] });
    closeSync(out);
    closeSync(err);
    const server = new ServerProcess(o.kind, child, stdoutPath, stderrPath);
    liveServers.add(server);
    child.on('error', () => undefined);
    const deadline = performance.now() + START_TIMEOUT_MS;
    while (performance.now() < deadline && !server.exited) {
      if (fixedPort !== undefined) {
        if (await accepts(fixedPort)) {
          server.port = fixedPort;
          return server;
        }
      } else if (server.parseListening(readFileOr(stdoutPath, ''))) {
        return server;
      }
      await sleep(25);
    }
    await server.stop();
    const tail = (readFileOr(stderrPath, '') + readFileOr(stdoutPath, '')).slice(-2000);
    throw new Error(`${SERVER_LABELS[o.kind]} did not start listening within ${START_TIMEOUT_MS / 1000} s: ${tail}`);
  }

  private parseListening(text: string): boolean {
    if (this.kind === 'baseline') {
      const m = /^listening (\d+)$/m.exec(text);
      if (m) this.port = Number(m[1]);
      return m !== null;
    }
    for (const line of text.split('\n')) {
      if (!line.includes('"listening"')) continue;
      try {
        const j = JSON.parse(line) as { message?: string; addresses?: string[]; workers?: number };
        const address = j.addresses?.[0];
        if (j.message !== 'listening' || address === undefined) continue;
        this.port = Number(address.slice(address.lastIndexOf(':') + 1));
        this.workers = j.workers;
        return true;
      } catch {
        continue;
      }
    }
    return false;
  }

  /** The server's processes: the daemon's supervisor and its workers. */
  pids(): number[] {
    return this.exited ? [] : processTree(this.pid);
  }

  cpuTicks(pids: readonly number[]): number {
    let sum = 0;
    for (const pid of pids) sum += readProcStat(pid)?.cpuTicks ?? 0;
    return sum;
  }

  rssKiB(): number {
    return this.pids().reduce((sum, pid) => sum + vmRssKiB(pid), 0);
  }

  /** Lines the daemon logged so far (log volume of the run). */
  logBytes(): number {
    try {
      return statSync(this.stdoutPath).size;
    } catch {
      return 0;
    }
  }

  /** SIGTERM, a bounded wait for the drain, then SIGKILL. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

/** A TCP port on 127.0.0.1 that was free when asked. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------------------------------------
// CPU sampling during a run

interface CpuSample {
  readonly t: number;
  readonly server: number;
  readonly generator: number;
  readonly busy: number;
}

/** CPU shares (1 = one core) over a window. */
interface CpuShares {
  readonly server: number;
  readonly generator: number;
  /** Everything else on the machine: other people's work, the kernel's softirqs. */
  readonly other: number;
  readonly serverSeconds: number;
}

class CpuSampler {
  private readonly samples: CpuSample[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly serverPids: number[];

  constructor(
    private readonly server: ServerProcess,
    private readonly ticksPerSec: number,
  ) {
    this.serverPids = server.pids();
    this.sample();
    this.timer = setInterval(() => this.sample(), SAMPLE_INTERVAL_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }

  private sample(): void {
    const servers = new Set<number>();
    for (const s of liveServers) servers.add(s.pid);
    // The generator: this process plus the generator processes it started (not the servers).
    let generator = selfAndReapedTicks();
    for (const pid of childPids('self')) if (!servers.has(pid)) generator += readProcStat(pid)?.cpuTicks ?? 0;
    this.samples.push({ t: performance.now(), server: this.server.cpuTicks(this.serverPids), generator, busy: systemBusyTicks() });
  }

  private at(t: number): CpuSample {
    const s = this.samples;
    if (t <= s[0]!.t) return s[0]!;
    for (let i = 1; i < s.length; i++) {
      const b = s[i]!;
      if (t <= b.t) {
        const a = s[i - 1]!;
        const f = (t - a.t) / (b.t - a.t || 1);
        const lerp = (x: number, y: number): number => x + (y - x) * f;
        return { t, server: lerp(a.server, b.server), generator: lerp(a.generator, b.generator), busy: lerp(a.busy, b.busy) };
      }
    }
    return s[s.length - 1]!;
  }

  /** Shares between `from` and `to` (performance.now() times); the whole sampled span when omitted. */
  shares(from = this.samples[0]!.t, to = this.samples[this.samples.length - 1]!.t): CpuShares {
    const a = this.at(from);
    const b = this.at(to);
    const seconds = Math.max(1e-9, (b.t - a.t) / 1000);
    const tps = this.ticksPerSec;
    const server = (b.server - a.server) / tps;
    const generator = (b.generator - a.generator) / tps;
    const busy = (b.busy - a.busy) / tps;
    return { server: server / seconds, generator: generator / seconds, other: Math.max(0, busy - server - generator) / seconds, serverSeconds: server };
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface ThroughputScenario {
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
}

const THROUGHPUT_SCENARIOS: readonly ThroughputScenario[] = [
  { name: 'handshake-ecdsa', keyType: 'ecdsa-p256', mode: 'handshake', connections: 32, sizeBytes: 64, perSessionHeavy: true, soakShare: 0.5 },
  { name: 'handshake-rsa', keyType: 'rsa-2048', mode: 'handshake', connections: 32, sizeBytes: 64, perSessionHeavy: true, soakShare: 0.5 },
  { name: 'pingpong', keyType: 'ecdsa-p256', mode: 'pingpong', connections: 64, sizeBytes: 64, perSessionHeavy: false, soakShare: 1 },
  // 16 KiB writes: one full TLS record each.
  { name: 'stream', keyType: 'ecdsa-p256', mode: 'stream', connections: 4, sizeBytes: 16 * 1024, perSessionHeavy: false, soakShare: 1 },
];

interface RunRecord {
  readonly server: ServerKind;
  readonly round: number;
  readonly generator: 'tls-echod bench' | 'tlsload (Go)';
  readonly opsPerSec: number;
  readonly mbPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly firstError: string | null;
  /** Server CPU over the measured window, in cores (1 = one full core). */
  readonly serverCpu: number;
  readonly generatorCpu: number;
  readonly otherCpu: number;
  /** Operations (or MB) per second of server CPU: the rate of one saturated core. */
  readonly opsPerCoreSec: number;
  readonly mbPerCoreSec: number;
  /** Daemon log written during the run (bytes). */
  readonly logBytes: number;
}

interface IdleRecord {
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

interface Context {
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
  return `${rate}, server CPU ${pct(r.serverCpu)}, generator ${pct(r.generatorCpu)}, other ${pct(r.otherCpu)} -> ${perCore}, p99 ${r.p99Ms.toFixed(2)} ms${errors}`;
}

/** Servers of a throughput scenario, in the order every round visits them (A/B/C, A/B/C, ...). */
function throughputServers(ctx: Context, sc: ThroughputScenario): ServerKind[] {
  const kinds: ServerKind[] = ['baseline', 'workers-0', 'workers-auto'];
  if (ctx.settings.logCompare && sc.perSessionHeavy) kinds.push('workers-0-log-warn');
  return kinds;
}

async function startServer(ctx: Context, kind: ServerKind, keyType: KeyType): Promise<ServerProcess> {
  return ServerProcess.start({ kind, certDir: ctx.certDirs[keyType], machine: ctx.machine, settings: ctx.settings, workDir: ctx.workDir });
}

async function runThroughputScenario(ctx: Context, sc: ThroughputScenario): Promise<{ runs: RunRecord[]; crossCheck: RunRecord[]; workers: Partial<Record<ServerKind, number>> }> {
  const kinds = throughputServers(ctx, sc);
  const servers = new Map<ServerKind, ServerProcess>();
  const workers: Partial<Record<ServerKind, number>> = {};
  const runs: RunRecord[] = [];
  const crossCheck: RunRecord[] = [];
  const ensure = async (kind: ServerKind): Promise<ServerProcess> => {
    let s = servers.get(kind);
    if (s === undefined || s.exited) {
      if (s !== undefined) ctx.notes.push(`${sc.name}: ${SERVER_LABELS[kind]} exited during the scenario (killed from outside?) and was restarted.`);
      s = await startServer(ctx, kind, sc.keyType);
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
        await runLoad({ host: '127.0.0.1', port: server.port, mode: sc.mode, connections: sc.connections, sizeBytes: sc.sizeBytes, warmupMs: 0, durationMs: soakMs, processes, signal: ctx.signal });
      }
    }
    for (let round = 1; round <= ctx.settings.rounds && !ctx.signal.aborted; round++) {
      for (const kind of kinds) {
        if (ctx.signal.aborted) break;
        runs.push(await measure(kind, `${sc.name} round ${round}/${ctx.settings.rounds}`, (server) => throughputRun(ctx, sc, server, round)));
      }
    }
    const bin = ctx.settings.tlsload;
    if (bin !== undefined && (sc.name === 'handshake-ecdsa' || sc.name === 'pingpong')) {
      for (let round = 1; round <= Math.max(2, ctx.settings.rounds) && !ctx.signal.aborted; round++) {
        for (const kind of ['baseline', 'workers-0'] as const) {
          crossCheck.push(await measure(kind, `${sc.name} tlsload round ${round}`, (server) => tlsloadRun(ctx, bin, sc, server, round)));
        }
      }
    }
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()));
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
  const server = await startServer(ctx, kind, 'ecdsa-p256');
  try {
    // A few handshakes first so one-time costs (lazy TLS and JIT set-up, first log line) are
    // in the "before" figure and not spread over the sessions.
    await runLoad({ host: '127.0.0.1', port: server.port, mode: 'handshake', connections: 8, warmupMs: 0, durationMs: 300, signal: ctx.signal });
    await settle(ctx);
    const before = server.rssKiB();
    const readyFile = path.join(ctx.workDir, `ready-${kind}-${round}-${rampPerSec}-${Date.now()}`);
    const abort = new AbortController();
    const onOuterAbort = (): void => abort.abort();
    ctx.signal.addEventListener('abort', onOuterAbort, { once: true });
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
      signal: abort.signal,
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
    ctx.signal.removeEventListener('abort', onOuterAbort);
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

async function runIdleScenario(ctx: Context): Promise<IdleRecord[]> {
  const need = ctx.settings.idleSessions + FD_HEADROOM;
  if (ctx.machine.fdLimit < need) {
    ctx.notes.push(`idle: skipped, the open-file limit ${ctx.machine.fdLimit} is below ${need}.`);
    return [];
  }
  const records: IdleRecord[] = [];
  for (let round = 1; round <= ctx.settings.idleRounds && !ctx.signal.aborted; round++) {
    for (const kind of ['baseline', 'workers-0', 'workers-auto'] as const) {
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

// ---------------------------------------------------------------------------------------------
// Summary

interface Row {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  /** Ratio to the baseline that --workers 0 must reach (at least, or at most when lower is better). */
  readonly target: number;
  readonly values: Partial<Record<ServerKind, number>>;
  readonly ratios: Partial<Record<ServerKind, number>>;
  /** --workers 0 against the target; undefined when not measured or not judged (see verdict). */
  readonly pass: boolean | undefined;
  readonly autoPass: boolean | undefined;
  /** Shown instead of PASS/MISS when the row is not judged: why. */
  readonly verdict?: string;
}

function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function medianBy<T>(records: readonly T[], kind: ServerKind, pick: (r: T) => number, kindOf: (r: T) => ServerKind): number {
  return median(records.filter((r) => kindOf(r) === kind).map(pick));
}

function makeRow(id: string, label: string, unit: string, better: Row['better'], target: number, values: Partial<Record<ServerKind, number>>): Row {
  const base = values.baseline;
  const ratios: Partial<Record<ServerKind, number>> = {};
  for (const [kind, v] of Object.entries(values) as Array<[ServerKind, number]>) {
    if (kind !== 'baseline' && base !== undefined && Number.isFinite(v) && Number.isFinite(base) && base > 0) ratios[kind] = v / base;
  }
  const meets = (r: number | undefined): boolean | undefined => (r === undefined ? undefined : better === 'higher' ? r >= target : r <= target);
  return { id, label, unit, better, target, values, ratios, pass: meets(ratios['workers-0']), autoPass: meets(ratios['workers-auto']) };
}

interface ScenarioResults {
  throughput: Map<ScenarioName, { runs: RunRecord[]; crossCheck: RunRecord[]; workers: Partial<Record<ServerKind, number>> }>;
  idle: IdleRecord[];
}

function buildRows(results: ScenarioResults): Row[] {
  const rows: Row[] = [];
  const kinds: ServerKind[] = ['baseline', 'workers-0', 'workers-auto', 'workers-0-log-warn'];
  const values = (runs: readonly RunRecord[], pick: (r: RunRecord) => number): Partial<Record<ServerKind, number>> => {
    const out: Partial<Record<ServerKind, number>> = {};
    for (const k of kinds) {
      const v = medianBy(runs, k, pick, (r) => r.server);
      if (Number.isFinite(v)) out[k] = v;
    }
    return out;
  };
  const t = results.throughput;
  const saturated = (runs: readonly RunRecord[]): boolean => medianBy(runs, 'workers-0', (r) => r.serverCpu, (r) => r.server) >= SATURATED_SHARE;
  // A throughput figure is judged where the server was saturated, as the targets ask: the
  // project's generator when it saturated --workers 0, else the Go generator's cross-check
  // when that did (the project's figure is then shown, extrapolated, but not judged).
  const throughput = (name: ScenarioName, label: string, unit: string, pick: (r: RunRecord) => number): void => {
    const s = t.get(name);
    if (!s) return;
    const own = makeRow(name, label, unit, 'higher', 0.95, values(s.runs, pick));
    if (s.crossCheck.length === 0) {
      rows.push(own);
      return;
    }
    const go = makeRow(`${name}-tlsload`, `${label}, Go tlsload`, unit, 'higher', 0.95, values(s.crossCheck, pick));
    if (!saturated(s.runs) && saturated(s.crossCheck)) {
      rows.push({ ...own, pass: undefined, autoPass: undefined, verdict: 'partial load' }, go);
    } else {
      rows.push(own, { ...go, pass: undefined, verdict: 'cross-check' });
    }
  };
  throughput('handshake-ecdsa', 'Full handshakes/s, ECDSA P-256', '/core-s', (r) => r.opsPerCoreSec);
  throughput('handshake-rsa', 'Full handshakes/s, RSA-2048', '/core-s', (r) => r.opsPerCoreSec);
  throughput('pingpong', 'Ping-pong 64 B msgs/s, 64 conns', '/core-s', (r) => r.opsPerCoreSec);
  const pp = t.get('pingpong');
  if (pp) rows.push(makeRow('pingpong-p99', 'Ping-pong p99 latency, 64 conns', 'ms', 'lower', 1.2, values(pp.runs, (r) => r.p99Ms)));
  throughput('stream', 'Bulk echo MB/s, 4 conns', 'MB/core-s', (r) => r.mbPerCoreSec);
  if (results.idle.length > 0) {
    const v: Partial<Record<ServerKind, number>> = {};
    for (const k of kinds) {
      const m = medianBy(results.idle, k, (r) => r.perSessionKiB, (r) => r.server);
      if (Number.isFinite(m)) v[k] = m;
    }
    rows.push(makeRow('idle-rss', `RSS per idle session`, 'KiB', 'lower', 1.1, v));
  }
  return rows;
}

function fmt(n: number | undefined, decimals: number): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

function ratioText(ratio: number | undefined): string {
  return ratio === undefined ? '-' : `${fmt(ratio, 3)}x`;
}

function pct(share: number): string {
  return Number.isFinite(share) ? `${Math.round(share * 100)}%` : '-';
}

function decimalsFor(unit: string, v: number | undefined): number {
  if (unit === 'ms' || unit === 'KiB') return v !== undefined && v < 10 ? 2 : 1;
  return 0;
}

function table(header: readonly string[], rows: readonly (readonly string[])[], rightAlign: ReadonlySet<number>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    '| ' + cells.map((c, i) => (rightAlign.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ') + ' |';
  const rule = '|' + widths.map((w, i) => (rightAlign.has(i) ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|';
  return [line(header), rule, ...rows.map(line)].join('\n');
}

function renderSummary(rows: readonly Row[], results: ScenarioResults, machine: Machine, settings: Settings, notes: readonly string[], elapsedSec: number): string {
  const out: string[] = [];
  out.push(`tls-echod benchmark, ${machine.date.slice(0, 10)}`);
  out.push(`Machine: ${machine.cpuModel}, ${machine.cpus} CPU(s), ${machine.kernel}, Node ${machine.node}; load average at start ${machine.loadAvgAtStart.join(' ')}`);
  out.push(`tls-echod commit ${machine.commit}; pinning: ${machine.pinNote}`);
  if (settings.daemonArgs.length + settings.daemonNodeArgs.length > 0) out.push(`Extra daemon arguments: ${[...settings.daemonNodeArgs, ...settings.daemonArgs].join(' ')}`);
  out.push(
    `Runs: ${settings.rounds} alternating round(s) per scenario, ${settings.warmupMs / 1000} s warmup + ${settings.durationMs / 1000} s measured each ` +
      `(each server soaked ${settings.soakMs / 1000} s first, handshakes ${settings.soakMs / 2000} s), medians shown; ` +
      `idle: ${settings.idleSessions} sessions, ${settings.idleRounds} round(s), fresh server each; total ${Math.round(elapsedSec)} s`,
  );
  const workerNote = [...results.throughput.values()].map((s) => s.workers['workers-auto']).find((w) => w !== undefined);
  if (workerNote !== undefined) {
    out.push(
      workerNote === 0
        ? '--workers auto resolved to 0 (inline): the daemon may run on one CPU only, so its figures repeat --workers 0 measured again'
        : `--workers auto resolved to ${workerNote} worker(s) (the CPUs the daemon may run on)`,
    );
  }
  out.push('');
  out.push('Throughput figures are per second of server CPU (= the rate of one saturated core); see the detail table for raw rates.');
  const header = ['scenario', 'unit', 'baseline', 'workers 0', 'ratio', 'workers auto', 'ratio', 'target', 'workers 0'];
  const body = rows.map((r) => [
    r.label,
    r.unit,
    fmt(r.values.baseline, decimalsFor(r.unit, r.values.baseline)),
    fmt(r.values['workers-0'], decimalsFor(r.unit, r.values['workers-0'])),
    ratioText(r.ratios['workers-0']),
    fmt(r.values['workers-auto'], decimalsFor(r.unit, r.values['workers-auto'])),
    ratioText(r.ratios['workers-auto']) + (r.autoPass === false ? ' !' : ''),
    `${r.better === 'higher' ? '>=' : '<='} ${r.target.toFixed(2)}x`,
    r.pass === undefined ? r.verdict ?? '-' : r.pass ? 'PASS' : 'MISS',
  ]);
  out.push(table(header, body, new Set([2, 3, 4, 5, 6])));
  out.push('(targets apply to --workers 0; "!" marks a workers auto ratio that would miss them)');
  const logRows = rows.filter((r) => r.values['workers-0-log-warn'] !== undefined);
  if (logRows.length > 0) {
    out.push('');
    out.push('Cost of the per-session info log line (--workers 0, default --log-level info vs --log-level warn):');
    for (const r of logRows) {
      out.push(`  ${r.label}: info ${fmt(r.values['workers-0'], 0)} ${r.unit} (${fmt(r.ratios['workers-0'], 2)}x), warn ${fmt(r.values['workers-0-log-warn'], 0)} ${r.unit} (${fmt(r.ratios['workers-0-log-warn'], 2)}x)`);
    }
  }
  out.push('');
  out.push('Detail (medians over rounds; "bound" says which side ran out of CPU):');
  const detail: string[][] = [];
  for (const [name, s] of results.throughput) {
    for (const [gen, runs] of [['tls-echod bench', s.runs], ['tlsload (Go)', s.crossCheck]] as const) {
      for (const kind of ['baseline', 'workers-0', 'workers-auto', 'workers-0-log-warn'] as const) {
        const mine = runs.filter((r) => r.server === kind);
        if (mine.length === 0) continue;
        const m = (pick: (r: RunRecord) => number): number => median(mine.map(pick));
        const stream = name === 'stream';
        const serverCpu = m((r) => r.serverCpu);
        const genCpu = m((r) => r.generatorCpu);
        const loadCores = machine.pinning?.load.length ?? machine.cpus;
        const bound = serverCpu >= SATURATED_SHARE ? 'server' : genCpu >= SATURATED_SHARE * loadCores ? 'generator' : 'neither';
        const raw = mine.map((r) => (stream ? r.mbPerSec : r.opsPerSec));
        detail.push([
          name,
          gen,
          SERVER_LABELS[kind],
          `${fmt(median(raw), 0)} ${stream ? 'MB/s' : '/s'}`,
          `${fmt(Math.min(...raw), 0)}-${fmt(Math.max(...raw), 0)}`,
          pct(serverCpu),
          pct(genCpu),
          pct(m((r) => r.otherCpu)),
          bound,
          `${fmt(m((r) => (stream ? r.mbPerCoreSec : r.opsPerCoreSec)), 0)}`,
          m((r) => r.p50Ms).toFixed(2),
          m((r) => r.p99Ms).toFixed(2),
          String(mine.reduce((sum, r) => sum + r.errors, 0)),
          kind === 'baseline' ? '-' : fmt(m((r) => r.logBytes) / 1024, 0),
        ]);
      }
    }
  }
  if (detail.length > 0) {
    out.push(
      table(
        ['scenario', 'generator', 'server', 'raw rate', 'range', 'server CPU', 'gen CPU', 'other CPU', 'bound', 'per core-s', 'p50 ms', 'p99 ms', 'errors', 'log KiB'],
        detail,
        new Set([3, 4, 5, 6, 7, 9, 10, 11, 12, 13]),
      ),
    );
  }
  if (results.idle.length > 0) {
    out.push('');
    const idleRows = (['baseline', 'workers-0', 'workers-auto'] as const).flatMap((kind) => {
      const mine = results.idle.filter((r) => r.server === kind);
      if (mine.length === 0) return [];
      return [[
        SERVER_LABELS[kind],
        String(median(mine.map((r) => r.established))),
        [...new Set(mine.map((r) => r.rampPerSec))].join(', '),
        fmt(median(mine.map((r) => r.rssBeforeKiB)) / 1024, 1),
        fmt(median(mine.map((r) => r.rssAfterKiB)) / 1024, 1),
        mine.map((r) => fmt(r.perSessionKiB, 1)).join(', '),
        String(mine.reduce((sum, r) => sum + r.errors, 0)),
      ]];
    });
    out.push(table(['idle sessions', 'established', 'opened/s', 'RSS before MiB', 'RSS after MiB', 'KiB/session per round', 'errors'], idleRows, new Set([1, 2, 3, 4, 5, 6])));
  }
  const allNotes = [...notes];
  const missed = rows.filter((r) => r.pass === false);
  out.push('');
  out.push(missed.length === 0 ? 'All targets met by --workers 0.' : `Missed by --workers 0: ${missed.map((r) => `${r.label} (${fmt(r.ratios['workers-0'], 2)}x, target ${r.better === 'higher' ? '>=' : '<='} ${r.target}x)`).join('; ')}`);
  if (allNotes.length > 0) {
    out.push('');
    out.push('Notes:');
    for (const n of allNotes) out.push(`  - ${n}`);
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Main

async function generateCerts(workDir: string): Promise<Record<KeyType, string>> {
  const dirs = {} as Record<KeyType, string>;
  for (const keyType of ['ecdsa-p256', 'rsa-2048'] as const) {
    const dir = path.join(workDir, `certs-${keyType}`);
    const r = spawnSync(process.execPath, [CLI, 'cert', 'generate', '--cert-dir', dir, '--key-type', keyType, '--json'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cert generate --key-type ${keyType} failed: ${r.stderr}`);
    dirs[keyType] = dir;
  }
  return dirs;
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
    rmSync(workDir, { recursive: true, force: true });
  });
  log(`bench: ${machine.cpuModel}, ${machine.cpus} CPU(s), Node ${machine.node}; ${machine.pinNote}`);
  const certDirs = await generateCerts(workDir);
  const ctx: Context = { settings, machine, workDir, certDirs, notes, log, signal: controller.signal, noisyStarts: 0, quietWaitedMs: 0, rerunRuns: 0 };
  const results: ScenarioResults = { throughput: new Map(), idle: [] };
  for (const sc of THROUGHPUT_SCENARIOS) {
    if (!settings.only.includes(sc.name) || controller.signal.aborted) continue;
    log(`${sc.name}: ${sc.mode}, ${sc.connections} connections, ${sc.sizeBytes}-byte ${sc.mode === 'stream' ? 'writes' : 'echoes'}, ${sc.keyType}`);
    results.throughput.set(sc.name, await runThroughputScenario(ctx, sc));
  }
  if (settings.only.includes('idle') && !controller.signal.aborted) {
    log(`idle: ${settings.idleSessions} idle sessions, RSS of each server (all its processes) before and after`);
    results.idle = await runIdleScenario(ctx);
  }
  const elapsedSec = (performance.now() - startedAt) / 1000;
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
    const cpu = median(s.runs.filter((r) => r.server === 'workers-0').map((r) => r.serverCpu));
    if (cpu < SATURATED_SHARE) {
      const handshakes = name.startsWith('handshake');
      notes.push(
        `${name}: the generator could not saturate the server (--workers 0 at ${pct(cpu)} of its core), so its per-core-s figure is extrapolated from partial load` +
          (s.crossCheck.length > 0
            ? '; the target is judged on the Go generator\'s run instead, where that saturated the server.'
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
    settings,
    elapsedSec: Math.round(elapsedSec),
    rows,
    scenarios: Object.fromEntries([...results.throughput].map(([k, v]) => [k, v])),
    idle: results.idle,
    notes,
  };
  if (settings.save !== undefined) writeFileSync(settings.save, JSON.stringify(json, null, 2) + '\n');
  if (settings.json) process.stdout.write(JSON.stringify(json) + '\n');
  else process.stdout.write(renderSummary(rows, results, machine, settings, notes, elapsedSec));
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
