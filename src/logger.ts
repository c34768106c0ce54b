// winston, one JSON object per line on stdout (journald stores each line as one entry), or a
// short text form on a terminal. Key material is never passed to the logger.

import winston from 'winston';
import TransportStream from 'winston-transport';
import type { LogFormat, LogLevel } from './config';

export type Logger = winston.Logger;

export interface LoggerOptions {
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** Fields put on every line (e.g. `{ worker: 2 }`). */
  readonly base?: Record<string, unknown>;
}

const textFormat = winston.format.printf((info) => {
  const { level, message, timestamp, ...rest } = info;
  const fields = Object.entries(rest)
    .filter(([k]) => typeof k === 'string')
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${String(timestamp)} ${level.padEnd(5)} ${String(message)}${fields ? ' ' + fields : ''}`;
});

/** Where winston transports read the finished line (triple-beam's MESSAGE symbol). */
const MESSAGE = Symbol.for('message');

// One JSON object per line, timestamp first. Plain JSON.stringify: our fields are flat
// primitives, and winston's own json format (a cycle-safe, key-sorting stringify plus a
// separate timestamp pass) costs about twice as much per session line.
const jsonLine = winston.format((info) => {
  const line: Record<string, unknown> = { timestamp: new Date().toISOString(), level: info.level, message: info.message };
  for (const key in info) if (key !== 'level' && key !== 'message') line[key] = info[key];
  (info as Record<symbol, unknown>)[MESSAGE] = JSON.stringify(line);
  return info;
});

/** Flush at once when this much is waiting (bytes), rather than at the end of the tick. */
const BATCH_MAX_BYTES = 64 * 1024;

/**
 * Log lines bound for stdout, written in batches: every line logged during one turn of the
 * event loop goes out in one write. Under load the daemon ends thousands of sessions a
 * second, and one write(2) per line cost more than the rest of the line's logging together
 * (profiled). At most BATCH_MAX_BYTES wait; a process exit flushes what is left. One per
 * process, shared by every logger, so lines keep their order.
 */
const stdoutBatch = new (class StdoutBatch {
  private pending: string[] = [];
  private pendingBytes = 0;
  private scheduled = false;

  constructor() {
    process.once('exit', this.flush);
  }

  push(line: string): void {
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes >= BATCH_MAX_BYTES) {
      this.flush();
    } else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const text = this.pending.length === 1 ? this.pending[0]! : this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    process.stdout.write(text);
  };
})();

class BatchedStdoutTransport extends TransportStream {
  override log(info: Record<symbol, unknown>, callback: () => void): void {
    stdoutBatch.push(`${String(info[MESSAGE])}\n`);
    callback();
  }
}

export function createLogger(options: LoggerOptions): Logger {
  const format = options.format === 'json' ? jsonLine() : winston.format.combine(winston.format.timestamp(), textFormat);
  return winston.createLogger({
    level: options.level,
    format,
    defaultMeta: options.base,
    transports: [new BatchedStdoutTransport()],
  });
}

/** A logger for commands that print results themselves: only errors, as text, to stderr. */
export function createQuietLogger(): Logger {
  return winston.createLogger({
    level: 'error',
    format: winston.format.combine(winston.format.timestamp(), textFormat),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
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
