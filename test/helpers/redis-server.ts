// A real redis-server for the shared-limits tests: on a free loopback port, without persistence,
// killed when the test ends. stop() and start() kill it and bring it back on the same port, empty.

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { freePort } from './daemon';
import { spawnOwned, waitForOutput, which } from './external-tools';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops the server's process (SIGSTOP): a Redis that hangs, connections open. Returns what continues it; the test's end does too. */
  hang(t: TestContext): () => void;
  /** Kills the server (SIGKILL) and waits until it has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty) and waits until it accepts connections. */
  start(): Promise<void>;
}

const READY_MS = 10_000;

/** Starts redis-server on 127.0.0.1 and a free port; resolves once it accepts connections. */
export async function startRedis(t: TestContext): Promise<RedisServer> {
  const command = which('redis-server');
  if (command === undefined) throw new Error('redis-server is not on PATH (apt-get install redis-server)');
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const started = spawnOwned(t, command, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], process.env);
    child = started;
    const exited = once(started, 'exit').then(() => {
      throw new Error(`redis-server exited before it was ready on port ${port}`);
    });
    await Promise.race([waitForOutput(started.stdout!, (text) => text.includes('Ready to accept connections'), READY_MS, 'redis-server ready line'), exited]);
    exited.catch(() => {});
    // Nobody reads its log from here on: keep the pipe flowing so a full one never blocks it.
    started.stdout!.resume();
  };
  const stop = async (): Promise<void> => {
    const running = child;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, 'exit');
    running.kill('SIGKILL');
    await exited;
  };
  t.after(stop);
  await start();
  const hang = (test: TestContext): (() => void) => {
    const pid = child!.pid!;
    process.kill(pid, 'SIGSTOP');
    const resume = (): void => {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // already gone
      }
    };
    test.after(resume);
    return resume;
  };
  return { port, url: `redis://127.0.0.1:${port}`, hang, stop, start };
}
