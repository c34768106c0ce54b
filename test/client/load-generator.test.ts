// The load generator: each mode against a real echo server on 127.0.0.1 port 0 (short runs, no
// timing assertions), mismatch counting against a corrupting server, multi-process merging,
// the histogram's precision and merging, and the bench CLI's exit codes.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ConfigError } from '../../src/errors';
import { benchOptionsFromFlags } from '../../src/commands/bench';
import { LatencyHistogram } from '../../src/client/latency-histogram';
import { runLoad, type LoadMode, type LoadResult } from '../../src/client/load-generator';
import { loadOptionProblems } from '../../src/client/load-options';
import { startCorruptingEchoServer, startEchoServer, type EchoServer } from '../helpers/echo-servers';

const CLI = path.join(__dirname, '..', '..', 'src', 'cli.js');

async function echoServer(t: TestContext): Promise<EchoServer> {
  const server = await startEchoServer();
  t.after(() => server.close());
  return server;
}

function assertClean(r: LoadResult): void {
  assert.equal(r.errors, 0, `errors: ${JSON.stringify(r.errorKinds)} first: ${String(r.firstError)}`);
  assert.equal(r.mismatches, 0);
  assert.ok(r.ops > 0, 'some operations completed');
  assert.equal(r.latencyMs.count, r.ops, 'one latency sample per measured operation');
  assert.ok(r.latencyMs.p50 <= r.latencyMs.p90 && r.latencyMs.p90 <= r.latencyMs.p99 && r.latencyMs.p99 <= r.latencyMs.max);
}

test('histogram-precision: percentiles of 1..10000 µs are within one bucket', () => {
  const h = new LatencyHistogram();
  for (let v = 1; v <= 10_000; v++) h.record(v);
  assert.equal(h.count, 10_000);
  assert.equal(h.min, 1);
  assert.equal(h.max, 10_000);
  assert.equal(h.mean, 5000.5);
  for (const [p, exact] of [
    [50, 5000],
    [90, 9000],
    [99, 9900],
    [99.9, 9990],
  ] as const) {
    const v = h.valueAtPercentile(p);
    // A bucket spans at most 1/128 of its value, and a percentile reports the bucket's top.
    assert.ok(v >= exact && v <= exact * (1 + 1 / 128), `p${p} = ${v}, exact ${exact}`);
  }
  assert.equal(h.valueAtPercentile(100), 10_000);
});

test('histogram-exact-small: values under 256 µs are exact; out-of-range values are clamped', () => {
  const h = new LatencyHistogram();
  for (const v of [3, 1, 2, 200, 255]) h.record(v);
  assert.equal(h.valueAtPercentile(0), 1);
  assert.equal(h.valueAtPercentile(50), 3);
  assert.equal(h.valueAtPercentile(80), 200);
  assert.equal(h.valueAtPercentile(100), 255);
  h.record(-5);
  h.record(1e12);
  assert.equal(h.min, 0);
  assert.equal(h.max, 0x7fffffff);
  assert.equal(new LatencyHistogram().valueAtPercentile(50), 0, 'empty histogram');
});

test('histogram-merge: merging snapshots equals recording everything in one', () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  const all = new LatencyHistogram();
  for (let i = 0; i < 5000; i++) {
    const v = (i * 7919) % 100_000;
    (i % 2 === 0 ? a : b).record(v);
    all.record(v);
  }
  // Snapshots go through JSON between generator processes.
  const merged = LatencyHistogram.fromSnapshot(JSON.parse(JSON.stringify(a.snapshot())));
  merged.merge(JSON.parse(JSON.stringify(b.snapshot())));
  assert.deepEqual(merged.snapshot(), all.snapshot());
  for (const p of [50, 90, 99, 100]) assert.equal(merged.valueAtPercentile(p), all.valueAtPercentile(p));
});

for (const mode of ['handshake', 'pingpong', 'stream'] as LoadMode[]) {
  test(`load-${mode}: a clean run against a bare echo server`, async (t) => {
    const server = await echoServer(t);
    const r = await runLoad({
      host: '127.0.0.1',
      port: server.port,
      mode,
      connections: 4,
      durationMs: 1000,
      warmupMs: 0,
      sizeBytes: mode === 'stream' ? 4096 : 64,
      ca: readFileSync(server.caPem, 'utf8'),
    });
    assertClean(r);
    assert.equal(server.resumed(), 0, 'full handshakes unless --resume');
    assert.equal(r.mode, mode);
    assert.equal(r.connections, 4);
    assert.ok(r.bytes > 0 && r.mbPerSec > 0);
    assert.ok(r.durationSec > 0.9 && r.durationSec <= 1.01, `durationSec ${r.durationSec}`);
    assert.equal(r.established, null);
  });
}

test('load-idle: opens, reports ready through --ready-file, holds, and checks every connection', async (t) => {
  const server = await echoServer(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tls-echod-idle-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const readyFile = path.join(dir, 'ready');
  const r = await runLoad({ host: '127.0.0.1', port: server.port, mode: 'idle', connections: 20, rampPerSec: 1000, durationMs: 300, readyFile });
  assertClean(r);
  assert.equal(r.established, 20);
  assert.equal(r.stillAlive, 20);
  assert.equal(readFileSync(readyFile, 'utf8').trim(), '20');
  assert.equal(server.sessions(), 20);
});

test('load-resume: --resume offers tickets and still verifies every echo', async (t) => {
  const server = await echoServer(t);
  const r = await runLoad({ host: '127.0.0.1', port: server.port, mode: 'handshake', resume: true, connections: 2, durationMs: 500, warmupMs: 0 });
  assertClean(r);
  assert.ok(server.resumed() > 0, `${server.resumed()} of ${server.sessions()} sessions resumed`);
});

for (const mode of ['handshake', 'pingpong', 'stream', 'idle'] as LoadMode[]) {
  test(`load-mismatch-${mode}: a corrupted echo is counted as an error and a mismatch`, async (t) => {
    const server = await startCorruptingEchoServer({ corruptOffset: 3 });
    t.after(() => server.close());
    const r = await runLoad({ host: '127.0.0.1', port: server.port, mode, connections: 2, durationMs: 300, warmupMs: 0, sizeBytes: 64 });
    assert.ok(r.errors > 0, 'errors counted');
    assert.ok(r.mismatches > 0, 'mismatches counted');
    assert.ok((r.errorKinds.ECHO_MISMATCH ?? 0) > 0);
    assert.match(r.firstError ?? '', /echo mismatch at byte 3/);
  });
}

test('load-processes: --processes 2 forks two generators and merges their results', async (t) => {
  const server = await echoServer(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tls-echod-idle-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const progress: number[] = [];
  const r = await runLoad({
    host: '127.0.0.1',
    port: server.port,
    mode: 'pingpong',
    connections: 5,
    processes: 2,
    durationMs: 1500,
    warmupMs: 0,
    onProgress: (p) => progress.push(p.ops),
  });
  assertClean(r);
  assert.equal(r.processes, 2);
  assert.equal(r.connections, 5);
  assert.equal(server.sessions(), 5, 'the connections were split, not duplicated');
  assert.ok(progress.length >= 1 && progress.at(-1)! > 0, 'progress summed over the children');

  const readyFile = path.join(dir, 'ready');
  const idle = await runLoad({ host: '127.0.0.1', port: server.port, mode: 'idle', connections: 6, processes: 3, durationMs: 200, readyFile });
  assertClean(idle);
  assert.equal(idle.established, 6);
  assert.equal(idle.stillAlive, 6);
  assert.equal(readFileSync(readyFile, 'utf8').trim(), '6');
});

test('load-refused: a dead server gives errors, not an exception, and the run still ends', async () => {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  for (const mode of ['handshake', 'pingpong'] as LoadMode[]) {
    const r = await runLoad({ host: '127.0.0.1', port, mode, connections: 2, durationMs: 200, warmupMs: 0 });
    assert.ok(r.errors > 0);
    assert.equal(r.ops, 0);
    assert.ok((r.errorKinds.ECONNREFUSED ?? 0) > 0, JSON.stringify(r.errorKinds));
  }
});

test('load-abort: an abort signal ends the run early with what was measured', async (t) => {
  const server = await echoServer(t);
  const controller = new AbortController();
  const r = await runLoad({
    host: '127.0.0.1',
    port: server.port,
    mode: 'pingpong',
    connections: 2,
    durationMs: 60_000,
    warmupMs: 0,
    signal: controller.signal,
    onProgress: () => controller.abort(),
  });
  assertClean(r);
  assert.ok(r.durationSec < 60);
});

test('load-verify: with a CA, an untrusted server is an error per attempt', async (t) => {
  const server = await echoServer(t);
  const other = await echoServer(t);
  const r = await runLoad({ host: '127.0.0.1', port: server.port, mode: 'handshake', connections: 1, durationMs: 200, warmupMs: 0, ca: readFileSync(other.caPem) });
  assert.ok(r.errors > 0);
  assert.equal(r.ops, 0);
});

test('load-options: bad combinations are listed, each naming the flag', async () => {
  const problems = loadOptionProblems({ host: '127.0.0.1', port: 4433, mode: 'pingpong', sizeBytes: 0, readyFile: '/tmp/x', resume: true, connections: 2, processes: 3 });
  const text = problems.join('\n');
  for (const flag of ['--size', '--ready-file', '--resume', '--processes']) assert.ok(text.includes(flag), `${flag} in ${text}`);
  await assert.rejects(runLoad({ host: '127.0.0.1', port: 4433, connections: 0 }), ConfigError);
  assert.throws(() => benchOptionsFromFlags('127.0.0.1:4433', { mode: 'flood', duration: '0', warmup: 'x', ca: '/nonexistent', insecure: true }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    const t = err.problems.join('\n');
    for (const flag of ['--mode', '--duration', '--warmup', '--ca']) assert.ok(t.includes(flag), `${flag} in ${t}`);
    return true;
  });
  const ok = benchOptionsFromFlags('localhost:4433', { mode: 'idle', connections: '10', duration: '0.5', ramp: '100', readyFile: '/tmp/r' });
  assert.deepEqual([ok.mode, ok.connections, ok.durationMs, ok.rampPerSec, ok.insecure], ['idle', 10, 500, 100, true]);
});

test('bench-cli: exit 0 and one JSON object on a clean run, 1 on mismatches, 2 on a bad flag', async (t) => {
  if (!existsSync(CLI)) {
    t.skip('dist/src/cli.js not built');
    return;
  }
  const run = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => {
    const child = spawn(process.execPath, [CLI, 'bench', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  };
  const server = await echoServer(t);
  const ok = await run([`127.0.0.1:${server.port}`, '--mode', 'pingpong', '-c', '2', '--duration', '0.5', '--warmup', '0', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const r = JSON.parse(ok.stdout) as LoadResult;
  assert.equal(r.mode, 'pingpong');
  assert.ok(r.ops > 0);

  const bad = await startCorruptingEchoServer();
  t.after(() => bad.close());
  const mismatch = await run([`127.0.0.1:${bad.port}`, '--mode', 'pingpong', '-c', '1', '--duration', '0.3', '--warmup', '0']);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.stdout, /mismatches [1-9]/);
  assert.match(mismatch.stderr, /echo mismatch/);

  const usage = await run([`127.0.0.1:${server.port}`, '--mode', 'pingpong', '--size', '0']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--size/);
});
