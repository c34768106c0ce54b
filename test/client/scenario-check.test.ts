// `tls-echod check --scenarios`: the daemon's client against every scenario of a scenario
// listener in this process (a short --scenario-delay), the close it waits for after an echo, and
// the CLI's flags, output and exit codes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { runCheck } from '../../src/client/check';
import { SCENARIOS } from '../../src/scenarios/catalogue';
import { UNKNOWN_SCENARIO, runScenarioCheck, type ScenarioCheckReport } from '../../src/client/scenario-check';
import { formatScenarioReport } from '../../src/client/scenario-check-report';
import { issueClient } from '../helpers/client-certs';
import { runCli } from '../helpers/daemon';
import { startEchoServer } from '../helpers/echo-servers';
import { startScenarioListener } from '../helpers/scenario-listener';

const DELAY_MS = 300;

function notOk(report: ScenarioCheckReport): string[] {
  return report.scenarios.filter((r) => !r.ok).map((r) => r.name);
}

function explain(report: ScenarioCheckReport): string {
  return formatScenarioReport(report);
}

test('scenario-check: every scenario as expected, client-cert-required both ways with --cert', async (t) => {
  const s = await startScenarioListener(t, { delayMs: DELAY_MS });
  const alice = await issueClient(s.certDir, 'alice');
  const began = performance.now();
  const report = await runScenarioCheck({
    host: '127.0.0.1',
    port: s.port,
    ca: s.caPem,
    delayMs: DELAY_MS,
    clientCert: { cert: alice.cert, key: alice.key, name: 'CN=alice' },
  });
  const tookMs = performance.now() - began;
  assert.deepEqual(notOk(report), [], explain(report));
  assert.equal(report.ok, true);
  const names = SCENARIOS.map((sc) => sc.name);
  names.splice(names.indexOf('client-cert-required') + 1, 0, 'client-cert-required (with --cert)');
  assert.deepEqual(report.scenarios.map((r) => r.name), [...names, UNKNOWN_SCENARIO], 'catalogue order, then the unknown name');
  const row = (name: string): string => report.scenarios.find((r) => r.name === name)!.observed;
  assert.equal(row('expired'), 'refused: CERT_HAS_EXPIRED');
  assert.match(row('client-cert-required'), /alert certificate_required/);
  assert.match(row('client-cert-required (with --cert)'), /^echo .*certificate requested, CN=alice sent$/);
  assert.match(row(UNKNOWN_SCENARIO), /alert unrecognized_name/);
  // Four at a time, the slow ones first: the silent ones' 1000 ms wait bounds the run.
  assert.ok(tookMs < 4000, `took ${Math.round(tookMs)} ms`);
});

test('scenario-check: without --cert, client-cert-required is checked for its refusal only', async (t) => {
  const s = await startScenarioListener(t, { delayMs: DELAY_MS });
  const report = await runScenarioCheck({ host: '127.0.0.1', port: s.port, ca: s.caPem, delayMs: DELAY_MS });
  assert.deepEqual(notOk(report), [], explain(report));
  assert.equal(report.scenarios.length, SCENARIOS.length + 1);
  assert.ok(!report.scenarios.some((r) => r.name.includes('with --cert')));
});

test('scenario-check: a scenario that serves the wrong thing is reported, with what was seen', async (t) => {
  // tls1.0 served with tls1.2-only's settings: a default client connects and gets its echo.
  const s = await startScenarioListener(t, { delayMs: DELAY_MS, editTls: (tls) => tls.set('tls1.0', tls.get('tls1.2-only')!) });
  const report = await runScenarioCheck({ host: '127.0.0.1', port: s.port, ca: s.caPem, delayMs: DELAY_MS });
  assert.equal(report.ok, false);
  assert.deepEqual(notOk(report), ['tls1.0'], explain(report));
  const row = report.scenarios.find((r) => r.name === 'tls1.0')!;
  assert.equal(row.expected, 'alert protocol_version (ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION)');
  assert.match(row.observed, /^echo over TLSv1\.2 /);
  const text = formatScenarioReport(report);
  assert.match(text, /^tls1\.0 +alert protocol_version \(\S+\) +echo over TLSv1\.2 \S+, handshake \d+ ms, round trip \d+ ms +NO$/m);
  assert.match(text, /\nFAILED: 1 of 30 scenarios not as expected: tls1\.0 \(/);
});

test('scenario-check: a --scenario-delay other than the daemon\'s fails the timed scenarios only', async (t) => {
  const s = await startScenarioListener(t, { delayMs: 50 });
  const report = await runScenarioCheck({ host: '127.0.0.1', port: s.port, ca: s.caPem, delayMs: 400 });
  assert.deepEqual(notOk(report), ['slow-echo', 'slow-handshake'], explain(report));
});

test('check awaitServerClose: the echo, then how the server ended it; still open at the deadline is reported as open', async (t) => {
  const s = await startScenarioListener(t);
  const ca = s.caPem;
  const noCloseNotify = await runCheck({ host: '127.0.0.1', port: s.port, ca, servername: 'no-close-notify.localhost', bytes: 64, awaitServerClose: true });
  assert.equal(noCloseNotify.ok, true, noCloseNotify.error ?? '');
  assert.equal(noCloseNotify.serverClose, 'end');
  const plain = await startEchoServer();
  t.after(() => plain.close());
  const began = performance.now();
  const open = await runCheck({ host: '127.0.0.1', port: plain.port, ca: readFileSync(plain.caPem), bytes: 64, timeoutMs: 300, awaitServerClose: true });
  assert.equal(open.ok, true, open.error ?? '');
  assert.equal(open.bytesEchoed, 64);
  assert.equal(open.serverClose, 'open');
  assert.ok(performance.now() - began >= 300, 'waited for the deadline');
  const plainCheck = await runCheck({ host: '127.0.0.1', port: plain.port, ca: readFileSync(plain.caPem), bytes: 64 });
  assert.equal('serverClose' in plainCheck, false, 'a plain check has no serverClose');
});

test('check --scenarios: the table and exit 0; --json; exit 1 with the failures on stderr', async (t) => {
  const s = await startScenarioListener(t, { delayMs: DELAY_MS });
  const target = `127.0.0.1:${s.port}`;
  const text = await runCli(['check', target, '--scenarios', '--ca', s.caFile, '--scenario-delay', String(DELAY_MS)]);
  assert.equal(text.code, 0, text.stdout + text.stderr);
  const lines = text.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^scenario +expected +observed +match$/);
  assert.match(lines[1]!, /^valid +echo +echo over TLSv1\.3 \S+ +yes$/);
  assert.equal(lines.length, 1 + SCENARIOS.length + 1 + 1, 'header, one row each, the unknown name, the verdict');
  assert.equal(lines.at(-1), `ok: all ${SCENARIOS.length + 1} as expected`);

  const json = await runCli(['check', target, '--scenarios', '--ca', s.caFile, '--scenario-delay', String(DELAY_MS), '--json']);
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as ScenarioCheckReport;
  assert.equal(parsed.ok, true);
  assert.deepEqual(Object.keys(parsed.scenarios[0]!), ['name', 'expected', 'observed', 'ok']);
  assert.equal(parsed.scenarios.length, SCENARIOS.length + 1);

  // client-cert-required that only asks: it echoes without a certificate.
  const broken = await startScenarioListener(t, { delayMs: DELAY_MS, editTls: (tls) => tls.set('client-cert-required', tls.get('client-cert-requested')!) });
  const failed = await runCli(['check', `127.0.0.1:${broken.port}`, '--scenarios', '--ca', broken.caFile, '--scenario-delay', String(DELAY_MS), '--json']);
  assert.equal(failed.code, 1);
  assert.equal((JSON.parse(failed.stdout) as ScenarioCheckReport).ok, false);
  assert.match(failed.stderr, /^tls-echod: 1 of 30 scenarios not as expected: client-cert-required \(/m);
});

test('check --scenarios: flag errors are listed together, exit 2', async () => {
  const bad = await runCli(['check', '127.0.0.1:1', '--scenarios', '--bytes', '0', '--tls', '1.2', '--servername', 'x.test', '--scenario-delay', '-5', '--scenario-domain', 'no_such..domain']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid configuration \(6 problems\)/);
  assert.match(bad.stderr, /--scenario-delay: must be a whole number/);
  assert.match(bad.stderr, /--scenario-domain: must be a DNS name/);
  assert.match(bad.stderr, /--bytes: not with --scenarios/);
  assert.match(bad.stderr, /--tls: not with --scenarios/);
  assert.match(bad.stderr, /--servername: not with --scenarios/);
  assert.match(bad.stderr, /--scenarios needs --ca/);

  const tooLong = await runCli(['check', '127.0.0.1:1', '--scenarios', '--ca', '/no/such/ca.pem', '--scenario-delay', '600001']);
  assert.equal(tooLong.code, 2);
  assert.match(tooLong.stderr, /--scenario-delay: must be between 0 and 600000/);
  assert.match(tooLong.stderr, /--ca \/no\/such\/ca.pem: no such file/);

  const alone = await runCli(['check', '127.0.0.1:1', '--scenario-delay', '100', '--scenario-domain', 'test.example']);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--scenario-domain: only with --scenarios/);
  assert.match(alone.stderr, /--scenario-delay: only with --scenarios/);
});
