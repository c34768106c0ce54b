// The summary: rows of medians with ratios to the baseline and PASS/MISS against the targets,
// and the tables and notes printed at the end.

import type { Machine } from './machine';
import { fmt, pct } from './number-format';
import type { IdleRecord, RunRecord } from './runs';
import { SATURATED_SHARE, SERVER_KINDS, SERVER_LABELS, type OptionKind, type ScenarioName, type ServerKind, type Settings } from './settings';
import { SIDECAR_NAMES } from './sidecars';

interface Row {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  /**
   * Ratio to the baseline that --workers 0 must reach (at least, or at most when lower is
   * better), however it is started (JUDGED_KINDS); no other server is judged.
   */
  readonly target: number;
  readonly values: Partial<Record<ServerKind, number>>;
  readonly ratios: Partial<Record<ServerKind, number>>;
  /** Every judged server that was measured meets the target; undefined when none was, or the row is not judged (see verdict). */
  readonly pass: boolean | undefined;
  readonly autoPass: boolean | undefined;
  /** Shown instead of PASS/MISS when the row is not judged: why. */
  readonly verdict?: string;
  /**
   * A scale-out option's row (issue 16): its ratios are to --workers 0 without the option, not
   * to the baseline, and the table shows the daemon with it in the workers 0 column.
   */
  readonly option?: OptionKind;
  /** The option's sidecar (HAProxy, redis-server): its median share of a core, part of the server CPU its per core-s divides by. */
  readonly sidecarCpu?: number;
}

export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function medianBy<T>(records: readonly T[], kind: ServerKind, pick: (r: T) => number, kindOf: (r: T) => ServerKind): number {
  return median(records.filter((r) => kindOf(r) === kind).map(pick));
}

/** a / b, or undefined when either is missing or not finite, or b is not positive. */
function ratioOf(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0 ? undefined : a / b;
}

/** --workers 0 as `node dist/src/cli.js serve` (npm start, the systemd wrapper) and through the bin: the launchers the targets hold for. */
const JUDGED_KINDS = ['workers-0', 'workers-0-bin'] as const;

/** A row of `values` with each one's ratio to the `reference` server's (the baseline unless given). */
function makeRow(id: string, label: string, unit: string, better: Row['better'], target: number, values: Partial<Record<ServerKind, number>>, reference: ServerKind = 'baseline'): Row {
  const base = values[reference];
  const ratios: Partial<Record<ServerKind, number>> = {};
  for (const [kind, v] of Object.entries(values) as Array<[ServerKind, number]>) {
    const ratio = ratioOf(v, base);
    if (kind !== reference && ratio !== undefined) ratios[kind] = ratio;
  }
  const meets = (r: number | undefined): boolean | undefined => (r === undefined ? undefined : better === 'higher' ? r >= target : r <= target);
  const judged = JUDGED_KINDS.map((k) => meets(ratios[k])).filter((p) => p !== undefined);
  const pass = judged.length === 0 ? undefined : judged.every((p) => p);
  return { id, label, unit, better, target, values, ratios, pass, autoPass: meets(ratios['workers-auto']) };
}

export interface ScenarioResults {
  throughput: Map<ScenarioName, { runs: RunRecord[]; crossCheck: RunRecord[]; workers: Partial<Record<ServerKind, number>> }>;
  idle: IdleRecord[];
}

/** Whether --workers 0 used (in the median run) enough of its core to count as the bottleneck. */
export function saturated(runs: readonly RunRecord[]): boolean {
  return medianBy(runs, 'workers-0', (r) => r.serverCpu, (r) => r.server) >= SATURATED_SHARE;
}

export function buildRows(results: ScenarioResults): Row[] {
  const rows: Row[] = [];
  const values = (runs: readonly RunRecord[], pick: (r: RunRecord) => number): Partial<Record<ServerKind, number>> => {
    const out: Partial<Record<ServerKind, number>> = {};
    for (const k of SERVER_KINDS) {
      const v = medianBy(runs, k, pick, (r) => r.server);
      if (Number.isFinite(v)) out[k] = v;
    }
    return out;
  };
  const t = results.throughput;
  // A throughput figure is judged where the server was saturated, as the targets ask: the
  // project's generator when it saturated --workers 0, else the Go generator's cross-check
  // when that did (the project's figure is then shown, extrapolated, but not judged).
  const throughput = (name: ScenarioName, label: string, unit: string, pick: (r: RunRecord) => number): void => {
    const s = t.get(name);
    if (!s) return;
    const own = makeRow(name, label, unit, 'higher', 0.95, values(s.runs, pick));
    if (s.crossCheck.length === 0) {
      rows.push(own);
      return;
    }
    const go = makeRow(`${name}-tlsload`, `${label}, Go tlsload`, unit, 'higher', 0.95, values(s.crossCheck, pick));
    if (!saturated(s.runs) && saturated(s.crossCheck)) {
      rows.push({ ...own, pass: undefined, autoPass: undefined, verdict: 'partial load' }, go);
    } else {
      rows.push(own, { ...go, pass: undefined, verdict: 'cross-check' });
    }
  };
  throughput('handshake-ecdsa', 'Full handshakes/s, ECDSA P-256', '/core-s', (r) => r.opsPerCoreSec);
  throughput('handshake-rsa', 'Full handshakes/s, RSA-2048', '/core-s', (r) => r.opsPerCoreSec);
  const mtls = t.get('handshake-mtls');
  if (mtls) {
    // Reported, no target: what asking for and verifying a client certificate costs (issue 14).
    const row = makeRow('handshake-mtls', 'Full handshakes/s, ECDSA, --client-auth require', '/core-s', 'higher', 0.95, values(mtls.runs, (r) => r.opsPerCoreSec));
    rows.push({ ...row, pass: undefined, autoPass: undefined, verdict: 'reported' });
  }
  // Reported, no target (issue 16): --workers 0 with a scale-out option against itself without it,
  // in the same scenario. The baseline does not run there.
  const option = (name: ScenarioName, kind: OptionKind, label: string): void => {
    const s = t.get(name);
    if (!s) return;
    const row = makeRow(name, label, '/core-s', 'higher', 0.95, values(s.runs, (r) => r.opsPerCoreSec), 'workers-0');
    const sidecarCpu = medianBy(s.runs, kind, (r) => r.sidecarCpu ?? NaN, (r) => r.server);
    rows.push({ ...row, pass: undefined, autoPass: undefined, verdict: 'reported', option: kind, sidecarCpu });
  };
  option('handshake-haproxy', 'workers-0-haproxy', 'Full handshakes/s, ECDSA, via HAProxy, vs direct');
  option('handshake-redis', 'workers-0-redis', 'Full handshakes/s, ECDSA, --redis, vs without');
  throughput('pingpong', 'Ping-pong 64 B msgs/s, 64 conns', '/core-s', (r) => r.opsPerCoreSec);
  const pp = t.get('pingpong');
  if (pp) rows.push(makeRow('pingpong-p99', 'Ping-pong p99 latency, 64 conns', 'ms', 'lower', 1.2, values(pp.runs, (r) => r.p99Ms)));
  throughput('stream', 'Bulk echo MB/s, 4 conns', 'MB/core-s', (r) => r.mbPerCoreSec);
  if (results.idle.length > 0) {
    const v: Partial<Record<ServerKind, number>> = {};
    for (const k of SERVER_KINDS) {
      const m = medianBy(results.idle, k, (r) => r.perSessionKiB, (r) => r.server);
      if (Number.isFinite(m)) v[k] = m;
    }
    rows.push(makeRow('idle-rss', `RSS per idle session`, 'KiB', 'lower', 1.1, v));
  }
  return rows;
}

function ratioText(ratio: number | undefined): string {
  return ratio === undefined ? '-' : `${fmt(ratio, 3)}x`;
}

function decimalsFor(unit: string, v: number | undefined): number {
  if (unit === 'ms' || unit === 'KiB') return v !== undefined && v < 10 ? 2 : 1;
  return 0;
}

function table(header: readonly string[], rows: readonly (readonly string[])[], rightAlign: ReadonlySet<number>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    '| ' + cells.map((c, i) => (rightAlign.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ') + ' |';
  const rule = '|' + widths.map((w, i) => (rightAlign.has(i) ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|';
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/**
 * How far the floor (the least per-connection work the requirements ask for) is from the
 * baseline, and how far --workers 0 is from the floor: the part of the daemon's distance that is
 * its own. Shown for information only; no lines when the floor did not run.
 */
function floorSection(rows: readonly Row[]): string[] {
  const floorRows = rows.filter((r) => r.values.floor !== undefined);
  if (floorRows.length === 0) return [];
  const lines = ['', 'Floor (scripts/floor-server.ts: only the per-connection work the requirements ask for):'];
  for (const r of floorRows) {
    const floor = r.values.floor;
    lines.push(
      `  ${r.label}: floor ${fmt(floor, decimalsFor(r.unit, floor))} ${r.unit} (${fmt(r.ratios.floor, 2)}x baseline); ` +
        `workers 0 is ${fmt(ratioOf(r.values['workers-0'], floor), 2)}x the floor`,
    );
  }
  return lines;
}

/**
 * The scale-out options (issue 16): the daemon with each against itself without it, both
 * figures, and what the sidecar took of the server's core. No lines when none ran.
 */
function optionSection(rows: readonly Row[]): string[] {
  const optionRows = rows.filter((r) => r.option !== undefined);
  if (optionRows.length === 0) return [];
  const lines = ['', 'Scale-out options (--workers 0 with the option against itself without it, same scenario; reported, no target):'];
  for (const r of optionRows) {
    const kind = r.option!;
    const sidecar = SIDECAR_NAMES[kind];
    lines.push(
      `  ${r.label}: without ${fmt(r.values['workers-0'], 0)} ${r.unit}, with ${fmt(r.values[kind], 0)} ${r.unit} (${ratioText(r.ratios[kind])}); ` +
        `${sidecar} used ${pct(r.sidecarCpu ?? NaN)} of a core, counted in the server CPU`,
    );
  }
  return lines;
}

export function renderSummary(rows: readonly Row[], results: ScenarioResults, machine: Machine, settings: Settings, notes: readonly string[], elapsedSec: number): string {
  const out: string[] = [];
  out.push(`tls-echod benchmark, ${machine.date.slice(0, 10)}`);
  out.push(`Machine: ${machine.cpuModel}, ${machine.cpus} CPU(s), ${machine.kernel}, Node ${machine.node}; load average at start ${machine.loadAvgAtStart.join(' ')}`);
  out.push(`tls-echod commit ${machine.commit}; pinning: ${machine.pinNote}`);
  if (settings.daemonArgs.length + settings.daemonNodeArgs.length > 0) out.push(`Extra daemon arguments: ${[...settings.daemonNodeArgs, ...settings.daemonArgs].join(' ')}`);
  out.push(
    `Runs: ${settings.rounds} round(s) per scenario, back and forth over the servers, ${settings.warmupMs / 1000} s warmup + ${settings.durationMs / 1000} s measured each ` +
      `(each server soaked ${settings.soakMs / 1000} s first, handshakes ${settings.soakMs / 2000} s), medians shown; ` +
      `idle: ${settings.idleSessions} sessions, ${settings.idleRounds} round(s), fresh server each; total ${Math.round(elapsedSec)} s`,
  );
  const workerNote = [...results.throughput.values()].map((s) => s.workers['workers-auto']).find((w) => w !== undefined);
  if (workerNote !== undefined) {
    out.push(
      workerNote === 0
        ? '--workers auto resolved to 0 (inline): the daemon may run on one CPU only, so its figures repeat --workers 0 measured again'
        : `--workers auto resolved to ${workerNote} worker(s) (the CPUs the daemon may run on)`,
    );
  }
  out.push('');
  out.push('Throughput figures are per second of server CPU (= the rate of one saturated core); see the detail table for raw rates.');
  const header = ['scenario', 'unit', 'baseline', 'workers 0', 'ratio', 'bin', 'ratio', 'workers auto', 'ratio', 'target', 'workers 0'];
  const body = rows.map((r) => [
    r.label,
    r.unit,
    fmt(r.values.baseline, decimalsFor(r.unit, r.values.baseline)),
    // An option's row: the daemon with the option, and its ratio to itself without it.
    fmt(r.values[r.option ?? 'workers-0'], decimalsFor(r.unit, r.values[r.option ?? 'workers-0'])),
    ratioText(r.ratios[r.option ?? 'workers-0']),
    fmt(r.values['workers-0-bin'], decimalsFor(r.unit, r.values['workers-0-bin'])),
    ratioText(r.ratios['workers-0-bin']),
    fmt(r.values['workers-auto'], decimalsFor(r.unit, r.values['workers-auto'])),
    ratioText(r.ratios['workers-auto']) + (r.autoPass === false ? ' !' : ''),
    r.verdict === 'reported' ? 'none' : `${r.better === 'higher' ? '>=' : '<='} ${r.target.toFixed(2)}x`,
    r.pass === undefined ? r.verdict ?? '-' : r.pass ? 'PASS' : 'MISS',
  ]);
  out.push(table(header, body, new Set([2, 3, 4, 5, 6, 7, 8])));
  out.push(
    '(targets apply to --workers 0 started both ways: "workers 0" is `node dist/src/cli.js serve`, as npm start and the systemd wrapper run it, ' +
      '"bin" is dist/src/cli.js run through its shebang; "!" marks a workers auto ratio that would miss them)',
  );
  if (rows.some((r) => r.option !== undefined)) {
    out.push(
      '("vs" rows: the workers 0 column is the daemon with that option, its ratio is to the same daemon without it in the same scenario, ' +
        'and its per core-s counts HAProxy\'s or redis-server\'s CPU as server CPU; see below)',
    );
  }
  const logRows = rows.filter((r) => r.values['workers-0-log-warn'] !== undefined);
  if (logRows.length > 0) {
    out.push('');
    out.push('Cost of the per-session info log line (--workers 0, default --log-level info vs --log-level warn):');
    for (const r of logRows) {
      out.push(`  ${r.label}: info ${fmt(r.values['workers-0'], 0)} ${r.unit} (${fmt(r.ratios['workers-0'], 2)}x), warn ${fmt(r.values['workers-0-log-warn'], 0)} ${r.unit} (${fmt(r.ratios['workers-0-log-warn'], 2)}x)`);
    }
  }
  out.push(...floorSection(rows));
  out.push(...optionSection(rows));
  out.push('');
  out.push('Detail (medians over rounds; "bound" says which side ran out of CPU):');
  const detail: string[][] = [];
  for (const [name, s] of results.throughput) {
    for (const [gen, runs] of [['tls-echod bench', s.runs], ['tlsload (Go)', s.crossCheck]] as const) {
      for (const kind of SERVER_KINDS) {
        const mine = runs.filter((r) => r.server === kind);
        if (mine.length === 0) continue;
        const m = (pick: (r: RunRecord) => number): number => median(mine.map(pick));
        const stream = name === 'stream';
        const serverCpu = m((r) => r.serverCpu);
        const genCpu = m((r) => r.generatorCpu);
        const loadCores = machine.pinning?.load.length ?? machine.cpus;
        const bound = serverCpu >= SATURATED_SHARE ? 'server' : genCpu >= SATURATED_SHARE * loadCores ? 'generator' : 'neither';
        const raw = mine.map((r) => (stream ? r.mbPerSec : r.opsPerSec));
        detail.push([
          name,
          gen,
          SERVER_LABELS[kind],
          `${fmt(median(raw), 0)} ${stream ? 'MB/s' : '/s'}`,
          `${fmt(Math.min(...raw), 0)}-${fmt(Math.max(...raw), 0)}`,
          pct(serverCpu),
          pct(genCpu),
          pct(m((r) => r.otherCpu)),
          bound,
          `${fmt(m((r) => (stream ? r.mbPerCoreSec : r.opsPerCoreSec)), 0)}`,
          m((r) => r.p50Ms).toFixed(2),
          m((r) => r.p99Ms).toFixed(2),
          String(mine.reduce((sum, r) => sum + r.errors, 0)),
          kind === 'baseline' ? '-' : fmt(m((r) => r.logBytes) / 1024, 0),
        ]);
      }
    }
  }
  if (detail.length > 0) {
    out.push(
      table(
        ['scenario', 'generator', 'server', 'raw rate', 'range', 'server CPU', 'gen CPU', 'other CPU', 'bound', 'per core-s', 'p50 ms', 'p99 ms', 'errors', 'log KiB'],
        detail,
        new Set([3, 4, 5, 6, 7, 9, 10, 11, 12, 13]),
      ),
    );
  }
  if (results.idle.length > 0) {
    out.push('');
    const idleRows = (['baseline', 'workers-0', 'workers-0-bin', 'workers-auto'] as const).flatMap((kind) => {
      const mine = results.idle.filter((r) => r.server === kind);
      if (mine.length === 0) return [];
      return [[
        SERVER_LABELS[kind],
        String(median(mine.map((r) => r.established))),
        [...new Set(mine.map((r) => r.rampPerSec))].join(', '),
        fmt(median(mine.map((r) => r.rssBeforeKiB)) / 1024, 1),
        fmt(median(mine.map((r) => r.rssAfterKiB)) / 1024, 1),
        mine.map((r) => fmt(r.perSessionKiB, 1)).join(', '),
        String(mine.reduce((sum, r) => sum + r.errors, 0)),
      ]];
    });
    out.push(table(['idle sessions', 'established', 'opened/s', 'RSS before MiB', 'RSS after MiB', 'KiB/session per round', 'errors'], idleRows, new Set([1, 2, 3, 4, 5, 6])));
  }
  const allNotes = [...notes];
  const missed = rows.filter((r) => r.pass === false);
  out.push('');
  const judged = rows.filter((r) => r.pass !== undefined);
  out.push(judged.length === 0 ? 'No target was judged: nothing measured --workers 0 against the baseline.' : missed.length === 0 ? `All ${judged.length} judged targets met by --workers 0.` : `Missed by --workers 0: ${missed.map((r) => `${r.label} (${JUDGED_KINDS.filter((k) => r.ratios[k] !== undefined).map((k) => `${SERVER_LABELS[k]} ${fmt(r.ratios[k], 2)}x`).join(', ')}; target ${r.better === 'higher' ? '>=' : '<='} ${r.target}x)`).join('; ')}`);
  if (allNotes.length > 0) {
    out.push('');
    out.push('Notes:');
    for (const n of allNotes) out.push(`  - ${n}`);
  }
  return out.join('\n') + '\n';
}
