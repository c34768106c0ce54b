// Echo is byte-exact for any size, from three independent client stacks: Node's tls,
// `openssl s_client`, and python3's ssl module.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import { connect, echoAll, roundTrip, startDaemon } from './helpers/daemon';

const SIZES = [0, 1, 100, 16_383, 16_384, 16_385, 65_536 + 7, 1_000_003, 8 * 1024 * 1024];

test('echo: random payloads from 0 B to 8 MiB come back byte for byte (Node tls client)', async (t) => {
  const d = await startDaemon(t);
  for (const size of SIZES) {
    const data = randomBytes(size);
    const socket = await connect(t, d.port, d.ca);
    const echoed = await echoAll(socket, data);
    assert.equal(echoed.length, size, `size ${size}`);
    assert.ok(echoed.equals(data), `payload of ${size} bytes differs`);
  }
});

test('echo: full duplex, many round trips on one session', async (t) => {
  const d = await startDaemon(t);
  const socket = await connect(t, d.port, d.ca);
  for (let i = 0; i < 200; i++) {
    const data = randomBytes(1 + (i * 37) % 3000);
    assert.ok((await roundTrip(socket, data)).equals(data));
  }
});

test('echo: openssl s_client as an external client verifies the chain and echoes', async (t) => {
  const d = await startDaemon(t);
  const data = randomBytes(64 * 1024).toString('base64').replace(/(.{76})/g, '$1\n') + '\n';
  const child = spawn('openssl', [
    's_client', '-connect', `127.0.0.1:${d.port}`, '-servername', 'localhost',
    '-CAfile', path.join(d.certDir, 'ca.pem'), '-verify_return_error', '-quiet',
  ]);
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    // -quiet implies -ign_eof: s_client stays connected after stdin ends, as a person typing
    // would. Once everything is back, stop it the way that person would: Ctrl-C.
    if (out.length >= data.length) child.kill('SIGINT');
  });
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  child.stdin.write(data);
  await once(child, 'exit');
  assert.equal(out, data, `openssl stderr: ${err}`);
  assert.match(err, /verify return:1/);
});

test('echo: an idle openssl s_client gets a clean close_notify at --idle-timeout and exits 0', async (t) => {
  const d = await startDaemon(t, { idleTimeout: '300' });
  const child = spawn('openssl', [
    's_client', '-connect', `127.0.0.1:${d.port}`, '-servername', 'localhost',
    '-CAfile', path.join(d.certDir, 'ca.pem'), '-verify_return_error', '-quiet',
  ]);
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  child.stdin.write('typed by hand\n');
  const [code] = await once(child, 'exit');
  assert.equal(out, 'typed by hand\n');
  assert.equal(code, 0, `no 'unexpected eof': the server closed with close_notify. stderr: ${err}`);
});

test('echo: python3 ssl module as a third client stack, by name and by IP', async (t) => {
  const d = await startDaemon(t);
  const script = `
import socket, ssl, sys, os, hashlib
port, ca, host = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
data = os.urandom(300000)
with socket.create_connection(('127.0.0.1', port)) as raw:
    with ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(data)
        got = b''
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk: break
            got += chunk
        print(s.version(), len(got), got == data)
`;
  for (const host of ['localhost', '127.0.0.1']) {
    const child = spawn('python3', ['-c', script, String(d.port), path.join(d.certDir, 'ca.pem'), host]);
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, err);
    assert.match(out.trim(), /^TLSv1\.3 300000 True$/, `${host}: ${out} ${err}`);
  }
});

test('echo: a half-closed client gets everything echoed before the server closes', async (t) => {
  const d = await startDaemon(t);
  const socket = await connect(t, d.port, d.ca);
  const data = randomBytes(3 * 1024 * 1024);
  // Write everything and end at once: the server reads the FIN only after the data.
  const echoed = await echoAll(socket, data);
  assert.ok(echoed.equals(data));
});
