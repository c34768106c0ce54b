// The load generator's latency histogram: log-linear buckets of microseconds (the layout of
// HdrHistogram), so memory is fixed whatever the run length, a record is O(1), and the
// generator's processes merge theirs through a JSON snapshot.

/** 2^8 sub-buckets: values below 256 µs are exact, larger ones within 1/128 (< 0.8 %). */
const SUB_BUCKET_BITS = 8;
const SUB_BUCKETS = 1 << SUB_BUCKET_BITS;
const HALF_SUB_BUCKETS = SUB_BUCKETS >> 1;
/** Largest value tracked (µs, about 36 minutes); larger values count as this. 31 bits keep the index math in int32. */
export const HISTOGRAM_MAX_MICROS = 0x7fffffff;
const MAX_MAGNITUDE = 30 - (SUB_BUCKET_BITS - 1);
const BUCKET_COUNT = (MAX_MAGNITUDE + 1) * HALF_SUB_BUCKETS + HALF_SUB_BUCKETS;

/** A histogram in a form that survives JSON (IPC between generator processes). */
export interface HistogramSnapshot {
  /** Non-empty buckets as flat [index, count, index, count, ...]. */
  readonly buckets: readonly number[];
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly sum: number;
}

/**
 * An HDR-style log-linear histogram of whole microseconds: fixed memory (3,200 buckets), O(1)
 * record, mergeable by adding counts. Percentiles are reported as the highest value of the
 * bucket they fall in (never above the largest value recorded).
 */
export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKET_COUNT);
  private total = 0;
  private minValue = Infinity;
  private maxValue = 0;
  private sumValue = 0;

  /** Records one value in µs (rounded down to a whole µs, clamped to 0..HISTOGRAM_MAX_MICROS). */
  record(micros: number): void {
    const v = micros >= HISTOGRAM_MAX_MICROS ? HISTOGRAM_MAX_MICROS : micros > 0 ? Math.floor(micros) : 0;
    this.counts[bucketIndex(v)]!++;
    this.total++;
    this.sumValue += v;
    if (v < this.minValue) this.minValue = v;
    if (v > this.maxValue) this.maxValue = v;
  }

  get count(): number {
    return this.total;
  }

  get min(): number {
    return this.total === 0 ? 0 : this.minValue;
  }

  get max(): number {
    return this.maxValue;
  }

  get mean(): number {
    return this.total === 0 ? 0 : this.sumValue / this.total;
  }

  /** The value (µs) at or below which `percentile` % of the recorded values fall; 0 when empty. */
  valueAtPercentile(percentile: number): number {
    if (this.total === 0) return 0;
    const p = Math.min(100, Math.max(0, percentile));
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.max(this.min, Math.min(this.maxValue, bucketHighest(i)));
    }
    return this.maxValue;
  }

  merge(other: LatencyHistogram | HistogramSnapshot): void {
    const s = other instanceof LatencyHistogram ? other.snapshot() : other;
    for (let i = 0; i + 1 < s.buckets.length; i += 2) {
      const index = s.buckets[i]!;
      if (index >= 0 && index < BUCKET_COUNT) this.counts[index]! += s.buckets[i + 1]!;
    }
    if (s.count === 0) return;
    this.total += s.count;
    this.sumValue += s.sum;
    if (s.min < this.minValue) this.minValue = s.min;
    if (s.max > this.maxValue) this.maxValue = s.max;
  }

  snapshot(): HistogramSnapshot {
    const buckets: number[] = [];
    for (let i = 0; i < BUCKET_COUNT; i++) {
      if (this.counts[i] !== 0) buckets.push(i, this.counts[i]!);
    }
    return { buckets, count: this.total, min: this.min, max: this.maxValue, sum: this.sumValue };
  }

  static fromSnapshot(s: HistogramSnapshot): LatencyHistogram {
    const h = new LatencyHistogram();
    h.merge(s);
    return h;
  }
}

function bucketIndex(v: number): number {
  if (v < SUB_BUCKETS) return v;
  const magnitude = 31 - Math.clz32(v) - (SUB_BUCKET_BITS - 1);
  return magnitude * HALF_SUB_BUCKETS + (v >>> magnitude);
}

function bucketHighest(index: number): number {
  if (index < SUB_BUCKETS) return index;
  const magnitude = Math.floor(index / HALF_SUB_BUCKETS) - 1;
  const sub = index - magnitude * HALF_SUB_BUCKETS;
  return (sub + 1) * 2 ** magnitude - 1;
}
