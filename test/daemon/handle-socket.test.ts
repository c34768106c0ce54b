// The inline server's accept path (src/daemon/handle-socket.ts): connections taken from the listener as
// bare handles. Its contract with Node's internals is checked here on a plain net.Server; the
// daemon-level test counts this process's descriptors, since closing every handle is now ours.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { acceptHandles, HandleSocket } from '../../src/daemon/handle-socket';
import { connect, rawOutcome, roundTrip, startDaemon, tempDir, until } from '../helpers/daemon';

async function listening(t: TestContext, server: net.Server, where: net.ListenOptions): Promise<void> {
  server.listen(where);
  await once(server, 'listening');
  t.after(() => server.close());
}

/** A listener whose connections come to the returned queue as HandleSockets. */
async function handleListener(t: TestContext): Promise<{ port: number; next: () => Promise<HandleSocket>; connections: () => number }> {
  const server = net.createServer({ pauseOnConnect: true });
  let connections = 0;
  server.on('connection', () => connections++);
  await listening(t, server, { host: '127.0.0.1', port: 0 });
  const waiting: HandleSocket[] = [];
  let wake: (() => void) | undefined;
  const installed = acceptHandles(
    server,
    (socket) => {
      t.after(() => socket.destroy());
      waiting.push(socket);
      wake?.();
    },
    (err) => assert.fail(err),
  );
  assert.equal(installed, true);
  const next = async (): Promise<HandleSocket> => {
    while (waiting.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    return waiting.shift()!;
  };
  return { port: (server.address() as net.AddressInfo).port, next, connections: () => connections };
}

function clientTo(t: TestContext, port: number, localAddress: string): net.Socket {
  const client = net.connect({ host: '127.0.0.1', port, localAddress });
  client.on('error', () => {});
  t.after(() => client.destroy());
  return client;
}

function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

test('handle accept: a connection comes as a HandleSocket with the peer address and port, and no net.Socket', { timeout: 10_000 }, async (t) => {
  const l = await handleListener(t);
  const client = clientTo(t, l.port, '127.0.0.2');
  await once(client, 'connect');
  const socket = await l.next();
  assert.ok(socket instanceof net.Socket, 'passes as a net.Socket for tls.Server');
  assert.equal(socket.remoteAddress, '127.0.0.2');
  assert.equal(socket.remotePort, client.localPort);
  assert.equal(socket.destroyed, false);
  assert.equal(l.connections(), 0, "no 'connection' event");
});

test('handle accept: destroy() closes the connection and emits close once; a second call does nothing', { timeout: 10_000 }, async (t) => {
  const l = await handleListener(t);
  const client = clientTo(t, l.port, '127.0.0.1');
  const socket = await l.next();
  let closes = 0;
  socket.on('close', () => closes++);
  const ended = once(client, 'end');
  socket.destroy();
  socket.destroy();
  assert.equal(socket.destroyed, true);
  await once(socket, 'close');
  await ended;
  assert.equal(closes, 1);
});

test('handle accept: resetAndDestroy() refuses with a TCP reset and emits close once', { timeout: 10_000 }, async (t) => {
  const l = await handleListener(t);
  const outcome = rawOutcome(l.port, '127.0.0.3');
  const socket = await l.next();
  let closes = 0;
  socket.on('close', () => closes++);
  socket.resetAndDestroy();
  socket.destroy();
  await once(socket, 'close');
  assert.deepEqual(await outcome, { reset: true, received: 0 });
  assert.equal(closes, 1);
});

test('handle accept: declined on a Unix socket and before listening; connection events keep serving', { timeout: 10_000 }, async (t) => {
  const idle = net.createServer();
  assert.equal(acceptHandles(idle, () => assert.fail('no connection expected'), assert.fail), false, 'not listening');

  const server = net.createServer((s) => s.end('plain'));
  await listening(t, server, { path: path.join(tempDir(t), 'echo.sock') });
  assert.equal(acceptHandles(server, () => assert.fail('no HandleSocket on a Unix socket'), assert.fail), false);
  const client = net.connect((server.address() as string));
  t.after(() => client.destroy());
  const [data] = (await once(client, 'data')) as [Buffer];
  assert.equal(data.toString(), 'plain');
});

test('handle accept (inline daemon): no descriptor is left once connections end every way', { timeout: 20_000 }, async (t) => {
  const d = await startDaemon(t, { maxSessions: '1', maxPending: '1', pendingTimeout: '200', idleTimeout: '300', handshakeTimeout: '300', deny: ['127.0.0.9/32'] });
  const before = openDescriptors();
  // Refused by the deny list, and a session that holds the only slot until it goes idle.
  assert.equal((await rawOutcome(d.port, '127.0.0.9')).reset, true);
  const holder = await connect(t, d.port, d.ca);
  assert.ok((await roundTrip(holder, Buffer.from('x'))).equals(Buffer.from('x')));
  // One waits in the queue until --pending-timeout; the next finds the queue full.
  const waiting = rawOutcome(d.port, '127.0.0.2');
  await until(() => d.supervisor.counts.pending === 1, 5000, 'one waiting');
  assert.equal((await rawOutcome(d.port, '127.0.0.3')).reset, true, 'pool-full');
  assert.equal((await waiting).reset, true, 'pending-timeout');
  await once(holder, 'close'); // idle timeout
  // A handshake that fails, one that never starts, and a client that resets mid-session.
  await rawOutcome(d.port, '127.0.0.4', Buffer.from('not a ClientHello'));
  await rawOutcome(d.port, '127.0.0.5');
  const tcp = clientTo(t, d.port, '127.0.0.6');
  const dropped = await connect(t, d.port, d.ca, { socket: tcp });
  assert.ok((await roundTrip(dropped, Buffer.from('y'))).equals(Buffer.from('y')));
  tcp.resetAndDestroy();
  await until(() => d.supervisor.counts.sessions === 0 && d.supervisor.counts.ipsHeld === 0, 5000, 'every session gone');
  await until(() => openDescriptors() === before, 5000, `${before} descriptors open (${openDescriptors()} now)`);
  // A session still open at shutdown is closed with the rest.
  const last = await connect(t, d.port, d.ca);
  await d.stop();
  if (!last.destroyed) await once(last, 'close');
  await until(() => openDescriptors() < before, 5000, `fewer than ${before} descriptors after shutdown (${openDescriptors()} now)`);
});
