// systemd integration in the daemon: socket activation (takeListenFds), with a real socket from
// systemd-socket-activate, and notifications (SdNotifier) against a real NOTIFY_SOCKET or a
// recording stand-in for systemd-notify. The units and install.sh: systemd-units.test.ts.
// Tests that need a tool this machine lacks skip with the reason.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ListenError } from '../../src/errors';
import type { Logger } from '../../src/ops/logger';
import { notifyReceiver } from '../helpers/notify-socket';
import { freePort, tempDir } from '../helpers/daemon';
import { spawnOwned, waitForOutput, which } from '../helpers/external-tools';
import { SdNotifier, takeListenFds } from '../../src/ops/systemd';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SYSTEMD_JS = path.join(ROOT, 'dist', 'src', 'ops', 'systemd.js');

// ---------------------------------------------------------------------------------------------
// helpers

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
