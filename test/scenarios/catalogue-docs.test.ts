// One catalogue, three readers: the table in docs/testing-clients.md, `tls-echod scenarios`
// (text and --json, from the real CLI) and SCENARIOS list the same scenarios in the same order, and
// --scenario-domain changes the server names or is refused with exit 2.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { SCENARIOS, scenarioCatalogue, scenarioDomainProblem } from '../../src/scenarios/catalogue';
import { runCli } from '../helpers/daemon';

const PAGE = path.join(__dirname, '..', '..', '..', 'docs', 'testing-clients.md');

/** The catalogue table's rows: lines starting "| `name` |", as [name, category, server does, client sees], backticks dropped. */
function docsRows(): string[][] {
  const rows: string[][] = [];
  for (const line of readFileSync(PAGE, 'utf8').split('\n')) {
    if (!/^\| `[a-z0-9.-]+` \| /.test(line)) continue;
    rows.push(line.slice(1, -1).split(' | ').map((cell) => cell.trim().replace(/`/g, '')));
  }
  return rows;
}

test('scenarios-docs: the docs table, SCENARIOS and `scenarios --json` are one list, in one order', async () => {
  const names = SCENARIOS.map((s) => s.name);
  assert.deepEqual(
    docsRows(),
    SCENARIOS.map((s) => [s.name, s.category, s.serverDoes, s.clientSees].map((text) => text.replace(/`/g, ''))),
    'docs/testing-clients.md: one row per scenario, in catalogue order, with its category and both descriptions',
  );

  const { code, stdout, stderr } = await runCli(['scenarios', '--json']);
  assert.equal(code, 0, stderr);
  const printed = JSON.parse(stdout) as Array<Record<string, unknown>>;
  assert.deepEqual(printed.map((e) => e.name), names);
  assert.deepEqual(printed, scenarioCatalogue('localhost'));
  for (const entry of printed) {
    assert.deepEqual(Object.keys(entry), ['name', 'serverName', 'category', 'serverDoes', 'clientSees']);
    assert.equal(entry.serverName, `${String(entry.name)}.localhost`);
  }
});

test('scenarios-text: the table lists every scenario with its server name and both descriptions', async () => {
  const { code, stdout, stderr } = await runCli(['scenarios']);
  assert.equal(code, 0, stderr);
  const lines = stdout.split('\n');
  for (const s of SCENARIOS) {
    // Not a terminal: no wrapping, so each scenario is one line.
    const row = lines.find((l) => l.trimStart().startsWith(`${s.name} `));
    assert.ok(row, `no row for ${s.name}`);
    for (const part of [`${s.name}.localhost`, s.serverDoes, s.clientSees]) assert.ok(row.includes(part), `${s.name}: ${part}`);
  }
  let at = -1;
  for (const s of SCENARIOS) {
    const next = lines.findIndex((l) => l.trimStart().startsWith(`${s.name} `));
    assert.ok(next > at, `${s.name} comes after the scenario before it`);
    at = next;
  }
});

test('scenarios-domain: --scenario-domain (or its env var) names the servers; a bad one exits 2 saying why and what to give', async () => {
  const flag = await runCli(['scenarios', '--json', '--scenario-domain', 'example.test']);
  assert.equal(flag.code, 0, flag.stderr);
  const entries = JSON.parse(flag.stdout) as Array<{ name: string; serverName: string }>;
  assert.equal(entries.find((e) => e.name === 'expired')?.serverName, 'expired.example.test');
  assert.ok(entries.every((e) => e.serverName === `${e.name}.example.test`));

  const env = await runCli(['scenarios', '--json'], { TLS_ECHOD_SCENARIO_DOMAIN: 'env.test' });
  assert.equal(env.code, 0, env.stderr);
  assert.equal((JSON.parse(env.stdout) as Array<{ serverName: string }>)[0]!.serverName, 'valid.env.test');

  const text = await runCli(['scenarios', '--scenario-domain', 'example.test']);
  assert.match(text.stdout, /expired\.example\.test/);

  for (const bad of ['not a name', 'under_score.test', '127.0.0.1', 'trailing.', '-dash.test', '']) {
    const r = await runCli(['scenarios', '--scenario-domain', bad]);
    assert.equal(r.code, 2, `${JSON.stringify(bad)}: ${r.stderr}`);
    assert.equal(r.stdout, '', bad);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one message: ${r.stderr}`);
    assert.match(lines[0]!, /^tls-echod: invalid configuration: --scenario-domain: /);
    assert.match(lines[0]!, /\((give|leave)/, `the message says what to do: ${lines[0]}`);
  }
  const envBad = await runCli(['scenarios'], { TLS_ECHOD_SCENARIO_DOMAIN: 'a..b' });
  assert.equal(envBad.code, 2);
  assert.match(envBad.stderr, /TLS_ECHOD_SCENARIO_DOMAIN: "a\.\.b" is not a DNS name/);
});

test('scenarios-domain: DNS names pass; IPs, bad labels and names too long for every scenario do not', () => {
  for (const ok of ['localhost', 'example.test', 'A-1.b2', 'x'.repeat(63), `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.d`]) {
    assert.equal(scenarioDomainProblem(ok), undefined, ok.slice(0, 40));
  }
  assert.match(scenarioDomainProblem('::1')!, /IP address/);
  assert.match(scenarioDomainProblem('x'.repeat(64))!, /not a DNS name/);
  assert.match(scenarioDomainProblem('a.-b')!, /label "-b"/);
  assert.match(scenarioDomainProblem('*.test')!, /label "\*"/);
  // 240 characters of domain fit alone but not under "client-cert-requested.".
  const long = Array.from({ length: 4 }, () => 'd'.repeat(59)).join('.');
  assert.match(scenarioDomainProblem(long)!, /too long: scenario server names would reach 261 characters/);
});
