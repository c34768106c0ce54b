// The README is the user's manual: it must name every option with its default and env var,
// every close and refusal reason, and the commands the project promises.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { envName, jsonKey, OPTIONS } from '../src/config';

const README = readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');

test('readme: every serve option appears with its env var, config key and default', () => {
  for (const opt of OPTIONS) {
    const row = README.split('\n').find((line) => line.startsWith(`| \`--${opt.flag} `));
    assert.ok(row, `no table row for --${opt.flag}`);
    assert.ok(row.includes(`\`${envName(opt.flag)}\``), `--${opt.flag}: env name`);
    assert.ok(row.includes(`\`${jsonKey(opt.flag)}\``), `--${opt.flag}: config key`);
    assert.ok(row.includes(`| ${opt.defaultText} |`), `--${opt.flag}: default ${opt.defaultText}`);
  }
});

test('readme: the two commands, the test command, and every reason are documented', () => {
  for (const text of ['npm install && npm start', 'npm install && npm test', 'openssl s_client -connect 127.0.0.1:4433 -CAfile certs/ca.pem -verify_return_error -quiet']) {
    assert.ok(README.includes(text), text);
  }
  for (const reason of ['peer-closed', 'idle-timeout', 'session-timeout', 'handshake-timeout', 'handshake-failed', 'byte-limit', 'error', 'shutdown', 'denied', 'rate-limited', 'ip-limit', 'pool-full', 'pending-timeout']) {
    assert.ok(README.includes(`\`${reason}\``), reason);
  }
});

test('readme: every metric the daemon exports is listed (metric names are public API)', async () => {
  const { Metrics } = await import('../src/metrics');
  const metrics = new Metrics({ sessionsActive: () => 0, connectionsPending: () => 0, workersReady: () => 0, version: 'test' });
  metrics.setCertificateNotAfter('leaf', new Date());
  const { body } = await metrics.render();
  const names = new Set([...body.matchAll(/^# TYPE (tls_echod_\w+)/gm)].map((m) => m[1]!));
  assert.ok(names.size >= 10, `found ${names.size}`);
  for (const name of names) assert.ok(README.includes(`\`${name}\``), `${name} missing from the README`);
});
