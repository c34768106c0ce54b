// One sample of the daemon, as the sampler takes it every second and the checks read it.

export interface Sample {
  /** Seconds since the run started. */
  readonly tS: number;
  readonly supervisorRss: number;
  readonly supervisorFds: number;
  /** Sum over the worker processes alive at the sample. */
  readonly workerRss: number;
  readonly workerFds: number;
  /** Per worker, in pid order: [rss, fds]. */
  readonly workers: ReadonlyArray<readonly [number, number]>;
  /**
   * RSS of the surviving worker: the chaos kills the other one only, so this one lives all run
   * and shows a leak in the worker's code, which the killed one's restarts would hide. 0 while
   * it isn't there (it never goes unless the daemon does).
   */
  readonly survivorRss: number;
  readonly sessionsActive: number;
  readonly pending: number;
  readonly accepted: number;
  readonly refused: number;
  readonly refusedPendingTimeout: number;
  readonly refusedPoolFull: number;
  readonly sessionsClosed: number;
  readonly handshakeFailures: number;
  readonly heapUsed: number;
  readonly clientEntries: number;
  readonly clientEntriesHolding: number;
  readonly activeResources: number;
  readonly activeTimers: number;
}

/** The columns of samples.csv, in order. */
export const SAMPLE_COLUMNS: ReadonlyArray<Exclude<keyof Sample, 'workers'>> = [
  'tS', 'supervisorRss', 'supervisorFds', 'workerRss', 'workerFds', 'survivorRss', 'sessionsActive', 'pending', 'accepted', 'refused',
  'refusedPendingTimeout', 'refusedPoolFull', 'sessionsClosed', 'handshakeFailures', 'heapUsed', 'clientEntries',
  'clientEntriesHolding', 'activeResources', 'activeTimers',
];
