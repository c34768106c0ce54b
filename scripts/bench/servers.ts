// The servers under test: starting the baseline, the floor and tls-echod (pinned, with their certificates),
// finding their port, stopping them; and the CPU accounting that needs to tell our processes
// (servers with their sidecars, generator) from everyone else's: the quiet-wait before a run and
// the CPU sampler during it.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { childPids, processTree, readFileOr, readProcStat, selfAndReapedTicks, systemBusyTicks, vmRssKiB, type Machine } from './machine';
import { accepts, freePort } from './ports';
import {
  DAEMON_PROTECTION_FLAGS,
  PROXY_PROTOCOL_FLAGS,
  QUIET_OTHER_SHARE,
  QUIET_PROBE_MS,
  SAMPLE_INTERVAL_MS,
  SERVER_LABELS,
  START_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  type KeyType,
  type ServerKind,
  type Settings,
} from './settings';
import { liveSidecars, startHaproxy, startRedis, type Sidecar } from './sidecars';

// Relative to dist/scripts/bench/, where this module is compiled to.
const CLI = path.join(__dirname, '..', '..', 'src', 'cli.js');

/**
 * The servers that are not tls-echod: the same certificate and listen arguments, and a plain
 * `listening <port>` line on stdout.
 */
const PLAIN_SCRIPTS: Partial<Readonly<Record<ServerKind, string>>> = {
  baseline: path.join(__dirname, '..', 'baseline-server.js'),
  floor: path.join(__dirname, '..', 'floor-server.js'),
};

// ---------------------------------------------------------------------------------------------
// Servers

interface ServerStart {
  readonly kind: ServerKind;
  readonly certDir: string;
  readonly machine: Machine;
  readonly settings: Settings;
  readonly workDir: string;
  /** Ask for a client certificate from the CA in certDir (mutual TLS). */
  readonly clientAuth?: boolean | undefined;
}

/** The client certificate the generator presents in the mutual TLS scenario, issued by `cert client` into each cert dir. */
export const BENCH_CLIENT = 'bench';

export const liveServers = new Set<ServerProcess>();

/** The daemon's line once it reaches the redis-server (src/daemon/supervisor.ts). */
const REDIS_UP_MESSAGE = 'redis answers: per-client limits are shared';
/** Its lines when Redis failed and the local limits decided (sampled: at most 10 per 10 s each). */
const REDIS_DOWN_MESSAGES = ['redis error: the local limits decide', 'redis does not answer'];

export class ServerProcess {
  /** The port the load goes to: the server's own, or HAProxy's in front of it. */
  port = 0;
  /** Worker count the daemon reported (auto resolves to the CPUs it may use). */
  workers: number | undefined;
  /** HAProxy in front, or the redis-server behind (OPTION_KINDS); stopped with the server. */
  sidecar: Sidecar | undefined;
  private serverExited = false;
  private readonly exitPromise: Promise<void>;

  private constructor(
    readonly kind: ServerKind,
    readonly child: ChildProcess,
    readonly stdoutPath: string,
    readonly stderrPath: string,
  ) {
    this.exitPromise = new Promise((resolve) =>
      child.once('exit', () => {
        this.serverExited = true;
        liveServers.delete(this);
        resolve();
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** The server, or its sidecar, has exited: a run against it measures nothing. */
  get exited(): boolean {
    return this.serverExited || this.sidecar?.exited === true;
  }

  /**
   * Starts the server, and its sidecar for OPTION_KINDS: the redis-server before the daemon (which
   * connects at start, and is only returned once it has), HAProxy after it (it needs the
   * daemon's port; the load then goes to HAProxy's).
   */
  static async start(o: ServerStart): Promise<ServerProcess> {
    if (o.kind === 'workers-0-redis') {
      const redis = await startRedis(o.machine, o.workDir);
      let server: ServerProcess;
      try {
        server = await ServerProcess.launch(o, ['--redis', `redis://127.0.0.1:${redis.port}`]);
      } catch (err) {
        await redis.stop();
        throw err;
      }
      server.sidecar = redis;
      const deadline = performance.now() + START_TIMEOUT_MS;
      while (!readFileOr(server.stdoutPath, '').includes(REDIS_UP_MESSAGE)) {
        if (server.exited || performance.now() > deadline) {
          await server.stop();
          throw new Error(`${SERVER_LABELS[o.kind]} did not reach redis-server on port ${redis.port} within ${START_TIMEOUT_MS / 1000} s: ${readFileOr(server.stdoutPath, '').slice(-2000)}`);
        }
        await sleep(25);
      }
      return server;
    }
    const server = await ServerProcess.launch(o, o.kind === 'workers-0-haproxy' ? PROXY_PROTOCOL_FLAGS : []);
    if (o.kind === 'workers-0-haproxy') {
      try {
        server.sidecar = await startHaproxy(o.machine, o.workDir, server.port);
      } catch (err) {
        await server.stop();
        throw err;
      }
      server.port = server.sidecar.port;
    }
    return server;
  }

  /** Starts the server process itself; `extraArgs` go to tls-echod serve. Resolves once it listens. */
  private static async launch(o: ServerStart, extraArgs: readonly string[]): Promise<ServerProcess> {
    const cert = path.join(o.certDir, 'server.pem');
    const key = path.join(o.certDir, 'server-key.pem');
    const nodeArgs: string[] = [];
    let fixedPort: number | undefined;
    let script = PLAIN_SCRIPTS[o.kind];
    let args: string[];
    const clientCa = path.join(o.certDir, 'ca.pem');
    if (script !== undefined) {
      args = ['--cert', cert, '--key', key, '--listen', '127.0.0.1:0'];
      if (o.clientAuth === true) args.push('--client-ca', clientCa);
    } else {
      script = CLI;
      // Log level info (the default) unless the comparison variant: the daemon runs as a user runs it.
      // At --log-level warn there is no "listening" line to read the port from: give it one that was free a moment ago.
      fixedPort = o.kind === 'workers-0-log-warn' ? await freePort() : undefined;
      args = ['serve', '--workers', o.kind === 'workers-auto' ? 'auto' : '0', '--listen', `127.0.0.1:${fixedPort ?? 0}`, '--cert', cert, '--key', key, ...DAEMON_PROTECTION_FLAGS];
      if (o.kind === 'workers-0-log-warn') args.push('--log-level', 'warn');
      args.push(...extraArgs);
      if (o.clientAuth === true) args.push('--client-auth', 'require', '--client-ca', clientCa);
      args.push(...o.settings.daemonArgs);
      nodeArgs.push(...o.settings.daemonNodeArgs);
      if (o.kind === 'workers-0' && o.settings.cpuProfDir !== undefined) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', o.settings.cpuProfDir);
    }
    // The bin runs through its shebang (`env node`), as an installed tls-echod does; node flags
    // can only reach it through NODE_OPTIONS, and env must find this same node first on PATH.
    const viaBin = o.kind === 'workers-0-bin';
    // NODE_OPTIONS the benchmark itself was given reaches both launchers alike.
    const nodeOptions = [process.env.NODE_OPTIONS ?? '', ...nodeArgs].join(' ').trim();
    const env = viaBin
      ? { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`, NODE_OPTIONS: nodeOptions }
      : process.env;
    const stamp = `${o.kind}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    // stdout goes to a file, as journald or a log file would take it: no pipe for this process to drain.
    const stdoutPath = path.join(o.workDir, `${stamp}.stdout.log`);
    const stderrPath = path.join(o.workDir, `${stamp}.stderr.log`);
    const out = openSync(stdoutPath, 'a');
    const err = openSync(stderrPath, 'a');
    const command = viaBin ? [script, ...args] : [process.execPath, ...nodeArgs, script, ...args];
    const pin = o.machine.pinning;
    const child = pin
      ? spawn('taskset', ['-c', pin.server.join(','), ...command], { stdio: ['ignore', out, err], env })
      : spawn(command[0]!, command.slice(1), { stdio: ['ignore', out, err], env });
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
    if (PLAIN_SCRIPTS[this.kind] !== undefined) {
      // The floor's session log lines (JSON) share its stdout: only this line gives the port.
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

  /** The server's processes: the daemon's supervisor and its workers, and its sidecar's (HAProxy, redis-server). */
  pids(): number[] {
    const own = this.serverExited ? [] : processTree(this.pid);
    return this.sidecar === undefined ? own : [...own, ...this.sidecar.pids()];
  }

  cpuTicks(pids: readonly number[]): number {
    let sum = 0;
    for (const pid of pids) sum += readProcStat(pid)?.cpuTicks ?? 0;
    return sum;
  }

  rssKiB(): number {
    return this.pids().reduce((sum, pid) => sum + vmRssKiB(pid), 0);
  }

  /** Bytes logged to stdout so far (the run's log volume): the daemon's log, or the floor's session lines. */
  logBytes(): number {
    try {
      return statSync(this.stdoutPath).size;
    } catch {
      return 0;
    }
  }

  /** Lines of the daemon's log that say Redis failed and the local limits decided; 0 without --redis. */
  redisDownLines(): number {
    if (this.kind !== 'workers-0-redis') return 0;
    return readFileOr(this.stdoutPath, '').split('\n').filter((line) => REDIS_DOWN_MESSAGES.some((m) => line.includes(m))).length;
  }

  /**
   * SIGTERM, a bounded wait for the drain, then SIGKILL; then the sidecar likewise (after the
   * daemon, which gives its Redis leases back as it stops). Safe to call twice.
   */
  async stop(): Promise<void> {
    if (!this.serverExited) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this.exitPromise;
      clearTimeout(timer);
    }
    await this.sidecar?.stop();
  }
}

/** A certificate and key per key type, made by `tls-echod cert generate`; the directory of each. */
export function generateCerts(workDir: string): Record<KeyType, string> {
  const dirs = {} as Record<KeyType, string>;
  for (const keyType of ['ecdsa-p256', 'rsa-2048'] as const) {
    const dir = path.join(workDir, `certs-${keyType}`);
    const r = spawnSync(process.execPath, [CLI, 'cert', 'generate', '--cert-dir', dir, '--key-type', keyType, '--json'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cert generate --key-type ${keyType} failed: ${r.stderr}`);
    const c = spawnSync(process.execPath, [CLI, 'cert', 'client', BENCH_CLIENT, '--cert-dir', dir, '--key-type', keyType, '--json'], { encoding: 'utf8' });
    if (c.status !== 0) throw new Error(`cert client --key-type ${keyType} failed: ${c.stderr}`);
    dirs[keyType] = dir;
  }
  return dirs;
}

// ---------------------------------------------------------------------------------------------
// The machine going quiet before a run

/** The running servers and sidecars we started: the children of this process that are not the generator. */
function serverRoots(): Set<number> {
  const roots = new Set<number>();
  for (const s of liveServers) roots.add(s.pid);
  for (const s of liveSidecars) roots.add(s.pid);
  return roots;
}

/** CPU ticks of this process, its generator children and every server and sidecar we started (with their workers). */
function ourTicks(): number {
  const roots = serverRoots();
  let sum = selfAndReapedTicks();
  for (const root of roots) for (const pid of processTree(root)) sum += readProcStat(pid)?.cpuTicks ?? 0;
  for (const pid of childPids('self')) if (!roots.has(pid)) sum += readProcStat(pid)?.cpuTicks ?? 0;
  return sum;
}

/**
 * Waits (up to `maxWaitMs`) until processes other than ours use less than QUIET_OTHER_SHARE of a
 * core, so other people's builds and tests on a shared machine don't land in a run. Returns the
 * ms waited and the share of the last probe.
 */
export async function waitForQuiet(ticksPerSec: number, maxWaitMs: number, signal: AbortSignal): Promise<{ waitedMs: number; otherShare: number }> {
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
// CPU sampling during a run

interface CpuSample {
  readonly t: number;
  readonly server: number;
  /** Of `server`: its sidecar's. */
  readonly sidecar: number;
  readonly generator: number;
  readonly busy: number;
}

/** CPU shares (1 = one core) over a window. */
export interface CpuShares {
  readonly server: number;
  readonly generator: number;
  /** Everything else on the machine: other people's work, the kernel's softirqs. */
  readonly other: number;
  readonly serverSeconds: number;
  /** The server's sidecar (HAProxy, redis-server), included in `server`; 0 when it has none. */
  readonly sidecar: number;
}

export class CpuSampler {
  private readonly samples: CpuSample[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly serverPids: number[];
  private readonly sidecarPids: number[];

  constructor(
    private readonly server: ServerProcess,
    private readonly ticksPerSec: number,
  ) {
    this.serverPids = server.pids();
    this.sidecarPids = server.sidecar?.pids() ?? [];
    this.sample();
    this.timer = setInterval(() => this.sample(), SAMPLE_INTERVAL_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }

  private sample(): void {
    const servers = serverRoots();
    // The generator: this process plus the generator processes it started (not the servers, nor their sidecars).
    let generator = selfAndReapedTicks();
    for (const pid of childPids('self')) if (!servers.has(pid)) generator += readProcStat(pid)?.cpuTicks ?? 0;
    const sidecar = this.sidecarPids.length === 0 ? 0 : this.server.cpuTicks(this.sidecarPids);
    this.samples.push({ t: performance.now(), server: this.server.cpuTicks(this.serverPids), sidecar, generator, busy: systemBusyTicks() });
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
        return { t, server: lerp(a.server, b.server), sidecar: lerp(a.sidecar, b.sidecar), generator: lerp(a.generator, b.generator), busy: lerp(a.busy, b.busy) };
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
    const sidecar = (b.sidecar - a.sidecar) / tps;
    return { server: server / seconds, generator: generator / seconds, other: Math.max(0, busy - server - generator) / seconds, serverSeconds: server, sidecar: sidecar / seconds };
  }
}
