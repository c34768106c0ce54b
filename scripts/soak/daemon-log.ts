// The daemon's JSON log (stdout to daemon.log), read incrementally: each poll reads what was
// appended since the last, and tallies what the checks need. Session lines are keyed by
// sessionId (the supervisor numbers every admitted connection once, across workers and the
// scenario listener), so a duplicate line is seen exactly; a missing one only as a count.

import { closeSync, openSync, readSync } from 'node:fs';

/** Error-level messages the soak causes on purpose; any other error line fails the run. */
const EXPECTED_ERRORS = new Set(['worker exited', 'reload failed; the previous configuration keeps serving']);

export interface LogTally {
  sessionLines: number;
  duplicateSessionIds: number;
  /** Session lines of sessions that were resumed from a ticket. */
  resumedLines: number;
  workerExits: number;
  /** Sum of `sessionsLost` over the `worker exited` lines: sessions whose line died with the worker. */
  sessionsLost: number;
  reloadsOk: number;
  reloadsFailed: number;
  /** Lines that aren't JSON (a stack trace from an uncaught error, say). */
  notJson: string[];
  /** Error-level lines other than the expected ones. */
  unexpectedErrors: string[];
}

export class DaemonLog {
  readonly tally: LogTally = { sessionLines: 0, duplicateSessionIds: 0, resumedLines: 0, workerExits: 0, sessionsLost: 0, reloadsOk: 0, reloadsFailed: 0, notJson: [], unexpectedErrors: [] };
  private readonly seen = new Set<number>();
  private offset = 0;
  private partial = '';

  constructor(private readonly file: string) {}

  /** Reads and tallies whatever was appended since the last poll. */
  poll(): void {
    const fd = openSync(this.file, 'r');
    try {
      const chunk = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, this.offset);
        if (n === 0) break;
        this.offset += n;
        const text = this.partial + chunk.subarray(0, n).toString('utf8');
        const lines = text.split('\n');
        this.partial = lines.pop()!;
        for (const line of lines) if (line !== '') this.onLine(line);
      }
    } finally {
      closeSync(fd);
    }
  }

  private onLine(line: string): void {
    let entry: { level?: string; message?: string; sessionId?: number; resumed?: boolean; sessionsLost?: number };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      if (this.tally.notJson.length < 20) this.tally.notJson.push(line.slice(0, 300));
      return;
    }
    const t = this.tally;
    switch (entry.message) {
      case 'session ended':
        t.sessionLines++;
        if (entry.resumed === true) t.resumedLines++;
        if (typeof entry.sessionId === 'number') {
          if (this.seen.has(entry.sessionId)) t.duplicateSessionIds++;
          else this.seen.add(entry.sessionId);
        }
        return;
      case 'worker exited':
        t.workerExits++;
        t.sessionsLost += entry.sessionsLost ?? 0;
        break;
      case 'reloaded':
        t.reloadsOk++;
        break;
      case 'reload failed; the previous configuration keeps serving':
        t.reloadsFailed++;
        break;
    }
    if ((entry.level === 'error' || entry.level === 'fatal') && !EXPECTED_ERRORS.has(entry.message ?? '') && t.unexpectedErrors.length < 20) {
      t.unexpectedErrors.push(line.slice(0, 300));
    }
  }
}
