// A NOTIFY_SOCKET for tests: a unix datagram socket held by python3 (Node's dgram can't bind
// AF_UNIX), which prints every datagram as one JSON line. systemd-notify's barrier messages
// (BARRIER=1) are left out: they are how systemd-notify waits, not something we sent.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir } from './daemon';

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps("bound"), flush=True)
while True:
    print(json.dumps(s.recv(65536).decode("utf-8", "replace")), flush=True)
`;

export interface NotifyReceiver {
  readonly socketPath: string;
  /** Messages so far, each as its newline-separated fields joined by '\n'. */
  readonly messages: string[];
  /** Resolves when `predicate(messages)` holds; rejects after `ms`. */
  until(predicate: (messages: readonly string[]) => boolean, ms?: number): Promise<void>;
}

export async function notifyReceiver(t: TestContext): Promise<NotifyReceiver> {
  const socketPath = path.join(tempDir(t, 'tls-echod-notify-'), 'notify.sock');
  const child = spawn('python3', ['-c', RECEIVER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  const messages: string[] = [];
  const listeners = new Set<() => void>();
  let buffered = '';
  let bound = false;
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const text = (JSON.parse(buffered.slice(0, nl)) as string).replace(/\n$/, '');
      buffered = buffered.slice(nl + 1);
      if (!bound && text === 'bound') bound = true;
      else if (text !== 'BARRIER=1') messages.push(text);
    }
    for (const listener of listeners) listener();
  });
  while (!bound) await once(child.stdout, 'data');
  return {
    socketPath,
    messages,
    until: (predicate, ms = 15_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (predicate(messages)) done();
        };
        const done = (err?: Error): void => {
          clearTimeout(timer);
          listeners.delete(check);
          if (err) reject(err);
          else resolve();
        };
        const timer = setTimeout(() => done(new Error(`NOTIFY_SOCKET: condition not met in ${ms} ms; got ${JSON.stringify(messages)}`)), ms);
        listeners.add(check);
        check();
      }),
  };
}
