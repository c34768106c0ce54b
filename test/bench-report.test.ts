// The benchmark's verdicts (scripts/bench/report.ts), from made-up run records: a throughput
// target is judged on a run that saturated the server, and a summary never claims a pass it
// did not measure. No timing here: the records are data.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Machine } from '../scripts/bench/machine';
import { buildRows, renderSummary, type ScenarioResults } from '../scripts/bench/report';
import { roundOrder, type RunRecord } from '../scripts/bench/runs';
import { parseSettings, type ServerKind } from '../scripts/bench/settings';

function run(server: ServerKind, generator: RunRecord['generator'], opsPerCoreSec: number, serverCpu: number): RunRecord {
  return {
    server, round: 1, generator, opsPerSec: opsPerCoreSec * serverCpu, mbPerSec: 0, p50Ms: 1, p99Ms: 2, errors: 0, firstError: null,
    serverCpu, generatorCpu: 1, otherCpu: 0, opsPerCoreSec, mbPerCoreSec: 0, logBytes: 0,
  };
}

function handshakes(runs: RunRecord[], crossCheck: RunRecord[]): ScenarioResults {
  return { throughput: new Map([['handshake-ecdsa', { runs, crossCheck, workers: {} }]]), idle: [] };
}

test('bench verdicts: the saturated Go run is judged when the Node generator left the server below saturation', () => {
  const rows = buildRows(handshakes(
    [run('baseline', 'tls-echod bench', 2000, 0.6), run('workers-0', 'tls-echod bench', 1990, 0.6)],
    [run('baseline', 'tlsload (Go)', 2000, 0.99), run('workers-0', 'tlsload (Go)', 1800, 0.99)],
  ));
  assert.deepEqual(rows.map((r) => [r.id, r.pass, r.verdict]), [
    ['handshake-ecdsa', undefined, 'partial load'],
    ['handshake-ecdsa-tlsload', false, undefined],
  ]);
  assert.equal(rows[1]!.ratios['workers-0'], 0.9);
});

test('bench verdicts: a saturated Node run is judged and the Go run is a cross-check', () => {
  const rows = buildRows(handshakes(
    [run('baseline', 'tls-echod bench', 1000, 0.99), run('workers-0', 'tls-echod bench', 960, 0.99)],
    [run('baseline', 'tlsload (Go)', 1000, 0.99), run('workers-0', 'tlsload (Go)', 900, 0.99)],
  ));
  assert.deepEqual(rows.map((r) => [r.id, r.pass, r.verdict]), [
    ['handshake-ecdsa', true, undefined],
    ['handshake-ecdsa-tlsload', undefined, 'cross-check'],
  ]);
});

test('bench verdicts: without the Go run the partial-load figure is all there is, and it is judged', () => {
  const rows = buildRows(handshakes([run('baseline', 'tls-echod bench', 2000, 0.6), run('workers-0', 'tls-echod bench', 1800, 0.6)], []));
  assert.deepEqual(rows.map((r) => [r.id, r.pass]), [['handshake-ecdsa', false]]);
});

/** A machine for renderSummary's header; nothing in it affects the rows. */
const MACHINE: Machine = {
  cpuModel: 'test CPU', cpus: 2, allowedCpus: [0, 1], node: 'v20', kernel: 'test', date: '2000-01-01T00:00:00Z', loadAvgAtStart: [0, 0, 0],
  clockTicksPerSec: 100, pinning: { server: [0], load: [1] }, pinNote: 'pinned', fdLimit: 65536, commit: 'test',
};

test('bench floor: shown with its ratio to the baseline and workers 0 as a share of it, never judged', () => {
  // Floor below the target while --workers 0 meets it: still PASS.
  const passing = buildRows(handshakes(
    [run('baseline', 'tls-echod bench', 2000, 0.99), run('workers-0', 'tls-echod bench', 1940, 0.99), run('floor', 'tls-echod bench', 1800, 0.99)],
    [],
  ));
  assert.deepEqual(passing.map((r) => [r.id, r.pass, r.values.floor, r.ratios.floor]), [['handshake-ecdsa', true, 1800, 0.9]]);
  const summary = renderSummary(passing, handshakes([], []), MACHINE, parseSettings([]), [], 1);
  const lines = summary.split('\n');
  const at = lines.indexOf('Floor (scripts/floor-server.ts: only the per-connection work the requirements ask for):');
  assert.ok(at > 0, summary);
  assert.equal(lines[at + 1], '  Full handshakes/s, ECDSA P-256: floor 1,800 /core-s (0.90x baseline); workers 0 is 1.08x the floor');
  assert.equal(lines[at + 2], '');
  assert.match(summary, /All 1 judged targets met by --workers 0\./);

  // Floor above the target while --workers 0 misses it: MISS, and the summary names workers 0 only.
  const missing = buildRows(handshakes(
    [run('baseline', 'tls-echod bench', 2000, 0.99), run('workers-0', 'tls-echod bench', 1800, 0.99), run('floor', 'tls-echod bench', 1980, 0.99)],
    [],
  ));
  assert.deepEqual(missing.map((r) => [r.id, r.pass]), [['handshake-ecdsa', false]]);
  assert.match(renderSummary(missing, handshakes([], []), MACHINE, parseSettings([]), [], 1), /Missed by --workers 0: Full handshakes\/s, ECDSA P-256 \(workers 0 0\.90x; target >= 0\.95x\)/);
});

test('bench verdicts: the target holds for every launcher: a miss through the bin alone is a miss', () => {
  const rows = buildRows(handshakes(
    [run('baseline', 'tls-echod bench', 1000, 0.99), run('workers-0', 'tls-echod bench', 980, 0.99), run('workers-0-bin', 'tls-echod bench', 900, 0.99)],
    [],
  ));
  assert.deepEqual(rows.map((r) => [r.id, r.pass, r.ratios['workers-0'], r.ratios['workers-0-bin']]), [['handshake-ecdsa', false, 0.98, 0.9]]);
  assert.match(
    renderSummary(rows, handshakes([], []), MACHINE, parseSettings([]), [], 1),
    /Missed by --workers 0: Full handshakes\/s, ECDSA P-256 \(workers 0 0\.98x, workers 0, bin 0\.90x; target >= 0\.95x\)/,
  );
});

test('bench floor: no floor section when the floor did not run', () => {
  const rows = buildRows(handshakes([run('baseline', 'tls-echod bench', 2000, 0.99), run('workers-0', 'tls-echod bench', 1940, 0.99)], []));
  assert.doesNotMatch(renderSummary(rows, handshakes([], []), MACHINE, parseSettings([]), [], 1), /Floor/);
});

test('bench: rounds go back and forth over the servers, so a steady drift favours none of them', () => {
  const kinds = ['baseline', 'workers-0', 'floor'] as const;
  assert.deepEqual(roundOrder(kinds, 1), ['baseline', 'workers-0', 'floor']);
  assert.deepEqual(roundOrder(kinds, 2), ['floor', 'workers-0', 'baseline']);
  assert.deepEqual(roundOrder(kinds, 3), ['baseline', 'workers-0', 'floor']);
  assert.deepEqual(kinds, ['baseline', 'workers-0', 'floor'], 'the list given is left as it was');
});
