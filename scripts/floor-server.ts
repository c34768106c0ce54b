// The benchmark's floor: the least per-connection work that the issues require of tls-echod
// in the benchmark's configuration, written as plainly as Node allows and nothing more.
// `npm run bench` runs it next to the bare baseline, so the table shows how close to the
// baseline any implementation of these requirements can get on this machine, and how much of
// the daemon's distance is its own.
//
//   node dist/scripts/floor-server.js --cert server.pem --key server-key.pem [--listen 127.0.0.1:0]
//
// Prints `listening <port>` once it accepts connections. What it does per connection, and why
// each piece is required:
//   - admission before any TLS work (#3): the peer address (one getpeername), a per-IP token
//     bucket, a per-IP count of open sessions and a global count; nothing is refused, as in the
//     benchmark (the limits are raised above its load);
//   - the hand-over of a paused raw socket to a tls.Server that never listens (#3's
//     architecture), with a handshake timeout and renegotiation refused;
//   - an echo with byte counts and backpressure, half-close kept (#2);
//   - one JSON log line per ended session with the fields #2 names, written to stdout in
//     batches (#2).
// Not here, because the benchmark configuration doesn't exercise them per connection or they
// are timers rather than per-connection work: CIDR lists, the pending queue, worker IPC,
// metrics histograms, ticket-key rotation, the idle/session/byte limits.

import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { parseArgs } from 'node:util';
import { parseHostPort } from '../src/config';

/** The benchmark's raised limits: checked on every connection, never reached. */
const CONN_RATE_PER_SEC = 1_000_000;
const CONN_BURST = 1_000_000;
const MAX_CONNS_PER_IP = 100_000;
const MAX_SESSIONS = 10_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const LOG_BATCH_MS = 100;

interface Bucket {
  tokens: number;
  at: number;
}

/** One ended session's log line, before formatting: Date.now() at the end, and the fields #2 names. */
interface Ended {
  readonly at: number;
  readonly fields: SessionFields;
}

interface SessionFields {
  readonly sessionId: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly tlsVersion: string | null;
  readonly cipher: string;
  readonly sni: string | undefined;
  readonly alpn: string | undefined;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  readonly reason: string;
}

interface Admitted {
  readonly id: number;
  readonly ip: string;
  readonly port: number;
  readonly at: number;
}

function main(): void {
  let values: { cert?: string; key?: string; listen?: string };
  try {
    ({ values } = parseArgs({ options: { cert: { type: 'string' }, key: { type: 'string' }, listen: { type: 'string' } } }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.cert === undefined || values.key === undefined) usage('--cert and --key are required');
  let listen;
  try {
    listen = parseHostPort(values.listen ?? '127.0.0.1:0');
  } catch (err) {
    usage(`--listen: ${(err as Error).message}`);
  }

  const buckets = new Map<string, Bucket>();
  const openPerIp = new Map<string, number>();
  const admitted = new WeakMap<net.Socket, Admitted>();
  let open = 0;
  let nextId = 1;
  // Lines are built when their batch is written, from records kept until then: formatting in a
  // loop away from the handshakes is the cheapest way found to write one line per session.
  let ended: Ended[] = [];
  const flush = (): void => {
    const batch = ended;
    ended = [];
    let text = '';
    for (const { at, fields } of batch) {
      text += `{"timestamp":"${new Date(at).toISOString()}","level":"info","message":"session ended",${JSON.stringify(fields).slice(1)}\n`;
    }
    process.stdout.write(text);
  };
  const tlsServer = tls.createServer({ cert: readFileSync(values.cert), key: readFileSync(values.key), allowHalfOpen: true, handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
  tlsServer.on('tlsClientError', (_err, socket) => socket.destroy());
  tlsServer.on('secureConnection', (socket: tls.TLSSocket & { _parent?: net.Socket }) => {
    const conn = socket._parent === undefined ? undefined : admitted.get(socket._parent);
    if (conn === undefined) {
      socket.destroy();
      return;
    }
    socket.disableRenegotiation();
    const version = socket.getProtocol();
    const cipher = socket.getCipher().standardName;
    const sni = socket.servername || undefined;
    const alpn = socket.alpnProtocol || undefined;
    let bytes = 0;
    let reason = 'peer-closed';
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (!socket.write(chunk)) socket.pause();
    });
    socket.on('drain', () => socket.resume());
    socket.on('end', () => socket.end());
    socket.on('error', () => {
      reason = 'error';
      socket.destroy();
    });
    socket.on('close', () => {
      if (ended.length === 0) setTimeout(flush, LOG_BATCH_MS);
      ended.push({
        at: Date.now(),
        fields: {
          sessionId: conn.id,
          remoteAddress: conn.ip,
          remotePort: conn.port,
          tlsVersion: version,
          cipher,
          sni,
          alpn,
          bytesIn: bytes,
          bytesOut: bytes,
          durationMs: Math.round((performance.now() - conn.at) * 10) / 10,
          reason,
        },
      });
    });
  });

  const release = (ip: string): void => {
    open--;
    const n = openPerIp.get(ip)! - 1;
    if (n === 0) openPerIp.delete(ip);
    else openPerIp.set(ip, n);
  };

  const listener = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
    const ip = socket.remoteAddress;
    if (ip === undefined) {
      socket.destroy();
      return;
    }
    const now = performance.now();
    let bucket = buckets.get(ip);
    if (bucket === undefined) {
      bucket = { tokens: CONN_BURST, at: now };
      buckets.set(ip, bucket);
    }
    bucket.tokens = Math.min(CONN_BURST, bucket.tokens + ((now - bucket.at) * CONN_RATE_PER_SEC) / 1000);
    bucket.at = now;
    const count = openPerIp.get(ip) ?? 0;
    if (bucket.tokens < 1 || count >= MAX_CONNS_PER_IP || open >= MAX_SESSIONS) {
      socket.resetAndDestroy();
      return;
    }
    bucket.tokens -= 1;
    openPerIp.set(ip, count + 1);
    open++;
    admitted.set(socket, { id: nextId++, ip, port: socket.remotePort ?? 0, at: now });
    socket.once('close', () => release(ip));
    // The TLS socket takes over the paused handle and starts reading it itself.
    tlsServer.emit('connection', socket);
  });
  listener.listen(listen.port, listen.host, () => {
    process.stdout.write(`listening ${(listener.address() as net.AddressInfo).port}\n`);
  });
}

function usage(problem: string): never {
  process.stderr.write(`floor-server: ${problem}\nusage: floor-server --cert <pem> --key <pem> [--listen host:port]\n`);
  process.exit(2);
}

main();
