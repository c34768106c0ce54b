// The benchmark's verdicts (scripts/bench/report.ts), from made-up run records: a throughput
// target is judged on a run that saturated the server, and a summary never claims a pass it
// did not measure. No timing here: the records are data.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Machine } from '../scripts/bench/machine';
import { buildRows, renderSummary, type ScenarioResults } from '../scripts/bench/report';
import { roundOrder, type RunRecord } from '../scripts/bench/runs';
import { parseSettings, type ScenarioName, type ServerKind } from '../scripts/bench/settings';
import { haproxyConfig } from '../scripts/bench/sidecars';

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

/** A run of --workers 0 with a scale-out option, its sidecar using `sidecarCpu` of the core. */
function optionRun(server: ServerKind, opsPerCoreSec: number, serverCpu: number, sidecarCpu: number): RunRecord {
  return { ...run(server, 'tls-echod bench', opsPerCoreSec, serverCpu), sidecarCpu };
}

function scenarios(entries: Array<[ScenarioName, RunRecord[]]>): ScenarioResults {
  return { throughput: new Map(entries.map(([name, runs]) => [name, { runs, crossCheck: [], workers: {} }])), idle: [] };
}

test('bench scale-out rows: HAProxy and --redis are reported as ratios to the daemon without them, never judged', () => {
  const results = scenarios([
    ['handshake-ecdsa', [run('baseline', 'tls-echod bench', 2000, 0.99), run('workers-0', 'tls-echod bench', 1980, 0.99)]],
    ['handshake-haproxy', [run('workers-0', 'tls-echod bench', 2000, 0.65), optionRun('workers-0-haproxy', 1500, 0.95, 0.3)]],
    ['handshake-redis', [run('workers-0', 'tls-echod bench', 2000, 0.65), optionRun('workers-0-redis', 1800, 0.8, 0.1)]],
  ]);
  const rows = buildRows(results);
  assert.deepEqual(
    rows.map((r) => [r.id, r.pass, r.verdict, r.option, r.ratios, r.sidecarCpu]),
    [
      ['handshake-ecdsa', true, undefined, undefined, { 'workers-0': 0.99 }, undefined],
      ['handshake-haproxy', undefined, 'reported', 'workers-0-haproxy', { 'workers-0-haproxy': 0.75 }, 0.3],
      ['handshake-redis', undefined, 'reported', 'workers-0-redis', { 'workers-0-redis': 0.9 }, 0.1],
    ],
  );
  const summary = renderSummary(rows, results, MACHINE, parseSettings([]), [], 1);
  const lines = summary.split('\n');
  // The main table: no baseline, the daemon with the option and its ratio, no target.
  const haproxy = lines.find((l) => l.startsWith('| Full handshakes/s, ECDSA, via HAProxy, vs direct'));
  assert.ok(haproxy, summary);
  assert.deepEqual(haproxy.split('|').slice(2, -1).map((c) => c.trim()), ['/core-s', '-', '1,500', '0.750x', '-', '-', '-', '-', 'none', 'reported']);
  const redis = lines.find((l) => l.startsWith('| Full handshakes/s, ECDSA, --redis, vs without'));
  assert.ok(redis, summary);
  assert.deepEqual(redis.split('|').slice(2, -1).map((c) => c.trim()), ['/core-s', '-', '1,800', '0.900x', '-', '-', '-', '-', 'none', 'reported']);
  // Both figures and the sidecar's share, in their own section.
  const at = lines.indexOf('Scale-out options (--workers 0 with the option against itself without it, same scenario; reported, no target):');
  assert.ok(at > 0, summary);
  assert.equal(lines[at + 1], '  Full handshakes/s, ECDSA, via HAProxy, vs direct: without 2,000 /core-s, with 1,500 /core-s (0.750x); HAProxy used 30% of a core, counted in the server CPU');
  assert.equal(lines[at + 2], '  Full handshakes/s, ECDSA, --redis, vs without: without 2,000 /core-s, with 1,800 /core-s (0.900x); redis-server used 10% of a core, counted in the server CPU');
  // Only the ECDSA row was judged.
  assert.match(summary, /All 1 judged targets met by --workers 0\./);
});

test('bench scale-out rows: absent, with no section, when their scenarios did not run', () => {
  const rows = buildRows(handshakes([run('baseline', 'tls-echod bench', 2000, 0.99), run('workers-0', 'tls-echod bench', 1980, 0.99)], []));
  assert.deepEqual(rows.map((r) => r.option), [undefined]);
  const summary = renderSummary(rows, handshakes([], []), MACHINE, parseSettings([]), [], 1);
  assert.doesNotMatch(summary, /Scale-out options|"vs" rows/);
});

test('bench scale-out rows: the direct run missing leaves the ratio out rather than inventing one', () => {
  const rows = buildRows(scenarios([['handshake-redis', [optionRun('workers-0-redis', 1800, 0.8, 0.1)]]]));
  assert.deepEqual(rows.map((r) => [r.id, r.values, r.ratios, r.pass]), [['handshake-redis', { 'workers-0-redis': 1800 }, {}, undefined]]);
  assert.match(renderSummary(rows, scenarios([]), MACHINE, parseSettings([]), [], 1), /No target was judged/);
});

test('bench: --only takes the scale-out scenarios by name', () => {
  assert.deepEqual(parseSettings(['--only', 'handshake-haproxy,handshake-redis']).only, ['handshake-haproxy', 'handshake-redis']);
});

test('bench HAProxy config: mode tcp, one thread, PROXY v2 to the daemon, from its own frontend port', () => {
  const lines = haproxyConfig(40001, 40002).split('\n').map((l) => l.trim());
  for (const line of ['mode tcp', 'nbthread 1', 'bind 127.0.0.1:40001', 'server s1 127.0.0.1:40002 send-proxy-v2']) {
    assert.ok(lines.includes(line), `${line} in ${lines.join(' / ')}`);
  }
});
