// Client certificates for mutual TLS tests, issued straight from a --cert-dir's CA (including
// the kinds `cert client` refuses to make: expired, not yet valid), and a TLS client that tells
// how a connection presenting one ended.

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { requireGeneratedPair } from '../../src/certs/cert-dir';
import { createClientCertificate } from '../../src/certs/issue';

export interface ClientPair {
  readonly cert: string;
  readonly key: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly serial: string;
}

const DAY_MS = 86_400_000;

/** A client certificate for `name` from the CA in `certDir`, valid from `fromDays` to `toDays` days from now, written next to it. */
export async function issueClient(certDir: string, name: string, fromDays = -1, toDays = 30): Promise<ClientPair> {
  const ca = requireGeneratedPair(certDir, 'ca');
  const now = Date.now();
  const pair = await createClientCertificate(ca, name, 'ecdsa-p256', {
    notBefore: new Date(Math.floor((now + fromDays * DAY_MS) / 1000) * 1000),
    notAfter: new Date(Math.floor((now + toDays * DAY_MS) / 1000) * 1000),
  });
  const certFile = path.join(certDir, `test-${name}.pem`);
  const keyFile = path.join(certDir, `test-${name}-key.pem`);
  writeFileSync(certFile, pair.certPem);
  writeFileSync(keyFile, pair.keyPem, { mode: 0o600 });
  return { cert: pair.certPem, key: pair.keyPem, certFile, keyFile, serial: pair.cert.serialNumber };
}

export interface EchoOutcome {
  /** What came back of 'ping'. */
  readonly echoed: string;
  /** The error code the client saw, if any. */
  readonly error: string | undefined;
  readonly secure: boolean;
  readonly resumed: boolean;
  /** The session to resume this one (TLS 1.3 tickets arrive after the handshake). */
  readonly session: Buffer | undefined;
}

/** Connects, sends 'ping', and reports what came back once the connection has closed. */
export async function tryEcho(port: number, ca: Buffer, options: tls.ConnectionOptions = {}): Promise<EchoOutcome> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...options });
  let echoed = '';
  let error: string | undefined;
  let secure = false;
  let resumed = false;
  let session: Buffer | undefined;
  socket.on('secureConnect', () => {
    secure = true;
    resumed = socket.isSessionReused();
    socket.write('ping');
  });
  socket.on('session', (s: Buffer) => (session = s));
  socket.on('data', (c: Buffer) => {
    echoed += c.toString();
    if (echoed === 'ping') socket.end();
  });
  socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
  // Not events.once: it would reject on the 'error' a refusal is.
  await new Promise((resolve) => socket.once('close', resolve));
  return { echoed, error, secure, resumed, session };
}
