// The benchmark's verdicts (scripts/bench/report.ts), from made-up run records: a throughput
// target is judged on a run that saturated the server, and a summary never claims a pass it
// did not measure. No timing here: the records are data.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildRows, type ScenarioResults } from '../scripts/bench/report';
import type { RunRecord } from '../scripts/bench/runs';
import type { ServerKind } from '../scripts/bench/settings';

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
