"""Benchmark driver: runs five systems on the same broker and prints one table.

1. plain: `magnetar-bench consume`, a pulsar crate consumer that acks each message
2. noop: `magnetar run` with the no-op guest
3. movies: `magnetar run` with the movie pipeline of pipeline.yaml (SQLite, file outbox)
4. native: `magnetar-bench native-pipeline`, the same work as 3 in plain Rust
5. functions: a no-op Java function in the Pulsar Functions local runner

Each system runs twice, on fresh topics:
- throughput: N movie records wait in a backlog before the system starts. The rate is N
  divided by the time from the first message leaving the backlog to the last one finished.
  Both moments come from the broker's subscription statistics, read every 100 ms. Peak RSS
  (VmHWM) and CPU time come from /proc at the end.
- latency: the system runs idle, then M records arrive at a fixed rate without producer
  batching; p50 and p99 are the system's own figures from publish time to acknowledgement.

Run through scripts/bench, which builds everything and picks the Python with
pulsar-client. Usage: run.py --help
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pulsar

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEMS = ["plain", "noop", "movies", "native", "functions"]


def log(text):
    print(f"bench: {text}", file=sys.stderr, flush=True)


class Broker:
    """The admin REST API and a client for producing."""

    def __init__(self, url, admin):
        self.url = url
        self.admin = admin.rstrip("/")
        self.client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.admin}/admin/v2/persistent/public/default/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def create_subscription(self, topic, subscription):
        self.request("PUT", topic)
        self.request("PUT", f"{topic}/subscription/{subscription}")

    def stats(self, topic):
        try:
            return self.request("GET", f"{topic}/stats")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def backlog(self, topic, subscription):
        """Return the subscription's unacknowledged entries, or None when it does not exist yet."""
        stats = self.stats(topic)
        if stats is None or subscription not in stats["subscriptions"]:
            return None
        return stats["subscriptions"][subscription]["msgBacklog"]

    def consumers(self, topic, subscription):
        stats = self.stats(topic)
        if stats is None or subscription not in stats["subscriptions"]:
            return 0
        return len(stats["subscriptions"][subscription]["consumers"])

    def produce_backlog(self, topic, payloads):
        """Produce as fast as the client allows, with the client's default batching."""
        producer = self.client.create_producer(
            f"persistent://public/default/{topic}",
            batching_enabled=True,
            batching_max_messages=1000,
            batching_max_publish_delay_ms=10,
            max_pending_messages=10000,
            block_if_queue_full=True,
        )
        failures = []
        for payload in payloads:
            producer.send_async(payload, lambda result, _id: result == pulsar.Result.Ok or failures.append(result))
        producer.flush()
        producer.close()
        if failures:
            sys.exit(f"bench: {len(failures)} messages were not confirmed: {failures[:3]}")

    def produce_at_rate(self, topic, payloads, rate):
        """Produce one message per entry, spaced evenly at `rate` per second."""
        producer = self.client.create_producer(
            f"persistent://public/default/{topic}", batching_enabled=False, block_if_queue_full=True
        )
        start = time.monotonic()
        for index, payload in enumerate(payloads):
            due = start + index / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            producer.send_async(payload, lambda _result, _id: None)
        producer.flush()
        producer.close()


def movie_payloads(count, salt):
    """Return `count` movie records from data/movies.json with string titles. A suffix makes
    each title unique, so every record is stored and none repeats one of another run."""
    with open(os.path.join(REPO, "data", "movies.json"), encoding="utf-8") as handle:
        records = [r for r in json.load(handle) if isinstance(r.get("Title"), str) and r.get("Release Date")]
    payloads = []
    for index in range(count):
        record = dict(records[index % len(records)])
        record["Title"] = f"{record['Title']} #{salt}-{index}"[:200]
        payloads.append(json.dumps(record).encode())
    return payloads


def proc_status(pid):
    """Return VmRSS and VmHWM in KiB and the CPU seconds (user + system) of `pid`."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return values.get("VmRSS", 0), values.get("VmHWM", 0), cpu


class Run:
    """One start of one system on fresh topics."""

    def __init__(self, system, args, work, expect=None):
        self.system = system
        # Messages the run will see, for systems that write their stats at that count.
        self.expect = expect
        self.args = args
        self.work = work
        suffix = f"{int(time.time() * 1000) % 10**9}"
        self.topic = f"bench-{system}-{suffix}"
        self.stored_topic = f"bench-{system}-stored-{suffix}"
        self.dlq_topic = f"bench-{system}-dlq-{suffix}"
        self.stats_file = os.path.join(work, f"{system}-{suffix}.json")
        self.health_port = None
        self.process = None
        self.log_path = os.path.join(work, f"{system}-{suffix}.log")

    @property
    def subscription(self):
        return "db-writer" if self.system in ("movies", "native") else "bench"

    def watched(self):
        """Return the (topic, subscription) pairs whose backlog must reach zero."""
        pairs = [(self.topic, self.subscription)]
        if self.system in ("movies", "native"):
            pairs.append((self.stored_topic, "mailer"))
        return pairs

    def command(self):
        a = self.args
        if self.system == "plain":
            return [a.bench_bin, "consume", "--broker", a.broker, "--topic", self.topic,
                    "--subscription", "bench", "--stats", self.stats_file], None
        if self.system == "native":
            return [a.bench_bin, "native-pipeline", "--broker", a.broker, "--input", self.topic,
                    "--stored-topic", self.stored_topic, "--dead-letter-topic", self.dlq_topic,
                    "--database", f"sqlite://{self.work}/{os.path.basename(self.stats_file)}.db",
                    "--outbox", os.path.join(self.work, "outbox-" + os.path.basename(self.stats_file)),
                    "--migrations", os.path.join(REPO, "migrations", "sqlite"),
                    "--stats", self.stats_file], None
        if self.system == "functions":
            command = [os.path.join(REPO, "bench", "pulsar-function", "run"), "--input",
                       f"persistent://public/default/{self.topic}", "--subscription", "bench",
                       "--stats", self.stats_file]
            if self.expect:
                command += ["--expect", str(self.expect)]
            return command, None
        self.health_port = free_port()
        pipeline = self.write_pipeline()
        return [a.magnetar_bin, "run", pipeline, "--grace", "10"], None

    def write_pipeline(self):
        """Write the pipeline file: the no-op stage for `noop`, or pipeline.yaml with bench
        topics, database and outbox for `movies`. Return its path."""
        a = self.args
        path = os.path.join(self.work, f"{os.path.basename(self.stats_file)}.yaml")
        if self.system == "noop":
            text = f"""broker:
  url: {a.broker}
health:
  listen: 127.0.0.1:{self.health_port}
stages:
  - name: noop
    plugin: {a.wasm_dir}/noop.wasm
    inputs: [{self.topic}]
    subscription: bench
    retry_topic: {self.topic}-retry
    dead_letter: {self.topic}-dlq
    parallelism: {a.noop_parallelism}
"""
        else:
            with open(os.path.join(REPO, "pipeline.yaml"), encoding="utf-8") as handle:
                text = handle.read()
            database = f"sqlite://{self.work}/{os.path.basename(self.stats_file)}.db"
            outbox = os.path.join(self.work, "outbox-" + os.path.basename(self.stats_file))
            for old, new in [
                ("url: pulsar://127.0.0.1:6650", f"url: {a.broker}"),
                ("listen: 127.0.0.1:9464", f"listen: 127.0.0.1:{self.health_port}"),
                ("url: sqlite://magnetar.db", f"url: {database}"),
                ("migrations: migrations", f"migrations: {os.path.join(REPO, 'migrations')}"),
                ("transport: file://outbox", f"transport: file://{outbox}"),
                ("target/wasm32-wasip2/release", a.wasm_dir),
                ("inputs: [movies]", f"inputs: [{self.topic}]"),
                ("default: movies-stored", f"default: {self.stored_topic}"),
                ("inputs: [movies-stored]", f"inputs: [{self.stored_topic}]"),
                ("dead_letter: movies-dlq\n", f"dead_letter: {self.dlq_topic}\n"),
                ("inputs: [movies-dlq]", f"inputs: [{self.dlq_topic}]"),
                ("dead_letter: movies-dlq-failed", f"dead_letter: {self.dlq_topic}-failed"),
                ("subscription: db-writer", f"subscription: db-writer\n    retry_topic: {self.topic}-store-retry"),
                ("subscription: mailer", f"subscription: mailer\n    retry_topic: {self.topic}-notify-retry"),
                ("subscription: dlq-logger", f"subscription: dlq-logger\n    retry_topic: {self.topic}-dlq-retry"),
            ]:
                if old not in text:
                    sys.exit(f"bench: pipeline.yaml no longer contains {old!r}; update bench/run.py")
                text = text.replace(old, new)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def start(self):
        command, _ = self.command()
        log(f"{self.system}: starting {' '.join(command[:2])} ...")
        self.log_handle = open(self.log_path, "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.process = subprocess.Popen(command, stdout=self.log_handle, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, cwd=REPO)

    def check_alive(self):
        if self.process.poll() is not None:
            with open(self.log_path) as handle:
                tail = handle.read()[-3000:]
            sys.exit(f"bench: {self.system} exited with status {self.process.returncode}; log {self.log_path}:\n{tail}")

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_handle.close()

    def latency(self):
        """Return p50 and p99 in microseconds, as the system measured them."""
        if self.system in ("noop", "movies"):
            stage = "noop" if self.system == "noop" else "store-movies"
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/health", timeout=5) as response:
                report = json.loads(response.read())
            latency = report["stages"][stage]["latency_us"]
        else:
            with open(self.stats_file) as handle:
                latency = json.load(handle)["latency_us"]
        return latency["p50"], latency["p99"]


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what, check, timeout, run):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        run.check_alive()
        time.sleep(0.1)
    sys.exit(f"bench: {run.system}: timed out after {timeout} s waiting for {what}; log {run.log_path}")


def drained(broker, run, expected_stored):
    for topic, subscription in run.watched():
        backlog = broker.backlog(topic, subscription)
        if backlog is None or backlog > 0:
            return False
    if run.system in ("movies", "native"):
        stats = broker.stats(run.stored_topic)
        if stats is None or stats["msgInCounter"] < expected_stored:
            return False
    return True


def throughput(broker, system, args, work):
    run = Run(system, args, work)
    if system in ("movies", "native"):
        count = args.pipeline_messages
    elif system == "noop" and args.soak:
        count = args.soak
    else:
        count = args.messages
    broker.create_subscription(run.topic, run.subscription)
    log(f"{system}: producing a backlog of {count} records")
    broker.produce_backlog(run.topic, movie_payloads(count, run.topic))
    initial = broker.backlog(run.topic, run.subscription)
    run.start()
    try:
        return measure_throughput(broker, run, count, initial, args)
    finally:
        run.stop()


def measure_throughput(broker, run, count, initial, args):
    system = run.system
    rss_samples = []
    started = None
    deadline = time.monotonic() + args.timeout
    last_sample = 0.0
    while True:
        run.check_alive()
        now = time.monotonic()
        backlog = broker.backlog(run.topic, run.subscription)
        if started is None and backlog is not None and backlog < initial:
            started = now
        if started is not None and drained(broker, run, count):
            finished = now
            break
        if now - last_sample >= 1.0:
            rss, _, _ = proc_status(run.process.pid)
            done = 0 if backlog is None else (initial - backlog) / max(initial, 1)
            rss_samples.append((round(done, 3), rss))
            last_sample = now
        if now > deadline:
            sys.exit(f"bench: {system}: not finished after {args.timeout} s; log {run.log_path}")
        time.sleep(0.1)

    rss, hwm, cpu = proc_status(run.process.pid)
    seconds = finished - started
    result = {
        "messages": count,
        "seconds": round(seconds, 2),
        "rate": round(count / seconds),
        "peak_rss_mib": round(hwm / 1024, 1),
        "end_rss_mib": round(rss / 1024, 1),
        "cpu_seconds": round(cpu, 2),
        "rss_timeline_mib": [(done, round(kib / 1024, 1)) for done, kib in rss_samples],
    }
    log(f"{system}: {count} messages in {seconds:.1f} s = {result['rate']}/s, peak RSS {result['peak_rss_mib']} MiB")
    return result


def latency(broker, system, args, work):
    run = Run(system, args, work, expect=args.latency_messages)
    broker.create_subscription(run.topic, run.subscription)
    run.start()
    try:
        return measure_latency(broker, run, args)
    finally:
        run.stop()


def measure_latency(broker, run, args):
    system = run.system
    wait_for("the consumer to connect", lambda: broker.consumers(run.topic, run.subscription) > 0, 120, run)
    if system in ("movies", "native"):
        # The notify stage subscribes once its topic exists; give it a moment.
        time.sleep(2)
    rate = args.pipeline_rate if system in ("movies", "native") else args.rate
    log(f"{system}: producing {args.latency_messages} records at {rate}/s")
    broker.produce_at_rate(run.topic, movie_payloads(args.latency_messages, run.topic), rate)
    wait_for("the latency run to finish", lambda: drained(broker, run, args.latency_messages), 300, run)
    time.sleep(1.5)  # the stats files are rewritten every second
    p50, p99 = run.latency()
    log(f"{system}: p50 {p50} µs, p99 {p99} µs")
    return {"p50_us": p50, "p99_us": p99}


def ratio(results, a, b):
    if a in results and b in results:
        return round(results[a]["throughput"]["rate"] / results[b]["throughput"]["rate"], 2)
    return None


def main():
    parser = argparse.ArgumentParser(description="Magnetar benchmark driver (see docs/benchmarks.md)")
    parser.add_argument("--broker", default="pulsar://127.0.0.1:6650")
    parser.add_argument("--admin", default="http://127.0.0.1:8080")
    parser.add_argument("--magnetar-bin", required=True)
    parser.add_argument("--bench-bin", required=True)
    parser.add_argument("--wasm-dir", required=True)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    parser.add_argument("--messages", type=int, default=300_000,
                        help="backlog size for the throughput runs of plain, noop and functions")
    parser.add_argument("--pipeline-messages", type=int, default=20_000,
                        help="backlog size for the throughput runs of movies and native")
    parser.add_argument("--latency-messages", type=int, default=5_000)
    parser.add_argument("--rate", type=int, default=500,
                        help="messages per second in the latency runs of plain, noop and functions")
    parser.add_argument("--pipeline-rate", type=int, default=200,
                        help="messages per second in the latency runs of movies and native")
    parser.add_argument("--soak", type=int, default=0, help="messages for the noop throughput run instead of --messages")
    parser.add_argument("--noop-parallelism", type=int, default=8)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a throughput run may take")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        sys.exit(f"bench: unknown systems {unknown}; choose from {SYSTEMS}")

    broker = Broker(args.broker, args.admin)
    results = {}
    with tempfile.TemporaryDirectory(prefix="magnetar-bench-") as work:
        for system in systems:
            results[system] = {"throughput": throughput(broker, system, args, work)}
            results[system]["latency"] = latency(broker, system, args, work)

    print()
    print(f"{'system':<10} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS MiB':>13} {'CPU s':>7}")
    for system in systems:
        t, l = results[system]["throughput"], results[system]["latency"]
        print(f"{system:<10} {t['rate']:>8} {l['p50_us'] / 1000:>8.2f} {l['p99_us'] / 1000:>8.2f} "
              f"{t['peak_rss_mib']:>13} {t['cpu_seconds']:>7}")
    ratios = {"2/1 noop/plain": ratio(results, "noop", "plain"),
              "3/4 movies/native": ratio(results, "movies", "native"),
              "2/5 noop/functions": ratio(results, "noop", "functions")}
    print()
    for name, value in ratios.items():
        print(f"{name}: {value if value is not None else 'n/a (not run)'}")
    if "noop" in results and "functions" in results:
        memory = results["noop"]["throughput"]["peak_rss_mib"] / results["functions"]["throughput"]["peak_rss_mib"]
        print(f"peak RSS noop/functions: {memory:.2f}")
    if args.soak and "noop" in results:
        print(f"noop RSS over {args.soak} messages (fraction done, MiB): {results['noop']['throughput']['rss_timeline_mib']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results, "ratios": ratios}, handle, indent=2)
    broker.client.close()


if __name__ == "__main__":
    main()
