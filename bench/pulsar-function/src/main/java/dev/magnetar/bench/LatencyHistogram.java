package dev.magnetar.bench;

/**
 * Log-linear histogram of non-negative long values with a fixed footprint.
 *
 * <p>Values below 128 get one bucket each. Above that, every power-of-two
 * range [2^m, 2^(m+1)) is split into 64 equal buckets, so a bucket's width is
 * at most 1/64 (1.6 %) of its lower bound. The whole long range needs 3,712
 * counters (about 29 KiB), however many values are recorded.
 *
 * <p>Not thread-safe: callers record and read from one thread.
 */
final class LatencyHistogram {

    /** Values below this are counted exactly, one bucket each. */
    private static final int EXACT_LIMIT = 128;
    private static final int EXACT_BITS = 7;
    /** Buckets per power-of-two range above EXACT_LIMIT. */
    private static final int SUB_BUCKETS = 64;
    private static final int SUB_BUCKET_BITS = 6;
    /** Power-of-two ranges from [2^7, 2^8) up to [2^62, 2^63). */
    private static final int RANGES = 63 - EXACT_BITS;

    private final long[] counts = new long[EXACT_LIMIT + RANGES * SUB_BUCKETS];
    private long totalCount;
    private long maxValue;

    /** Records one value. A negative value is counted as 0. */
    void record(long value) {
        long clamped = Math.max(0, value);
        counts[bucketIndex(clamped)]++;
        totalCount++;
        if (clamped > maxValue) {
            maxValue = clamped;
        }
    }

    long totalCount() {
        return totalCount;
    }

    /** Returns the largest value recorded, exactly, or 0 when empty. */
    long max() {
        return maxValue;
    }

    /**
     * Returns the value at the given quantile ({@code 0 < quantile <= 1}), or 0 when
     * empty. The result is the upper bound of the bucket that contains the
     * ceil(quantile * count)-th smallest value, capped at {@link #max()}, so
     * it may exceed the true value by at most one bucket width.
     */
    long valueAtQuantile(double quantile) {
        if (!(quantile > 0.0 && quantile <= 1.0)) {
            throw new IllegalArgumentException("quantile must be in (0, 1], got " + quantile);
        }
        if (totalCount == 0) {
            return 0;
        }

        long rank = Math.max(1, (long) Math.ceil(quantile * totalCount));
        long seen = 0;
        for (int index = 0; index < counts.length; index++) {
            seen += counts[index];
            if (seen >= rank) {
                return Math.min(bucketUpperBound(index), maxValue);
            }
        }
        return maxValue;
    }

    static int bucketIndex(long value) {
        if (value < EXACT_LIMIT) {
            return (int) value;
        }
        int magnitude = 63 - Long.numberOfLeadingZeros(value);
        int shift = magnitude - SUB_BUCKET_BITS;
        int subBucket = (int) (value >>> shift) - SUB_BUCKETS;
        return EXACT_LIMIT + (magnitude - EXACT_BITS) * SUB_BUCKETS + subBucket;
    }

    /** Returns the largest value that falls into the bucket at {@code index}. */
    static long bucketUpperBound(int index) {
        if (index < EXACT_LIMIT) {
            return index;
        }
        int offset = index - EXACT_LIMIT;
        int magnitude = EXACT_BITS + offset / SUB_BUCKETS;
        long top = SUB_BUCKETS + offset % SUB_BUCKETS;
        int shift = magnitude - SUB_BUCKET_BITS;
        // The last bucket ends at Long.MAX_VALUE, and (top + 1) << shift
        // would overflow there.
        if (magnitude == 62 && top == 2L * SUB_BUCKETS - 1) {
            return Long.MAX_VALUE;
        }
        return ((top + 1) << shift) - 1;
    }
}
