// A NOTIFY_SOCKET for tests: a unix datagram socket held by python3 (Node's dgram can't bind
// AF_UNIX), which prints every datagram it receives as one JSON line.

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
    data = s.recv(65536)
    print(json.dumps(data.decode()), flush=True)
`;

export interface NotifySocket {
  readonly path: string;
  /** Every message received so far, each as its list of KEY=VALUE fields. */
  readonly messages: string[][];
  /** Resolves with the first message (from index `from` on) that has `field` (e.g. "READY=1"). */
  waitFor(field: string, from?: number, ms?: number): Promise<{ index: number; fields: string[] }>;
}

export async function notifySocket(t: TestContext): Promise<NotifySocket> {
  const socketPath = path.join(tempDir(t, 'notify-'), 'notify.sock');
  const child = spawn('python3', ['-c', RECEIVER, socketPath]);
  t.after(() => child.kill('SIGKILL'));
  const messages: string[][] = [];
  const listeners = new Set<() => void>();
  let buffered = '';
  let bound = false;
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const text = JSON.parse(buffered.slice(0, nl)) as string;
      buffered = buffered.slice(nl + 1);
      if (!bound && text === 'bound') bound = true;
      else messages.push(text.split('\n').filter((f) => f !== ''));
    }
    for (const l of listeners) l();
  });
  while (!bound) await once(child.stdout, 'data');
  return {
    path: socketPath,
    messages,
    waitFor: (field, from = 0, ms = 15_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const index = messages.findIndex((m, i) => i >= from && m.includes(field));
          if (index === -1) return;
          done();
          resolve({ index, fields: messages[index]! });
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${field} within ${ms} ms; got ${JSON.stringify(messages)}`));
        }, ms);
        const done = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      }),
  };
}
