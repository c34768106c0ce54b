// The README and docs/ are the user's manual. These tests hold each page to the code it
// describes: every serve option with its env var, config key and default
// (docs/configuration.md, and the README's short table), every refusal, handshake-failure and
// close reason (docs/limits.md, docs/metrics.md), every exported metric (docs/metrics.md) and
// the commands the README promises.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { envName, jsonKey, OPTIONS } from '../src/config';
import { CLOSE_REASONS, HANDSHAKE_FAILURE_REASONS, Metrics, OTHER_REASON, REFUSE_REASONS } from '../src/metrics';

const ROOT = path.join(__dirname, '..', '..');
const read = (rel: string): string => readFileSync(path.join(ROOT, rel), 'utf8');

const README = read('README.md');
const doc = (page: string): string => read(path.join('docs', page));

/** Table rows that document an option, keyed by the flag: lines starting with "| `--flag". */
function optionRows(text: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\| `--([a-z0-9-]+)[ `]/.exec(line);
    if (m) rows.set(m[1]!, line);
  }
  return rows;
}

test('docs/configuration.md: every serve option appears with its env var, config key and default', () => {
  const rows = optionRows(doc('configuration.md'));
  for (const opt of OPTIONS) {
    const row = rows.get(opt.flag);
    assert.ok(row, `no table row for --${opt.flag}`);
    assert.ok(row.includes(`\`${envName(opt.flag)}\``), `--${opt.flag}: env name`);
    assert.ok(row.includes(`\`${jsonKey(opt.flag)}\``), `--${opt.flag}: config key`);
    assert.ok(row.includes(`| ${opt.defaultText} |`), `--${opt.flag}: default ${opt.defaultText}`);
  }
});

test('README: the options it lists exist, with their env var and default', () => {
  const rows = optionRows(README);
  assert.ok(rows.size >= 8, `the README lists ${rows.size} options`);
  for (const [flag, row] of rows) {
    const opt = OPTIONS.find((o) => o.flag === flag);
    assert.ok(opt, `the README lists --${flag}, which serve doesn't have`);
    assert.ok(row.includes(`\`${envName(flag)}\``), `--${flag}: env name`);
    assert.ok(row.includes(`| ${opt.defaultText} |`), `--${flag}: default ${opt.defaultText}`);
  }
});

test('README: the two commands and the openssl line', () => {
  for (const text of ['npm install && npm start', 'npm install && npm test', 'openssl s_client -connect 127.0.0.1:4433 -CAfile certs/ca.pem -verify_return_error -quiet']) {
    assert.ok(README.includes(text), text);
  }
});

test('docs/limits.md and docs/metrics.md: every refusal, handshake-failure and close reason', () => {
  const reasons = new Set<string>([...REFUSE_REASONS, ...HANDSHAKE_FAILURE_REASONS, ...CLOSE_REASONS]);
  assert.ok(reasons.size >= 13, `found ${reasons.size} reasons`);
  const limits = doc('limits.md');
  const metrics = doc('metrics.md');
  for (const reason of reasons) {
    assert.ok(limits.includes(`| \`${reason}\` |`), `${reason}: no table row in docs/limits.md`);
    assert.ok(metrics.includes(`\`${reason}\``), `${reason}: not among the label values in docs/metrics.md`);
  }
  assert.ok(metrics.includes(`\`${OTHER_REASON}\``), `${OTHER_REASON}: not in docs/metrics.md`);
});

test('docs/metrics.md: every metric the daemon exports is listed (metric names are public API)', async () => {
  const metrics = new Metrics({ sessionsActive: () => 0, connectionsPending: () => 0, workersReady: () => 0, version: 'test' });
  metrics.setCertificateNotAfter('leaf', new Date());
  const { body } = await metrics.render();
  const names = new Set([...body.matchAll(/^# TYPE (\w+)/gm)].map((m) => m[1]!));
  const ours = [...names].filter((n) => n.startsWith('tls_echod_'));
  assert.ok(ours.length >= 10, `found ${ours.length} tls_echod_ metrics`);
  const page = doc('metrics.md');
  for (const name of names) assert.ok(page.includes(`\`${name}\``), `${name} missing from docs/metrics.md`);
});
