// The PROXY protocol parser on crafted bytes: v1 and v2, every prefix of a valid header, and
// the ways a header can be wrong.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatIpv6, parseProxyHeader, PROXY_V1_MAX_BYTES, PROXY_V2_MAX_BYTES } from '../../src/proxy/proxy-header';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header: command 0 LOCAL / 1 PROXY, family byte (0x11 TCP4, 0x21 TCP6, ...), address block and TLVs. */
function v2(command: number, familyByte: number, addresses: Buffer, tlvs: Buffer = Buffer.alloc(0), length = addresses.length + tlvs.length): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = 0x20 | command;
  fixed[1] = familyByte;
  fixed.writeUInt16BE(length, 2);
  return Buffer.concat([SIGNATURE, fixed, addresses, tlvs]);
}

function inet(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}

function inet6(src: string, dst: string, sport: number, dport: number): Buffer {
  const b = Buffer.alloc(36);
  Buffer.from(src, 'hex').copy(b, 0);
  Buffer.from(dst, 'hex').copy(b, 16);
  b.writeUInt16BE(sport, 32);
  b.writeUInt16BE(dport, 34);
  return b;
}

function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

const TLVS = Buffer.concat([tlv(0x01, Buffer.from('h2')), tlv(0x02, Buffer.from('example.com')), tlv(0x04, Buffer.alloc(0))]);

function assertHeader(data: Buffer, expected: Record<string, unknown>): void {
  const result = parseProxyHeader(data);
  assert.equal(result.kind, 'header', JSON.stringify(result));
  assert.deepEqual(result, { kind: 'header', ...expected });
}

function assertInvalid(data: Buffer, why: RegExp): void {
  const result = parseProxyHeader(data);
  assert.equal(result.kind, 'invalid', `${data.toString('latin1')}: ${JSON.stringify(result)}`);
  assert.match((result as { why: string }).why, why);
}

/** Every proper prefix of `data` asks for more. */
function assertNeedsMoreUntilComplete(data: Buffer): void {
  for (let n = 0; n < data.length; n++) {
    assert.equal(parseProxyHeader(data.subarray(0, n)).kind, 'need-more', `prefix of ${n} of ${data.length} bytes`);
  }
}

test('v1 TCP4: the carried client, and the header length with bytes after it', () => {
  const header = Buffer.from('PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n');
  assertHeader(header, { version: 1, command: 'proxy', client: { address: '192.0.2.10', port: 56324 }, headerLength: header.length });
  assertHeader(Buffer.concat([header, Buffer.from([0x16, 0x03, 0x01])]), { version: 1, command: 'proxy', client: { address: '192.0.2.10', port: 56324 }, headerLength: header.length });
});

test('v1 TCP6: the address in Node\'s form (lower case, compressed); a mapped IPv4 address stays mapped', () => {
  const header = Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:db8::2 65535 0\r\n');
  assertHeader(header, { version: 1, command: 'proxy', client: { address: '2001:db8::1', port: 65535 }, headerLength: header.length });
  const mapped = Buffer.from('PROXY TCP6 ::ffff:192.0.2.7 ::1 1000 443\r\n');
  assertHeader(mapped, { version: 1, command: 'proxy', client: { address: '::ffff:192.0.2.7', port: 1000 }, headerLength: mapped.length });
});

test('v1 UNKNOWN: no client (the connection\'s own peer counts), whatever follows it on the line', () => {
  for (const text of ['PROXY UNKNOWN\r\n', 'PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n']) {
    assertHeader(Buffer.from(text), { version: 1, command: 'proxy', headerLength: text.length });
  }
});

test('v1: the longest header (107 bytes, the spec\'s worst case) is read; one without CRLF within 107 bytes is refused', () => {
  const longest = Buffer.from('PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n');
  assert.equal(longest.length, PROXY_V1_MAX_BYTES);
  assert.equal(parseProxyHeader(longest).kind, 'header');
  assertInvalid(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(PROXY_V1_MAX_BYTES)}`), /no CRLF within 107/);
  assert.equal(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(PROXY_V1_MAX_BYTES - 16)}`)).kind, 'need-more');
});

test('v1: truncated at every byte offset asks for more', () => {
  assertNeedsMoreUntilComplete(Buffer.from('PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n'));
  assertNeedsMoreUntilComplete(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n'));
});

test('v1: bad addresses, ports, protocols and framing are refused', () => {
  const cases: Array<[string, RegExp]> = [
    ['PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n', /IPv4 addresses/],
    ['PROXY TCP4 192.0.2.01 198.51.100.1 1 2\r\n', /IPv4 addresses/],
    ['PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n', /IPv4 addresses/],
    ['PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n', /IPv6 addresses/],
    ['PROXY TCP6 2001:db8::1%eth0 2001:db8::2 1 2\r\n', /IPv6 addresses/],
    ['PROXY TCP6 2001:db8:::1 2001:db8::2 1 2\r\n', /IPv6 addresses/],
    ['PROXY TCP4 192.0.2.1 198.51.100.1 65536 443\r\n', /ports/],
    ['PROXY TCP4 192.0.2.1 198.51.100.1 0443 443\r\n', /ports/],
    ['PROXY TCP4 192.0.2.1 198.51.100.1 -1 443\r\n', /ports/],
    ['PROXY TCP4 192.0.2.1 198.51.100.1 1\r\n', /one space apart/],
    ['PROXY TCP4 192.0.2.1  198.51.100.1 1 2\r\n', /one space apart/],
    ['PROXY TCP4 192.0.2.1 198.51.100.1 1 2 \r\n', /one space apart/],
    ['PROXY UDP4 192.0.2.1 198.51.100.1 1 2\r\n', /unknown protocol/],
    ['PROXY tcp4 192.0.2.1 198.51.100.1 1 2\r\n', /unknown protocol/],
    ['PROXY TCP4 192.0.2.1 198.51.100.1 1 2\n', /printable/],
    ['PROXY TCP4 192.0.2.1 198.51.100.1 1 2\rX', /CR not followed by LF/],
    ['PROXY TCP4 192.0.2.1\t198.51.100.1 1 2\r\n', /printable/],
  ];
  for (const [text, why] of cases) assertInvalid(Buffer.from(text), why);
});

test('v2 PROXY over TCP4 and TCP6, TLVs skipped', () => {
  const four = v2(1, 0x11, inet([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443), TLVS);
  assertHeader(four, { version: 2, command: 'proxy', client: { address: '10.0.0.1', port: 40000 }, headerLength: four.length });
  const six = v2(1, 0x21, inet6('20010db8000000000000000000000001', '20010db8000000000000000000000002', 1234, 443), TLVS);
  assertHeader(six, { version: 2, command: 'proxy', client: { address: '2001:db8::1', port: 1234 }, headerLength: six.length });
  // With the ClientHello after it: the header ends where its length says.
  assertHeader(Buffer.concat([four, Buffer.from([0x16, 0x03, 0x01, 0x00])]), { version: 2, command: 'proxy', client: { address: '10.0.0.1', port: 40000 }, headerLength: four.length });
});

test('v2 LOCAL (a health check): no client, whatever its family and block', () => {
  const local = v2(0, 0x00, Buffer.alloc(0));
  assertHeader(local, { version: 2, command: 'local', headerLength: 16 });
  const withBlock = v2(0, 0x11, inet([10, 0, 0, 1], [10, 0, 0, 2], 1, 2), TLVS);
  assertHeader(withBlock, { version: 2, command: 'local', headerLength: withBlock.length });
});

test('v2 PROXY with AF_UNSPEC or AF_UNIX: no usable client address, the connection\'s own peer counts', () => {
  assertHeader(v2(1, 0x00, Buffer.alloc(0)), { version: 2, command: 'proxy', headerLength: 16 });
  const unix = v2(1, 0x31, Buffer.alloc(216));
  assertHeader(unix, { version: 2, command: 'proxy', headerLength: 16 + 216 });
});

test('v2: truncated at every byte offset asks for more', () => {
  assertNeedsMoreUntilComplete(v2(1, 0x11, inet([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443), TLVS));
  assertNeedsMoreUntilComplete(v2(1, 0x21, inet6('20010db8000000000000000000000001', '20010db8000000000000000000000002', 1, 2)));
  assertNeedsMoreUntilComplete(v2(0, 0x00, Buffer.alloc(0)));
});

test('v2: the 2 KiB bound, judged from the fixed part alone', () => {
  const atBound = v2(1, 0x11, inet([10, 0, 0, 1], [10, 0, 0, 2], 1, 2), tlv(0x04, Buffer.alloc(PROXY_V2_MAX_BYTES - 16 - 12 - 3)));
  assert.equal(atBound.length, PROXY_V2_MAX_BYTES);
  assert.equal(parseProxyHeader(atBound).kind, 'header');
  const over = v2(1, 0x11, inet([10, 0, 0, 1], [10, 0, 0, 2], 1, 2), tlv(0x04, Buffer.alloc(PROXY_V2_MAX_BYTES - 16 - 12 - 2)));
  assertInvalid(over.subarray(0, 16), /over the 2048-byte bound/);
  assertInvalid(v2(0, 0x00, Buffer.alloc(0), Buffer.alloc(0), 0xffff).subarray(0, 16), /over the 2048-byte bound/);
});

test('v2: bad version, command, family, transport, block and TLVs are refused', () => {
  const good = v2(1, 0x11, inet([10, 0, 0, 1], [10, 0, 0, 2], 1, 2));
  const withByte = (at: number, value: number): Buffer => {
    const b = Buffer.from(good);
    b[at] = value;
    return b;
  };
  assertInvalid(withByte(12, 0x11), /version 1/);
  assertInvalid(withByte(12, 0x22), /unknown command 2/);
  assertInvalid(withByte(13, 0x41), /unknown address family 4/);
  assertInvalid(withByte(13, 0x13), /unknown transport 3/);
  assertInvalid(withByte(13, 0x12), /STREAM/);
  assertInvalid(v2(1, 0x11, Buffer.alloc(8)), /family 1 needs 12/);
  assertInvalid(v2(1, 0x21, inet([10, 0, 0, 1], [10, 0, 0, 2], 1, 2)), /family 2 needs 36/);
  assertInvalid(v2(1, 0x11, inet([10, 0, 0, 1], [10, 0, 0, 2], 1, 2), Buffer.from([0x01, 0x00])), /truncated TLV/);
  assertInvalid(v2(1, 0x11, inet([10, 0, 0, 1], [10, 0, 0, 2], 1, 2), Buffer.from([0x01, 0x00, 0x05, 0x61])), /TLV longer/);
});

test('garbage is refused from its first wrong byte: TLS, HTTP, a near-miss signature', () => {
  assertInvalid(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), /not a PROXY/);
  assertInvalid(Buffer.from('GET / HTTP/1.1\r\n'), /not a PROXY/);
  assertInvalid(Buffer.from('PROXZ'), /not a PROXY/);
  assertInvalid(Buffer.concat([SIGNATURE.subarray(0, 5), Buffer.from([0xff])]), /not a PROXY/);
  assert.equal(parseProxyHeader(Buffer.from('PROXY')).kind, 'need-more');
  assert.equal(parseProxyHeader(SIGNATURE.subarray(0, 7)).kind, 'need-more');
});

test('formatIpv6: RFC 5952 form, as Node writes addresses', () => {
  const hex = (h: string): Buffer => Buffer.from(h, 'hex');
  assert.equal(formatIpv6(hex('00000000000000000000000000000001')), '::1');
  assert.equal(formatIpv6(hex('00000000000000000000000000000000')), '::');
  assert.equal(formatIpv6(hex('20010db8000000010000000000000001')), '2001:db8:0:1::1');
  assert.equal(formatIpv6(hex('20010db8000000000001000000000001')), '2001:db8::1:0:0:1');
  assert.equal(formatIpv6(hex('20010db8000100010001000100010001')), '2001:db8:1:1:1:1:1:1');
  assert.equal(formatIpv6(hex('00000000000000000000ffffc0000207')), '::ffff:192.0.2.7');
});

// Found by test/properties/proxy-header.test.ts: a CR as the 107th byte left no room for the LF
// within the bound, yet 107 bytes asked for more and 108 were accepted as a header.
test('v1: a line whose CRLF ends past byte 107 is refused, not awaited or accepted', () => {
  const line = Buffer.from('PROXY TCP6 0000:0000:0000:0000:0000:0000:100.0.10.10 0000:0000:0000:0000:0000:0000:100.100.100.100 10000 0\r\n');
  assert.equal(line.length, PROXY_V1_MAX_BYTES + 1);
  assertInvalid(line.subarray(0, PROXY_V1_MAX_BYTES), /no CRLF within 107 bytes/);
  assertInvalid(line, /no CRLF within 107 bytes/);
  const fits = Buffer.from('PROXY TCP6 0000:0000:0000:0000:0000:0000:100.0.10.10 0000:0000:0000:0000:0000:0000:100.100.100.10 10000 0\r\n');
  assert.equal(fits.length, PROXY_V1_MAX_BYTES);
  assertHeader(fits, { version: 1, command: 'proxy', client: { address: '::100.0.10.10', port: 10000 }, headerLength: PROXY_V1_MAX_BYTES });
});

// Found by test/properties/proxy-header.test.ts: an IPv4-compatible address (six zero groups)
// came out as ::100:0 where Node, for a direct client, writes ::1.0.0.0.
test('formatIpv6: an IPv4-compatible address in dotted form, as Node writes it', () => {
  const hex = (h: string): Buffer => Buffer.from(h, 'hex');
  assert.equal(formatIpv6(hex('00000000000000000000000001000000')), '::1.0.0.0');
  assert.equal(formatIpv6(hex('000000000000000000000000c0000207')), '::192.0.2.7');
  // Seven zero groups are a longer run: "::" then the last group, as Node writes ::2.
  assert.equal(formatIpv6(hex('00000000000000000000000000000002')), '::2');
  assert.equal(formatIpv6(hex('00000000000000000000000000010000')), '::0.1.0.0');
});
