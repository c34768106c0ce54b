// Test helpers for the scenario listener: real ClientHellos captured from real clients (a plain
// net.Server on 127.0.0.1 port 0 reads the first record), and hand-built ones with any field
// set to whatever a test needs.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import type { TestContext } from 'node:test';
import tls from 'node:tls';

/** A listener on 127.0.0.1 port 0 that the test's after hook closes. */
export async function listenLocal(t: TestContext, onConnection: (socket: net.Socket) => void, options: net.ServerOpts = {}): Promise<number> {
  const server = net.createServer(options, onConnection);
  server.listen({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  t.after(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/**
 * The first TLS record a client sends, read by a plain TCP server; `start(port)` starts the
 * client. Framed by the record header alone (not by the parser under test). The connection is
 * then destroyed, which the client sees as a reset.
 */
export async function captureFirstRecord(t: TestContext, start: (port: number) => void, timeoutMs = 10_000): Promise<Buffer> {
  let resolveRecord!: (record: Buffer) => void;
  let rejectRecord!: (err: Error) => void;
  const captured = new Promise<Buffer>((resolve, reject) => ((resolveRecord = resolve), (rejectRecord = reject)));
  const port = await listenLocal(t, (socket) => {
    let data = Buffer.alloc(0);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length >= 5 && data.length >= 5 + data.readUInt16BE(3)) {
        socket.destroy();
        resolveRecord(data.subarray(0, 5 + data.readUInt16BE(3)));
      }
    });
  });
  const timer = setTimeout(() => rejectRecord(new Error(`no ClientHello record within ${timeoutMs} ms`)), timeoutMs);
  start(port);
  try {
    return await captured;
  } finally {
    clearTimeout(timer);
  }
}

/** A Node TLS client's hello (with `options` on top of host 127.0.0.1). */
export function nodeHello(t: TestContext, options: tls.ConnectionOptions): Promise<Buffer> {
  return captureFirstRecord(t, (port) => {
    const client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    client.on('error', () => {});
    t.after(() => client.destroy());
  });
}

/** A child process's hello; the child is killed when the test ends unless it has exited. */
export function childHello(t: TestContext, command: string, args: (port: number) => string[]): Promise<Buffer> {
  return captureFirstRecord(t, (port) => {
    const child = spawn(command, args(port), { stdio: ['pipe', 'ignore', 'ignore'] });
    child.on('error', () => {});
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
  });
}

export interface HelloFields {
  readonly version?: number;
  readonly sessionId?: Buffer;
  readonly cipherSuites?: Buffer;
  readonly compression?: Buffer;
  /** [type, data] in order; undefined leaves the extensions block out altogether. */
  readonly extensions?: ReadonlyArray<readonly [number, Buffer]>;
  /** Bytes appended to the body after the extensions block. */
  readonly trailing?: Buffer;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** A server_name extension's data holding one entry of `type` (0 = host_name) per name. */
export function serverNameData(names: ReadonlyArray<Buffer | string>, type = 0): Buffer {
  const entries = names.map((n) => {
    const name = typeof n === 'string' ? Buffer.from(n, 'latin1') : n;
    return Buffer.concat([Buffer.from([type]), u16(name.length), name]);
  });
  const list = Buffer.concat(entries);
  return Buffer.concat([u16(list.length), list]);
}

/** A ClientHello handshake message (type, 3-byte length, body). */
export function clientHelloMessage(fields: HelloFields = {}): Buffer {
  const sessionId = fields.sessionId ?? Buffer.alloc(32, 7);
  const suites = fields.cipherSuites ?? Buffer.from([0x13, 0x01, 0xc0, 0x2b]);
  const compression = fields.compression ?? Buffer.from([0]);
  const parts = [u16(fields.version ?? 0x0303), Buffer.alloc(32, 1), Buffer.from([sessionId.length]), sessionId, u16(suites.length), suites, Buffer.from([compression.length]), compression];
  if (fields.extensions !== undefined) {
    const block = Buffer.concat(fields.extensions.map(([type, data]) => Buffer.concat([u16(type), u16(data.length), data])));
    parts.push(u16(block.length), block);
  }
  if (fields.trailing !== undefined) parts.push(fields.trailing);
  const body = Buffer.concat(parts);
  const header = Buffer.from([1, 0, 0, 0]);
  header.writeUIntBE(body.length, 1, 3);
  return Buffer.concat([header, body]);
}

/** `message` in handshake records of at most `fragmentBytes` payload each. */
export function inRecords(message: Buffer, fragmentBytes = 16_384, version = 0x0301): Buffer {
  const records: Buffer[] = [];
  for (let at = 0; at < message.length; at += fragmentBytes) {
    const fragment = message.subarray(at, Math.min(message.length, at + fragmentBytes));
    records.push(Buffer.from([22, version >> 8, version & 0xff]), u16(fragment.length), fragment);
  }
  return Buffer.concat(records);
}

/** The handshake message inside a single-record hello. */
export function messageOf(record: Buffer): Buffer {
  return record.subarray(5, 5 + record.readUInt16BE(3));
}
