// The processes two daemon variants run with (issue 16's rows): HAProxy in front of the daemon,
// sending PROXY v2 (handshake-haproxy), and a redis-server behind it for --redis
// (handshake-redis). Each is pinned to the server's CPU like the server, and its CPU counts as
// server CPU (ServerProcess.pids): per core-s is then the rate of one core running the daemon
// and the sidecar together, which is what an operator running both on one machine pays.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { processTree, readFileOr, type Machine } from './machine';
import { accepts, freePort } from './ports';
import { START_TIMEOUT_MS, type OptionKind } from './settings';

/** Debian's haproxy is in /usr/sbin, which a user's PATH may lack. */
const HAPROXY = existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy';
const REDIS_SERVER = 'redis-server';
/** SIGTERM, then this long before SIGKILL (ms): HAProxy stops at once on SIGTERM, Redis without persistence nearly so. */
const SIDECAR_STOP_TIMEOUT_MS = 5000;

/** What each option's sidecar is called in the report. */
export const SIDECAR_NAMES: Readonly<Record<OptionKind, string>> = {
  'workers-0-haproxy': 'HAProxy',
  'workers-0-redis': 'redis-server',
};

/** Why `kind`'s sidecar can't run here (its program is missing), or undefined when it can. */
export function sidecarMissing(kind: OptionKind): string | undefined {
  const [command, install] = kind === 'workers-0-haproxy' ? [HAPROXY, 'apt-get install haproxy'] : [REDIS_SERVER, 'apt-get install redis-server'];
  const r = spawnSync(command, ['-v'], { encoding: 'utf8' });
  return r.error === undefined ? undefined : `${command} not found (${install})`;
}

export const liveSidecars = new Set<Sidecar>();

export class Sidecar {
  exited = false;
  private readonly exitPromise: Promise<void>;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    /** Where it listens on 127.0.0.1. */
    readonly port: number,
    readonly outputPath: string,
  ) {
    this.exitPromise = new Promise((resolve) => {
      const onGone = (): void => {
        this.exited = true;
        liveSidecars.delete(this);
        resolve();
      };
      child.once('exit', onGone);
      // A program that could not be started emits 'error' and never 'exit'.
      child.on('error', () => {
        if (child.pid === undefined) onGone();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  pids(): number[] {
    return this.exited ? [] : processTree(this.pid);
  }

  /** Starts `command` pinned like the servers, its output to a file; resolves once it accepts on `port`. */
  static async start(name: string, command: readonly string[], port: number, machine: Machine, workDir: string): Promise<Sidecar> {
    const outputPath = path.join(workDir, `${name}-${port}.log`);
    const out = openSync(outputPath, 'a');
    const pin = machine.pinning;
    const child = pin
      ? spawn('taskset', ['-c', pin.server.join(','), ...command], { stdio: ['ignore', out, out] })
      : spawn(command[0]!, command.slice(1), { stdio: ['ignore', out, out] });
    closeSync(out);
    const sidecar = new Sidecar(name, child, port, outputPath);
    liveSidecars.add(sidecar);
    const deadline = performance.now() + START_TIMEOUT_MS;
    while (performance.now() < deadline && !sidecar.exited) {
      if (await accepts(port)) return sidecar;
      await sleep(25);
    }
    await sidecar.stop();
    throw new Error(`${name} did not start listening on 127.0.0.1:${port} within ${START_TIMEOUT_MS / 1000} s: ${readFileOr(outputPath, '').slice(-2000)}`);
  }

  /** SIGTERM, a bounded wait, then SIGKILL. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), SIDECAR_STOP_TIMEOUT_MS);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

/**
 * HAProxy's configuration for the benchmark: `mode tcp` from 127.0.0.1:`frontPort` to the daemon
 * on `daemonPort`, with a PROXY v2 header on each connection (as test/haproxy.test.ts runs it).
 */
export function haproxyConfig(frontPort: number, daemonPort: number): string {
  return [
    'global',
    // The generator holds 32 connections; HAProxy needs two descriptors for each.
    '  maxconn 1000',
    // One thread: the server side gets one core, like the baseline.
    '  nbthread 1',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
    'frontend bench',
    `  bind 127.0.0.1:${frontPort}`,
    '  default_backend daemon',
    'backend daemon',
    `  server s1 127.0.0.1:${daemonPort} send-proxy-v2`,
    '',
  ].join('\n');
}

/** HAProxy in the foreground (-db) in front of the daemon on `daemonPort`, its config in `workDir`. */
export async function startHaproxy(machine: Machine, workDir: string, daemonPort: number): Promise<Sidecar> {
  const port = await freePort();
  const config = path.join(workDir, `haproxy-${port}.cfg`);
  writeFileSync(config, haproxyConfig(port, daemonPort));
  return Sidecar.start('haproxy', [HAPROXY, '-db', '-f', config], port, machine, workDir);
}

/** A redis-server for --redis: loopback only, nothing saved to disk. */
export async function startRedis(machine: Machine, workDir: string): Promise<Sidecar> {
  const port = await freePort();
  return Sidecar.start('redis-server', [REDIS_SERVER, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], port, machine, workDir);
}
