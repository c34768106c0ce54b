// Behaviour scenarios after a correct handshake, as clients observe them on real sockets: a Node
// TLS client, the TCP stream seen by a proxy in between (how the server's side ended, and the TLS
// records it sent), and python3's ssl module. onClose is called exactly once in every case.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { runBehaviour, SMALL_RECORD_BYTES, type Behaviour } from '../../src/scenarios/behaviour';
import { runCli, tempDir } from '../helpers/daemon';
import { which } from '../helpers/external-tools';

interface BehaviourServer {
  readonly port: number;
  readonly ca: Buffer;
  readonly caFile: string;
  /** How many times onClose was called. */
  closes(): number;
  /** Resolves at the first onClose. */
  readonly closed: Promise<void>;
}

/** A fresh --cert-dir made the way users make it: `tls-echod cert generate`. */
async function certs(t: TestContext): Promise<string> {
  const dir = join(tempDir(t), 'certs');
  const run = await runCli(['cert', 'generate', '--cert-dir', dir]);
  assert.equal(run.code, 0, run.stderr);
  return dir;
}

async function startServer(t: TestContext, behaviour: Behaviour, delayMs = 0): Promise<BehaviourServer> {
  const dir = await certs(t);
  let closes = 0;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const server = tls.createServer({ cert: readFileSync(join(dir, 'server.pem')), key: readFileSync(join(dir, 'server-key.pem')) });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    runBehaviour(behaviour, socket, {
      delayMs,
      onClose: () => {
        closes++;
        resolveClosed();
      },
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as AddressInfo).port, ca: readFileSync(join(dir, 'ca.pem')), caFile: join(dir, 'ca.pem'), closes: () => closes, closed };
}

interface Proxy {
  readonly port: number;
  /** Every byte the server sent, in order. */
  fromServer(): Buffer;
  /** How the server's TCP side ended: 'end' (a FIN) or an error code such as ECONNRESET. */
  readonly serverEnded: Promise<string>;
}

/** A TCP proxy to `port` that records what the server sends and how its connection ended (one client). */
async function startProxy(t: TestContext, port: number): Promise<Proxy> {
  const chunks: Buffer[] = [];
  let resolveEnded!: (how: string) => void;
  const serverEnded = new Promise<string>((resolve) => (resolveEnded = resolve));
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    upstream.on('data', (c: Buffer) => {
      chunks.push(c);
      client.write(c);
    });
    upstream.on('end', () => {
      resolveEnded('end');
      client.end();
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      resolveEnded(err.code ?? err.message);
      client.resetAndDestroy();
    });
    client.on('data', (c: Buffer) => upstream.write(c));
    client.on('end', () => upstream.end());
    client.on('error', () => upstream.destroy());
    t.after(() => {
      client.destroy();
      upstream.destroy();
    });
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  t.after(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
  return { port: (proxy.address() as AddressInfo).port, fromServer: () => Buffer.concat(chunks), serverEnded };
}

/** The TLS records in `bytes`: content type and length of each. */
function tlsRecords(bytes: Buffer): { type: number; length: number }[] {
  const records: { type: number; length: number }[] = [];
  for (let at = 0; at + 5 <= bytes.length; ) {
    const length = bytes.readUInt16BE(at + 3);
    records.push({ type: bytes[at]!, length });
    at += 5 + length;
  }
  return records;
}

interface ClientOutcome {
  readonly data: Buffer;
  /** 'end' for a plain end, or the error code. */
  readonly ending: string;
}

/** Connects (through `port`), writes `data`, and collects what comes back until the socket closes. */
async function clientRun(t: TestContext, port: number, ca: Buffer, data: Buffer, options: tls.ConnectionOptions = {}): Promise<ClientOutcome> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...options });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  const chunks: Buffer[] = [];
  let ending = 'none';
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('end', () => (ending = 'end'));
  socket.on('error', (err: NodeJS.ErrnoException) => (ending = err.code ?? err.message));
  socket.write(data);
  // Not events.once: it would reject on the 'error' a reset is.
  await new Promise((resolve) => socket.once('close', resolve));
  return { data: Buffer.concat(chunks), ending };
}

const PYTHON_CLIENT = `
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname='localhost', suppress_ragged_eofs=False)
s.sendall(b'hello')
print('echo', s.recv(100).decode())
try:
    print('next', repr(s.recv(100)))
except Exception as e:
    print('next', type(e).__name__)
`;

async function pythonRun(t: TestContext, port: number, caFile: string): Promise<string> {
  const child = spawn('python3', ['-c', PYTHON_CLIENT, String(port), caFile]);
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  await once(child, 'close');
  return out;
}

test('no-close-notify: the echo, then a FIN without close_notify', async (t) => {
  const server = await startServer(t, 'no-close-notify');
  const proxy = await startProxy(t, server.port);
  // TLS 1.2 so the proxy can see record types: a close_notify would be a type 21 record.
  const outcome = await clientRun(t, proxy.port, server.ca, Buffer.from('hello'), { maxVersion: 'TLSv1.2' });
  assert.equal(outcome.data.toString(), 'hello');
  // Node 20 reports the missing close_notify as a plain end, like a clean close.
  assert.equal(outcome.ending, 'end');
  assert.equal(await proxy.serverEnded, 'end');
  const types = tlsRecords(proxy.fromServer()).map((r) => r.type);
  assert.ok(!types.includes(21), `no alert record; got types ${types.join(',')}`);
  assert.equal(types.at(-1), 23);
  await server.closed;
  assert.equal(server.closes(), 1);
});

test('no-close-notify: python3 reports SSLEOFError', { skip: which('python3') === undefined && 'no python3' }, async (t) => {
  const server = await startServer(t, 'no-close-notify');
  const out = await pythonRun(t, server.port, server.caFile);
  assert.match(out, /echo hello\nnext SSLEOFError/);
  await server.closed;
  assert.equal(server.closes(), 1);
});

test('reset-after-echo: what a direct Node client and python3 report', async (t) => {
  const server = await startServer(t, 'reset-after-echo');
  const outcome = await clientRun(t, server.port, server.ca, Buffer.from('hello'));
  assert.equal(outcome.data.toString(), 'hello');
  // Measured on Node 20 / OpenSSL 3: the RST reaches the client's read() as ECONNRESET, yet
  // the TLS layer reports it as an end (Node) or SSLEOFError (python3), like a missing close_notify.
  assert.ok(['end', 'ECONNRESET'].includes(outcome.ending), outcome.ending);
  if (which('python3') !== undefined) {
    const out = await pythonRun(t, server.port, server.caFile);
    assert.match(out, /echo hello\nnext (SSLEOFError|ConnectionResetError)/);
  }
  await server.closed;
});

test('close-after-handshake: a close_notify, nothing echoed, a clean end', async (t) => {
  const server = await startServer(t, 'close-after-handshake');
  const proxy = await startProxy(t, server.port);
  const outcome = await clientRun(t, proxy.port, server.ca, Buffer.from('hello'), { maxVersion: 'TLSv1.2' });
  assert.equal(outcome.data.length, 0);
  assert.equal(outcome.ending, 'end');
  assert.equal(await proxy.serverEnded, 'end');
  assert.equal(tlsRecords(proxy.fromServer()).at(-1)?.type, 21, 'the last record is an alert (close_notify)');
  await server.closed;
  assert.equal(server.closes(), 1);
});

test('no-echo: nothing comes back within 300 ms; the session ends at the client close', async (t) => {
  const server = await startServer(t, 'no-echo');
  const socket = tls.connect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  let received = 0;
  socket.on('data', (c: Buffer) => (received += c.length));
  socket.setTimeout(300);
  socket.write('hello');
  await once(socket, 'timeout');
  assert.equal(received, 0);
  assert.equal(server.closes(), 0);
  socket.end();
  await server.closed;
  assert.equal(server.closes(), 1);
});

test('slow-echo: each chunk comes back no sooner than the delay, in order', async (t) => {
  const server = await startServer(t, 'slow-echo', 200);
  const socket = tls.connect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  const started = performance.now();
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const firstAt = once(socket, 'data').then(() => performance.now() - started);
  socket.write('hello');
  assert.ok((await firstAt) >= 199, 'echoed after the delay');
  // A half-close right behind the second chunk: it still comes back, after its delay.
  socket.end(' world');
  await once(socket, 'close');
  assert.equal(Buffer.concat(chunks).toString(), 'hello world');
  await server.closed;
  assert.equal(server.closes(), 1);
});

test('small-records: a 4096-byte write comes back intact in records of at most 512 bytes', async (t) => {
  const server = await startServer(t, 'small-records');
  const proxy = await startProxy(t, server.port);
  const data = Buffer.alloc(4096, 'x');
  const socket = tls.connect({ host: '127.0.0.1', port: proxy.port, ca: server.ca, servername: 'localhost' });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.write(data);
  while (Buffer.concat(chunks).length < data.length) await once(socket, 'data');
  assert.deepEqual(Buffer.concat(chunks), data);
  socket.end();
  const appRecords = tlsRecords(proxy.fromServer()).filter((r) => r.type === 23);
  // TLS 1.3: the inner content type (1 byte) and the AEAD tag (16) come on top of the plaintext.
  const max = SMALL_RECORD_BYTES + 17;
  assert.ok(appRecords.every((r) => r.length <= max), `record lengths ${appRecords.map((r) => r.length).join(',')}`);
  assert.ok(appRecords.filter((r) => r.length === max).length >= 4096 / SMALL_RECORD_BYTES, 'the echo is in full 512-byte records');
  await server.closed;
  assert.equal(server.closes(), 1);
});
