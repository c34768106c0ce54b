// The real HAProxy for the tests that put tls-echod behind it (test/haproxy.test.ts,
// test/scale-out.test.ts): started in the foreground with a config the test writes, killed when
// the test ends; and a TLS client that connects through it from a given source address.

import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { TestContext } from 'node:test';
import tls from 'node:tls';
import { cleanEnv, tempDir, type ClientOptions } from './daemon';
import { spawnOwned, which } from './external-tools';

const HAPROXY = which('haproxy') ?? '/usr/sbin/haproxy';

/** Runs HAProxy (`-db`) with `config` and resolves once every port in `fronts` accepts. */
export async function startHaproxy(t: TestContext, config: string, fronts: readonly number[]): Promise<void> {
  const file = path.join(tempDir(t), 'haproxy.cfg');
  writeFileSync(file, config);
  const haproxy = spawnOwned(t, HAPROXY, ['-db', '-f', file], cleanEnv());
  let output = '';
  haproxy.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  haproxy.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  t.after(async () => {
    if (haproxy.exitCode === null && haproxy.signalCode === null) {
      haproxy.kill('SIGKILL');
      await once(haproxy, 'exit');
    }
  });
  try {
    await Promise.all(fronts.map((port) => accepting(port)));
  } catch (err) {
    throw new Error(`haproxy did not start: ${(err as Error).message}; its output: ${output}`, { cause: err });
  }
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port, trying again on each refusal. */
async function accepting(port: number, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const socket = net.connect({ host: '127.0.0.1', port });
    const ok = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    socket.destroy();
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing accepting on ${port} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A TLS session from `localAddress` through the balancer at `port`, or the error that ended it before the handshake did. */
export async function through(t: TestContext, port: number, ca: Buffer, localAddress: string): Promise<tls.TLSSocket | Error> {
  const options: ClientOptions = { localAddress };
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...options });
  t.after(() => socket.destroy());
  return new Promise((resolve) => {
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', (err) => resolve(err));
    socket.once('close', () => resolve(new Error('closed before the handshake')));
  });
}
