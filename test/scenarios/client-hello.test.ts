// The ClientHello parser (src/scenarios/client-hello.ts) on hellos captured from real clients
// (Node, openssl s_client, python's ssl), cut, fragmented and corrupted, and on hand-built ones
// that break one rule each.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { CLIENT_HELLO_MAX_BYTES, parseClientHello, type HelloResult } from '../../src/scenarios/client-hello';
import { which } from '../helpers/external-tools';
import { childHello, clientHelloMessage, inRecords, messageOf, nodeHello, serverNameData } from './hello-samples';

interface Sample {
  readonly client: string;
  readonly record: Buffer;
  readonly serverName: string | undefined;
}

const PYTHON_CLIENT = [
  'import socket, ssl, sys',
  'ctx = ssl.create_default_context()',
  "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
  'try:',
  "    ctx.wrap_socket(s, server_hostname='Py.Localhost')",
  'except OSError:',
  '    pass',
].join('\n');

let captured: Promise<Sample[]> | undefined;

/** Every client's hello, captured once for the whole file (each capture cleans up after itself). */
function samples(t: TestContext): Promise<Sample[]> {
  captured ??= (async () => {
    const list: Sample[] = [
      { client: 'node, servername', record: await nodeHello(t, { servername: 'Echo.Localhost' }), serverName: 'echo.localhost' },
      // Node sends no SNI for an IP address, which is what host is when servername is left out.
      { client: 'node, no servername', record: await nodeHello(t, {}), serverName: undefined },
      { client: 'node, TLS 1.2 only', record: await nodeHello(t, { servername: 'tls12.localhost', maxVersion: 'TLSv1.2' }), serverName: 'tls12.localhost' },
      { client: 'node, ALPN', record: await nodeHello(t, { servername: 'alpn.localhost', ALPNProtocols: ['h2', 'http/1.1'] }), serverName: 'alpn.localhost' },
    ];
    if (which('openssl') !== undefined) {
      const record = await childHello(t, 'openssl', (port) => ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'a.localhost']);
      list.push({ client: 'openssl s_client', record, serverName: 'a.localhost' });
    }
    if (which('python3') !== undefined) {
      const record = await childHello(t, 'python3', (port) => ['-c', PYTHON_CLIENT, String(port)]);
      list.push({ client: 'python3 ssl', record, serverName: 'py.localhost' });
    }
    return list;
  })();
  return captured;
}

function hello(serverName: string | undefined, bytes: number): HelloResult {
  return { kind: 'hello', serverName, bytes };
}

function assertInvalid(data: Buffer, why: RegExp, maxBytes?: number): void {
  const result = parseClientHello(data, maxBytes);
  assert.equal(result.kind, 'invalid', `expected invalid, got ${JSON.stringify(result)}`);
  assert.match((result as { why: string }).why, why);
}

/** A deterministic PRNG (mulberry32), so a failure can be reproduced. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

test('client hello: real hellos from node, openssl and python give their server name', { timeout: 30_000 }, async (t) => {
  const list = await samples(t);
  assert.ok(list.length >= 4);
  t.diagnostic(list.map((s) => `${s.client}: ${s.record.length} bytes`).join('; '));
  for (const s of list) {
    assert.deepEqual(parseClientHello(s.record), hello(s.serverName, s.record.length), s.client);
  }
});

test('client hello: every truncation is "more", and every split into two chunks gives the same hello', { timeout: 30_000 }, async (t) => {
  for (const s of await samples(t)) {
    const whole = parseClientHello(s.record);
    for (let cut = 0; cut < s.record.length; cut++) {
      // The parser is given everything read so far: the first chunk, then both.
      assert.deepEqual(parseClientHello(s.record.subarray(0, cut)), { kind: 'more' }, `${s.client}, ${cut} bytes`);
      assert.deepEqual(parseClientHello(Buffer.concat([s.record.subarray(0, cut), s.record.subarray(cut)])), whole);
    }
  }
});

test('client hello: a hello fragmented over several records is reassembled, at every boundary', { timeout: 30_000 }, async (t) => {
  for (const s of await samples(t)) {
    const message = messageOf(s.record);
    for (const size of [1, 2, 3, 4, 5, 100]) {
      const records = inRecords(message, size);
      assert.deepEqual(parseClientHello(records), hello(s.serverName, records.length), `${s.client}, ${size}-byte records`);
    }
    for (let cut = 1; cut < message.length; cut++) {
      const records = Buffer.concat([inRecords(message.subarray(0, cut)), inRecords(message.subarray(cut), 16_384, 0x0303)]);
      assert.deepEqual(parseClientHello(records), hello(s.serverName, records.length), `${s.client}, records split at ${cut}`);
      assert.deepEqual(parseClientHello(records.subarray(0, records.length - 1)), { kind: 'more' });
    }
  }
});

test('client hello: bytes after the hello are not counted and not looked at', { timeout: 30_000 }, async (t) => {
  const [s] = await samples(t);
  const withMore = Buffer.concat([s!.record, Buffer.from('\x17\x03\x03 then anything at all')]);
  assert.deepEqual(parseClientHello(withMore), hello(s!.serverName, s!.record.length));
});

test('client hello: corrupting any byte of a real hello never throws or reaches past it', { timeout: 30_000 }, async (t) => {
  const random = prng(15);
  for (const s of await samples(t)) {
    for (let at = 0; at < s.record.length; at++) {
      for (const mask of [0x01, 0x80, 0xff, 1 + Math.floor(random() * 255)]) {
        const bad = Buffer.from(s.record);
        bad[at]! ^= mask;
        const result = parseClientHello(bad);
        if (result.kind === 'hello') assert.ok(result.bytes <= bad.length);
      }
    }
  }
});

test('client hello: random bytes, an HTTP request, an alert and SSLv2 are invalid from their first bytes', () => {
  const random = prng(42);
  for (let i = 0; i < 1000; i++) {
    const junk = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 200) }, () => Math.floor(random() * 256)));
    if (junk[0] === 22) junk[0] = 23; // a junk start that happens to look like a handshake record is "more", and rightly
    assert.equal(parseClientHello(junk).kind, 'invalid', junk.toString('hex'));
  }
  assertInvalid(Buffer.from('GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n'), /content type 71/);
  assertInvalid(Buffer.from('G'), /not a handshake/);
  assertInvalid(Buffer.from([21, 3, 3, 0, 2, 2, 40]), /content type 21/);
  // An SSLv2-format CLIENT-HELLO: 2-byte length with the top bit set, then message type 1.
  assertInvalid(Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01]), /SSLv2/);
  assertInvalid(Buffer.from([22, 2]), /major 2/);
  assertInvalid(Buffer.from([22, 3, 0]), /3\.0/);
  assertInvalid(Buffer.from([22, 3, 4]), /3\.4/);
});

test('client hello: record and handshake lengths are bounded before the bytes arrive', () => {
  assertInvalid(Buffer.from([22, 3, 1, 0xff, 0xff]), /record length 65535/);
  assertInvalid(Buffer.from([22, 3, 1, 0x40, 0x01]), /record length 16385/);
  assertInvalid(Buffer.from([22, 3, 1, 0, 0]), /empty/);
  // A full-size record is fine; a handshake message announcing more than fits within the bound is not.
  assert.deepEqual(parseClientHello(Buffer.from([22, 3, 1, 0x40, 0x00])), { kind: 'more' });
  assertInvalid(Buffer.from([22, 3, 1, 0, 4, 1, 0x00, 0x40, 0x00]), /can't end within/);
  assertInvalid(Buffer.from([22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]), /can't end within/);
  assertInvalid(Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 40]), /type 2, not a ClientHello/);
  // The handshake header itself spread over one-byte records.
  const oneByteRecords = Buffer.from([22, 3, 1, 0, 1, 1, 22, 3, 1, 0, 1, 0x01, 22, 3, 1, 0, 1, 0]);
  assert.deepEqual(parseClientHello(oneByteRecords), { kind: 'more' });
  assertInvalid(Buffer.concat([oneByteRecords, Buffer.from([22, 3, 1, 0, 1, 0])]), /ClientHello of 65540 bytes can't end within/);
  // A second record of another type inside the hello.
  const message = clientHelloMessage();
  assertInvalid(Buffer.concat([inRecords(message.subarray(0, 10)), Buffer.from([23, 3, 3, 0, 1, 0])]), /content type 23 inside/);
});

test('client hello: a hello filling one whole record is read; one byte more is over the bound', () => {
  // The padding extension (21) fills a single-record hello to exactly CLIENT_HELLO_MAX_BYTES.
  const bare = clientHelloMessage({ extensions: [[0, serverNameData(['big.localhost'])], [21, Buffer.alloc(0)]] });
  const pad = CLIENT_HELLO_MAX_BYTES - 5 - bare.length;
  const full = inRecords(clientHelloMessage({ extensions: [[0, serverNameData(['big.localhost'])], [21, Buffer.alloc(pad)]] }));
  assert.equal(full.length, CLIENT_HELLO_MAX_BYTES);
  assert.deepEqual(parseClientHello(full), hello('big.localhost', CLIENT_HELLO_MAX_BYTES));

  const over = clientHelloMessage({ extensions: [[0, serverNameData(['big.localhost'])], [21, Buffer.alloc(pad + 1)]] });
  assertInvalid(inRecords(over), /can't end within/);
  // Fragmented, its record headers count too: refused once the bound is reached, whatever was announced.
  assertInvalid(inRecords(full.subarray(5), 1000), /past the .*bound|can't end within/);
  // A smaller bound given by the caller.
  assertInvalid(full.subarray(0, 600), /512-byte bound/, 512);
  // Endless small records that never complete a message stop at the bound too.
  const dribble = inRecords(Buffer.concat([Buffer.from([1, 0, 0x3f, 0xff]), Buffer.alloc(CLIENT_HELLO_MAX_BYTES)]), 100).subarray(0, CLIENT_HELLO_MAX_BYTES + 10);
  assertInvalid(dribble, /past the .*bound|can't end within|no complete ClientHello/);
});

test('client hello: server names that are not one printable ASCII host_name are invalid', () => {
  const withSni = (data: Buffer): Buffer => inRecords(clientHelloMessage({ extensions: [[0, data]] }));
  assert.deepEqual(parseClientHello(withSni(serverNameData(['A.LocalHost']))).kind, 'hello');
  assertInvalid(withSni(serverNameData([Buffer.from('caf\xe9.localhost', 'latin1')])), /byte 0xe9/);
  assertInvalid(withSni(serverNameData([Buffer.from('a\0.localhost', 'latin1')])), /byte 0x0/);
  assertInvalid(withSni(serverNameData(['a b'])), /byte 0x20/);
  assertInvalid(withSni(serverNameData([''])), /empty server name/);
  assert.equal(parseClientHello(withSni(serverNameData(['a'.repeat(255)]))).kind, 'hello');
  assertInvalid(withSni(serverNameData(['a'.repeat(256)])), /256 bytes/);
  assertInvalid(withSni(serverNameData(['a.localhost', 'b.localhost'])), /more than one/);
  assertInvalid(withSni(serverNameData(['a.localhost'], 1)), /type 1/);
  assertInvalid(withSni(Buffer.alloc(0)), /list length/);
  assertInvalid(withSni(Buffer.from([0, 0])), /empty server_name list/);
  assertInvalid(withSni(Buffer.from([0, 5, 0, 0, 9, 0x61, 0x62])), /runs past/);
  assertInvalid(withSni(Buffer.concat([serverNameData(['a.localhost']), Buffer.from([0])])), /list length/);
  const twice = clientHelloMessage({ extensions: [[0, serverNameData(['a.localhost'])], [0, serverNameData(['b.localhost'])]] });
  assertInvalid(inRecords(twice), /extension 0 appears twice/);
});

test('client hello: malformed ClientHello bodies are invalid', () => {
  const bad = (fields: Parameters<typeof clientHelloMessage>[0], why: RegExp): void => assertInvalid(inRecords(clientHelloMessage(fields)), why);
  // No extensions at all (a TLS 1.2 hello may do that): a hello without a server name.
  const bare = inRecords(clientHelloMessage());
  assert.deepEqual(parseClientHello(bare), hello(undefined, bare.length));
  bad({ version: 0x0203 }, /version 0x203/);
  bad({ sessionId: Buffer.alloc(33) }, /session id of 33/);
  bad({ cipherSuites: Buffer.from([0x13, 0x01, 0x00]) }, /cipher suites of 3/);
  bad({ cipherSuites: Buffer.alloc(0) }, /cipher suites of 0/);
  bad({ compression: Buffer.alloc(0) }, /no compression/);
  bad({ extensions: [], trailing: Buffer.from([0]) }, /1 bytes after/);
  bad({ trailing: Buffer.from([0]) }, /truncated in its extensions/);
  bad({ extensions: [[0, serverNameData(['a.localhost'])]], trailing: Buffer.from([0, 0x2b]) }, /2 bytes after/);
  // The body cut short inside its fields, with lengths that say so.
  const message = clientHelloMessage({ extensions: [[0, serverNameData(['a.localhost'])]] });
  for (let length = 0; length < message.length - 4; length++) {
    const cut = Buffer.from(message.subarray(0, 4 + length));
    cut.writeUIntBE(length, 1, 3);
    const result = parseClientHello(inRecords(cut));
    // Cut right after the compression methods, it is a valid hello without extensions.
    if (length > 0 && length !== clientHelloMessage().length - 4 && result.kind !== 'invalid') assert.fail(`body cut to ${length} bytes: ${JSON.stringify(result)}`);
  }
  // A record that carries more than the hello.
  assertInvalid(inRecords(Buffer.concat([message, Buffer.from([20, 0, 0, 0])])), /data after the ClientHello/);
});
