// Reading the ClientHello off a real socket (src/scenarios/peek-hello.ts), then either handing
// the socket to a tls.Server that never listens, with the bytes put back, or refusing it with
// a plaintext alert that real clients (Node, openssl s_client) report as such.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { alertRecord, HANDSHAKE_FAILURE, UNRECOGNIZED_NAME } from '../../src/scenarios/alert';
import { readClientHello, type PeekResult, type ReadClientHelloOptions } from '../../src/scenarios/peek-hello';
import { makeTestCertificate } from '../helpers/echo-servers';
import { which } from '../helpers/external-tools';
import { listenLocal } from './hello-samples';

interface Peeked {
  readonly socket: net.Socket;
  readonly result: PeekResult;
  /** How long readClientHello took (ms). */
  readonly elapsedMs: number;
  /** The socket's listener counts just before readClientHello. */
  readonly listenersBefore: number[];
}

/** Counts of the socket's 'data', 'end', 'close' and 'error' listeners, `errorOffset` added to the last. */
function listenerCounts(socket: net.Socket, errorOffset = 0): number[] {
  return [socket.listenerCount('data'), socket.listenerCount('end'), socket.listenerCount('close'), socket.listenerCount('error') + errorOffset];
}

/**
 * A listener (pauseOnConnect, as the daemon's) that runs readClientHello on its first connection
 * and then `then(peeked)`; the peeked socket is destroyed when the test ends.
 */
async function peekingListener(t: TestContext, opts: ReadClientHelloOptions, then: (p: Peeked) => void = () => {}): Promise<{ port: number; peeked: Promise<Peeked> }> {
  let resolvePeeked!: (p: Peeked) => void;
  const peeked = new Promise<Peeked>((resolve) => (resolvePeeked = resolve));
  const port = await listenLocal(
    t,
    (socket) => {
      t.after(() => socket.destroy());
      const listenersBefore = listenerCounts(socket);
      const started = performance.now();
      void readClientHello(socket, opts).then((result) => {
        const p = { socket, result, elapsedMs: performance.now() - started, listenersBefore };
        // Ours from here: an error before it is handed on must not crash the test.
        socket.on('error', () => {});
        then(p);
        resolvePeeked(p);
      });
    },
    { pauseOnConnect: true },
  );
  return { port, peeked };
}

/** A TLS echo server that never listens, with a throwaway certificate for localhost. */
async function echoTlsServer(t: TestContext): Promise<{ server: tls.Server; ca: Buffer }> {
  const cert = await makeTestCertificate();
  t.after(() => cert.remove());
  const ca = readFileSync(cert.certFile);
  const server = tls.createServer({ key: readFileSync(cert.keyFile), cert: ca }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  return { server, ca };
}

/** A TLS client's outcome: what came back of 'ping', or the error code it failed with. */
async function tlsOutcome(t: TestContext, port: number, options: tls.ConnectionOptions): Promise<{ echoed: string; error: string | undefined }> {
  const client = tls.connect({ host: '127.0.0.1', port, ...options });
  t.after(() => client.destroy());
  let echoed = '';
  let error: string | undefined;
  client.on('secureConnect', () => client.write('ping'));
  client.on('data', (chunk: Buffer) => {
    echoed += chunk.toString();
    if (echoed === 'ping') client.end();
  });
  client.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
  // Not once(client, 'close'): once() rejects on the 'error' this waits to record.
  await new Promise((resolve) => client.on('close', resolve));
  return { echoed, error };
}

/** A raw TCP client that sends `data` (and half-closes when `end`). */
async function rawClient(t: TestContext, port: number, data: Buffer, end = false): Promise<net.Socket> {
  const client = net.connect({ host: '127.0.0.1', port });
  client.on('error', () => {});
  t.after(() => client.destroy());
  await once(client, 'connect');
  if (end) client.end(data);
  else client.write(data);
  return client;
}

test('peek hello: the socket handed to a tls.Server with its bytes put back handshakes and echoes', { timeout: 20_000 }, async (t) => {
  const { server, ca } = await echoTlsServer(t);
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const { port, peeked } = await peekingListener(t, { timeoutMs: 5000 }, ({ socket, result }) => {
      if (result.kind !== 'hello') return;
      // The hand-over: the bytes read go back into the socket's buffer, and the TLSSocket
      // that tls.Server wraps around it feeds them to OpenSSL before reading the handle.
      socket.unshift(result.head);
      server.emit('connection', socket);
    });
    const outcome = await tlsOutcome(t, port, { ca, servername: 'localhost', maxVersion });
    const { socket, result } = await peeked;
    assert.equal(result.kind, 'hello');
    assert.equal((result as { serverName?: string }).serverName, 'localhost');
    assert.deepEqual(outcome, { echoed: 'ping', error: undefined }, maxVersion);
    assert.equal(socket.listenerCount('data'), 0, 'no data listener of ours left');
  }
});

test('peek hello: an unrecognized_name alert fails a Node client with that alert', { timeout: 20_000 }, async (t) => {
  const { port, peeked } = await peekingListener(t, { timeoutMs: 5000 }, ({ socket }) => socket.end(alertRecord(UNRECOGNIZED_NAME)));
  const outcome = await tlsOutcome(t, port, { servername: 'x.localhost', rejectUnauthorized: false });
  assert.equal((await peeked).result.kind, 'hello');
  assert.equal(outcome.echoed, '');
  // Node 20 (OpenSSL 3.0): ERR_SSL_TLSV1_UNRECOGNIZED_NAME; OpenSSL 3.5 names it ..._ALERT_UNRECOGNIZED_NAME.
  assert.match(outcome.error ?? '', /UNRECOGNIZED_NAME/);
});

test('peek hello: a handshake_failure alert fails a Node client with that alert', { timeout: 20_000 }, async (t) => {
  const { port } = await peekingListener(t, { timeoutMs: 5000 }, ({ socket }) => socket.end(alertRecord(HANDSHAKE_FAILURE)));
  const outcome = await tlsOutcome(t, port, { servername: 'x.localhost', rejectUnauthorized: false });
  assert.match(outcome.error ?? '', /HANDSHAKE_FAILURE/);
});

test('peek hello: openssl s_client reports the unrecognized_name alert', { timeout: 20_000, skip: which('openssl') === undefined && 'no openssl on PATH' }, async (t) => {
  const { port } = await peekingListener(t, { timeoutMs: 5000 }, ({ socket }) => socket.end(alertRecord(UNRECOGNIZED_NAME)));
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'x.localhost'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  assert.notEqual(code, 0);
  // OpenSSL 3.0: "...:tlsv1 unrecognized name:...:SSL alert number 112".
  assert.match(output, /unrecognized name/i);
  assert.match(output, /alert number 112/);
});

test('peek hello: a client that sends 3 bytes and stalls times out', { timeout: 10_000 }, async (t) => {
  const { port, peeked } = await peekingListener(t, { timeoutMs: 200 });
  await rawClient(t, port, Buffer.from([22, 3, 1]));
  const { socket, result, elapsedMs, listenersBefore } = await peeked;
  assert.deepEqual(result, { kind: 'timeout' });
  assert.ok(elapsedMs >= 190, `gave up after ${elapsedMs} ms`);
  assert.equal(socket.isPaused(), true);
  // Less the test's own 'error' listener, added once readClientHello had returned.
  assert.deepEqual(listenerCounts(socket, -1), listenersBefore, 'listeners as they were');
});

test('peek hello: a client that closes before its hello is complete is "closed"', { timeout: 10_000 }, async (t) => {
  const { port, peeked } = await peekingListener(t, { timeoutMs: 5000 });
  await rawClient(t, port, Buffer.from([22, 3, 1]), true);
  assert.deepEqual((await peeked).result, { kind: 'closed' });
});

test('peek hello: an HTTP request is invalid, with the bytes read', { timeout: 10_000 }, async (t) => {
  const { port, peeked } = await peekingListener(t, { timeoutMs: 5000 });
  await rawClient(t, port, Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  const { result } = await peeked;
  assert.equal(result.kind, 'invalid');
  assert.match((result as { head: Buffer }).head.toString(), /^GET \//);
});

test('peek hello: a hello over maxBytes is invalid', { timeout: 10_000 }, async (t) => {
  const { port, peeked } = await peekingListener(t, { timeoutMs: 5000, maxBytes: 100 });
  const client = tls.connect({ host: '127.0.0.1', port, servername: 'a.localhost', rejectUnauthorized: false });
  client.on('error', () => {});
  t.after(() => client.destroy());
  const { result } = await peeked;
  assert.equal(result.kind, 'invalid');
  assert.match((result as { why: string }).why, /100/);
});
