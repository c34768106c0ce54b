// What "nothing slips past" rests on in Node and OpenSSL, outside our code: a session resumed
// from a ticket carries the verification result of the handshake that made it. The daemon closes
// a refused connection before its ticket reaches the client, but if a ticket got out, resuming it
// must meet the same refusal. Here a lenient server (requestCert without rejectUnauthorized)
// hands a foreign certificate's holder a ticket that a strict server with the same ticket keys
// and session context then sees.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { runCli, tempDir } from '../helpers/daemon';
import { issueClient, tryEcho } from '../helpers/client-certs';

async function listen(t: TestContext, options: tls.TlsOptions): Promise<{ server: tls.Server; port: number }> {
  const server = tls.createServer(options, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return { server, port: (server.address() as AddressInfo).port };
}

test('resumption: a ticket from a session whose client certificate did not verify resumes into the same refusal', async (t) => {
  const dir = tempDir(t);
  const other = tempDir(t);
  for (const d of [dir, other]) assert.equal((await runCli(['cert', 'generate', '--cert-dir', d])).code, 0);
  const mallory = await issueClient(other, 'mallory');
  const ca = readFileSync(path.join(dir, 'ca.pem'));
  const shared = {
    key: readFileSync(path.join(dir, 'server-key.pem')),
    cert: readFileSync(path.join(dir, 'server.pem')),
    ca,
    requestCert: true,
    ticketKeys: randomBytes(48),
    sessionIdContext: 'same-policy',
  };
  const lenient = await listen(t, { ...shared, rejectUnauthorized: false });
  const strict = await listen(t, { ...shared, rejectUnauthorized: true });
  const refusals: Array<string | undefined> = [];
  strict.server.on('tlsClientError', (_err, socket: tls.TLSSocket) => refusals.push(String(socket.authorizationError)));

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    const pin = { minVersion: version, maxVersion: version };
    const first = await tryEcho(lenient.port, ca, { ...pin, cert: mallory.cert, key: mallory.key });
    assert.equal(first.echoed, 'ping', `${version}: the lenient server echoes`);
    assert.ok(first.session, `${version}: and hands out a ticket`);
    const resumed = await tryEcho(strict.port, ca, { ...pin, session: first.session });
    assert.equal(resumed.resumed, true, `${version}: the ticket resumes`);
    assert.equal(resumed.echoed, '', `${version}: but the resumed session is refused`);
  }
  // The verify error of the first handshake, kept in the session (which one depends on the two CAs' names).
  assert.equal(refusals.length, 2, JSON.stringify(refusals));
  for (const code of refusals) assert.match(String(code), /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|CERT_SIGNATURE_FAILURE)$/);
});
