// Test helpers: bare TLS echo servers on 127.0.0.1 port 0, one faithful and one that corrupts
// the echo, each with a throwaway self-signed ECDSA certificate (its own CA) made by openssl.
// close() stops the server, destroys its sockets and removes the certificate; safe to call twice.

import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface TestCertificate {
  readonly dir: string;
  /** Self-signed, so it is also the CA to pass as --ca. */
  readonly certFile: string;
  readonly keyFile: string;
  remove(): void;
}

/** A self-signed P-256 certificate for localhost and 127.0.0.1, valid two days, in a temp dir. */
export async function makeTestCertificate(): Promise<TestCertificate> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tls-echod-echo-'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  try {
    await execFileAsync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-days', '2',
      '-keyout', keyFile, '-out', certFile,
    ]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, certFile, keyFile, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface EchoServer {
  readonly port: number;
  /** Path of the PEM to trust (the server's own self-signed certificate). */
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** Sessions accepted so far. */
  readonly sessions: () => number;
  /** Of those, the ones that resumed an earlier session (ticket or session ID). */
  readonly resumed: () => number;
  close(): Promise<void>;
}

export interface CorruptingOptions {
  /** Stream offset, per connection, of the one byte that is flipped (default 0). */
  readonly corruptOffset?: number;
}

/** `tls.createServer(s => s.pipe(s))`, plus an error handler so a client reset can't crash the test. */
export function startEchoServer(): Promise<EchoServer> {
  return startServer((socket) => socket.pipe(socket));
}

/** Echoes everything, except that the byte at `corruptOffset` of each connection comes back inverted. */
export function startCorruptingEchoServer(options: CorruptingOptions = {}): Promise<EchoServer> {
  const corruptOffset = options.corruptOffset ?? 0;
  return startServer((socket) => {
    let offset = 0;
    socket.on('data', (chunk: Buffer) => {
      let out = chunk;
      if (corruptOffset >= offset && corruptOffset < offset + chunk.length) {
        out = Buffer.from(chunk);
        out[corruptOffset - offset]! ^= 0xff;
      }
      offset += chunk.length;
      if (!socket.write(out)) socket.pause();
    });
    socket.on('drain', () => socket.resume());
    socket.on('end', () => socket.end());
  });
}

async function startServer(onSession: (socket: tls.TLSSocket) => void): Promise<EchoServer> {
  const cert = await makeTestCertificate();
  const sockets = new Set<tls.TLSSocket>();
  let sessions = 0;
  let resumed = 0;
  const server = tls.createServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) }, (socket) => {
    sessions++;
    if (socket.isSessionReused()) resumed++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    onSession(socket);
  });
  server.listen(0, '127.0.0.1');
  try {
    await once(server, 'listening');
  } catch (err) {
    cert.remove();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    caPem: cert.certFile,
    certPem: cert.certFile,
    keyPem: cert.keyFile,
    sessions: () => sessions,
    resumed: () => resumed,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => {
          cert.remove();
          resolve();
        });
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}
