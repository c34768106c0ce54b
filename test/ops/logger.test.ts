// The log line format, including the per-connection path that builds and formats its line at
// batch time: same fields, order and timestamp as a plain winston call would give.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { ConnectionLine, createLogger, flushLogLines, isoTimestamp, setSoleStdoutWriter } from '../../src/ops/logger';

/** Every write to stdout made by `run` and the flush after it. */
function captureWrites(t: TestContext, run: () => void): string[] {
  flushLogLines();
  const written: string[] = [];
  const original = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  t.after(() => {
    process.stdout.write = original;
  });
  try {
    run();
    flushLogLines();
  } finally {
    process.stdout.write = original;
  }
  return written;
}

/** Every line written to stdout by `run` and the flush after it. */
function captureStdout(t: TestContext, run: () => void): string[] {
  return captureWrites(t, run).join('').split('\n').filter((line) => line !== '');
}

test('logger: a per-connection line is the JSON line logger.info would write, in order with the others', (t) => {
  const logger = createLogger({ level: 'info', format: 'json', base: { worker: 3 } });
  const before = Date.now();
  const lines = captureStdout(t, () => {
    new ConnectionLine(logger, 'info', 'session ended').write({ sessionId: 7, remoteAddress: '127.0.0.2', sni: undefined, note: 'say "hi"\n', ms: 1.5 });
    logger.info('plain', { sessionId: 8 });
    new ConnectionLine(logger, 'debug', 'not at this level').write({ sessionId: 9 });
  });
  const after = Date.now();
  assert.equal(lines.length, 2);
  const [deferred, plain] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(Object.keys(deferred!), ['timestamp', 'level', 'message', 'worker', 'sessionId', 'remoteAddress', 'note', 'ms']);
  assert.deepEqual({ ...deferred, timestamp: undefined }, {
    timestamp: undefined,
    level: 'info',
    message: 'session ended',
    worker: 3,
    sessionId: 7,
    remoteAddress: '127.0.0.2',
    note: 'say "hi"\n',
    ms: 1.5,
  });
  const at = Date.parse(String(deferred!.timestamp));
  assert.ok(at >= before && at <= after, 'the timestamp is the time of the call');
  assert.deepEqual(Object.keys(plain!), ['timestamp', 'level', 'message', 'worker', 'sessionId']);
});

test('logger: a line field that shares a default field name wins, as with winston', (t) => {
  const logger = createLogger({ level: 'info', format: 'json', base: { worker: 1, sessionId: 0 } });
  const lines = captureStdout(t, () => new ConnectionLine(logger, 'info', 'session ended').write({ sessionId: 5 }));
  assert.equal(lines.length, 1);
  const line = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(line.sessionId, 5);
  assert.equal(line.worker, 1);
});

test('logger: text format, and level changes seen by a line made before them', (t) => {
  const logger = createLogger({ level: 'info', format: 'text' });
  const lines = captureStdout(t, () => new ConnectionLine(logger, 'info', 'session ended').write({ sessionId: 4, reason: 'peer-closed' }));
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\S+Z info {2}session ended sessionId=4 reason=peer-closed$/);
  const info = new ConnectionLine(logger, 'info', 'session ended');
  const error = new ConnectionLine(logger, 'error', 'failed');
  assert.equal(info.enabled(), true);
  logger.level = 'warn';
  assert.equal(info.enabled(), false, 'a level change is seen by a line made before it');
  assert.equal(error.enabled(), true);
  const none = captureStdout(t, () => new ConnectionLine(logger, 'info', 'session ended').write({ sessionId: 5 }));
  assert.deepEqual(none, []);
});

test('logger: a JSON logger without default fields (the inline daemon\'s)', (t) => {
  const logger = createLogger({ level: 'info', format: 'json' });
  const lines = captureStdout(t, () => new ConnectionLine(logger, 'info', 'session ended').write({ sessionId: 6 }));
  assert.equal(lines.length, 1);
  assert.deepEqual(Object.keys(JSON.parse(lines[0]!) as object), ['timestamp', 'level', 'message', 'sessionId']);
});

test('logger: a batch goes out in writes of whole lines, none over 4096 bytes unless one line is', (t) => {
  const logger = createLogger({ level: 'info', format: 'json', base: { worker: 2 } });
  const writes = captureWrites(t, () => {
    for (let i = 0; i < 200; i++) new ConnectionLine(logger, 'info', 'session ended').write({ sessionId: i, pad: 'x'.repeat(i % 50) });
    logger.info('long', { pad: 'y'.repeat(5000) });
  });
  assert.ok(writes.length > 1);
  const lines = writes.join('').split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 201);
  assert.deepEqual(lines.slice(0, 200).map((l) => (JSON.parse(l) as { sessionId: number }).sessionId), [...Array(200).keys()]);
  for (const w of writes) {
    assert.ok(w.endsWith('\n'), 'every write ends at a line end');
    assert.ok(Buffer.byteLength(w) <= 4096 || w.split('\n').length === 2, 'over 4096 bytes only for a single long line');
  }
});

test('logger: the only process writing to stdout writes a whole batch at once, and goes back to whole-line 4096-byte writes when told', (t) => {
  const logger = createLogger({ level: 'info', format: 'json' });
  const logSome = (): void => {
    for (let i = 0; i < 200; i++) new ConnectionLine(logger, 'info', 'session ended').write({ sessionId: i, pad: 'x'.repeat(i % 50) });
  };
  setSoleStdoutWriter(true);
  t.after(() => setSoleStdoutWriter(false));
  const sole = captureWrites(t, logSome);
  assert.equal(sole.length, 1);
  assert.equal(sole[0]!.split('\n').filter((l) => l !== '').length, 200);
  setSoleStdoutWriter(false);
  const shared = captureWrites(t, logSome);
  assert.ok(shared.length > 1);
  for (const w of shared) assert.ok(Buffer.byteLength(w) <= 4096);
  const untimed = (text: string): string => text.replace(/"timestamp":"[^"]*"/g, '');
  assert.equal(untimed(shared.join('')), untimed(sole[0]!), 'the same lines either way');
});

test('logger: the cached timestamp is toISOString, across second, day and year boundaries and back in time', () => {
  const times = [
    Date.UTC(2026, 10, 30, 23, 59, 59, 999), Date.UTC(2026, 11, 1, 0, 0, 0, 0), Date.UTC(2026, 11, 1, 0, 0, 0, 7), Date.UTC(2026, 11, 1, 0, 0, 0, 42),
    Date.UTC(2026, 11, 31, 23, 59, 59, 500), Date.UTC(2027, 0, 1, 0, 0, 0, 1), Date.UTC(2020, 1, 29, 12, 0, 0, 100), 0, Date.now(),
  ];
  for (const ms of [...times, ...times.reverse()]) assert.equal(isoTimestamp(ms), new Date(ms).toISOString());
  assert.equal(isoTimestamp(1.5), new Date(1.5).toISOString());
});
