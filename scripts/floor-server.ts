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
//   - admission before any TLS work (#3): the peer address (one getpeername), then the daemon's
//     own Admission (src/daemon/admission.ts: CIDR lists, per-IP token bucket, per-IP count) and a
//     global count; nothing is refused, as in the benchmark (the limits are raised above its
//     load);
//   - the hand-over of a paused raw socket to a tls.Server that never listens (#3's
//     architecture), with a handshake timeout and renegotiation refused;
//   - an echo with byte counts and backpressure, half-close kept (#2);
//   - one JSON log line per ended session with the fields #2 names, written to stdout in
//     batches (#2).
// Not here, because the benchmark configuration doesn't exercise them per connection or they
// are timers rather than per-connection work: the pending queue, worker IPC, metrics,
// ticket-key rotation, the idle/session/byte limits.
// It accepts through Node's public path (a net.Socket per connection, handed to tls.Server).
// Since 6b375c5 the daemon's inline server skips that net.Socket (src/daemon/handle-socket.ts) and
// runs above this floor: the floor now shows what the requirements cost on the public path.

import * as net from 'node:net';
import * as tls from 'node:tls';
import { Admission } from '../src/daemon/admission';
import { normalizeAddress } from '../src/config/cidr';
import { isoTimestamp } from '../src/ops/logger';
import { parseServerArgs } from './server-args';

/** The benchmark's raised limits (scripts/bench/settings.ts): checked on every connection, never reached. */
const ADMISSION = { allow: [], deny: [], connRatePerSec: 1_000_000, connBurst: 1_000_000, maxConnsPerIp: 100_000, ipv6Prefix: 64 };
/** The daemon's defaults. */
const MAX_SESSIONS = 10_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Log lines wait at most this long, or until this many are waiting, as the daemon's do. */
const LOG_BATCH_MS = 100;
const LOG_BATCH_MAX = 1024;

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
  const { cert, key, listen } = parseServerArgs('floor-server');
  const admission = new Admission(ADMISSION);
  const admitted = new WeakMap<net.Socket, Admitted>();
  let open = 0;
  let nextId = 1;

  // Lines are built when their batch is written, from records kept until then: formatting in a
  // loop away from the handshakes is the cheapest way found to write one line per session.
  let ended: Ended[] = [];
  let flushTimer: NodeJS.Timeout | undefined;
  const flush = (): void => {
    clearTimeout(flushTimer);
    flushTimer = undefined;
    const batch = ended;
    ended = [];
    let text = '';
    for (const { at, fields } of batch) {
      text += `{"timestamp":"${isoTimestamp(at)}","level":"info","message":"session ended",${JSON.stringify(fields).slice(1)}\n`;
    }
    process.stdout.write(text);
  };
  const logEnded = (line: Ended): void => {
    ended.push(line);
    if (ended.length >= LOG_BATCH_MAX) flush();
    else flushTimer ??= setTimeout(flush, LOG_BATCH_MS);
  };

  const tlsServer = tls.createServer({ cert, key, allowHalfOpen: true, handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
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
      logEnded({
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

  const listener = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    const ip = normalizeAddress(socket.remoteAddress);
    if (open >= MAX_SESSIONS || admission.admit(ip) !== undefined) {
      socket.resetAndDestroy();
      return;
    }
    open++;
    admitted.set(socket, { id: nextId++, ip, port: socket.remotePort ?? 0, at: performance.now() });
    // The raw socket closes once, however the session ends (the TLS socket closes it).
    socket.once('close', () => {
      open--;
      admission.release(ip);
    });
    // The TLS socket takes over the paused handle and starts reading it itself.
    tlsServer.emit('connection', socket);
  });
  listener.listen(listen.port, listen.host, () => {
    process.stdout.write(`listening ${(listener.address() as net.AddressInfo).port}\n`);
  });
}

main();
