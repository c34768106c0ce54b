// Test helpers: a daemon in this process or as a real CLI child, and TLS clients for it.
// Everything started here is stopped through the TestContext's after hook.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import tls from 'node:tls';
import { loadConfig } from '../../src/config/config';
import { createLogger } from '../../src/ops/logger';
import { Supervisor, type SupervisorOptions } from '../../src/daemon/supervisor';

export const CLI = path.join(__dirname, '..', '..', 'src', 'cli.js');

export function tempDir(t: TestContext, prefix = 'tls-echod-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface InProcessDaemon {
  readonly supervisor: Supervisor;
  readonly port: number;
  readonly host: string;
  readonly ca: Buffer;
  readonly certDir: string;
  stop(): Promise<void>;
}

/** Starts a Supervisor in this process on 127.0.0.1 port 0 with fresh certificates. */
export async function startDaemon(t: TestContext, flags: Record<string, unknown> = {}, options: Partial<SupervisorOptions> = {}): Promise<InProcessDaemon> {
  const certDir = (flags.certDir as string | undefined) ?? tempDir(t);
  const config = loadConfig({
    // A short drain: the after hooks stop the daemon before they close the test's clients.
    flags: { listen: '127.0.0.1:0', workers: '0', logLevel: 'error', logFormat: 'json', drainTimeout: '100', certDir, ...flags },
    env: {},
  });
  const supervisor = new Supervisor(config, createLogger({ level: config.logLevel, format: 'json' }), {
    reloadConfig: () => config,
    version: 'test',
    ...options,
  });
  t.after(() => supervisor.shutdown('test done'));
  await supervisor.start();
  const address = supervisor.addresses[0]!;
  return {
    supervisor,
    port: address.port,
    host: address.host,
    ca: readFileSync(path.join(certDir, 'ca.pem')),
    certDir,
    stop: () => supervisor.shutdown('test'),
  };
}

export interface ClientOptions extends tls.ConnectionOptions {
  /** Source address, e.g. 127.0.0.2 to act as another client. */
  readonly localAddress?: string;
}

/** Opens a verified TLS connection and waits for the handshake. */
export async function connect(t: TestContext, port: number, ca: Buffer, options: ClientOptions = {}): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...options });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  return socket;
}

/** Writes `data`, half-closes, and collects everything echoed until the server closes. */
export async function echoAll(socket: tls.TLSSocket, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.end(data);
  await once(socket, 'close');
  return Buffer.concat(chunks);
}

/** Sends `data` and resolves when exactly that many bytes came back (socket stays open). */
export function roundTrip(socket: tls.TLSSocket, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= data.length) {
        cleanup();
        resolve(Buffer.concat(chunks));
      }
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error(`closed after ${got} of ${data.length} bytes`));
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(data);
  });
}

/** Resolves with how a raw TCP connection ended: 'reset' when refused with RST, or the bytes seen then 'closed'. */
export async function rawOutcome(port: number, localAddress = '127.0.0.1', send?: Buffer): Promise<{ reset: boolean; received: number }> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  let received = 0;
  let reset = false;
  socket.on('data', (c: Buffer) => (received += c.length));
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ECONNRESET') reset = true;
  });
  if (send) socket.write(send);
  // Not events.once: it would reject on the 'error' that a reset is.
  await new Promise((resolve) => socket.once('close', resolve));
  return { reset, received };
}

/** Polls `predicate` every 5 ms until it holds (returning at once when it does) or `ms` pass: for state no event announces. */
export async function until(predicate: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface CliDaemon {
  readonly child: ChildProcessWithoutNullStreams;
  readonly port: number;
  /** Every JSON log line seen on stdout so far. */
  readonly lines: Array<Record<string, unknown>>;
  readonly stderr: () => string;
  waitForLine(match: (line: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit code once the daemon has exited by itself and its output is read (null if a signal killed it). */
  exited(): Promise<number | null>;
}

/** Runs `tls-echod serve` as a real child process and waits for its "listening" line. */
export async function spawnDaemon(t: TestContext, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliDaemon> {
  const child = spawn(process.execPath, [CLI, 'serve', '--listen', '127.0.0.1:0', '--log-format', 'json', ...args], {
    env: { ...cleanEnv(), ...env },
  });
  // 'close', not 'exit': by then stdout has been read to its end, so `lines` holds every line.
  const closed = once(child, 'close').then(([code]) => code as number | null);
  const exitCode = (): Promise<number | null> => closed;
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exitCode();
    }
  });
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let buffered = '';
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout.on('data', (c: Buffer) => {
    buffered += c.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        lines.push(JSON.parse(text) as Record<string, unknown>);
      } catch {
        lines.push({ message: text, unparsed: true });
      }
    }
    for (const w of waiters) w();
  });
  const waitForLine = (match: (line: Record<string, unknown>) => boolean, ms = 15_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      let seen = 0;
      const check = (): void => {
        for (; seen < lines.length; seen++) {
          if (match(lines[seen]!)) {
            done();
            resolve(lines[seen]!);
            return;
          }
        }
      };
      const onExit = (): void => {
        done();
        reject(new Error(`daemon exited before the expected log line; stderr: ${stderr}; stdout: ${JSON.stringify(lines.slice(-5))}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no matching log line within ${ms} ms (exit ${String(child.exitCode ?? child.signalCode)}); stderr: ${stderr}; last lines: ${JSON.stringify(lines.slice(-5))}`));
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
        child.off('exit', onExit);
      };
      waiters.add(check);
      child.once('exit', onExit);
      check();
    });
  const listening = await waitForLine((l) => l.message === 'listening');
  const address = String((listening.addresses as string[])[0]);
  return {
    child,
    port: Number(address.slice(address.lastIndexOf(':') + 1)),
    lines,
    stderr: () => stderr,
    waitForLine,
    stop: async (signal = 'SIGTERM') => {
      child.kill(signal);
      return exitCode();
    },
    exited: exitCode,
  };
}

/** A TCP port on 127.0.0.1 that was free a moment ago, for programs that need a fixed one. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The test runner's env minus anything of ours or systemd's that would change the daemon. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('TLS_ECHOD_') || k.startsWith('LISTEN_') || k === 'NOTIFY_SOCKET' || k.startsWith('WATCHDOG_')) continue;
    env[k] = v;
  }
  return env;
}

/** Runs the CLI to completion; resolves with exit code and output. */
export async function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...cleanEnv(), ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}
