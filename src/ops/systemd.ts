// systemd integration without native modules: socket activation (the sd_listen_fds protocol,
// read from the environment) and service notifications (sd_notify, sent through the
// `systemd-notify` binary because Node's dgram can't speak AF_UNIX datagrams).

import { execFile } from 'node:child_process';
import { ListenError, systemErrorCode } from '../errors';
import type { Logger } from './logger';

/** The first file descriptor systemd passes (SD_LISTEN_FDS_START). */
export const SD_LISTEN_FDS_START = 3;

/** More passed sockets than this is a corrupt LISTEN_FDS, not a configuration. */
const MAX_LISTEN_FDS = 4096;

const LISTEN_ENV = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

/**
 * sd_listen_fds(): the sockets systemd passed to this process (fds 3, 4, ...) with their
 * FileDescriptorName= names ("unknown" when systemd gave none), or undefined when the process
 * was not socket-activated (no LISTEN_FDS, LISTEN_FDS=0, or LISTEN_PID is another process's).
 * Always removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from `env`, so child processes never
 * take the variables for their own: call it once, before forking workers. Throws ListenError
 * when LISTEN_PID is this process but LISTEN_FDS is not a usable count.
 * The fds are not close-on-exec (only native code could set that): children inherit them,
 * which is harmless because systemd keeps its own copy of every listening socket anyway.
 */
export function takeListenFds(env: NodeJS.ProcessEnv = process.env): { fds: number[]; names: string[] } | undefined {
  const [pidText, countText, namesText] = LISTEN_ENV.map((name) => env[name]);
  for (const name of LISTEN_ENV) delete env[name];

  if (pidText === undefined || countText === undefined) return undefined;
  if (!/^\d+$/.test(pidText) || Number(pidText) !== process.pid) return undefined;
  if (!/^\d+$/.test(countText) || Number(countText) > MAX_LISTEN_FDS) {
    throw new ListenError(
      `LISTEN_FDS=${JSON.stringify(countText)} is not a count of sockets (0-${MAX_LISTEN_FDS}); ` +
        'check the socket unit, or unset LISTEN_PID and LISTEN_FDS to listen on --listen',
    );
  }
  const count = Number(countText);
  if (count === 0) return undefined;

  const fds = Array.from({ length: count }, (_, i) => SD_LISTEN_FDS_START + i);
  // systemd always sends one name per fd; anything else (a hand-rolled activator) is padded
  // or cut to fit rather than refused.
  const given = namesText === undefined || namesText === '' ? [] : namesText.split(':');
  const names = fds.map((_, i) => given[i] || 'unknown');
  return { fds, names };
}

export interface SdNotifierOptions {
  /** The notify binary, looked up in env.PATH; default `systemd-notify`. */
  readonly command?: string;
  /** Messages that may wait while one is being sent; default 16. */
  readonly maxQueued?: number;
  /** How long one systemd-notify may run before it is killed (ms); default 10000. */
  readonly sendTimeoutMs?: number;
}

type Kind = 'ready' | 'reloading' | 'stopping' | 'status' | 'watchdog';

interface Message {
  readonly kind: Kind;
  readonly fields: readonly string[];
}

/** Losing one of these only loses information that a later message repeats. */
function isDroppable(kind: Kind): boolean {
  return kind === 'status' || kind === 'watchdog';
}

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * sd_notify() through the `systemd-notify` binary (no shell, fields as arguments). Disabled,
 * and every method a no-op, when NOTIFY_SOCKET is unset. One systemd-notify child runs at a
 * time, so messages arrive in order; without --no-block it waits until systemd has processed
 * the message (a barrier), so systemd can still attribute it to the unit: the unit needs
 * NotifyAccess=all because the sender is a child, not the main PID. --pid is not used: it
 * would add MAINPID= to every message, and the main PID is already right.
 * At most `maxQueued` messages wait; when full, the oldest STATUS=/WATCHDOG= message goes first.
 * READY=, RELOADING= and STOPPING= are never dropped. The first failure is logged, later
 * ones are not.
 */
export class SdNotifier {
  /** False when NOTIFY_SOCKET is unset: nothing is ever sent. */
  readonly enabled: boolean;

  private readonly notifySocket: string;
  private readonly childEnv: NodeJS.ProcessEnv;
  private readonly watchdogUsec: string | undefined;
  private readonly watchdogPid: string | undefined;
  private readonly command: string;
  private readonly maxQueued: number;
  private readonly sendTimeoutMs: number;
  private readonly queue: Message[] = [];
  private sending = false;
  /** systemd-notify is missing: stop spawning it. */
  private unavailable = false;
  private failureLogged = false;
  private watchdogTimer: NodeJS.Timeout | undefined;
  private watchdogIntervalMs: number | undefined;
  private idleWaiters: Array<() => void> = [];

  constructor(
    env: NodeJS.ProcessEnv = process.env,
    private readonly logger?: Logger,
    options: SdNotifierOptions = {},
  ) {
    this.notifySocket = env.NOTIFY_SOCKET ?? '';
    this.enabled = this.notifySocket !== '';
    this.childEnv = { NOTIFY_SOCKET: this.notifySocket, PATH: env.PATH || DEFAULT_PATH };
    this.watchdogUsec = env.WATCHDOG_USEC;
    this.watchdogPid = env.WATCHDOG_PID;
    this.command = options.command ?? 'systemd-notify';
    this.maxQueued = Math.max(1, options.maxQueued ?? 16);
    this.sendTimeoutMs = options.sendTimeoutMs ?? 10_000;
  }

  /** READY=1: start-up (or a reload) is complete. */
  ready(status?: string): void {
    this.send('ready', status === undefined ? ['READY=1'] : ['READY=1', statusField(status)]);
  }

  /** RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC, µs, as Type=notify-reload wants); follow with ready(). */
  reloading(): void {
    const monotonicUsec = process.hrtime.bigint() / 1000n;
    this.send('reloading', ['RELOADING=1', `MONOTONIC_USEC=${monotonicUsec}`]);
  }

  /** STOPPING=1: shutdown has begun; await flush() before exiting so it gets out. */
  stopping(status?: string): void {
    this.send('stopping', status === undefined ? ['STOPPING=1'] : ['STOPPING=1', statusField(status)]);
  }

  /** STATUS=: one line shown by `systemctl status` (newlines become spaces). */
  status(text: string): void {
    this.send('status', [statusField(text)]);
  }

  /** WATCHDOG=1: the event loop is alive. */
  watchdog(): void {
    this.send('watchdog', ['WATCHDOG=1']);
  }

  /**
   * Sends WATCHDOG=1 every WATCHDOG_USEC/2 when systemd asked for it (WatchdogSec=) and
   * WATCHDOG_PID is unset or this process. The timer is unref'd. Returns the interval (ms), or
   * undefined when there is no watchdog. Calling it again keeps the running timer.
   */
  startWatchdog(): number | undefined {
    if (this.watchdogIntervalMs !== undefined) return this.watchdogIntervalMs;
    if (!this.enabled || this.watchdogUsec === undefined || !/^\d+$/.test(this.watchdogUsec)) return undefined;
    if (this.watchdogPid !== undefined && this.watchdogPid !== '' && this.watchdogPid !== String(process.pid)) return undefined;
    const usec = Number(this.watchdogUsec);
    if (usec === 0) return undefined;
    // Half the timeout, as sd_watchdog_enabled(3) advises: one late tick doesn't kill us.
    const intervalMs = Math.max(1, Math.floor(usec / 2000));
    this.watchdogIntervalMs = intervalMs;
    this.watchdogTimer = setInterval(() => this.watchdog(), intervalMs);
    this.watchdogTimer.unref();
    return intervalMs;
  }

  /** Stops the watchdog timer. Queued messages are still sent (see flush()). Safe to call twice. */
  close(): void {
    if (this.watchdogTimer !== undefined) clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
    this.watchdogIntervalMs = undefined;
  }

  /** Resolves once every queued message has been handed to systemd (or failed). */
  flush(): Promise<void> {
    if (!this.sending && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private send(kind: Kind, fields: readonly string[]): void {
    if (!this.enabled || this.unavailable) return;
    if (this.queue.length >= this.maxQueued && !this.makeRoom(kind)) return;
    this.queue.push({ kind, fields });
    this.sendNext();
  }

  /** Frees a queue slot for a message of `kind`; false means drop that message instead. */
  private makeRoom(kind: Kind): boolean {
    const oldest = this.queue.findIndex((m) => isDroppable(m.kind));
    if (oldest !== -1) {
      this.queue.splice(oldest, 1);
      return true;
    }
    if (isDroppable(kind)) return false;
    // Only lifecycle messages wait, and they are never dropped. A RELOADING=1 still queued
    // right before its READY=1 changes nothing systemd ends up with, so that pair goes;
    // this keeps a burst of SIGHUPs from growing the queue without bound.
    const pair = this.queue.findIndex((m, i) => m.kind === 'reloading' && this.queue[i + 1]?.kind === 'ready');
    if (pair !== -1) this.queue.splice(pair, 2);
    return true;
  }

  private sendNext(): void {
    if (this.sending) return;
    const message = this.queue.shift();
    if (message === undefined) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
      return;
    }
    this.sending = true;
    const onDone = (err: Error | null, stderr: string): void => {
      this.sending = false;
      if (err !== null) this.onSendFailed(message, err, stderr);
      this.sendNext();
    };
    try {
      execFile(
        this.command,
        [...message.fields],
        { env: this.childEnv, timeout: this.sendTimeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 },
        (err, _stdout, stderr) => onDone(err, String(stderr)),
      );
    } catch (err) {
      // Only a bad argument throws synchronously; fields are sanitised, so this is a bug.
      queueMicrotask(() => onDone(err as Error, ''));
    }
  }

  private onSendFailed(message: Message, err: Error, stderr: string): void {
    if (systemErrorCode(err) === 'ENOENT') {
      this.unavailable = true;
      this.queue.length = 0;
      this.logger?.error('systemd notifications are off: systemd-notify was not found', {
        command: this.command,
        hint: 'install systemd (it provides systemd-notify), or run without Type=notify',
      });
      return;
    }
    if (this.failureLogged) return;
    this.failureLogged = true;
    this.logger?.warn('systemd notification failed; further failures are not logged', {
      fields: message.fields.join(' '),
      error: stderr.trim() || err.message,
    });
  }
}

/** STATUS= is one line; NUL can't go in an argument and a newline would start a new field. */
function statusField(text: string): string {
  return 'STATUS=' + text.replace(/[\0\r\n]+/g, ' ');
}
