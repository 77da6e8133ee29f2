package dev.magnetar.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class LatencyHistogramTest {

    @Test
    void emptyHistogramReturnsZero() {
        LatencyHistogram histogram = new LatencyHistogram();

        assertEquals(0, histogram.totalCount());
        assertEquals(0, histogram.max());
        assertEquals(0, histogram.valueAtQuantile(0.5));
    }

    @Test
    void smallValuesAreExact() {
        LatencyHistogram histogram = new LatencyHistogram();
        for (long value = 1; value <= 100; value++) {
            histogram.record(value);
        }

        assertEquals(100, histogram.totalCount());
        assertEquals(50, histogram.valueAtQuantile(0.50));
        assertEquals(99, histogram.valueAtQuantile(0.99));
        assertEquals(100, histogram.valueAtQuantile(1.0));
        assertEquals(100, histogram.max());
    }

    @Test
    void bucketsAreContiguousAndOrdered() {
        long previousUpper = -1;
        int lastIndex = LatencyHistogram.bucketIndex(Long.MAX_VALUE);
        for (int index = 0; index <= lastIndex; index++) {
            long lower = previousUpper + 1;
            long upper = LatencyHistogram.bucketUpperBound(index);

            assertTrue(upper >= lower, "bucket " + index + " is empty");
            assertEquals(index, LatencyHistogram.bucketIndex(lower), "lower bound of bucket " + index);
            assertEquals(index, LatencyHistogram.bucketIndex(upper), "upper bound of bucket " + index);
            previousUpper = upper;
        }
        assertEquals(Long.MAX_VALUE, previousUpper);
    }

    @Test
    void largeValuesStayWithinOneBucketWidth() {
        LatencyHistogram histogram = new LatencyHistogram();
        for (long value = 1; value <= 1_000_000; value++) {
            histogram.record(value);
        }

        long p50 = histogram.valueAtQuantile(0.50);
        long p99 = histogram.valueAtQuantile(0.99);
        assertTrue(p50 >= 500_000, "p50 was " + p50);
        assertTrue(p50 <= 500_000 * 65 / 64, "p50 was " + p50);
        assertTrue(p99 >= 990_000, "p99 was " + p99);
        assertTrue(p99 <= 990_000 * 65 / 64, "p99 was " + p99);
        assertEquals(1_000_000, histogram.max());
        assertEquals(1_000_000, histogram.valueAtQuantile(1.0));
    }

    @Test
    void extremeValuesDoNotOverflow() {
        LatencyHistogram histogram = new LatencyHistogram();
        histogram.record(Long.MAX_VALUE);
        histogram.record(-5);

        assertEquals(0, histogram.valueAtQuantile(0.5));
        assertEquals(Long.MAX_VALUE, histogram.valueAtQuantile(1.0));
        assertEquals(Long.MAX_VALUE, histogram.max());
    }

    @Test
    void invalidQuantileIsRejected() {
        LatencyHistogram histogram = new LatencyHistogram();

        assertThrows(IllegalArgumentException.class, () -> histogram.valueAtQuantile(0.0));
        assertThrows(IllegalArgumentException.class, () -> histogram.valueAtQuantile(1.5));
        assertThrows(IllegalArgumentException.class, () -> histogram.valueAtQuantile(Double.NaN));
    }
}
