// Properties of the PROXY protocol parser and its socket reader, on headers built here from
// arbitrary fields (an encoder written from the spec, not from the parser), on arbitrary bytes
// and on mutations of valid headers: round trips, prefixes, the byte bounds, monotonic
// verdicts, and what the spec refuses never being accepted.
// https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt

import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatIpv6, parseProxyHeader, PROXY_V1_MAX_BYTES, PROXY_V2_MAX_BYTES, type ProxyHeaderResult } from '../../src/proxy/proxy-header';
import { readProxyHeader } from '../../src/proxy/read-proxy-header';
import { ipv6Bytes, ipv6Style, nodeIpv6, writeIpv6, type Ipv6Style } from './addresses';
import { checkProperty } from './budget';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const V2_FIXED_BYTES = 16;
/** Address block bytes per v2 family (UNSPEC, INET, INET6, UNIX). */
const FAMILY_BYTES = [0, 12, 36, 216] as const;

// ---------------------------------------------------------------------------------------------
// The encoder.

interface V1Fields {
  readonly version: 1;
  readonly protocol: 'TCP4' | 'TCP6' | 'UNKNOWN';
  readonly source: Buffer;
  readonly destination: Buffer;
  readonly sourceStyle: Ipv6Style;
  readonly destinationStyle: Ipv6Style;
  readonly sourcePort: number;
  readonly destinationPort: number;
  /** What an UNKNOWN line carries after "UNKNOWN" (printable ASCII, may be absent). */
  readonly unknownTail: string | undefined;
}

interface Tlv {
  readonly type: number;
  readonly value: Buffer;
}

interface V2Fields {
  readonly version: 2;
  readonly command: 0 | 1;
  readonly family: 0 | 1 | 2 | 3;
  readonly transport: 0 | 1 | 2;
  readonly block: Buffer;
  readonly tlvs: readonly Tlv[];
}

type Fields = V1Fields | V2Fields;

const port = fc.integer({ min: 0, max: 65535 });
const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 100 });

const v1Fields: fc.Arbitrary<V1Fields> = fc
  .record({
    protocol: fc.constantFrom('TCP4' as const, 'TCP6' as const, 'UNKNOWN' as const),
    v4: fc.tuple(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 4, maxLength: 4 })),
    v6: fc.tuple(ipv6Bytes, ipv6Bytes),
    sourceStyle: ipv6Style,
    destinationStyle: ipv6Style,
    sourcePort: port,
    destinationPort: port,
    unknownTail: fc.option(printable.map((s) => ` ${s}`), { nil: undefined }),
  })
  .map((r) => ({
    version: 1,
    protocol: r.protocol,
    source: r.protocol === 'TCP4' ? Buffer.from(r.v4[0]) : r.v6[0],
    destination: r.protocol === 'TCP4' ? Buffer.from(r.v4[1]) : r.v6[1],
    sourceStyle: r.sourceStyle,
    destinationStyle: r.destinationStyle,
    sourcePort: r.sourcePort,
    destinationPort: r.destinationPort,
    unknownTail: r.unknownTail,
  }));

const tlv: fc.Arbitrary<Tlv> = fc.record({ type: fc.integer({ min: 0, max: 255 }), value: fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)) });

const v2Fields: fc.Arbitrary<V2Fields> = fc
  .record({
    command: fc.constantFrom(0 as const, 1 as const),
    family: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
    // Mostly STREAM, as a TCP balancer sends; the others to see them refused or ignored.
    transport: fc.oneof({ arbitrary: fc.constant(1 as const), weight: 4 }, { arbitrary: fc.constantFrom(0 as const, 2 as const), weight: 1 }),
    block: fc.uint8Array({ minLength: 216, maxLength: 216 }),
    v6: ipv6Bytes,
    tlvs: fc.oneof(fc.array(tlv, { maxLength: 8 }), fc.array(tlv, { maxLength: 1 }).map((ts) => [...ts, { type: 0xee, value: Buffer.alloc(1700, 0x41) }])),
  })
  .map((r) => {
    const block = Buffer.from(r.block.subarray(0, FAMILY_BYTES[r.family]));
    if (r.family === 2) r.v6.copy(block, 0);
    // Keep within the 2 KiB bound: drop TLVs from the end until the header fits.
    const tlvs = [...r.tlvs];
    while (V2_FIXED_BYTES + block.length + tlvs.reduce((n, t) => n + 3 + t.value.length, 0) > PROXY_V2_MAX_BYTES) tlvs.pop();
    return { version: 2, command: r.command, family: r.family, transport: r.transport, block, tlvs };
  });

const fields: fc.Arbitrary<Fields> = fc.oneof(v1Fields, v2Fields);

function v1Address(bytes: Buffer, style: Ipv6Style): string {
  return bytes.length === 4 ? Array.from(bytes).join('.') : writeIpv6(bytes, style);
}

function encode(f: Fields): Buffer {
  if (f.version === 1) {
    if (f.protocol === 'UNKNOWN') return Buffer.from(`PROXY UNKNOWN${f.unknownTail ?? ''}\r\n`, 'latin1');
    const line = `PROXY ${f.protocol} ${v1Address(f.source, f.sourceStyle)} ${v1Address(f.destination, f.destinationStyle)} ${f.sourcePort} ${f.destinationPort}\r\n`;
    return Buffer.from(line, 'latin1');
  }
  const tlvs = f.tlvs.map((t) => {
    const head = Buffer.from([t.type, 0, 0]);
    head.writeUInt16BE(t.value.length, 1);
    return Buffer.concat([head, t.value]);
  });
  const rest = Buffer.concat([f.block, ...tlvs]);
  const fixed = Buffer.from([0x20 | f.command, (f.family << 4) | f.transport, 0, 0]);
  fixed.writeUInt16BE(rest.length, 2);
  return Buffer.concat([SIGNATURE, fixed, rest]);
}

/** What the spec (and our documented choices) say `encode(f)` must parse to. */
function expected(f: Fields, headerLength: number): ProxyHeaderResult['kind'] | Record<string, unknown> {
  if (f.version === 1) {
    // The spec's bound counts the CRLF; longer text forms of the same addresses don't fit it.
    if (headerLength > PROXY_V1_MAX_BYTES) return 'invalid';
    if (f.protocol === 'UNKNOWN') return { kind: 'header', version: 1, command: 'proxy', headerLength };
    const address = f.protocol === 'TCP4' ? Array.from(f.source).join('.') : nodeIpv6(f.source);
    return { kind: 'header', version: 1, command: 'proxy', client: { address, port: f.sourcePort }, headerLength };
  }
  if (f.command === 0) return { kind: 'header', version: 2, command: 'local', headerLength };
  if (f.family === 0 || f.family === 3) return { kind: 'header', version: 2, command: 'proxy', headerLength };
  // Our choice: only a TCP connection (STREAM) is served; the spec leaves the receiver to refuse others.
  if (f.transport !== 1) return 'invalid';
  const address = f.family === 1 ? Array.from(f.block.subarray(0, 4)).join('.') : nodeIpv6(f.block.subarray(0, 16));
  const sourcePort = f.block.readUInt16BE(f.family === 1 ? 8 : 32);
  return { kind: 'header', version: 2, command: 'proxy', client: { address, port: sourcePort }, headerLength };
}

function assertExpected(result: ProxyHeaderResult, want: ReturnType<typeof expected>): void {
  if (typeof want === 'string') assert.equal(result.kind, want, JSON.stringify(result));
  else assert.deepEqual(result, want);
}

// ---------------------------------------------------------------------------------------------
// Arbitrary bytes and mutations.

/** One change to a header's bytes: a bit flipped, a byte inserted, deleted or overwritten, a v2 length rewritten. */
type Mutation =
  | { readonly op: 'flip'; readonly at: number; readonly bit: number }
  | { readonly op: 'insert'; readonly at: number; readonly byte: number }
  | { readonly op: 'delete'; readonly at: number }
  | { readonly op: 'set'; readonly at: number; readonly byte: number }
  | { readonly op: 'length'; readonly length: number };

/** Bytes that matter to the grammar, more often than chance would pick them. */
const interestingByte = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(...Buffer.from('\r\n :.0123456789afAF', 'latin1')), fc.constantFrom(0x20, 0x21, 0x11, 0x21, 0x31, 0x12));

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), byte: interestingByte }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: interestingByte }),
  fc.record({ op: fc.constant('length' as const), length: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 2020, max: 2040 })) }),
);

function mutate(data: Buffer, mutations: readonly Mutation[]): Buffer {
  let out = Buffer.from(data);
  for (const m of mutations) {
    if (out.length === 0) break;
    const at = m.op === 'length' ? 0 : m.at % out.length;
    if (m.op === 'flip') out[at]! ^= 1 << m.bit;
    else if (m.op === 'set') out[at] = m.byte;
    else if (m.op === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from([m.byte]), out.subarray(at)]);
    else if (m.op === 'delete') out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
    else if (out.length >= 16) out.writeUInt16BE(m.length, 14);
  }
  return out;
}

const trailing = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));

/** Input a hostile peer might send: noise, noise after a valid start, mutated headers. */
const hostileBytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.tuple(fc.constantFrom(Buffer.from('PROXY '), Buffer.from('PROXY TCP4 '), Buffer.from('PROXY TCP6 '), Buffer.from('PROXY UNKNOWN'), SIGNATURE), fc.uint8Array({ maxLength: 2100 })).map(([a, b]) => Buffer.concat([a, b])),
  fc.tuple(fields, trailing, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([f, t, ms]) => mutate(Buffer.concat([encode(f), t]), ms)),
);

/** The bound the first bytes commit to: the most bytes the parser may ask for. */
function boundFor(data: Buffer): number {
  return data[0] === SIGNATURE[0] ? PROXY_V2_MAX_BYTES : PROXY_V1_MAX_BYTES;
}

/** Spec rules an accepted v1 line must keep, checked on its text apart from the parser. */
function checkAcceptedV1(line: string, result: Extract<ProxyHeaderResult, { kind: 'header' }>): void {
  assert.ok(result.headerLength <= PROXY_V1_MAX_BYTES, `v1 header of ${result.headerLength} bytes`);
  assert.ok(line.endsWith('\r\n') && !line.slice(0, -2).includes('\r') && !line.slice(0, -2).includes('\n'), 'v1 ends at its first CRLF');
  assert.ok(/^[\x20-\x7e]*$/.test(line.slice(0, -2)), 'v1 is printable ASCII');
  const parts = line.slice(0, -2).split(' ');
  assert.equal(parts[0], 'PROXY');
  if (parts[1] === 'UNKNOWN') return assert.equal(result.client, undefined);
  assert.equal(parts.length, 6, 'v1: one space between fields');
  const family = parts[1] === 'TCP4' ? 4 : parts[1] === 'TCP6' ? 6 : assert.fail(`v1 protocol ${parts[1]}`);
  const v4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)){3}$/;
  for (const address of parts.slice(2, 4)) {
    assert.ok(family === 4 ? v4.test(address!) : net.isIPv6(address!) && !address!.includes('%'), `v1 address ${address} for TCP${family}`);
  }
  for (const p of parts.slice(4, 6)) assert.ok(/^(0|[1-9]\d{0,4})$/.test(p!) && Number(p) <= 65535, `v1 port ${p}`);
  const address = family === 4 ? parts[2] : new net.SocketAddress({ address: parts[2]!, family: 'ipv6' }).address;
  assert.deepEqual(result.client, { address, port: Number(parts[4]) });
}

/** Spec rules an accepted v2 header must keep, checked on its bytes apart from the parser. */
function checkAcceptedV2(data: Buffer, result: Extract<ProxyHeaderResult, { kind: 'header' }>): void {
  assert.ok(data.subarray(0, 12).equals(SIGNATURE));
  assert.equal(data[12]! >> 4, 2, 'v2 version');
  const command = data[12]! & 0xf;
  assert.ok(command <= 1, `v2 command ${command}`);
  assert.equal(result.command, command === 0 ? 'local' : 'proxy');
  const length = data.readUInt16BE(14);
  assert.equal(result.headerLength, V2_FIXED_BYTES + length);
  assert.ok(result.headerLength <= PROXY_V2_MAX_BYTES);
  const family = data[13]! >> 4;
  assert.ok(family <= 3, `v2 family ${family}`);
  assert.ok((data[13]! & 0xf) <= 2, `v2 transport ${data[13]! & 0xf}`);
  if (command === 0) return assert.equal(result.client, undefined);
  assert.ok(length >= FAMILY_BYTES[family as 0 | 1 | 2 | 3], `v2 block of ${length} for family ${family}`);
  // The TLVs after the addresses fill the rest exactly.
  let at = V2_FIXED_BYTES + FAMILY_BYTES[family as 0 | 1 | 2 | 3];
  while (at < result.headerLength) at += 3 + data.readUInt16BE(at + 1);
  assert.equal(at, result.headerLength, 'v2 TLVs fill the header');
  if (family === 1) assert.deepEqual(result.client, { address: Array.from(data.subarray(16, 20)).join('.'), port: data.readUInt16BE(24) });
  else if (family === 2) assert.deepEqual(result.client, { address: nodeIpv6(data.subarray(16, 32)), port: data.readUInt16BE(48) });
  else assert.equal(result.client, undefined);
}

/** Everything that must hold of any result for any input. */
function checkAnyInput(data: Buffer): ProxyHeaderResult {
  const result = parseProxyHeader(data);
  if (result.kind === 'need-more') assert.ok(data.length < boundFor(data), `need-more with ${data.length} bytes, at or past the bound`);
  if (result.kind === 'header') {
    assert.ok(result.headerLength > 0 && result.headerLength <= data.length, `headerLength ${result.headerLength} of ${data.length} bytes`);
    if (result.version === 1) checkAcceptedV1(data.toString('latin1', 0, result.headerLength), result);
    else checkAcceptedV2(data, result);
  }
  return result;
}

/** The verdict as the reader sees it, feeding ever longer prefixes cut at `cuts`: the first decided one. */
function readInChunks(data: Buffer, cuts: readonly number[]): ProxyHeaderResult {
  const ends = [...new Set([...cuts.map((c) => c % (data.length + 1)), data.length])].sort((a, b) => a - b);
  let result: ProxyHeaderResult = { kind: 'need-more' };
  for (const end of ends) {
    result = parseProxyHeader(data.subarray(0, end));
    if (result.kind !== 'need-more') return result;
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// The properties.

test('proxy-header property: an encoded header with anything after it parses to its fields, every prefix needs more', async () => {
  await checkProperty(
    fc.property(fields, trailing, fc.array(fc.nat(), { maxLength: 6 }), (f, after, cuts) => {
      const header = encode(f);
      const want = expected(f, header.length);
      const data = Buffer.concat([header, after]);
      assertExpected(parseProxyHeader(data), want);
      if (typeof want === 'string') return;
      for (let n = 0; n < header.length; n++) assert.equal(parseProxyHeader(data.subarray(0, n)).kind, 'need-more', `prefix of ${n} of ${header.length}`);
      assertExpected(readInChunks(data, cuts), want);
    }),
    { runs: 3000 },
  );
});

test('proxy-header property: hostile bytes never throw, overreach, stall at the bound, or pass what the spec refuses', async () => {
  await checkProperty(
    fc.property(hostileBytes, (data) => {
      checkAnyInput(data);
    }),
    { runs: 20000 },
  );
});

test('proxy-header property: a decided verdict stays decided as bytes are added, however they are split', async () => {
  await checkProperty(
    fc.property(hostileBytes, fc.array(fc.nat(), { maxLength: 8 }), (data, cuts) => {
      const full = checkAnyInput(data);
      const chunked = readInChunks(data, cuts);
      if (full.kind === 'invalid') assert.equal(chunked.kind, 'invalid', JSON.stringify(chunked));
      else assert.deepEqual(chunked, full);
    }),
    { runs: 10000 },
  );
});

test('proxy-header property: formatIpv6 writes addresses exactly as Node does', async () => {
  await checkProperty(
    fc.property(ipv6Bytes, (bytes) => {
      assert.equal(formatIpv6(bytes), nodeIpv6(bytes));
    }),
    { runs: 2000 },
  );
});

test('proxy-header property: the socket reader returns the header and exactly the bytes after it, however they arrive', async (t) => {
  const listener = net.createServer({ pauseOnConnect: true });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  t.after(() => listener.close());
  const { port: listenPort } = listener.address() as net.AddressInfo;
  const acceptable = fields.filter((f) => typeof expected(f, encode(f).length) !== 'string');

  await checkProperty(
    fc.asyncProperty(acceptable, fc.uint8Array({ maxLength: 3000 }), fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 8 }), async (f, restBytes, chunkSizes) => {
      const header = encode(f);
      const rest = Buffer.from(restBytes);
      const data = Buffer.concat([header, rest]);
      const client = net.connect({ host: '127.0.0.1', port: listenPort, noDelay: true });
      client.on('error', () => {});
      const [server] = (await once(listener, 'connection')) as [net.Socket];
      try {
        const reading = readProxyHeader(server, 5000);
        // Chunks of the given sizes, cycling, each written once the previous one is flushed.
        for (let at = 0, i = 0; at < data.length; i++) {
          const size = chunkSizes[i % chunkSizes.length]!;
          await new Promise<void>((resolve) => client.write(data.subarray(at, at + size), () => resolve()));
          at += size;
        }
        client.end();
        const result = await reading;
        const parsed = parseProxyHeader(data);
        if (result.kind !== 'header' || parsed.kind !== 'header') return assert.fail(`${JSON.stringify(result)} from ${JSON.stringify(parsed)}`);
        assert.deepEqual(result.header, { version: parsed.version, command: parsed.command, client: parsed.client });
        // What the reader handed back, then whatever the socket still has: the rest, once each.
        const later: Buffer[] = [];
        server.on('data', (chunk: Buffer) => later.push(chunk));
        server.resume();
        await once(server, 'end');
        assert.deepEqual(Buffer.concat([result.rest, ...later]), rest);
      } finally {
        server.destroy();
        client.destroy();
      }
    }),
    { runs: 40 },
  );
});
