// systemd integration: socket activation (takeListenFds), notifications (SdNotifier) against a
// real NOTIFY_SOCKET, the units (systemd-analyze verify / security), the unit's syscall filter
// around a real socket-activated daemon, and scripts/install.sh into a staging root.
// Tests that need a tool this machine lacks skip with the reason.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { loadConfig } from '../../src/config/config';
import { ListenError } from '../../src/errors';
import type { Logger } from '../../src/ops/logger';
import { notifyReceiver } from '../helpers/notify-socket';
import { freePort } from '../helpers/daemon';
import { SdNotifier, takeListenFds } from '../../src/ops/systemd';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SYSTEMD_JS = path.join(ROOT, 'dist', 'src', 'ops', 'systemd.js');
const CLI_JS = path.join(ROOT, 'dist', 'src', 'cli.js');
const UNIT_DIR = path.join(ROOT, 'systemd');

// ---------------------------------------------------------------------------------------------
// helpers

function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    const file = path.join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function tempDir(t: TestContext, prefix = 'tls-echod-systemd-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Spawns a child that is SIGKILLed when the test ends, unless it has exited by then. */
function spawnOwned(t: TestContext, command: string, args: readonly string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** Resolves once `predicate(text so far)` holds for what `stream` printed; rejects after `ms`. */
function waitForOutput(stream: NodeJS.ReadableStream, predicate: (text: string) => boolean, ms: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      if (predicate(text)) finish();
    };
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      if (err) reject(err);
      else resolve(text);
    };
    const timer = setTimeout(() => finish(new Error(`no ${what} within ${ms} ms; got ${JSON.stringify(text)}`)), ms);
    stream.on('data', onData);
  });
}

/**
 * A stand-in for systemd-notify that appends its arguments, one call per line, to a file.
 * It holds a lock directory while it runs (for `holdSeconds`), and logs OVERLAP if another
 * call already holds it: two at a time would be a bug.
 */
function recorderCommand(t: TestContext, options: { exitCode?: number; holdSeconds?: number } = {}): { command: string; calls: () => string[] } {
  const dir = tempDir(t);
  const log = path.join(dir, 'calls.log');
  const lock = path.join(dir, 'lock');
  const command = path.join(dir, 'notify-recorder');
  const lines = [
    '#!/bin/sh',
    `mkdir '${lock}' 2>/dev/null || echo OVERLAP >> '${log}'`,
    `printf '%s\\n' "$*" >> '${log}'`,
    options.holdSeconds ? `sleep ${options.holdSeconds}` : '',
    `rmdir '${lock}'`,
    options.exitCode ? `echo 'recorder: failing on purpose' >&2; exit ${options.exitCode}` : '',
  ];
  writeFileSync(command, lines.join('\n') + '\n', { mode: 0o755 });
  return { command, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l !== '') : []) };
}

interface LoggedLine {
  readonly level: string;
  readonly message: string;
  readonly meta: unknown;
}

function recordingLogger(): { logger: Logger; lines: LoggedLine[] } {
  const lines: LoggedLine[] = [];
  const at =
    (level: string) =>
    (message: string, meta?: unknown): void => {
      lines.push({ level, message, meta });
    };
  const logger = { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') } as unknown as Logger;
  return { logger, lines };
}

/** Runs systemd-analyze; undefined when it is not installed. */
function systemdAnalyze(args: readonly string[]): { status: number | null; stdout: string; stderr: string } | undefined {
  if (which('systemd-analyze') === undefined) return undefined;
  const r = spawnSync('systemd-analyze', args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * Copies the units to a temp dir with ExecStart='s binary replaced by one that exists here
 * (`systemd-analyze verify` checks that it is executable; /usr/local/bin/tls-echod exists only
 * after install.sh). Names stay the same: the socket's Service= refers to the service by name.
 */
function unitsForVerify(t: TestContext): { service: string; socket: string } {
  const dir = tempDir(t);
  const service = path.join(dir, 'tls-echod.service');
  const socket = path.join(dir, 'tls-echod.socket');
  const text = readFileSync(path.join(UNIT_DIR, 'tls-echod.service'), 'utf8');
  const rewritten = text.replace(/^ExecStart=\/usr\/local\/bin\/tls-echod /m, `ExecStart=${process.execPath} `);
  assert.notEqual(rewritten, text, 'ExecStart= no longer starts with /usr/local/bin/tls-echod: update this test and install.sh');
  writeFileSync(service, rewritten);
  writeFileSync(socket, readFileSync(path.join(UNIT_DIR, 'tls-echod.socket')));
  return { service, socket };
}

/** Skips the test (and returns false) when `systemd-analyze verify` fails even on a trivial unit. */
function verifyWorksHere(t: TestContext): boolean {
  const dir = tempDir(t);
  const unit = path.join(dir, 'probe.service');
  writeFileSync(unit, `[Service]\nExecStart=${process.execPath} --version\n`);
  const r = systemdAnalyze(['verify', unit]);
  if (r === undefined) {
    t.skip('systemd-analyze is not installed');
    return false;
  }
  if (r.status !== 0) {
    t.skip(`systemd-analyze verify fails on a trivial unit here (environment): ${r.stderr.trim()}`);
    return false;
  }
  return true;
}

/** The unit's SystemCallFilter= lines expanded like systemd does (allow list, then ~ removes). */
function unitSyscallAllowList(serviceText: string): string[] {
  const groups = new Map<string, string[]>();
  const expand = (name: string): string[] => {
    if (!name.startsWith('@')) return [name];
    const cached = groups.get(name);
    if (cached) return cached;
    const r = systemdAnalyze(['syscall-filter', name]);
    assert.ok(r && r.status === 0, `systemd-analyze syscall-filter ${name} failed: ${r?.stderr}`);
    const out: string[] = [];
    for (const line of r.stdout.split('\n').slice(1)) {
      const item = line.trim();
      if (item === '' || item.startsWith('#')) continue;
      out.push(...expand(item));
    }
    groups.set(name, out);
    return out;
  };
  let allowed: Set<string> | undefined;
  for (const m of serviceText.matchAll(/^SystemCallFilter=(.*)$/gm)) {
    const value = m[1]!.trim();
    const deny = value.startsWith('~');
    const names = (deny ? value.slice(1) : value).split(/\s+/).filter((n) => n !== '').flatMap(expand);
    if (allowed === undefined) {
      assert.ok(!deny, 'the first SystemCallFilter= should be an allow list');
      allowed = new Set(names);
    } else if (deny) {
      for (const n of names) allowed.delete(n);
    } else {
      for (const n of names) allowed.add(n);
    }
  }
  assert.ok(allowed, 'tls-echod.service has no SystemCallFilter=');
  return [...allowed];
}

// Installs the allow list with libseccomp (default action EPERM, as SystemCallErrorNumber=EPERM
// in the unit) and execs the rest of argv: same pid, so LISTEN_PID still matches.
const SECCOMP_EXEC = `
import errno, os, sys, seccomp
f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
for name in open(sys.argv[1]).read().split():
    try:
        f.add_rule(seccomp.ALLOW, name)
    except Exception:
        pass  # not a system call on this architecture
f.load()
os.execv(sys.argv[2], sys.argv[2:])
`;

/** A python3 that has libseccomp bindings (Debian: python3-seccomp), or undefined. */
function seccompPython(): string | undefined {
  for (const python of ['/usr/bin/python3', which('python3')]) {
    if (python === undefined || !existsSync(python)) continue;
    if (spawnSync(python, ['-c', 'import seccomp'], { timeout: 10_000 }).status === 0) return python;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// takeListenFds

test('listen-fds: LISTEN_PID of this process gives fds 3.. with their names, and the vars are cleared', () => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: String(process.pid), LISTEN_FDS: '2', LISTEN_FDNAMES: 'tls:admin', KEEP: 'x' };
  assert.deepEqual(takeListenFds(env), { fds: [3, 4], names: ['tls', 'admin'] });
  assert.deepEqual(env, { KEEP: 'x' });
});

test('listen-fds: without LISTEN_FDNAMES every fd is named "unknown", like sd_listen_fds_with_names', () => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: String(process.pid), LISTEN_FDS: '3' };
  assert.deepEqual(takeListenFds(env), { fds: [3, 4, 5], names: ['unknown', 'unknown', 'unknown'] });
  assert.deepEqual(env, {});
});

test('listen-fds: LISTEN_PID of another process (an inherited env) gives undefined and still clears the vars', () => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: String(process.pid + 1), LISTEN_FDS: '1', LISTEN_FDNAMES: 'tls' };
  assert.equal(takeListenFds(env), undefined);
  assert.deepEqual(env, {});
});

test('listen-fds: not activated (no vars, LISTEN_FDS=0, garbage LISTEN_PID) gives undefined', () => {
  assert.equal(takeListenFds({}), undefined);
  const zero: NodeJS.ProcessEnv = { LISTEN_PID: String(process.pid), LISTEN_FDS: '0' };
  assert.equal(takeListenFds(zero), undefined);
  assert.deepEqual(zero, {});
  const garbage: NodeJS.ProcessEnv = { LISTEN_PID: 'self', LISTEN_FDS: '1' };
  assert.equal(takeListenFds(garbage), undefined);
  assert.deepEqual(garbage, {});
});

test('listen-fds: a corrupt LISTEN_FDS for this process is a ListenError, and the vars are cleared', () => {
  for (const count of ['two', '-1', '99999999']) {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: String(process.pid), LISTEN_FDS: count };
    assert.throws(() => takeListenFds(env), (err: unknown) => err instanceof ListenError && err.code === 'ECHOD_LISTEN_FAILED');
    assert.deepEqual(env, {});
  }
});

test('listen-fds: a real socket from systemd-socket-activate serves an echo server', { timeout: 30_000 }, async (t) => {
  const activate = which('systemd-socket-activate');
  if (activate === undefined) return t.skip('systemd-socket-activate is not installed (Debian: systemd)');
  if (!existsSync(SYSTEMD_JS)) return t.skip(`${SYSTEMD_JS} is missing: build first`);
  const port = await freePort();
  const script = `
    const net = require('node:net');
    const { takeListenFds } = require(${JSON.stringify(SYSTEMD_JS)});
    const activation = takeListenFds();
    const left = Object.keys(process.env).filter((k) => k.startsWith('LISTEN_'));
    const server = net.createServer((c) => c.pipe(c));
    server.listen({ fd: activation.fds[0] }, () => console.log(JSON.stringify({ activation, left })));
    process.on('SIGTERM', () => server.close(() => process.exit(0)));
  `;
  // -l with port 0 would hide the port from us, so a free one is picked first.
  const child = spawnOwned(t, activate, ['-l', `127.0.0.1:${port}`, '--fdname=echo', process.execPath, '-e', script], { PATH: process.env.PATH });
  await waitForOutput(child.stderr!, (s) => s.includes('Listening on'), 10_000, 'systemd-socket-activate "Listening on"');

  // It execs node only when the first connection arrives; that connection waits in the backlog.
  const stdout = waitForOutput(child.stdout!, (s) => s.includes('\n'), 10_000, 'the activated script');
  const client = net.connect(port, '127.0.0.1');
  t.after(() => client.destroy());
  client.end('hello through a passed socket');
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  await once(client, 'end');
  assert.equal(Buffer.concat(chunks).toString(), 'hello through a passed socket');
  const report = JSON.parse(await stdout) as { activation: unknown; left: string[] };
  assert.deepEqual(report.activation, { fds: [3], names: ['echo'] });
  assert.deepEqual(report.left, [], 'LISTEN_* must be gone from process.env');
  child.kill('SIGTERM');
  await once(child, 'exit');
});

// ---------------------------------------------------------------------------------------------
// SdNotifier

test('sd-notify: without NOTIFY_SOCKET it is disabled and nothing is spawned', async (t) => {
  const recorder = recorderCommand(t);
  const notifier = new SdNotifier({ PATH: process.env.PATH, WATCHDOG_USEC: '1000000' }, undefined, { command: recorder.command });
  assert.equal(notifier.enabled, false);
  notifier.ready('up');
  notifier.reloading();
  notifier.status('x');
  notifier.watchdog();
  notifier.stopping();
  assert.equal(notifier.startWatchdog(), undefined);
  await notifier.flush();
  notifier.close();
  assert.deepEqual(recorder.calls(), []);
});

test('sd-notify: ready, reloading, ready, stopping reach NOTIFY_SOCKET in order with their fields', { timeout: 30_000 }, async (t) => {
  if (which('systemd-notify') === undefined) return t.skip('systemd-notify is not installed (Debian: systemd)');
  if (which('python3') === undefined) return t.skip('python3 is needed to hold a unix datagram socket');
  const rx = await notifyReceiver(t);
  const notifier = new SdNotifier({ NOTIFY_SOCKET: rx.socketPath, PATH: process.env.PATH });
  t.after(() => notifier.close());
  assert.equal(notifier.enabled, true);

  const before = process.hrtime.bigint() / 1000n;
  notifier.ready('starting');
  notifier.reloading();
  const after = process.hrtime.bigint() / 1000n;
  notifier.ready('reloaded');
  notifier.status('two\nlines');
  notifier.stopping();
  await notifier.flush();
  await rx.until((m) => m.length >= 5);

  assert.equal(rx.messages.length, 5, JSON.stringify(rx.messages));
  assert.equal(rx.messages[0], 'READY=1\nSTATUS=starting');
  const reloading = rx.messages[1]!.split('\n');
  assert.equal(reloading[0], 'RELOADING=1');
  const m = /^MONOTONIC_USEC=(\d+)$/.exec(reloading[1] ?? '');
  assert.ok(m, `expected MONOTONIC_USEC=<integer>, got ${JSON.stringify(rx.messages[1])}`);
  const usec = BigInt(m[1]!);
  assert.ok(usec >= before && usec <= after, `MONOTONIC_USEC ${usec} not within [${before}, ${after}] (CLOCK_MONOTONIC, µs)`);
  assert.equal(rx.messages[2], 'READY=1\nSTATUS=reloaded');
  assert.equal(rx.messages[3], 'STATUS=two lines', 'a newline must not start a new field');
  assert.equal(rx.messages[4], 'STOPPING=1');
});

test('sd-notify: the watchdog sends WATCHDOG=1 every WATCHDOG_USEC/2 for its own pid; close() is safe twice', { timeout: 30_000 }, async (t) => {
  if (which('systemd-notify') === undefined) return t.skip('systemd-notify is not installed (Debian: systemd)');
  if (which('python3') === undefined) return t.skip('python3 is needed to hold a unix datagram socket');
  const rx = await notifyReceiver(t);
  const env = { NOTIFY_SOCKET: rx.socketPath, PATH: process.env.PATH, WATCHDOG_USEC: '100000', WATCHDOG_PID: String(process.pid) };
  const notifier = new SdNotifier(env);
  t.after(() => notifier.close());
  assert.equal(notifier.startWatchdog(), 50);
  assert.equal(notifier.startWatchdog(), 50, 'a second start keeps the running timer');
  await rx.until((msgs) => msgs.filter((x) => x === 'WATCHDOG=1').length >= 3);
  notifier.close();
  notifier.close();
  await notifier.flush();

  assert.equal(new SdNotifier({ ...env, WATCHDOG_PID: String(process.pid + 1) }).startWatchdog(), undefined, 'another pid’s watchdog');
  assert.equal(new SdNotifier({ ...env, WATCHDOG_USEC: undefined }).startWatchdog(), undefined, 'no WatchdogSec=');
  assert.equal(new SdNotifier({ ...env, WATCHDOG_USEC: '0' }).startWatchdog(), undefined);
});

test('sd-notify: one child at a time; a full queue drops the oldest STATUS/WATCHDOG, never lifecycle messages', async (t) => {
  const recorder = recorderCommand(t, { holdSeconds: 0.01 });
  const notifier = new SdNotifier({ NOTIFY_SOCKET: '/run/unused', PATH: process.env.PATH }, undefined, { command: recorder.command });
  notifier.ready('boot'); // in flight: every call below happens before its child can exit
  for (let i = 1; i <= 20; i++) notifier.status(`s${i}`); // queue (16) keeps s5..s20
  notifier.stopping(); // drops s5
  notifier.watchdog(); // drops s6
  await notifier.flush();
  const statuses = Array.from({ length: 14 }, (_, i) => `STATUS=s${i + 7}`);
  assert.deepEqual(recorder.calls(), ['READY=1 STATUS=boot', ...statuses, 'STOPPING=1', 'WATCHDOG=1']);
});

test('sd-notify: a queue full of lifecycle messages drops new STATUS, collapses a queued RELOADING+READY pair', async (t) => {
  const recorder = recorderCommand(t);
  const notifier = new SdNotifier({ NOTIFY_SOCKET: '/run/unused', PATH: process.env.PATH }, undefined, { command: recorder.command, maxQueued: 2 });
  notifier.ready('boot'); // in flight
  notifier.reloading();
  notifier.ready('reloaded'); // queue full: [RELOADING, READY]
  notifier.status('lost'); // nothing droppable queued: the new STATUS goes
  notifier.stopping(); // the queued RELOADING+READY pair is a no-op for systemd: it goes
  notifier.status('kept');
  await notifier.flush();
  assert.deepEqual(recorder.calls(), ['READY=1 STATUS=boot', 'STOPPING=1', 'STATUS=kept']);
});

test('sd-notify: failures are logged once; a missing systemd-notify turns notifications off', async (t) => {
  const failing = recorderCommand(t, { exitCode: 3 });
  const { logger, lines } = recordingLogger();
  const notifier = new SdNotifier({ NOTIFY_SOCKET: '/run/unused', PATH: process.env.PATH }, logger, { command: failing.command });
  notifier.ready();
  notifier.status('a');
  notifier.stopping();
  await notifier.flush();
  assert.equal(failing.calls().length, 3, 'every message is still tried');
  assert.equal(lines.length, 1, JSON.stringify(lines));
  assert.equal(lines[0]!.level, 'warn');
  assert.match(JSON.stringify(lines[0]!.meta), /failing on purpose/);

  const missing = recordingLogger();
  const absent = new SdNotifier({ NOTIFY_SOCKET: '/run/unused', PATH: process.env.PATH }, missing.logger, {
    command: path.join(tempDir(t), 'no-such-systemd-notify'),
  });
  absent.ready();
  absent.stopping();
  await absent.flush();
  absent.status('after');
  await absent.flush();
  assert.equal(missing.lines.length, 1, JSON.stringify(missing.lines));
  assert.equal(missing.lines[0]!.level, 'error');
  assert.match(missing.lines[0]!.message, /systemd-notify was not found/);
});

// ---------------------------------------------------------------------------------------------
// units

test('units: systemd-analyze verify is clean for tls-echod.service and tls-echod.socket', { timeout: 60_000 }, (t) => {
  if (!verifyWorksHere(t)) return;
  const { service, socket } = unitsForVerify(t);
  const r = systemdAnalyze(['verify', service, socket])!;
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', 'verify printed warnings');
});

test('units: systemd-analyze security --offline rates tls-echod.service 1.5 or lower', { timeout: 60_000 }, (t) => {
  if (!verifyWorksHere(t)) return;
  const probe = systemdAnalyze(['security', '--offline=true', path.join(UNIT_DIR, 'tls-echod.socket')])!;
  if (/unrecognized option|unknown option/i.test(probe.stderr)) return t.skip(`systemd-analyze security has no --offline here: ${probe.stderr.trim()}`);
  const { service } = unitsForVerify(t);
  const r = systemdAnalyze(['security', '--offline=true', service])!;
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.stdout);
  assert.ok(m, `no "Overall exposure level" line:\n${r.stdout}\n${r.stderr}`);
  const score = Number(m[1]);
  t.diagnostic(`systemd-analyze security: ${score}`);
  assert.ok(score <= 1.5, `exposure ${score} > 1.5:\n${r.stdout.split('\n').filter((l) => l.startsWith('✗')).join('\n')}`);
});

test('units: the socket passes a stream socket with TCP_NODELAY; config.json and the unit env are valid options', () => {
  const socket = readFileSync(path.join(UNIT_DIR, 'tls-echod.socket'), 'utf8');
  for (const line of ['ListenStream=4433', 'Accept=no', 'NoDelay=true', 'Backlog=4096', 'Service=tls-echod.service']) {
    assert.match(socket, new RegExp(`^${line}$`, 'm'));
  }
  const service = readFileSync(path.join(UNIT_DIR, 'tls-echod.service'), 'utf8');
  assert.doesNotMatch(service, /^MemoryDenyWriteExecute=yes/m, "V8's JIT needs W+X memory");
  assert.doesNotMatch(service, /^PrivateNetwork=yes/m);
  // An unknown key in config.json or TLS_ECHOD_* in the unit would stop the daemon at start.
  const env: NodeJS.ProcessEnv = {};
  for (const m of service.matchAll(/^Environment=(TLS_ECHOD_[A-Z_]+)=(.*)$/gm)) env[m[1]!] = m[2]!.replace('%S', '/var/lib');
  assert.deepEqual(Object.keys(env).sort(), ['TLS_ECHOD_CERT_DIR', 'TLS_ECHOD_LOG_FORMAT']);
  const config = loadConfig({ flags: {}, env, configFile: path.join(UNIT_DIR, 'config.json') });
  assert.equal(config.certDir, '/var/lib/tls-echod');
  assert.equal(config.logFormat, 'json');
  assert.equal(config.drainTimeoutMs, 10_000, 'TimeoutStopSec=20 in the unit is sized for a 10 s drain');
});

test("units: the daemon, socket-activated under the unit's system call filter, echoes, reloads and stops", { timeout: 90_000 }, async (t) => {
  const activate = which('systemd-socket-activate');
  if (activate === undefined) return t.skip('systemd-socket-activate is not installed (Debian: systemd)');
  if (which('systemd-notify') === undefined) return t.skip('systemd-notify is not installed (Debian: systemd)');
  if (which('python3') === undefined) return t.skip('python3 is needed to hold a unix datagram socket');
  if (!existsSync(CLI_JS)) return t.skip(`${CLI_JS} is missing: build first`);
  const python = seccompPython();
  if (python === undefined) t.diagnostic('python3 has no seccomp module (Debian: python3-seccomp): running without the syscall filter');
  if (python !== undefined && which('systemd-analyze') === undefined) return t.skip('systemd-analyze is needed to expand the syscall filter');

  const dir = tempDir(t);
  const rx = await notifyReceiver(t);
  const port = await freePort();
  const command: string[] = [process.execPath, CLI_JS, 'serve', '--config', path.join(UNIT_DIR, 'config.json')];
  if (python !== undefined) {
    const allowFile = path.join(dir, 'allowed-syscalls');
    writeFileSync(allowFile, unitSyscallAllowList(readFileSync(path.join(UNIT_DIR, 'tls-echod.service'), 'utf8')).join('\n'));
    command.unshift(python, '-c', SECCOMP_EXEC, allowFile);
  }
  const certDir = path.join(dir, 'state');
  mkdirSync(certDir, { mode: 0o700 });
  const child = spawnOwned(
    t,
    activate,
    [
      '-l', `127.0.0.1:${port}`, '--fdname=tls-echod.socket',
      '-E', `NOTIFY_SOCKET=${rx.socketPath}`, '-E', 'WATCHDOG_USEC=400000',
      '-E', `TLS_ECHOD_CERT_DIR=${certDir}`, '-E', 'TLS_ECHOD_LOG_FORMAT=json', '-E', 'TLS_ECHOD_WORKERS=2',
      ...command,
    ],
    { PATH: process.env.PATH, HOME: dir },
  );
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  await waitForOutput(child.stderr!, (s) => s.includes('Listening on'), 10_000, 'systemd-socket-activate "Listening on"');

  // The first connection makes systemd-socket-activate exec the daemon (as systemd would).
  const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  socket.write('echo me');
  const [echoed] = (await once(socket, 'data')) as [Buffer];
  assert.equal(echoed.toString(), 'echo me');
  socket.end();
  const ca = readFileSync(path.join(certDir, 'ca.pem'));
  assert.equal(socket.getPeerX509Certificate()?.verify(new X509Certificate(ca).publicKey), true, 'leaf signed by the CA in TLS_ECHOD_CERT_DIR');

  const lifecycle = (): string[] => rx.messages.filter((m) => /^(READY|RELOADING|STOPPING)=/.test(m)).map((m) => m.split('\n')[0]!);
  await rx.until(() => lifecycle().length >= 1 && rx.messages.includes('WATCHDOG=1'));
  child.kill('SIGHUP');
  await rx.until(() => lifecycle().length >= 3);
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, log);
  assert.deepEqual(lifecycle(), ['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1'], log);
  assert.match(log, /"socketActivated":true/);
});

// ---------------------------------------------------------------------------------------------
// install.sh

test('install: --dest-dir --no-build stages program, wrapper, units and config; idempotent; --uninstall keeps the config', { timeout: 120_000 }, (t) => {
  if (which('bash') === undefined || which('npm') === undefined) return t.skip('bash and npm are needed');
  if (!existsSync(CLI_JS) || !existsSync(path.join(ROOT, 'node_modules'))) return t.skip('needs a built tree (dist/, node_modules/)');
  const stage = tempDir(t);
  const run = (...args: string[]): string => {
    const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'install.sh'), '--dest-dir', stage, '--no-build', '--prefix', '/opt/tls-echod-test', ...args], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, NODE: process.execPath },
    });
    assert.equal(r.status, 0, `install.sh ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const lib = path.join(stage, 'opt/tls-echod-test/lib/tls-echod');
  const bin = path.join(stage, 'opt/tls-echod-test/bin/tls-echod');
  const config = path.join(stage, 'etc/tls-echod/config.json');
  const service = path.join(stage, 'etc/systemd/system/tls-echod.service');

  run();
  assert.match(readFileSync(bin, 'utf8'), new RegExp(`exec '${process.execPath}' --initial-old-space-size=64 '/opt/tls-echod-test/lib/tls-echod/dist/src/cli.js' "\\$@"`));
  assert.equal(statSync(bin).mode & 0o777, 0o755);
  assert.match(readFileSync(service, 'utf8'), /^ExecStart=\/opt\/tls-echod-test\/bin\/tls-echod serve --config \/etc\/tls-echod\/config.json$/m);
  assert.ok(existsSync(path.join(stage, 'etc/systemd/system/tls-echod.socket')));
  assert.equal(statSync(config).mode & 0o777, 0o644, 'the DynamicUser must be able to read it');
  assert.ok(!existsSync(path.join(lib, 'node_modules', 'typescript')), 'dev dependencies must not be installed');
  const help = spawnSync(process.execPath, [path.join(lib, 'dist/src/cli.js'), '--help'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /serve/);

  writeFileSync(config, '{"listen": "127.0.0.1:9999"}\n');
  assert.match(run(), /kept the existing \/etc\/tls-echod\/config.json/);
  assert.equal(readFileSync(config, 'utf8'), '{"listen": "127.0.0.1:9999"}\n', 'a second install must not overwrite the config');

  run('--uninstall');
  run('--uninstall');
  assert.ok(!existsSync(lib) && !existsSync(bin) && !existsSync(service));
  assert.ok(existsSync(config), '--uninstall keeps the config');
});
