// Bad clients end their own connection and nobody else's: plaintext, garbage, a handshake that
// never finishes, a client that never reads. Other sessions keep echoing meanwhile.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { connect, rawOutcome, roundTrip, startDaemon, until } from './helpers/daemon';

test('bad clients: plaintext HTTP and random garbage are closed; a healthy session keeps echoing', async (t) => {
  const d = await startDaemon(t);
  const healthy = await connect(t, d.port, d.ca);
  const plain = rawOutcome(d.port, '127.0.0.1', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  const garbage = rawOutcome(d.port, '127.0.0.1', randomBytes(4096));
  // A TLS record header announcing a huge ClientHello, then nothing: waits for bytes that never come.
  assert.ok((await roundTrip(healthy, Buffer.from('still here'))).equals(Buffer.from('still here')));
  await plain;
  await garbage;
  assert.ok((await roundTrip(healthy, Buffer.from('and here'))).equals(Buffer.from('and here')));
  await until(() => d.supervisor.counts.sessions === 1, 5000, 'bad connections released');
});

test('bad clients: a handshake that never finishes is closed at --handshake-timeout', async (t) => {
  const d = await startDaemon(t, { handshakeTimeout: '300' });
  const healthy = await connect(t, d.port, d.ca);
  const silent = net.connect({ host: '127.0.0.1', port: d.port });
  const partial = net.connect({ host: '127.0.0.1', port: d.port });
  t.after(() => {
    silent.destroy();
    partial.destroy();
  });
  silent.on('error', () => {});
  partial.on('error', () => {});
  partial.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // a ClientHello header, then silence
  const started = Date.now();
  await Promise.all([once(silent, 'close'), once(partial, 'close')]);
  assert.ok(Date.now() - started < 5000, 'closed by the handshake timeout, not by the test timeout');
  assert.ok((await roundTrip(healthy, Buffer.from('ping'))).equals(Buffer.from('ping')));
  await until(() => d.supervisor.counts.sessions === 1, 5000, 'timed-out handshakes released');
});

test('backpressure: a client that sends but never reads does not grow server memory', async (t) => {
  const d = await startDaemon(t);
  const socket = await connect(t, d.port, d.ca);
  socket.pause(); // never read: the server's writes back up
  socket.on('error', () => {}); // the daemon's shutdown may reset it while it's still backed up
  const chunk = randomBytes(64 * 1024);
  const rssBefore = process.memoryUsage().rss;
  // Offer up to 256 MiB; the client's own writes stall once the server stops reading, i.e.
  // no 'drain' comes for a second. A server that buffered what it can't send would take it all.
  let offered = 0;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (offered < 256 * 1024 * 1024) {
        offered += chunk.length;
        if (!socket.write(chunk)) {
          const onDrain = (): void => {
            clearTimeout(stalled);
            pump();
          };
          const stalled = setTimeout(() => {
            socket.off('drain', onDrain);
            resolve();
          }, 1000);
          socket.once('drain', onDrain);
          return;
        }
      }
      resolve();
    };
    pump();
  });
  const growth = process.memoryUsage().rss - rssBefore;
  assert.ok(offered < 64 * 1024 * 1024, `the client should stall well before 64 MiB, offered ${offered}`);
  assert.ok(growth < 48 * 1024 * 1024, `server and client together grew ${growth} bytes`);
  const other = await connect(t, d.port, d.ca);
  assert.ok((await roundTrip(other, Buffer.from('unaffected'))).equals(Buffer.from('unaffected')));
});
