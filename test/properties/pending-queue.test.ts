// Model-based property of the pending queue (src/daemon/pending-queue.ts): random sequences of
// pushes, takes (a free slot), clock steps, reloads of --max-pending / --pending-timeout and a
// final drain, against a plain array model. Its timer is Node's mocked setTimeout and its clock
// the test's, so time moves only when the test says. Checked after every step: the length is the
// model's and no push succeeds at --max-pending; takes come in FIFO order; nobody is still waiting
// after its deadline nor expired before it; every entry leaves exactly once.
//
// The queue has no remove-on-close: the supervisor skips a connection whose socket was destroyed
// when its turn comes (dispatchPending), so there is nothing of the queue's own to test there.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PendingQueue } from '../../src/daemon/pending-queue';
import { checkProperty } from './budget';

interface Limits {
  readonly maxLength: number;
  readonly timeoutMs: number;
}

interface ModelEntry {
  readonly id: number;
  deadline: number;
}

interface World {
  now: number;
  limits: Limits;
  readonly queue: PendingQueue<number>;
  /** The model: who waits, oldest first, and until when. */
  readonly waiting: ModelEntry[];
  /** How each entry left, by id: exactly once each. */
  readonly left: Map<number, string>;
  nextId: number;
  /** Entries the queue took in. */
  accepted: number;
}

function leave(w: World, id: number, how: string): void {
  const earlier = w.left.get(id);
  if (earlier !== undefined) assert.fail(`entry ${id} left twice: ${earlier}, then ${how}`);
  w.left.set(id, how);
}

function newWorld(limits: Limits): World {
  const w: World = {
    now: 0,
    limits,
    queue: undefined as unknown as PendingQueue<number>,
    waiting: [],
    left: new Map(),
    nextId: 0,
    accepted: 0,
  };
  const onExpire = (id: number): void => {
    const entry = w.waiting.find((e) => e.id === id);
    if (entry === undefined) assert.fail(`entry ${id} expired but was not waiting`);
    if (w.now < entry.deadline) assert.fail(`entry ${id} expired at ${w.now} ms, before its deadline ${entry.deadline}`);
    w.waiting.splice(w.waiting.indexOf(entry), 1);
    leave(w, id, `expired at ${w.now}`);
  };
  (w as { queue: PendingQueue<number> }).queue = new PendingQueue<number>(limits.maxLength, limits.timeoutMs, onExpire, () => w.now);
  return w;
}

function checkInvariants(w: World): void {
  assert.equal(w.queue.length, w.waiting.length, 'entries waiting');
  const late = w.waiting.find((e) => e.deadline <= w.now);
  if (late !== undefined) assert.fail(`entry ${late.id} still waits at ${w.now} ms, its deadline ${late.deadline}`);
}

type Step = fc.Command<World, World>;

class PushStep implements Step {
  check(): boolean {
    return true;
  }
  run(_m: World, w: World): void {
    const id = w.nextId++;
    const full = w.waiting.length >= w.limits.maxLength;
    const pushed = w.queue.push(id);
    assert.equal(pushed, !full, `push with ${w.waiting.length} waiting, --max-pending ${w.limits.maxLength}`);
    if (pushed) {
      w.waiting.push({ id, deadline: w.now + w.limits.timeoutMs });
      w.accepted++;
    }
    checkInvariants(w);
  }
  toString(): string {
    return 'push';
  }
}

/** A session slot came free: the oldest waiting connection takes it. */
class TakeStep implements Step {
  check(): boolean {
    return true;
  }
  run(_m: World, w: World): void {
    const taken = w.queue.shift();
    const expected = w.waiting.shift();
    assert.equal(taken, expected?.id, 'the oldest waiting entry is taken first');
    if (taken !== undefined) leave(w, taken, `taken at ${w.now}`);
    checkInvariants(w);
  }
  toString(): string {
    return 'take';
  }
}

class TickStep implements Step {
  constructor(
    readonly ms: number,
    readonly tick: (ms: number) => void,
  ) {}
  check(): boolean {
    return true;
  }
  run(_m: World, w: World): void {
    w.now += this.ms;
    this.tick(this.ms);
    checkInvariants(w);
  }
  toString(): string {
    return `tick(${this.ms})`;
  }
}

/** A reload: new --max-pending and --pending-timeout. */
class ReloadStep implements Step {
  constructor(readonly limits: Limits) {}
  check(): boolean {
    return true;
  }
  run(_m: World, w: World): void {
    w.queue.setLimits(this.limits.maxLength, this.limits.timeoutMs);
    w.limits = this.limits;
    // Nobody waits longer than the timeout in force: a shorter one shortens the waits under way.
    for (const e of w.waiting) e.deadline = Math.min(e.deadline, w.now + this.limits.timeoutMs);
    checkInvariants(w);
  }
  toString(): string {
    return `reload(${JSON.stringify(this.limits)})`;
  }
}

const limitsArb: fc.Arbitrary<Limits> = fc.record({
  maxLength: fc.integer({ min: 0, max: 6 }),
  timeoutMs: fc.integer({ min: 1, max: 1000 }),
});

test('pending queue: bounded, FIFO, nobody waits past the timeout, every entry leaves once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const tick = (ms: number): void => t.mock.timers.tick(ms);
  const stepsArb = fc.commands(
    [
      fc.constant(new PushStep()),
      fc.constant(new PushStep()),
      fc.constant(new TakeStep()),
      fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 50, max: 2000 })).map((ms) => new TickStep(ms, tick)),
      limitsArb.map((l) => new ReloadStep(l)),
    ],
    { size: '+1' },
  );
  await checkProperty(
    fc.property(limitsArb, stepsArb, (limits, steps) => {
      const w = newWorld(limits);
      try {
        fc.modelRun(() => ({ model: w, real: w }), steps);
        // Shutdown: whoever still waits leaves now, oldest first.
        const drained = w.queue.drain();
        assert.deepEqual(drained, w.waiting.map((e) => e.id), 'drain returns those waiting, oldest first');
        for (const id of drained) leave(w, id, 'drained');
        assert.equal(w.left.size, w.accepted, 'every entry taken in left exactly once');
        assert.equal(w.queue.length, 0);
      } finally {
        w.queue.drain(); // its timer must not fire into the next case
      }
    }),
    { runs: 1000 },
  );
});
