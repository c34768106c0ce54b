// `tls-echod check`: runCheck against real echo servers on 127.0.0.1 port 0, and the CLI's
// exit codes and output.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { runCheck, type CheckResult } from '../../src/client/check';
import { formatCheckResult } from '../../src/client/check-report';
import { parseSubjectAltName } from '../../src/client/peer-certificate';
import { checkOptionsFromFlags } from '../../src/commands/check';
import { ConfigError } from '../../src/errors';
import { startCorruptingEchoServer, startEchoServer, type EchoServer } from '../helpers/echo-servers';

const CLI = path.join(__dirname, '..', '..', 'src', 'cli.js');

async function echoServer(t: TestContext): Promise<EchoServer> {
  const server = await startEchoServer();
  t.after(() => server.close());
  return server;
}

async function corruptingServer(t: TestContext, corruptOffset: number): Promise<EchoServer> {
  const server = await startCorruptingEchoServer({ corruptOffset });
  t.after(() => server.close());
  return server;
}

/** A port nothing listens on: bind one, then close it. */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function runCli(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

test('check-ok: verified against --ca, every field reported', async (t) => {
  const server = await echoServer(t);
  const r = await runCheck({ host: '127.0.0.1', port: server.port, ca: readFileSync(server.caPem), caLabel: server.caPem });
  assert.equal(r.ok, true, r.error ?? '');
  assert.equal(r.code, null);
  assert.equal(r.error, null);
  assert.equal(r.target, `127.0.0.1:${server.port}`);
  assert.equal(r.servername, null, 'no SNI for an IP target');
  assert.equal(r.verified, true);
  assert.equal(r.verifyError, null);
  assert.match(r.tlsVersion ?? '', /^TLSv1\.[23]$/);
  assert.ok(r.cipher !== null && r.cipher.length > 0);
  assert.equal(r.alpn, null);
  assert.equal(r.peer?.subject, 'CN=localhost');
  assert.deepEqual(r.peer?.sans, ['DNS:localhost', 'IP:127.0.0.1']);
  assert.match(r.peer?.fingerprint256 ?? '', /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  assert.ok(Date.parse(r.peer?.notAfter ?? '') > Date.now());
  assert.equal(typeof r.handshakeMs, 'number');
  assert.equal(typeof r.roundTripMs, 'number');
  assert.equal(r.bytesSent, 4096);
  assert.equal(r.bytesEchoed, 4096);
  assert.match(formatCheckResult(r), /verified\s+yes[\s\S]*\nok$/);
});

test('check-servername: a name target sends SNI and is verified by name', async (t) => {
  const server = await echoServer(t);
  const r = await runCheck({ host: 'localhost', port: server.port, ca: readFileSync(server.caPem) });
  assert.equal(r.ok, true, r.error ?? '');
  assert.equal(r.servername, 'localhost');
  assert.equal(r.verified, true);
});

test('check-mismatch: a corrupted echo fails and says where', async (t) => {
  const server = await corruptingServer(t, 1000);
  const r = await runCheck({ host: '127.0.0.1', port: server.port, ca: readFileSync(server.caPem) });
  assert.equal(r.ok, false);
  assert.equal(r.code, 'ECHOD_ECHO_MISMATCH');
  assert.equal(r.reason, 'mismatch');
  assert.equal(r.mismatchOffset, 1000);
  assert.equal(r.bytesEchoed, 1000);
  assert.equal(r.actualByte, (r.expectedByte ?? 0) ^ 0xff);
  assert.match(r.error ?? '', /mismatch at byte 1000 of 4096/);
});

test('check-untrusted: without --ca a self-signed server fails with the --ca hint', async (t) => {
  const server = await echoServer(t);
  const r = await runCheck({ host: '127.0.0.1', port: server.port });
  assert.equal(r.ok, false);
  assert.equal(r.code, 'ECHOD_CHECK_FAILED');
  assert.equal(r.reason, 'untrusted');
  assert.equal(r.verified, false);
  assert.match(r.error ?? '', /certificate not trusted .*pass --ca certs\/ca\.pem.*or --insecure/);
  assert.equal(r.peer?.subject, 'CN=localhost', 'the peer is still described');
  assert.equal(r.bytesSent, 0, 'nothing is sent to an unverified server');
});

test('check-insecure: --insecure passes and still reports verification', async (t) => {
  const server = await echoServer(t);
  const r = await runCheck({ host: '127.0.0.1', port: server.port, insecure: true });
  assert.equal(r.ok, true, r.error ?? '');
  assert.equal(r.verified, false);
  assert.equal(r.verifyError, 'DEPTH_ZERO_SELF_SIGNED_CERT');
});

test('check-name-mismatch: a --servername the certificate does not cover fails with its names', async (t) => {
  const server = await echoServer(t);
  const r = await runCheck({ host: '127.0.0.1', port: server.port, ca: readFileSync(server.caPem), servername: 'example.com' });
  assert.equal(r.ok, false);
  assert.equal(r.reason, 'name-mismatch');
  assert.match(r.error ?? '', /not valid for example\.com .*DNS:localhost, IP:127\.0\.0\.1/);
});

test('check-zero-bytes: 0 bytes is a handshake-only check', async (t) => {
  const server = await echoServer(t);
  const r = await runCheck({ host: '127.0.0.1', port: server.port, ca: readFileSync(server.caPem), bytes: 0 });
  assert.equal(r.ok, true, r.error ?? '');
  assert.equal(r.bytesSent, 0);
  assert.equal(r.roundTripMs, null);
});

test('check-1mib: a 1 MiB payload comes back intact', async (t) => {
  const server = await echoServer(t);
  const r = await runCheck({ host: '127.0.0.1', port: server.port, ca: readFileSync(server.caPem), bytes: 1024 * 1024 });
  assert.equal(r.ok, true, r.error ?? '');
  assert.equal(r.bytesEchoed, 1024 * 1024);
});

test('check-tls-pin-and-alpn: --tls 1.2 is honoured; an ALPN offer the server ignores reports none', async (t) => {
  const server = await echoServer(t);
  const r = await runCheck({ host: '127.0.0.1', port: server.port, ca: readFileSync(server.caPem), tls: '1.2', alpn: ['tls-echo'] });
  assert.equal(r.ok, true, r.error ?? '');
  assert.equal(r.tlsVersion, 'TLSv1.2');
  assert.equal(r.alpn, null);
});

test('check-refused: nothing listening is a result, not an exception', async () => {
  const port = await closedPort();
  const r = await runCheck({ host: '127.0.0.1', port });
  assert.equal(r.ok, false);
  assert.equal(r.reason, 'refused');
  assert.equal(r.cause, 'ECONNREFUSED');
  assert.match(r.error ?? '', /connection refused .*tls-echod serve --listen/);
});

test('check-timeout: a server that never answers the handshake times out', async (t) => {
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const r = await runCheck({ host: '127.0.0.1', port: (silent.address() as AddressInfo).port, timeoutMs: 200 });
  assert.equal(r.ok, false);
  assert.equal(r.reason, 'timeout');
  assert.match(r.error ?? '', /no TLS handshake within 200 ms.*raise --timeout/);
});

test('check-not-tls: a plain TCP echo is reported as not TLS', async (t) => {
  const plain = net.createServer((s) => {
    s.on('error', () => undefined);
    s.write('HTTP/1.1 400 Bad Request\r\n\r\n');
    s.end();
  });
  plain.listen(0, '127.0.0.1');
  await once(plain, 'listening');
  t.after(() => plain.close());
  const r = await runCheck({ host: '127.0.0.1', port: (plain.address() as AddressInfo).port });
  assert.equal(r.ok, false);
  assert.ok(r.reason === 'not-tls' || r.reason === 'closed' || r.reason === 'reset', `reason ${String(r.reason)}: ${String(r.error)}`);
});

test('check-sans: quoted SAN values with commas stay whole; IP Address is shortened to IP', () => {
  assert.deepEqual(parseSubjectAltName('DNS:localhost, IP Address:127.0.0.1, DNS:"a,b.example", URI:"https://x/?a=1,2"'), [
    'DNS:localhost',
    'IP:127.0.0.1',
    'DNS:a,b.example',
    'URI:https://x/?a=1,2',
  ]);
  assert.deepEqual(parseSubjectAltName(undefined), []);
  assert.deepEqual(parseSubjectAltName(''), []);
});

test('check-flags: every bad flag is listed at once, as a ConfigError (exit 2)', () => {
  assert.throws(
    () => checkOptionsFromFlags(':4433', { bytes: '-1', timeout: 'soon', tls: '1.1', servername: '10.0.0.1', ca: '/nonexistent/ca.pem', alpn: [''] }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.exitCode, 2);
      const text = err.problems.join('\n');
      for (const flag of ['<host:port>', '--bytes', '--timeout', '--tls', '--servername', '--ca', '--alpn']) assert.ok(text.includes(flag), `${flag} in ${text}`);
      return true;
    },
  );
  const ok = checkOptionsFromFlags('[::1]:4433', { bytes: '0', tls: '1.3', alpn: ['a', 'b'] });
  assert.deepEqual([ok.host, ok.port, ok.bytes, ok.tls, ok.alpn], ['::1', 4433, 0, '1.3', ['a', 'b']]);
});

test('check-cli: exit 0 with JSON on a match, 1 on a mismatch, 2 on a bad flag', async (t) => {
  if (!existsSync(CLI)) {
    t.skip('dist/src/cli.js not built');
    return;
  }
  const good = await echoServer(t);
  const ok = await runCli(['check', `127.0.0.1:${good.port}`, '--ca', good.caPem, '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const json = JSON.parse(ok.stdout) as CheckResult;
  for (const field of ['ok', 'tlsVersion', 'cipher', 'alpn', 'peer', 'verified', 'handshakeMs', 'roundTripMs']) assert.ok(field in json, field);
  assert.equal(json.ok, true);
  assert.equal(json.peer?.subject, 'CN=localhost');

  const bad = await corruptingServer(t, 7);
  const mismatch = await runCli(['check', `127.0.0.1:${bad.port}`, '--insecure']);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.stderr, /echo mismatch at byte 7/);
  assert.match(mismatch.stdout, /^tls\s+TLSv1/m);

  const untrusted = await runCli(['check', `127.0.0.1:${good.port}`]);
  assert.equal(untrusted.code, 1);
  assert.match(untrusted.stderr, /pass --ca certs\/ca\.pem, or --insecure/);

  const usage = await runCli(['check', `127.0.0.1:${good.port}`, '--bytes', 'lots']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--bytes: must be a whole number/);
});
