// The network fuzzer (scripts/soak/net-fuzz.ts) against the real CLI with --proxy-protocol and
// --scenarios, short timeouts, while a control client echoes through its own session: the
// daemon must survive, end every fuzz connection within the bound its timeouts give, leave the
// control alone, log no error, and get back to no sessions and nothing pending.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { DEFAULT_SOURCES, startNetFuzz, type NetFuzzTarget } from '../../scripts/soak/net-fuzz';
import { validProxyHeader } from '../../scripts/soak/net-fuzz-bytes';
import { Prng } from '../../scripts/soak/prng';
import { parseProxyHeader } from '../../src/proxy/proxy-header';
import { roundTrip, spawnDaemon, tempDir, type CliDaemon } from '../helpers/daemon';
import { sample } from '../helpers/metrics';

const HANDSHAKE_TIMEOUT_MS = 1500;
const IDLE_TIMEOUT_MS = 1000;
/**
 * After the fuzzer goes quiet: the PROXY header's read and the handshake each get
 * --handshake-timeout, a session --idle-timeout (checked a little late), and the machine is shared.
 */
const LIFETIME_BOUND_MS = 2 * HANDSHAKE_TIMEOUT_MS + IDLE_TIMEOUT_MS + 1500;
const FUZZ_MS = 10_000;
const CONTROL_EVERY_MS = 100;

interface ControlClient {
  echoes: number;
  failures: string[];
  stop(): Promise<void>;
}

/** A plain session from the trusted proxy (v1 header for its own client) echoing a fresh payload every 100 ms. */
async function startControl(t: TestContext, port: number, ca: Buffer): Promise<ControlClient> {
  const raw = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1', noDelay: true });
  t.after(() => raw.destroy());
  raw.write(`PROXY TCP4 192.0.2.250 127.0.0.1 40001 ${port}\r\n`);
  const secure = tls.connect({ socket: raw, ca, servername: 'localhost' });
  t.after(() => secure.destroy());
  await once(secure, 'secureConnect');
  const control: ControlClient = { echoes: 0, failures: [], stop: async () => {} };
  secure.on('error', (err) => control.failures.push(`error: ${err.message}`));
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const payload = Buffer.from(`control ${i} ${'x'.repeat(i % 500)}`);
      try {
        const echoed = await roundTrip(secure, payload);
        if (echoed.equals(payload)) control.echoes++;
        else control.failures.push(`echo ${i} differed`);
      } catch (err) {
        control.failures.push(`echo ${i}: ${(err as Error).message}`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, CONTROL_EVERY_MS));
    }
  })();
  control.stop = async () => {
    running = false;
    await loop;
    secure.end();
    await once(secure, 'close');
  };
  return control;
}

async function metrics(admin: string): Promise<string> {
  const response = await fetch(`http://${admin}/metrics`);
  return response.text();
}

/** Polls /metrics until the gauges read 0 (resolving with the last values) or `ms` pass. */
async function gaugesSettle(admin: string, ms: number): Promise<{ active: number; pending: number }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const body = await metrics(admin);
    const active = sample(body, 'tls_echod_sessions_active') ?? NaN;
    const pending = sample(body, 'tls_echod_connections_pending') ?? NaN;
    if ((active === 0 && pending === 0) || Date.now() > deadline) return { active, pending };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function errorLines(d: CliDaemon): string[] {
  return d.lines.filter((l) => l.level === 'error' || /uncaught/i.test(JSON.stringify(l))).map((l) => JSON.stringify(l).slice(0, 300));
}

test('net-fuzz: the headers it sends as valid are valid to the daemon, and name the client it chose', () => {
  const rng = new Prng(17);
  const server = { address: '127.0.0.1', port: 4433 };
  for (let i = 0; i < 500; i++) {
    const client = { address: rng.pick(DEFAULT_SOURCES), port: rng.int(1024, 65535) };
    const header = validProxyHeader(rng, client, server);
    const parsed = parseProxyHeader(header);
    assert.equal(parsed.kind, 'header', `${header.toString('hex')}: ${JSON.stringify(parsed)}`);
    if (parsed.kind !== 'header') continue;
    assert.equal(parsed.headerLength, header.length);
    // UNKNOWN and LOCAL name no client: the connection's own peer is the client then.
    if (parsed.client !== undefined) assert.deepEqual(parsed.client, client);
  }
});

test('net-fuzz: the daemon ends every hostile connection in time, keeps the control echoing, and settles to zero', { timeout: 40_000 }, async (t) => {
  const dir = tempDir(t);
  const d = await spawnDaemon(t, [
    // Workers: the supervisor reads the header and hands the socket, and what it read past the header, to another process.
    '--workers', '2',
    '--cert-dir', dir,
    '--proxy-protocol', '--trusted-proxy', '127.0.0.1/32',
    '--scenarios', '127.0.0.1:0',
    '--scenario-delay', '200',
    '--admin', '127.0.0.1:0',
    '--handshake-timeout', String(HANDSHAKE_TIMEOUT_MS),
    '--idle-timeout', String(IDLE_TIMEOUT_MS),
    // The fuzzer's load is not what is under test here: no client of it may be refused for rate.
    '--conn-rate', '100000', '--conn-burst', '100000',
  ]);
  const listening = d.lines.find((l) => l.message === 'listening')!;
  const scenarios = String(listening.scenarios);
  const admin = String(listening.admin);
  const ca = readFileSync(path.join(dir, 'ca.pem'));
  const target: NetFuzzTarget = {
    host: '127.0.0.1',
    port: d.port,
    trustedSource: '127.0.0.1',
    untrustedSources: ['127.0.0.2', '127.0.0.3'],
    scenarioPort: Number(scenarios.slice(scenarios.lastIndexOf(':') + 1)),
    scenarioDomain: 'localhost',
    ca,
    lifetimeBoundMs: LIFETIME_BOUND_MS,
  };

  const control = await startControl(t, d.port, ca);
  const run = startNetFuzz(target, { concurrency: 20, seed: 17 });
  await new Promise((resolve) => setTimeout(resolve, FUZZ_MS));
  const stats = await run.stop();
  await control.stop();
  const settled = await gaugesSettle(admin, 3000);
  t.diagnostic(`net-fuzz: ${stats.started} connections in ${stats.elapsedMs} ms (stop included); control echoed ${control.echoes} times`);
  for (const [name, c] of Object.entries(stats.byCase)) t.diagnostic(`  ${name}: ${JSON.stringify(c)}`);

  assert.equal(d.child.exitCode, null, 'the daemon is still running');
  assert.ok(stats.hellosCaptured > 0, 'ClientHellos were captured to mutate');
  assert.ok(stats.started >= 100, `enough connections were made (${stats.started})`);
  assert.equal(stats.open, 0);
  assert.equal(stats.ended, stats.started);
  assert.deepEqual(stats.overdueExamples, [], 'no connection outlived its bound');
  assert.equal(stats.overdue, 0);
  assert.deepEqual(stats.anomalyExamples, [], 'no anomaly');
  for (const [name, c] of Object.entries(stats.byCase)) assert.ok(c.started > 0, `case ${name} ran`);
  assert.ok(stats.byCase['records-after-handshake']!.echoed > 0, 'real sessions echoed');
  assert.equal(stats.byCase.untrusted!.reset, stats.byCase.untrusted!.started, 'every untrusted connection was reset');
  assert.deepEqual(control.failures, [], 'the control client was not disturbed');
  assert.ok(control.echoes > FUZZ_MS / CONTROL_EVERY_MS / 2, `the control kept echoing (${control.echoes})`);
  assert.deepEqual(errorLines(d), [], 'no error or uncaught line in the log');
  assert.doesNotMatch(d.stderr(), /uncaught|error/i, 'nothing on stderr');
  assert.deepEqual(settled, { active: 0, pending: 0 }, 'sessions and pending connections back to 0');
});
