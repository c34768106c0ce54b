// The run's summary: what the load did, what the daemon counted, what the chaos did, the
// memory and descriptor ranges, and every check with its bound and measurement, as plain-text
// tables (summary.txt and the terminal).

import type { ChaosEvent } from './chaos';
import type { CheckResult } from './checks';
import { median } from './checks';
import type { ControlStats } from './control';
import type { LoadStats } from './loads';
import type { NetFuzzStats } from './net-fuzz';
import type { Sample } from './sample';

/** Rows of cells as aligned columns, the first row a header underlined. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

export interface RunReport {
  readonly title: string;
  readonly seed: number;
  readonly minutes: number;
  readonly loads: LoadStats;
  readonly control: ControlStats;
  readonly chaos: readonly ChaosEvent[];
  readonly fuzz: NetFuzzStats;
  /** The load process's own event-loop delay over the run (ms). */
  readonly loadLoopDelay: { readonly p99Ms: number; readonly maxMs: number };
  readonly samples: readonly Sample[];
  readonly finalMetrics: { readonly refused: Record<string, number>; readonly closed: Record<string, number>; readonly handshakeFailures: Record<string, number> };
  readonly checks: readonly CheckResult[];
}

const MIB = 1024 * 1024;

function range(samples: readonly Sample[], read: (s: Sample) => number, scale = 1, digits = 0): string[] {
  const v = samples.map(read);
  if (v.length === 0) return ['-', '-', '-'];
  return [Math.min(...v), median(v), Math.max(...v)].map((n) => (n / scale).toFixed(digits));
}

const labelled = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || 'none';

export function renderSummary(r: RunReport): string {
  const last = r.samples[r.samples.length - 1];
  const loadRows = [['load', 'started', 'ok', 'cut', 'refused', 'timeout', 'late', 'mismatch', 'resumed'], ...Object.entries(r.loads).map(([name, c]) => [name, ...[c.started, c.ok, c.cut, c.refused, c.timeout, c.late, c.mismatch, c.reused].map(String)])];
  const chaosCounts = new Map<string, { n: number; ok: number }>();
  for (const e of r.chaos) {
    const c = chaosCounts.get(e.kind) ?? { n: 0, ok: 0 };
    c.n++;
    if (e.ok) c.ok++;
    chaosCounts.set(e.kind, c);
  }
  const resourceRows = [
    ['series', 'min', 'median', 'max'],
    ['supervisor RSS (MiB)', ...range(r.samples, (s) => s.supervisorRss, MIB, 1)],
    ['workers RSS, sum (MiB)', ...range(r.samples, (s) => s.workerRss, MIB, 1)],
    ['surviving worker RSS (MiB)', ...range(r.samples, (s) => s.survivorRss, MIB, 1)],
    ['supervisor heap used (MiB)', ...range(r.samples, (s) => s.heapUsed, MIB, 1)],
    ['supervisor descriptors', ...range(r.samples, (s) => s.supervisorFds)],
    ['worker descriptors, sum', ...range(r.samples, (s) => s.workerFds)],
    ['sessions active', ...range(r.samples, (s) => s.sessionsActive)],
    ['connections pending', ...range(r.samples, (s) => s.pending)],
    ['client entries', ...range(r.samples, (s) => s.clientEntries)],
    ['client entries holding', ...range(r.samples, (s) => s.clientEntriesHolding)],
    ['supervisor active resources', ...range(r.samples, (s) => s.activeResources)],
    ['supervisor timers', ...range(r.samples, (s) => s.activeTimers)],
  ];
  const fuzzCases = Object.entries(r.fuzz.byCase).map(([name, c]) => `${name} ${c.started}`).join(', ');
  const parts = [
    `${r.title}: ${r.minutes} min, seed ${r.seed}`,
    '',
    table(loadRows),
    '',
    `control client: ${r.control.roundTrips} round trips, ${r.control.mismatches} mismatches, ${r.control.reconnects} reconnects, ${r.control.stalls} stalls`,
    `load process event-loop delay: p99 ${r.loadLoopDelay.p99Ms.toFixed(1)} ms, max ${r.loadLoopDelay.maxMs.toFixed(1)} ms (included in the control client's round trips)`,
    `net fuzz: ${r.fuzz.started} started, ${r.fuzz.ended} ended, ${r.fuzz.open} open, ${r.fuzz.overdue} overdue${fuzzCases ? ` (${fuzzCases})` : ''}`,
    `chaos: ${[...chaosCounts].map(([k, c]) => `${k} ${c.ok}/${c.n} ok`).join(', ') || 'none'}`,
    '',
    last === undefined ? 'no samples' : `daemon counted: ${last.accepted} accepted, ${last.refused} refused (${labelled(r.finalMetrics.refused)})`,
    `  sessions closed: ${labelled(r.finalMetrics.closed)}`,
    `  handshake failures: ${labelled(r.finalMetrics.handshakeFailures)}`,
    '',
    table(resourceRows),
    '',
    table([['check', 'result', 'bound', 'measured'], ...r.checks.map((c) => [c.name, c.pass ? 'PASS' : 'FAIL', c.bound, c.measured])]),
  ];
  return parts.join('\n') + '\n';
}
