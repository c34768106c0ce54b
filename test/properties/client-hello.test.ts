// Properties of the ClientHello server-name reader and its socket reader, on hellos built here
// from arbitrary fields (records split anywhere, extensions around the server name, any host
// name bytes), on arbitrary bytes and mutations of real hellos, and against Node's own TLS
// client: the name read back, the byte bound, and verdicts that don't change as bytes arrive.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import fc from 'fast-check';
import { CLIENT_HELLO_MAX_BYTES, parseClientHello, type HelloResult } from '../../src/scenarios/client-hello';
import { readClientHello } from '../../src/scenarios/peek-hello';
import { nodeHello } from '../scenarios/hello-samples';
import { checkProperty } from './budget';

const SERVER_NAME = 0;

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u24(n: number): Buffer {
  return Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff]);
}

// ---------------------------------------------------------------------------------------------
// The encoder.

interface SniEntry {
  readonly type: number;
  readonly name: Buffer;
}

interface HelloSpec {
  readonly version: number;
  readonly sessionId: Buffer;
  readonly suites: Buffer;
  readonly compression: Buffer;
  /** Other extensions: [type, data], none of them server_name, no type twice. */
  readonly before: ReadonlyArray<readonly [number, Buffer]>;
  readonly after: ReadonlyArray<readonly [number, Buffer]>;
  /** The server_name entries, or undefined for no server_name extension. */
  readonly sni: readonly SniEntry[] | undefined;
  /** Whether an extensions block is sent when there are no extensions. */
  readonly emptyBlock: boolean;
  /** Whether the first extension is sent twice (RFC 8446 4.2: refused). */
  readonly duplicate: boolean;
  /** Payload bytes per record, cycling; the record version's minor byte (1..3). */
  readonly fragments: readonly number[];
  readonly recordMinor: number;
}

/** A DNS name: letters, digits and hyphens in dot-separated labels, either case. */
const dnsName = fc
  .array(fc.stringMatching(/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/), { minLength: 1, maxLength: 6 })
  .map((labels) => labels.join('.'))
  .filter((n) => n.length <= 253);

const hostName: fc.Arbitrary<Buffer> = fc.oneof(
  { arbitrary: dnsName.map((n) => Buffer.from(n, 'latin1')), weight: 4 },
  // Any printable ASCII, up to and just past the 255-byte limit.
  fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 250, maxLength: 257 }).map((n) => Buffer.from(n, 'latin1')),
  // Anything: empty, non-ASCII, spaces, NUL, UTF-8.
  fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }).map((n) => Buffer.from(n, 'utf8')),
);

const extensionList = fc.uniqueArray(fc.tuple(fc.integer({ min: 1, max: 0xffff }), fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a))), {
  maxLength: 6,
  selector: ([type]) => type,
});

const helloSpec: fc.Arbitrary<HelloSpec> = fc
  .record({
    version: fc.constantFrom(0x0303, 0x0302, 0x0301),
    sessionId: fc.uint8Array({ maxLength: 32 }).map((a) => Buffer.from(a)),
    suites: fc.uint8Array({ minLength: 1, maxLength: 30 }).map((a) => Buffer.concat([Buffer.from(a), Buffer.from(a)])),
    compression: fc.uint8Array({ minLength: 1, maxLength: 3 }).map((a) => Buffer.from(a)),
    others: extensionList,
    split: fc.nat(),
    sni: fc.option(
      fc.oneof(
        { arbitrary: hostName.map((name) => [{ type: 0, name }]), weight: 6 },
        fc.array(fc.record({ type: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })), name: hostName }), { maxLength: 3 }),
      ),
      { nil: undefined, freq: 4 },
    ),
    emptyBlock: fc.boolean(),
    duplicate: fc.oneof({ arbitrary: fc.constant(false), weight: 9 }, fc.constant(true)),
    fragments: fc.oneof(fc.constant([16_384]), fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 5 })),
    recordMinor: fc.integer({ min: 1, max: 3 }),
  })
  .map(({ others, split, ...rest }) => {
    const at = split % (others.length + 1);
    return { ...rest, before: others.slice(0, at), after: others.slice(at) };
  });

function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(data.length), data]);
}

function sniData(entries: readonly SniEntry[]): Buffer {
  const list = Buffer.concat(entries.map((e) => Buffer.concat([Buffer.from([e.type]), u16(e.name.length), e.name])));
  return Buffer.concat([u16(list.length), list]);
}

function message(spec: HelloSpec): Buffer {
  const extensions = [...spec.before.map(([t, d]) => extension(t, d)), ...(spec.sni === undefined ? [] : [extension(SERVER_NAME, sniData(spec.sni))]), ...spec.after.map(([t, d]) => extension(t, d))];
  if (spec.duplicate && extensions.length > 0) extensions.push(extensions[0]!);
  const parts = [u16(spec.version), Buffer.alloc(32, 0x5a), Buffer.from([spec.sessionId.length]), spec.sessionId, u16(spec.suites.length), spec.suites, Buffer.from([spec.compression.length]), spec.compression];
  if (extensions.length > 0 || spec.emptyBlock) {
    const block = Buffer.concat(extensions);
    parts.push(u16(block.length), block);
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([1]), u24(body.length), body]);
}

/** The message in handshake records of the spec's fragment sizes. */
function records(spec: HelloSpec, msg: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < msg.length; i++) {
    const size = Math.min(spec.fragments[i % spec.fragments.length]!, msg.length - at);
    out.push(Buffer.from([22, 3, spec.recordMinor]), u16(size), msg.subarray(at, at + size));
    at += size;
  }
  return Buffer.concat(out);
}

function encode(spec: HelloSpec): Buffer {
  return records(spec, message(spec));
}

/** The server name the parser must report, or 'invalid' where the parser (as OpenSSL) refuses it. */
function expectedName(spec: HelloSpec): string | undefined | 'invalid' {
  if (spec.duplicate && spec.before.length + spec.after.length + (spec.sni === undefined ? 0 : 1) > 0) return 'invalid';
  if (spec.sni === undefined) return undefined;
  if (spec.sni.length !== 1) return 'invalid';
  const [{ type, name }] = spec.sni as [SniEntry];
  if (type !== 0 || name.length === 0 || name.length > 255) return 'invalid';
  if (!name.every((b) => b >= 0x21 && b <= 0x7e)) return 'invalid';
  return name.toString('latin1').toLowerCase();
}

const maxBytes = fc.oneof({ arbitrary: fc.constant(CLIENT_HELLO_MAX_BYTES), weight: 3 }, fc.integer({ min: 1, max: 3000 }));

function expected(spec: HelloSpec, encoded: Buffer, max: number): HelloResult | 'invalid' {
  const name = expectedName(spec);
  if (encoded.length > max || name === 'invalid') return 'invalid';
  return { kind: 'hello', serverName: name, bytes: encoded.length };
}

function assertExpected(result: HelloResult, want: HelloResult | 'invalid'): void {
  if (want === 'invalid') assert.equal(result.kind, 'invalid', JSON.stringify(result));
  else assert.deepEqual(result, want);
}

// ---------------------------------------------------------------------------------------------
// Hostile input.

type Mutation =
  | { readonly op: 'flip'; readonly at: number; readonly bit: number }
  | { readonly op: 'insert'; readonly at: number; readonly byte: number }
  | { readonly op: 'delete'; readonly at: number }
  | { readonly op: 'set'; readonly at: number; readonly byte: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: fc.constantFrom(0, 1, 2, 3, 0x16, 0x40, 0x7f, 0x80, 0xff) }),
);

function mutate(data: Buffer, mutations: readonly Mutation[]): Buffer {
  let out = Buffer.from(data);
  for (const m of mutations) {
    if (out.length === 0) break;
    const at = m.at % out.length;
    if (m.op === 'flip') out[at]! ^= 1 << m.bit;
    else if (m.op === 'set') out[at] = m.byte;
    else if (m.op === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from([m.byte]), out.subarray(at)]);
    else out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
  }
  return out;
}

/** Noise, a handshake record header followed by noise, and mutated built or real hellos. */
function hostileBytes(real: readonly Buffer[]): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
    fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.concat([Buffer.from([22, 3, 1]), Buffer.from(a)])),
    // Lengths that claim up to and past the bound, and enough bytes to reach it.
    fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0x20000 }), fc.integer({ min: 0, max: CLIENT_HELLO_MAX_BYTES + 100 })).map(([recordLength, messageLength, filler]) =>
      Buffer.concat([Buffer.from([22, 3, 3]), u16(recordLength), Buffer.from([1]), u24(messageLength), Buffer.alloc(filler, 0x16)]),
    ),
    fc.tuple(helloSpec, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([spec, ms]) => mutate(encode(spec), ms)),
    fc.tuple(fc.constantFrom(...real), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([hello, ms]) => mutate(hello, ms)),
  );
}

// ---------------------------------------------------------------------------------------------
// A reference reader: the same rules written plainly over the whole input at once (no
// incremental reading), to cross-check every verdict the parser gives on hostile bytes.

type Reference = { readonly serverName: string | undefined; readonly bytes: number } | 'invalid' | 'incomplete';

/** Thrown by the reference on a malformed body; caught in referenceHello. */
const MALFORMED = new Error('malformed');

function referenceHello(data: Buffer, max: number): Reference {
  const payload: Buffer[] = [];
  let at = 0;
  for (;;) {
    if (at + 5 > data.length) return 'incomplete';
    if (data[at] !== 22 || data[at + 1] !== 3 || data[at + 2]! < 1 || data[at + 2]! > 3) return 'invalid';
    const length = data.readUInt16BE(at + 3);
    if (length === 0 || length > 16_384) return 'invalid';
    if (at + 5 + length > data.length) return 'incomplete';
    payload.push(data.subarray(at + 5, at + 5 + length));
    at += 5 + length;
    const joined = Buffer.concat(payload);
    if (joined.length < 4) continue;
    if (joined[0] !== 1) return 'invalid';
    const messageBytes = 4 + joined.readUIntBE(1, 3);
    if (joined.length < messageBytes) continue;
    if (joined.length > messageBytes || at > max) return 'invalid';
    try {
      return { serverName: referenceBody(joined.subarray(4)), bytes: at };
    } catch (err) {
      if (err === MALFORMED) return 'invalid';
      throw err;
    }
  }
}

/** The server name of a ClientHello body (undefined for none); throws MALFORMED. */
function referenceBody(body: Buffer): string | undefined {
  let at = 0;
  const take = (n: number): Buffer => {
    if (at + n > body.length) throw MALFORMED;
    at += n;
    return body.subarray(at - n, at);
  };
  const check = (ok: boolean): void => {
    if (!ok) throw MALFORMED;
  };
  check(take(2)[0] === 3);
  take(32);
  check(take(take(1)[0]!).length <= 32);
  const suites = take(take(2).readUInt16BE(0));
  check(suites.length > 0 && suites.length % 2 === 0);
  check(take(take(1)[0]!).length > 0);
  if (at === body.length) return undefined;
  const extensions = take(take(2).readUInt16BE(0));
  check(at === body.length);
  const types = new Set<number>();
  let serverName: string | undefined;
  for (let e = 0; e < extensions.length; ) {
    check(e + 4 <= extensions.length);
    const type = extensions.readUInt16BE(e);
    const length = extensions.readUInt16BE(e + 2);
    check(e + 4 + length <= extensions.length && !types.has(type));
    types.add(type);
    if (type === SERVER_NAME) serverName = referenceServerName(extensions.subarray(e + 4, e + 4 + length));
    e += 4 + length;
  }
  return serverName;
}

/** Exactly one host_name entry of 1..255 printable ASCII bytes, lower-cased; throws MALFORMED. */
function referenceServerName(data: Buffer): string {
  const ok = data.length >= 5 && data.readUInt16BE(0) === data.length - 2 && data[2] === 0 && data.readUInt16BE(3) === data.length - 5;
  const name = data.subarray(5);
  if (!ok || name.length === 0 || name.length > 255 || !name.every((b) => b >= 0x21 && b <= 0x7e)) throw MALFORMED;
  return name.toString('latin1').toLowerCase();
}

/** The records' payloads, joined: the handshake bytes the records carry. */
function payloads(data: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let at = 0; at + 5 <= data.length; at += 5 + data.readUInt16BE(at + 3)) out.push(data.subarray(at + 5, at + 5 + data.readUInt16BE(at + 3)));
  return Buffer.concat(out);
}

/** Everything that must hold of any result for any input and bound. */
function checkAnyInput(data: Buffer, max: number): HelloResult {
  const result = parseClientHello(data, max);
  if (result.kind === 'more') assert.ok(data.length < max, `more with ${data.length} bytes, at or past the ${max}-byte bound`);
  if (result.kind === 'hello') {
    assert.ok(result.bytes <= data.length && result.bytes <= max, `hello of ${result.bytes} bytes from ${data.length}, bound ${max}`);
    if (result.serverName !== undefined) {
      assert.match(result.serverName, /^[\x21-\x40\x5b-\x7e]{1,255}$/, 'a lower-case printable ASCII name');
      assert.ok(payloads(data.subarray(0, result.bytes)).toString('latin1').toLowerCase().includes(result.serverName), 'the name is in the hello');
    }
  }
  // The reference agrees: a hello is its hello, "more" is an incomplete start, and nothing
  // refused is a complete valid hello within the bound.
  const reference = referenceHello(data, max);
  if (result.kind === 'hello') assert.deepEqual({ serverName: result.serverName, bytes: result.bytes }, reference);
  if (result.kind === 'more') assert.equal(reference, 'incomplete');
  if (result.kind === 'invalid') assert.ok(typeof reference === 'string', `refused (${result.why}) what the reference reads as ${JSON.stringify(reference)}`);
  // Nothing past the bound is looked at.
  if (data.length > max) assert.deepEqual(parseClientHello(data.subarray(0, max), max), result);
  return result;
}

/** The reader's view: ever longer prefixes cut at `cuts`, the first decided verdict. */
function readInChunks(data: Buffer, max: number, cuts: readonly number[]): HelloResult {
  const ends = [...new Set([...cuts.map((c) => c % (data.length + 1)), data.length])].sort((a, b) => a - b);
  let result: HelloResult = { kind: 'more' };
  for (const end of ends) {
    result = parseClientHello(data.subarray(0, end), max);
    if (result.kind !== 'more') return result;
  }
  return result;
}

async function realHellos(t: TestContext): Promise<Buffer[]> {
  return [
    await nodeHello(t, { servername: 'Echo.Localhost' }),
    await nodeHello(t, {}),
    await nodeHello(t, { servername: 'tls12.localhost', maxVersion: 'TLSv1.2', ALPNProtocols: ['h2', 'http/1.1'] }),
  ];
}

// ---------------------------------------------------------------------------------------------
// The properties.

test('client-hello property: a built hello, whatever follows it, gives its server name; every prefix is "more"', async () => {
  await checkProperty(
    fc.property(helloSpec, fc.uint8Array({ maxLength: 40 }), maxBytes, fc.array(fc.nat(), { maxLength: 6 }), (spec, after, max, cuts) => {
      const hello = encode(spec);
      const want = expected(spec, hello, max);
      const data = Buffer.concat([hello, after]);
      assertExpected(checkAnyInput(data, max), want);
      assertExpected(readInChunks(data, max, cuts), want);
      if (want === 'invalid') return;
      for (let n = 0; n < hello.length; n++) assert.equal(parseClientHello(data.subarray(0, n), max).kind, 'more', `prefix of ${n} of ${hello.length}`);
    }),
    { runs: 3000 },
  );
});

test('client-hello property: hostile bytes never throw, reach past the bound, or wait at it; verdicts are stable', { timeout: 60_000 }, async (t) => {
  const real = await realHellos(t);
  await checkProperty(
    fc.property(hostileBytes(real), maxBytes, fc.array(fc.nat(), { maxLength: 8 }), (data, max, cuts) => {
      const full = checkAnyInput(data, max);
      const chunked = readInChunks(data, max, cuts);
      if (full.kind === 'invalid') assert.equal(chunked.kind, 'invalid', JSON.stringify(chunked));
      else assert.deepEqual(chunked, full);
    }),
    { runs: 15000 },
  );
});

/** A loopback listener whose sockets arrive paused, as the scenario listener's do; closed after the test. */
async function pausedListener(t: TestContext): Promise<{ listener: net.Server; port: number }> {
  const listener = net.createServer({ pauseOnConnect: true });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  t.after(() => listener.close());
  return { listener, port: (listener.address() as net.AddressInfo).port };
}

test('client-hello property: Node\'s own tls.connect({ servername }) is read as that name, through readClientHello', { timeout: 60_000 }, async (t) => {
  const { listener, port } = await pausedListener(t);

  await checkProperty(
    fc.asyncProperty(dnsName.filter((n) => net.isIP(n) === 0), async (servername) => {
      const client = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
      client.on('error', () => {});
      const [server] = (await once(listener, 'connection')) as [net.Socket];
      try {
        const result = await readClientHello(server, { timeoutMs: 5000 });
        assert.equal(result.kind, 'hello', JSON.stringify(result));
        if (result.kind === 'hello') assert.equal(result.serverName, servername.toLowerCase());
      } finally {
        server.destroy();
        client.destroy();
      }
    }),
    { runs: 20 },
  );
});

test('client-hello property: readClientHello on a socket, in arbitrary chunks, decides as the parser does on the whole', { timeout: 60_000 }, async (t) => {
  const { listener, port } = await pausedListener(t);

  await checkProperty(
    fc.asyncProperty(helloSpec, fc.uint8Array({ maxLength: 200 }), fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 6 }), async (spec, after, sizes) => {
      const hello = encode(spec);
      const data = Buffer.concat([hello, after]);
      const want = expected(spec, hello, CLIENT_HELLO_MAX_BYTES);
      const client = net.connect({ host: '127.0.0.1', port, noDelay: true });
      client.on('error', () => {});
      const [server] = (await once(listener, 'connection')) as [net.Socket];
      try {
        const reading = readClientHello(server, { timeoutMs: 5000 });
        for (let at = 0, i = 0; at < data.length; i++) {
          const size = sizes[i % sizes.length]!;
          await new Promise<void>((resolve) => client.write(data.subarray(at, at + size), () => resolve()));
          at += size;
        }
        const result = await reading;
        if (result.kind === 'timeout' || result.kind === 'closed') return assert.fail(`${result.kind}: want ${JSON.stringify(want)}`);
        // `head` is what was read, in order, and holds the whole hello when there is one.
        assert.ok(data.subarray(0, result.head.length).equals(result.head), 'head is a prefix of what was sent');
        if (want === 'invalid' || want.kind !== 'hello') return assert.equal(result.kind, 'invalid');
        assert.deepEqual({ kind: result.kind, serverName: result.kind === 'hello' ? result.serverName : undefined }, { kind: 'hello', serverName: want.serverName });
        assert.ok(result.head.length >= hello.length);
      } finally {
        server.destroy();
        client.destroy();
      }
    }),
    { runs: 40 },
  );
});
