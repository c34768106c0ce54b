// Admitted connections waiting, paused, for a free session slot: a FIFO of bounded length in
// which nobody waits longer than the timeout. Every entry has the same timeout, so deadlines
// are in queue order and one timer, for the head, serves the whole queue.

export interface Waiting<T> {
  readonly item: T;
  readonly deadline: number;
}

export class PendingQueue<T> {
  private items: Array<Waiting<T> | undefined> = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private maxLength: number,
    private timeoutMs: number,
    private readonly onExpire: (item: T) => void,
    // Monotonic, like the timer: with Date.now() a wall clock stepped back by an hour would keep
    // every waiting connection an hour past its deadline.
    private readonly now: () => number = () => performance.now(),
  ) {}

  get length(): number {
    return this.items.length - this.head;
  }

  /**
   * New limits (a reload). A shorter timeout shortens the waits under way too: nobody waits
   * longer than the timeout in force, and deadlines stay in queue order, which the one timer
   * relies on (had old entries kept a later deadline, new ones would wait behind it). Entries
   * past a smaller maxLength stay; no new one comes in until the queue is below it.
   */
  setLimits(maxLength: number, timeoutMs: number): void {
    this.maxLength = maxLength;
    this.timeoutMs = timeoutMs;
    const latest = this.now() + timeoutMs;
    // Deadlines ascend: only a tail can be later than `latest`.
    for (let i = this.items.length - 1; i >= this.head && this.items[i]!.deadline > latest; i--) {
      this.items[i] = { item: this.items[i]!.item, deadline: latest };
    }
    if (this.timer !== undefined) {
      this.clearTimer();
      this.armTimer();
    }
  }

  /** Adds `item`; false (and nothing added) when the queue is full. */
  push(item: T): boolean {
    if (this.length >= this.maxLength) return false;
    this.items.push({ item, deadline: this.now() + this.timeoutMs });
    if (this.timer === undefined) this.armTimer();
    return true;
  }

  shift(): T | undefined {
    if (this.length === 0) return undefined;
    const entry = this.items[this.head]!;
    this.items[this.head++] = undefined;
    this.compact();
    if (this.length === 0) this.clearTimer();
    return entry.item;
  }

  /** Removes and returns every entry (shutdown); stops the timer. */
  drain(): T[] {
    const out = this.items.slice(this.head).map((e) => e!.item);
    this.items = [];
    this.head = 0;
    this.clearTimer();
    return out;
  }

  private compact(): void {
    // Reclaim the consumed front now and then so the array doesn't grow without bound.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  private armTimer(): void {
    const first = this.items[this.head];
    if (first === undefined) return;
    this.timer = setTimeout(this.timerOnExpire, Math.max(0, first.deadline - this.now()));
  }

  private clearTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private readonly timerOnExpire = (): void => {
    this.timer = undefined;
    const t = this.now();
    while (this.length > 0 && this.items[this.head]!.deadline <= t) {
      const entry = this.items[this.head]!;
      this.items[this.head++] = undefined;
      this.onExpire(entry.item);
    }
    this.compact();
    this.armTimer();
  };
}
