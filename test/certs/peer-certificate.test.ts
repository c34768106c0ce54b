// peerCertificate(): how the daemon reads a client's certificate for its logs. It must not use
// getPeerX509Certificate(), which leaks native memory on every call on a server socket whose
// client sent a chain (Node 20.20.2), as the chaos soak found: a worker under --client-auth
// request grew 7 MiB a minute.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import tls from 'node:tls';
import { peerCertificate, type PeerCertificate } from '../../src/certs/inspect';
import { issueClient } from '../helpers/client-certs';
import { runCli, tempDir } from '../helpers/daemon';

const MIB = 1024 * 1024;

/** A server asking for client certificates, as --client-auth request does, that reads each peer with `read`. */
async function requestingServer(certDir: string, read: (socket: tls.TLSSocket) => void): Promise<tls.Server> {
  const server = tls.createServer(
    {
      key: readFileSync(path.join(certDir, 'server-key.pem')),
      cert: readFileSync(path.join(certDir, 'server.pem')),
      ca: readFileSync(path.join(certDir, 'ca.pem')),
      requestCert: true,
      rejectUnauthorized: false,
    },
    (socket) => {
      read(socket);
      socket.on('error', () => {});
      socket.end();
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

function handshake(port: number, options: tls.ConnectionOptions): Promise<void> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ...options });
    socket.on('data', () => {});
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
  });
}

async function generated(t: import('node:test').TestContext): Promise<string> {
  const dir = tempDir(t);
  const r = await runCli(['cert', 'generate', '--cert-dir', dir]);
  assert.equal(r.code, 0, r.stderr);
  return dir;
}

test('peerCertificate: subject and fingerprint of a client certificate; undefined without one', async (t) => {
  const dir = await generated(t);
  const client = await issueClient(dir, 'alice');
  const seen: (PeerCertificate | undefined)[] = [];
  const server = await requestingServer(dir, (socket) => seen.push(peerCertificate(socket)));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;

  await handshake(port, { cert: client.cert, key: client.key });
  await handshake(port, {});
  assert.equal(seen.length, 2);
  assert.deepEqual(seen[0], { subject: 'CN=alice', fingerprint256: new (await import('node:crypto')).X509Certificate(client.cert).fingerprint256 });
  assert.equal(seen[1], undefined);
});

test('peerCertificate: thousands of reads leave native memory flat (getPeerX509Certificate grew 4 KiB a call)', { timeout: 120_000 }, async (t) => {
  const dir = await generated(t);
  const client = await issueClient(dir, 'bob');
  let read = false;
  const server = await requestingServer(dir, (socket) => void (read && peerCertificate(socket)?.subject));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  // One client context for every connection (a context each would be the client's own churn).
  // With the CA in it, the client sends its chain, leaf and CA, as the soak's clients did: the
  // leak needs a chain.
  const options = { secureContext: tls.createSecureContext({ cert: client.cert, key: client.key, ca: readFileSync(path.join(dir, 'ca.pem')) }) };
  const sessions = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i += 4) await Promise.all([handshake(port, options), handshake(port, options), handshake(port, options), handshake(port, options)]);
  };

  const growth = async (n: number): Promise<number> => {
    const before = process.memoryUsage.rss();
    await sessions(n);
    return (process.memoryUsage.rss() - before) / MIB;
  };

  // Warm up until the allocator and V8 have their working set, then 4,000 handshakes without
  // reading the certificate: the baseline. Node 24.22 grows by about 40 MiB over them whatever
  // the daemon reads (measured with a bare server); there this check can't tell, and says so.
  await sessions(2000);
  const baseline = await growth(4000);
  if (baseline >= 6) {
    t.skip(`this Node grows RSS by ${baseline.toFixed(1)} MiB over 4,000 handshakes without reading a certificate`);
    return;
  }
  // The leak grew RSS by about 16 MiB over 4,000 reads; the legacy object, by less than 1.
  read = true;
  const grown = await growth(4000);
  assert.ok(grown < 6, `RSS grew ${grown.toFixed(1)} MiB over 4,000 client certificates read (${baseline.toFixed(1)} MiB without reading)`);
});
