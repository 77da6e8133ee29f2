package dev.magnetar.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.helpers.NOPLogger;

// A fake Context would need the Pulsar client implementation on the class
// path (Context refers to Schema, whose initializer loads it), so these tests
// call the methods that initialize and process delegate to.
class NoopFunctionTest {

    /** Publish time of every test message, in epoch milliseconds. */
    private static final long PUBLISH_MILLIS = 1_700_000_000_000L;

    @TempDir
    Path directory;

    @Test
    void statsFileIsWrittenEveryThousandMessages() throws IOException {
        Path stats = directory.resolve("stats.json");
        // 2.5 ms after the publish time.
        NoopFunction function = newFunction(2_500_000);
        function.configure(Optional.of(stats.toString()), Optional.empty(), NOPLogger.NOP_LOGGER);

        for (int i = 0; i < 999; i++) {
            function.recordMessage(PUBLISH_MILLIS);
        }
        assertFalse(Files.exists(stats), "stats file written before 1000 messages");

        function.recordMessage(PUBLISH_MILLIS);
        assertEquals("{\"processed\": 1000, \"latency_us\": {\"p50\": 2500, \"p99\": 2500, \"max\": 2500}}\n",
                Files.readString(stats));
        assertFalse(Files.exists(directory.resolve("stats.json.tmp")), "temporary file left behind");
    }

    @Test
    void statsFileIsWrittenAtExpectedCount() throws IOException {
        Path stats = directory.resolve("stats.json");
        NoopFunction function = newFunction(1_000);
        // Gson hands JSON numbers to the function as Double.
        function.configure(Optional.of(stats.toString()), Optional.of(3.0), NOPLogger.NOP_LOGGER);

        for (int i = 0; i < 3; i++) {
            function.recordMessage(PUBLISH_MILLIS);
        }

        String content = Files.readString(stats);
        assertTrue(content.startsWith("{\"processed\": 3,"), content);
    }

    @Test
    void closeWritesFinalStats() throws IOException {
        Path stats = directory.resolve("stats.json");
        NoopFunction function = newFunction(1_000);
        function.configure(Optional.of(stats.toString()), Optional.empty(), NOPLogger.NOP_LOGGER);

        function.recordMessage(PUBLISH_MILLIS);
        function.close();

        String content = Files.readString(stats);
        assertTrue(content.startsWith("{\"processed\": 1,"), content);
    }

    @Test
    void missingStatsKeyIsRejected() {
        NoopFunction function = newFunction(0);

        assertThrows(IllegalArgumentException.class,
                () -> function.configure(Optional.empty(), Optional.empty(), NOPLogger.NOP_LOGGER));
    }

    @Test
    void missingStatsDirectoryIsRejected() {
        NoopFunction function = newFunction(0);
        Optional<Object> stats = Optional.of(directory.resolve("absent/stats.json").toString());

        assertThrows(IllegalArgumentException.class,
                () -> function.configure(stats, Optional.empty(), NOPLogger.NOP_LOGGER));
    }

    @Test
    void invalidExpectIsRejected() {
        Optional<Object> stats = Optional.of(directory.resolve("stats.json").toString());
        for (Object expect : new Object[] {0.0, -3.0, 2.5, "ten"}) {
            NoopFunction function = newFunction(0);

            assertThrows(IllegalArgumentException.class,
                    () -> function.configure(stats, Optional.of(expect), NOPLogger.NOP_LOGGER),
                    "expect=" + expect);
        }
    }

    @Test
    void expectAcceptsDigitString() {
        Path stats = directory.resolve("stats.json");
        NoopFunction function = newFunction(0);
        function.configure(Optional.of(stats.toString()), Optional.of("2"), NOPLogger.NOP_LOGGER);

        function.recordMessage(PUBLISH_MILLIS);
        function.recordMessage(PUBLISH_MILLIS);

        assertTrue(Files.exists(stats));
    }

    @Test
    void epochMicrosKeepsSubMillisecondPart() {
        Instant instant = Instant.ofEpochSecond(1_700_000_000L, 123_456_789);

        assertEquals(1_700_000_000_123_456L, NoopFunction.toEpochMicros(instant));
    }

    /** Creates a function whose clock reads PUBLISH_MILLIS plus {@code delayNanos}. */
    private static NoopFunction newFunction(long delayNanos) {
        Instant now = Instant.ofEpochMilli(PUBLISH_MILLIS).plusNanos(delayNanos);
        return new NoopFunction(Clock.fixed(now, ZoneOffset.UTC));
    }
}
