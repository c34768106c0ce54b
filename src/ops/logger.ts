// winston, one JSON object per line on stdout (journald stores each line as one entry), or a
// short text form on a terminal. Key material is never passed to the logger.

import winston from 'winston';
import TransportStream from 'winston-transport';
import type { LogFormat, LogLevel } from '../config/config';

export type Logger = winston.Logger;

export interface LoggerOptions {
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** Fields put on every line (e.g. `{ worker: 2 }`). */
  readonly base?: Record<string, unknown>;
}

/** Where winston transports read the finished line (triple-beam's MESSAGE symbol). */
const MESSAGE = Symbol.for('message');
/** Where winston keeps a line's level for its transports (triple-beam's LEVEL symbol). */
const LEVEL = Symbol.for('level');
/** When a deferred line was logged (ms since the epoch): its timestamp, though formatted later. */
const LOGGED_AT = Symbol('loggedAt');

type Info = winston.Logform.TransformableInfo & { [LOGGED_AT]?: number };

function timestampOf(info: Info): string {
  return isoTimestamp(info[LOGGED_AT] ?? Date.now());
}

/** The second (ms since the epoch / 1000) isoPrefix belongs to, and its ISO text up to the dot. */
let isoSecond = NaN;
let isoPrefix = '';

/**
 * `new Date(ms).toISOString()` for a whole number of ms, with the text up to the second built
 * once per second: building and formatting a Date took about as long as the rest of a
 * session line's formatting (profiled at saturation), and lines come thousands a second.
 */
export function isoTimestamp(ms: number): string {
  if (!Number.isInteger(ms)) return new Date(ms).toISOString();
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    // Every ISO date ends in ".sssZ"; the prefix keeps the dot.
    isoPrefix = new Date(second * 1000).toISOString().slice(0, -4);
  }
  const milli = ms - second * 1000;
  return `${isoPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

const textFormat = winston.format.printf((info) => {
  const { level, message, ...rest } = info;
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${timestampOf(info)} ${level.padEnd(5)} ${String(message)}${fields ? ' ' + fields : ''}`;
});

// One JSON object per line, timestamp first. Plain JSON.stringify: our fields are flat
// primitives, and winston's own json format (a cycle-safe, key-sorting stringify plus a
// separate timestamp pass) costs about twice as much per session line.
const jsonLine = winston.format((info: Info) => {
  const line: Record<string, unknown> = { timestamp: timestampOf(info), level: info.level, message: info.message };
  for (const key in info) if (key !== 'level' && key !== 'message') line[key] = info[key];
  info[MESSAGE] = JSON.stringify(line);
  return info;
});

/**
 * Largest write while other processes share this stdout: PIPE_BUF on Linux. Workers share the
 * supervisor's stdout, and a write of at most this much to a pipe is never interleaved with
 * another process's, so no line is ever cut by a line from a worker. (A single longer line
 * still goes out whole, in one write.)
 */
const ATOMIC_WRITE_BYTES = 4096;
/** Flush at once when this many bytes (or deferred lines) are waiting. */
const BATCH_MAX_BYTES = 64 * 1024;
const BATCH_MAX_DEFERRED = 1024;
/** Otherwise flush this long after the first line of a batch (ms). */
const BATCH_MAX_DELAY_MS = 100;

/** A line logged but not built yet: built and formatted at flush time, in order with the rest. */
interface Deferred {
  readonly line: ConnectionLine;
  readonly fields: Record<string, unknown>;
  /** Date.now() when logged: the line's timestamp. */
  readonly at: number;
}

/**
 * Log lines bound for stdout, written in batches: a line waits at most BATCH_MAX_DELAY_MS
 * (or until BATCH_MAX_BYTES / BATCH_MAX_DEFERRED are waiting), then goes out in one write
 * with the lines logged after it. Under load the daemon ends thousands of sessions a
 * second, and one write(2) per line, or even per event-loop turn, cost more than the rest
 * of the line's logging together (profiled); at saturation a 100 ms batch measured cheaper
 * than a 10 ms one. A process exit flushes what is left; only a SIGKILL loses lines (the
 * last 100 ms at most). One per process, shared by every logger, so lines keep their order.
 */
const stdoutBatch = new (class StdoutBatch {
  /** ATOMIC_WRITE_BYTES, or no limit when this process is stdout's only writer (setSoleStdoutWriter). */
  maxWriteBytes = ATOMIC_WRITE_BYTES;
  private pending: Array<string | Deferred> = [];
  private pendingBytes = 0;
  private deferred = 0;
  private scheduled = false;
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    this.deferred = 0;
    let text = '';
    let textBytes = 0;
    const sole = this.maxWriteBytes === Infinity;
    for (const line of lines) {
      const formatted = textOf(line);
      if (formatted === undefined) continue;
      const bytes = sole ? 0 : Buffer.byteLength(formatted);
      if (textBytes > 0 && textBytes + bytes > this.maxWriteBytes) {
        process.stdout.write(text);
        text = '';
        textBytes = 0;
      }
      text += formatted;
      textBytes += bytes;
    }
    if (text.length > 0) process.stdout.write(text);
  };
  // One timer for the life of the process, re-armed with refresh(). Unref'd: a waiting line
  // never keeps the process alive (the exit hook writes it).
  private readonly timer = setTimeout(this.flush, BATCH_MAX_DELAY_MS).unref();

  constructor() {
    process.once('exit', this.flush);
  }

  push(line: string): void {
    this.pending.push(line);
    this.pendingBytes += line.length;
    this.afterPush();
  }

  pushDeferred(line: Deferred): void {
    this.pending.push(line);
    this.deferred++;
    this.afterPush();
  }

  private afterPush(): void {
    if (this.pendingBytes >= BATCH_MAX_BYTES || this.deferred >= BATCH_MAX_DEFERRED) {
      this.flush();
    } else if (!this.scheduled) {
      this.scheduled = true;
      this.timer.refresh();
    }
  }
})();

/**
 * Says whether this process is the only one writing to its stdout, as the daemon is with
 * --workers 0. When it is, a batch goes out in one write rather than in PIPE_BUF-sized ones: at
 * the handshake limit a 100 ms batch is 20-odd such writes, and one write measured about 1 %
 * faster. Until told otherwise, a process assumes it shares stdout.
 */
export function setSoleStdoutWriter(sole: boolean): void {
  stdoutBatch.maxWriteBytes = sole ? Infinity : ATOMIC_WRITE_BYTES;
}

/** Writes every waiting log line now (they are otherwise written within BATCH_MAX_DELAY_MS, and at exit). */
export function flushLogLines(): void {
  stdoutBatch.flush();
}

class BatchedStdoutTransport extends TransportStream {
  override log(info: Info, callback: () => void): void {
    stdoutBatch.push(`${String(info[MESSAGE])}\n`);
    callback();
  }
}

/**
 * A waiting line's text. Deferred lines are formatted away from their caller, so one that
 * can't be formatted is dropped (undefined) rather than allowed to throw out of the flush
 * timer and take the other lines, and the process, with it.
 */
function textOf(line: string | Deferred): string | undefined {
  if (typeof line === 'string') return line;
  try {
    return line.line.format(line.fields, line.at);
  } catch {
    return undefined;
  }
}

/** A JSON logger's default fields, serialised once: the keys, and the JSON without its braces. */
interface JsonBase {
  readonly baseKeys: readonly string[];
  readonly baseJson: string;
}

/** Loggers made by createLogger (one stdout transport, no transport-level settings); json is set for the JSON format. */
const ownLoggers = new WeakMap<Logger, { readonly json: JsonBase | undefined }>();

function levelEnabled(logger: Logger, level: LogLevel): boolean {
  const levels = logger.levels;
  return levels[level]! <= levels[logger.level]!;
}

/**
 * A line logged once per connection, at one level with one message: the session line. On a
 * logger from createLogger, write() gives the line logger.log would (default fields, the
 * logger's format, the stdout transport, the timestamp of the call) but builds and formats it
 * when its batch is written rather than now. Run once per session between two handshakes,
 * winston's two object-mode streams and the formatting cost several times what they cost in a
 * loop (profiled under load); a batch formats in a loop. What can be worked out once is, when
 * the handle is made: which logger it is, and the JSON between the timestamp and the fields.
 * Any other logger gets a plain logger.log.
 */
export class ConnectionLine {
  private readonly own: boolean;
  /** For a JSON logger of ours: its default field names, and the line's JSON after the timestamp up to the line's fields. */
  private readonly json: { readonly baseKeys: readonly string[]; readonly head: string } | undefined;
  /** The logger's level when enabled() last looked, and its answer then. */
  private levelSeen: string | undefined;
  private levelOn = false;

  constructor(
    readonly logger: Logger,
    readonly level: LogLevel,
    readonly message: string,
  ) {
    const own = ownLoggers.get(logger);
    this.own = own !== undefined;
    if (own?.json !== undefined) {
      const { baseKeys, baseJson } = own.json;
      this.json = { baseKeys, head: `"level":${JSON.stringify(level)},"message":${JSON.stringify(message)}${baseJson ? ',' + baseJson : ''}` };
    }
  }

  /** Whether write() would log now (the logger's level may change, on a reload). */
  enabled(): boolean {
    if (!this.own) return this.logger.isLevelEnabled(this.level);
    const current = this.logger.level;
    if (current !== this.levelSeen) {
      this.levelSeen = current;
      this.levelOn = levelEnabled(this.logger, this.level);
    }
    return this.levelOn && !this.logger.silent;
  }

  /** Logs the line with `fields`, which must not change afterwards. */
  write(fields: Record<string, unknown>): void {
    if (!this.own) {
      this.logger.log(this.level, this.message, fields);
      return;
    }
    if (!this.enabled()) return;
    stdoutBatch.pushDeferred({ line: this, fields, at: Date.now() });
  }

  /** The text logger.log would have written for `fields` at `at`, with its newline. */
  format(fields: Record<string, unknown>, at: number): string {
    const json = this.json;
    if (json !== undefined && !anyKeyIn(json.baseKeys, fields)) {
      // JSON.stringify of the fields object as it is, a literal of fixed shape at its call site.
      const body = JSON.stringify(fields);
      return `{"timestamp":"${isoTimestamp(at)}",${json.head}${body.length > 2 ? ',' + body.slice(1) : '}'}\n`;
    }
    // Text format, or a line field that shares a default field's name (the line's wins).
    const { logger, level, message } = this;
    const info: Info = { ...(logger.defaultMeta as Record<string, unknown> | undefined), ...fields, level, message, [LEVEL]: level, [LOGGED_AT]: at };
    const out = logger.format.transform(info, logger.format.options);
    return out ? `${String((out as Info)[MESSAGE])}\n` : '';
  }
}

function anyKeyIn(keys: readonly string[], fields: Record<string, unknown>): boolean {
  for (let i = 0; i < keys.length; i++) if (keys[i]! in fields) return true;
  return false;
}

export function createLogger(options: LoggerOptions): Logger {
  const logger = winston.createLogger({
    level: options.level,
    format: options.format === 'json' ? jsonLine() : textFormat,
    defaultMeta: options.base,
    transports: [new BatchedStdoutTransport()],
  });
  const base = options.base ?? {};
  ownLoggers.set(logger, { json: options.format === 'json' ? { baseKeys: Object.keys(base), baseJson: JSON.stringify(base).slice(1, -1) } : undefined });
  return logger;
}

/**
 * Lets at most `perWindow` lines per key through each `windowMs`; the rest are counted and
 * reported in one line when the window turns over. Keeps a flood of bad clients from flooding
 * the log. Keys are a small fixed set (reasons), so the map stays bounded.
 */
export class SampledLog {
  private readonly counts = new Map<string, { logged: number; suppressed: number }>();
  private windowStart: number;

  constructor(
    private readonly logger: Logger,
    private readonly perWindow = 10,
    private readonly windowMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {
    this.windowStart = now();
  }

  log(level: LogLevel, key: string, message: string, fields: Record<string, unknown>): void {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) this.flush(t);
    let c = this.counts.get(key);
    if (c === undefined) {
      c = { logged: 0, suppressed: 0 };
      this.counts.set(key, c);
    }
    if (c.logged < this.perWindow) {
      c.logged++;
      this.logger.log(level, message, fields);
    } else {
      c.suppressed++;
    }
  }

  /** Reports what was suppressed in the window that ended and starts a new one. */
  flush(t = this.now()): void {
    for (const [key, c] of this.counts) {
      if (c.suppressed > 0) {
        this.logger.warn('log lines suppressed', { key, suppressed: c.suppressed, windowMs: t - this.windowStart });
      }
    }
    this.counts.clear();
    this.windowStart = t;
  }
}
