// winston, one JSON object per line on stdout (journald stores each line as one entry), or a
// short text form on a terminal. Key material is never passed to the logger.

import winston from 'winston';
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

// One JSON object per line, timestamp first. Plain JSON.stringify: our fields are flat
// primitives, and winston's own json format (a cycle-safe, key-sorting stringify plus a
// separate timestamp pass) costs about twice as much per session line.
/** Where winston transports read the finished line (triple-beam's MESSAGE symbol). */
const MESSAGE = Symbol.for('message');

const jsonLine = winston.format((info) => {
  const { level, message, ...rest } = info;
  (info as Record<symbol, unknown>)[MESSAGE] = JSON.stringify({ timestamp: new Date().toISOString(), level, message, ...rest });
  return info;
});

export function createLogger(options: LoggerOptions): Logger {
  const format = options.format === 'json' ? jsonLine() : winston.format.combine(winston.format.timestamp(), textFormat);
  return winston.createLogger({
    level: options.level,
    format,
    defaultMeta: options.base,
    transports: [new winston.transports.Console({ stderrLevels: [] })],
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
