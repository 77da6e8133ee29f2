package dev.magnetar.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Clock;
import java.time.Instant;
import java.util.Optional;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.functions.api.Context;
import org.apache.pulsar.functions.api.Function;
import org.slf4j.Logger;

/**
 * Pulsar Function that drops every message and records its end-to-end
 * latency: the wall-clock time when {@link #process} runs minus the
 * message's publish time.
 *
 * <p>User config keys:
 * <ul>
 *   <li>{@code stats} (required): path of the JSON stats file. The function
 *       rewrites it every 1,000 messages, when the count reaches
 *       {@code expect}, and on close.</li>
 *   <li>{@code expect} (optional): message count at which to write the file
 *       even when it is no multiple of 1,000.</li>
 * </ul>
 *
 * <p>The file reads {@code {"processed": N, "latency_us": {"p50": .., "p99":
 * .., "max": ..}}}, with latencies in microseconds. Each write goes to a
 * temporary file that is then renamed over the old one, so a reader never
 * sees a partial file.
 */
public class NoopFunction implements Function<byte[], Void> {

    static final String STATS_KEY = "stats";
    static final String EXPECT_KEY = "expect";
    static final long WRITE_INTERVAL = 1000;
    /** After the first failed write, one in this many failures is logged. */
    private static final long WRITE_FAILURE_LOG_INTERVAL = 100;

    private final LatencyHistogram latencies = new LatencyHistogram();
    private final Clock clock;
    private Logger logger;
    private Path statsPath;
    /** Count at which to write the stats file, or 0 when none was set. */
    private long expected;
    private long processed;
    private long failedWrites;

    public NoopFunction() {
        this(Clock.systemUTC());
    }

    NoopFunction(Clock clock) {
        this.clock = clock;
    }

    @Override
    public void initialize(Context context) {
        configure(context.getUserConfigValue(STATS_KEY), context.getUserConfigValue(EXPECT_KEY),
                context.getLogger());
    }

    @Override
    public Void process(byte[] input, Context context) {
        Message<?> message = context.getCurrentRecord().getMessage()
                .orElseThrow(() -> new IllegalStateException(
                        "input record carries no Pulsar message, so its publish time is unknown"));
        recordMessage(message.getPublishTime());
        return null;
    }

    @Override
    public synchronized void close() {
        if (statsPath != null) {
            writeStats();
        }
    }

    /** Validates the user config values and stores them. */
    synchronized void configure(Optional<Object> statsValue, Optional<Object> expectValue, Logger logger) {
        this.logger = logger;
        statsPath = parseStatsPath(statsValue);
        expected = parseExpected(expectValue);
        logger.info("Writing latency stats to {} every {} messages (expect={})",
                statsPath, WRITE_INTERVAL, expected == 0 ? "unset" : expected);
    }

    /**
     * Records the latency of a message published at {@code publishMillis}
     * (epoch milliseconds), and writes the stats file when due. It is
     * synchronized because the runtime calls process on the instance thread
     * while close can run on a shutdown-hook thread.
     */
    synchronized void recordMessage(long publishMillis) {
        long nowMicros = toEpochMicros(clock.instant());
        latencies.record(nowMicros - publishMillis * 1000);
        processed++;

        if (processed % WRITE_INTERVAL == 0 || processed == expected) {
            writeStats();
        }
    }

    /** Formats the stats file's JSON document. */
    static String formatStats(long processed, LatencyHistogram latencies) {
        return String.format("{\"processed\": %d, \"latency_us\": {\"p50\": %d, \"p99\": %d, \"max\": %d}}%n",
                processed, latencies.valueAtQuantile(0.50), latencies.valueAtQuantile(0.99), latencies.max());
    }

    /** Writes {@code content} to a sibling temporary file, then renames it to {@code target}. */
    static void replaceAtomically(Path target, String content) throws IOException {
        Path temporary = target.resolveSibling(target.getFileName() + ".tmp");
        Files.writeString(temporary, content);
        Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    static long toEpochMicros(Instant instant) {
        return instant.getEpochSecond() * 1_000_000L + instant.getNano() / 1_000;
    }

    private void writeStats() {
        try {
            replaceAtomically(statsPath, formatStats(processed, latencies));
        } catch (IOException e) {
            // A lost write only delays the stats, so the function keeps
            // processing instead of failing the message.
            failedWrites++;
            if (failedWrites % WRITE_FAILURE_LOG_INTERVAL == 1) {
                logger.warn("Failed to write stats file {} ({} failed writes so far): {}",
                        statsPath, failedWrites, e.toString());
            }
        }
    }

    private static Path parseStatsPath(Optional<Object> value) {
        String text = value.map(Object::toString).orElse("").trim();
        if (text.isEmpty()) {
            throw new IllegalArgumentException(
                    "user config '" + STATS_KEY + "' is missing: set it to the path of the JSON stats file");
        }

        Path path = Path.of(text).toAbsolutePath();
        Path directory = path.getParent();
        if (directory == null || !Files.isDirectory(directory)) {
            throw new IllegalArgumentException(
                    "directory of stats file " + path + " not found: create it before starting the function");
        }
        return path;
    }

    // Pulsar parses user config with Gson, which turns every JSON number into
    // a Double, so integral doubles and digit strings are both accepted.
    private static long parseExpected(Optional<Object> value) {
        if (value.isEmpty()) {
            return 0;
        }

        Object raw = value.get();
        double number;
        if (raw instanceof Number) {
            number = ((Number) raw).doubleValue();
        } else {
            try {
                number = Long.parseLong(raw.toString().trim());
            } catch (NumberFormatException e) {
                number = Double.NaN;
            }
        }
        if (!(number >= 1 && number <= Long.MAX_VALUE) || number != Math.rint(number)) {
            throw new IllegalArgumentException(
                    "invalid user config '" + EXPECT_KEY + "': " + raw + " (expected a positive integer)");
        }
        return (long) number;
    }
}
