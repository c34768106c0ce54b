// Protocol versions: TLS 1.1 is refused, 1.2 and 1.3 are accepted; --min-tls 1.3 refuses 1.2.
// Verification works by DNS name and by IP address.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import tls from 'node:tls';
import { connect, roundTrip, startDaemon, until } from './helpers/daemon';
import { metricOf } from './helpers/metrics';

async function handshakeError(port: number, ca: Buffer, options: tls.ConnectionOptions): Promise<Error | undefined> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...options });
  try {
    const [outcome] = await Promise.race([once(socket, 'secureConnect').then(() => ['ok']), once(socket, 'error')]);
    return outcome === 'ok' ? undefined : (outcome as Error);
  } finally {
    socket.destroy();
  }
}

test('tls versions: 1.2 and 1.3 accepted, 1.1 refused', async (t) => {
  const d = await startDaemon(t);
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    const socket = await connect(t, d.port, d.ca, { minVersion: version, maxVersion: version });
    assert.equal(socket.getProtocol(), version);
    assert.equal((await roundTrip(socket, Buffer.from('hello'))).toString(), 'hello');
    socket.destroy();
  }
  // OpenSSL's default security level forbids TLS 1.1 in the client too; lower it to try.
  const err = await handshakeError(d.port, d.ca, { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
  assert.ok(err, 'a TLS 1.1 handshake must fail');
});

test('tls versions: --min-tls 1.3 refuses a TLS 1.2 client', async (t) => {
  const d = await startDaemon(t, { minTls: '1.3' });
  const err = await handshakeError(d.port, d.ca, { maxVersion: 'TLSv1.2' });
  assert.ok(err, 'a TLS 1.2 handshake must fail with --min-tls 1.3');
  const socket = await connect(t, d.port, d.ca);
  assert.equal(socket.getProtocol(), 'TLSv1.3');
});

test('verification: by name (localhost) and by IP (127.0.0.1), and a wrong name is rejected', async (t) => {
  const d = await startDaemon(t, { san: ['echo.test'] });
  const byName = await connect(t, d.port, d.ca, { servername: 'localhost' });
  assert.equal(byName.authorized, true);
  const byExtraSan = await connect(t, d.port, d.ca, { servername: 'echo.test' });
  assert.equal(byExtraSan.authorized, true);
  const byIp = tls.connect({ host: '127.0.0.1', port: d.port, ca: d.ca });
  t.after(() => byIp.destroy());
  await once(byIp, 'secureConnect');
  assert.equal(byIp.authorized, true);
  const wrong = await handshakeError(d.port, d.ca, { servername: 'not-covered.example' });
  assert.match(String((wrong as NodeJS.ErrnoException | undefined)?.code), /ERR_TLS_CERT_ALTNAME_INVALID/);
});

test('alpn: the first protocol the client offers is agreed, and none when none is offered', async (t) => {
  const d = await startDaemon(t);
  const withAlpn = await connect(t, d.port, d.ca, { ALPNProtocols: ['echo/1', 'http/1.1'] });
  assert.equal(withAlpn.alpnProtocol, 'echo/1');
  const without = await connect(t, d.port, d.ca);
  assert.equal(without.alpnProtocol, false);
});

test('renegotiation: a TLS 1.2 client asking to renegotiate loses its session; others are unaffected', async (t) => {
  const d = await startDaemon(t);
  const other = await connect(t, d.port, d.ca);
  const socket = await connect(t, d.port, d.ca, { maxVersion: 'TLSv1.2' });
  socket.on('error', () => {});
  const closed = new Promise((resolve) => socket.once('close', resolve));
  // OpenSSL may finish the renegotiation before Node reports it; the session ends either way.
  socket.renegotiate({}, () => {});
  await closed;
  assert.ok((await roundTrip(other, Buffer.from('fine'))).equals(Buffer.from('fine')));
  await until(() => d.supervisor.counts.sessions === 1, 5000, 'the renegotiating session released');
  assert.equal(await metricOf(d.supervisor, 'tls_echod_sessions_closed_total', { reason: 'error' }), 1);
});
