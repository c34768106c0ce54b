// Reading a PROXY header off a real socket: the bytes after it handed back, split headers,
// refusals, the time bound, a peer that goes away, and what takeBuffered() hands over.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { readProxyHeader, takeBuffered } from '../../src/proxy/read-proxy-header';
import { until } from '../helpers/daemon';

/** A connected pair on 127.0.0.1: the server's socket as the daemon gets it (paused) and the client's. */
async function pair(t: TestContext): Promise<{ server: net.Socket; client: net.Socket }> {
  const listener = net.createServer({ pauseOnConnect: true });
  t.after(() => listener.close());
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const client = net.connect({ host: '127.0.0.1', port: (listener.address() as net.AddressInfo).port, noDelay: true });
  const [[server]] = await Promise.all([once(listener, 'connection') as Promise<[net.Socket]>, once(client, 'connect')]);
  t.after(() => {
    server.destroy();
    client.destroy();
  });
  return { server, client };
}

const HEADER = Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 1234 4433\r\n');

test('read-proxy-header: the header and what came with it; the socket comes back paused, without our listeners', async (t) => {
  const { server, client } = await pair(t);
  const listeners = ['data', 'end', 'close', 'error'].map((e) => server.listenerCount(e));
  client.write(Buffer.concat([HEADER, Buffer.from('hello')]));
  const result = await readProxyHeader(server, 1000);
  assert.deepEqual(result, { kind: 'header', header: { version: 1, command: 'proxy', client: { address: '192.0.2.1', port: 1234 } }, rest: Buffer.from('hello') });
  assert.equal(server.isPaused(), true);
  assert.deepEqual(['data', 'end', 'close', 'error'].map((e) => server.listenerCount(e)), listeners);
});

test('read-proxy-header: a header a byte at a time', async (t) => {
  const { server, client } = await pair(t);
  const reading = readProxyHeader(server, 5000);
  for (const byte of HEADER) {
    client.write(Buffer.from([byte]));
    await new Promise((resolve) => setImmediate(resolve));
  }
  const result = await reading;
  assert.equal(result.kind, 'header');
  assert.equal((result as { rest: Buffer }).rest.length, 0);
});

test('read-proxy-header: garbage is invalid at once; half a header times out; a peer that leaves is closed', async (t) => {
  const a = await pair(t);
  a.client.write('GET / HTTP/1.1\r\n');
  assert.deepEqual(await readProxyHeader(a.server, 5000), { kind: 'invalid', why: 'not a PROXY protocol header' });

  const b = await pair(t);
  b.client.write('PROXY TCP4 192.0.2.1');
  const started = performance.now();
  assert.deepEqual(await readProxyHeader(b.server, 200), { kind: 'timeout' });
  assert.ok(performance.now() - started >= 190);

  const c = await pair(t);
  c.client.end('PROXY TCP4');
  assert.deepEqual(await readProxyHeader(c.server, 5000), { kind: 'closed' });
});

test('read-proxy-header: takeBuffered hands over what the paused socket read ahead, in order after rest', async (t) => {
  const { server, client } = await pair(t);
  client.write(HEADER);
  const result = await readProxyHeader(server, 1000);
  assert.equal(result.kind, 'header');
  // Paused, its stream still reads ahead: these bytes land in its buffer, not in a 'data' event.
  client.write('after the header');
  await until(() => server.readableLength >= 16, 5000, 'the read-ahead');
  assert.deepEqual(takeBuffered(server), Buffer.from('after the header'));
  assert.equal(server.readableLength, 0);
  assert.deepEqual(takeBuffered(server), Buffer.alloc(0));
});
