package kstream.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The two pipelines of bench/stateless.py and bench/stateful.py in Kafka Streams, exactly_once_v2,
 * one stream thread. Run by bench/peers/run.py:
 *
 * <pre>java -jar kstream-peers-bench.jar --pipeline stateless|stateful --bootstrap HOST:PORT
 *   --input TOPIC --output TOPIC --warmup-output TOPIC --app-id ID --records N
 *   --expected-out M --warmup W --state-dir DIR</pre>
 *
 * First a warm-up instance (its own application id and output topic) processes the first W
 * input records and is closed, so the JIT has compiled the hot paths; then a fresh instance
 * processes all N records and is timed from its first input record to the last expected output
 * record. Prints one JSON line: rate, seconds, startup_s, tail_s, cpu_s (process CPU time, all
 * threads, from before start() to after close() of the timed instance) and cpu_window_s (the
 * same clock from the first input record to the last expected output record).
 */
public final class PeerBench {
  static final ObjectMapper MAPPER = new ObjectMapper();
  static final long MIN_AMOUNT = 100;

  static final class JsonSerde implements Serde<JsonNode> {
    @Override
    public Serializer<JsonNode> serializer() {
      return (topic, node) -> {
        try {
          return node == null ? null : MAPPER.writeValueAsBytes(node);
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      };
    }

    @Override
    public Deserializer<JsonNode> deserializer() {
      return (topic, bytes) -> {
        try {
          return bytes == null ? null : MAPPER.readTree(bytes);
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      };
    }
  }

  /** Counters touched only by the single stream thread; the main thread waits on `done`. */
  static final class Progress {
    final long doneIn;
    final long doneOut;
    long in;
    long out;
    volatile long tFirst;
    volatile long tDone;
    volatile long cpuFirst;
    volatile long cpuDone;
    final CountDownLatch done = new CountDownLatch(1);

    Progress(long doneIn, long doneOut) {
      this.doneIn = doneIn;
      this.doneOut = doneOut;
    }

    void onIn() {
      if (++in == 1) {
        cpuFirst = cpuNanos();
        tFirst = System.nanoTime();
      }
      check();
    }

    void onOut() {
      ++out;
      check();
    }

    private void check() {
      if (in >= doneIn && out >= doneOut && tDone == 0) {
        tDone = System.nanoTime();
        cpuDone = cpuNanos();
        done.countDown();
      }
    }
  }

  static StreamsBuilder topology(String pipeline, String input, String output, Progress p) {
    StreamsBuilder b = new StreamsBuilder();
    JsonSerde json = new JsonSerde();
    KStream<String, JsonNode> source =
        b.stream(input, Consumed.with(Serdes.String(), json)).peek((k, v) -> p.onIn());
    if (pipeline.equals("stateless")) {
      filterMap(source)
          .peek((k, v) -> p.onOut())
          .to(output, Produced.with(Serdes.String(), json));
    } else {
      source
          .groupByKey()
          .aggregate(
              () -> {
                ObjectNode o = MAPPER.createObjectNode();
                o.put("count", 0L);
                o.put("sum", 0L);
                return (JsonNode) o;
              },
              (k, v, agg) -> {
                ObjectNode o = MAPPER.createObjectNode();
                o.put("count", agg.get("count").asLong() + 1);
                o.put("sum", agg.get("sum").asLong() + v.get("amount").asLong());
                return (JsonNode) o;
              },
              Materialized.<String, JsonNode, KeyValueStore<Bytes, byte[]>>as("totals")
                  .withKeySerde(Serdes.String())
                  .withValueSerde(json))
          .toStream()
          .peek((k, v) -> p.onOut())
          .to(output, Produced.with(Serdes.String(), json));
    }
    return b;
  }

  /** The stateless pipeline (bench/stateless.py's): orders of at least MIN_AMOUNT, mapped. */
  static KStream<String, JsonNode> filterMap(KStream<String, JsonNode> orders) {
    return orders
        .filter((k, v) -> v.get("amount").asLong() >= MIN_AMOUNT)
        .mapValues(
            v -> {
              ObjectNode o = MAPPER.createObjectNode();
              o.set("id", v.get("id"));
              o.set("user", v.get("user"));
              o.put("amount_cents", v.get("amount").asLong() * 100);
              return (JsonNode) o;
            });
  }

  static Properties props(String appId, String bootstrap, String stateDir) {
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100); // the exactly_once default
    // No record cache: every update is emitted, as kstream's default and the raw loop do.
    props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    return props;
  }

  static long cpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean)
            ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  /** Runs one instance until `p.done`; returns {start, stopped} nanoTimes and CPU nanos. */
  static long[] run(StreamsBuilder b, Properties props, Progress p, long timeoutS)
      throws InterruptedException {
    AtomicReference<Throwable> failure = new AtomicReference<>();
    long cpu0 = cpuNanos();
    long t0 = System.nanoTime();
    KafkaStreams streams = new KafkaStreams(b.build(), props);
    streams.setUncaughtExceptionHandler(
        e -> {
          failure.set(e);
          p.done.countDown();
          return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    streams.start();
    boolean finished = p.done.await(timeoutS, TimeUnit.SECONDS);
    streams.close(Duration.ofSeconds(120));
    long t1 = System.nanoTime();
    long cpu1 = cpuNanos();
    if (failure.get() != null) {
      throw new IllegalStateException("Kafka Streams failed", failure.get());
    }
    if (!finished) {
      throw new IllegalStateException(
          "Kafka Streams did not finish in " + timeoutS + " s: in=" + p.in + " out=" + p.out);
    }
    return new long[] {t0, t1, cpu1 - cpu0};
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> a = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      a.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
    }
    String pipeline = a.get("pipeline");
    String bootstrap = a.get("bootstrap");
    String appId = a.get("app-id");
    long n = Long.parseLong(a.get("records"));
    long expectedOut = Long.parseLong(a.get("expected-out"));
    long warmup = Long.parseLong(a.getOrDefault("warmup", "0"));
    long timeoutS = Long.parseLong(a.getOrDefault("timeout", "900"));
    Path stateDir = Path.of(a.get("state-dir"));

    double warmupS = 0;
    long warmupCpu = 0;
    if (warmup > 0) {
      Progress wp = new Progress(warmup, 0);
      StreamsBuilder wb = topology(pipeline, a.get("input"), a.get("warmup-output"), wp);
      String dir = Files.createDirectories(stateDir.resolve("warmup")).toString();
      long[] w = run(wb, props(appId + "-warmup", bootstrap, dir), wp, timeoutS);
      warmupS = (w[1] - w[0]) / 1e9;
      warmupCpu = w[2];
    }

    Progress p = new Progress(n, expectedOut);
    StreamsBuilder b = topology(pipeline, a.get("input"), a.get("output"), p);
    String dir = Files.createDirectories(stateDir.resolve("timed")).toString();
    long[] r = run(b, props(appId, bootstrap, dir), p, timeoutS);
    double seconds = (p.tDone - p.tFirst) / 1e9;
    System.out.printf(
        "{\"rate\": %.1f, \"seconds\": %.4f, \"startup_s\": %.4f, \"tail_s\": %.4f,"
            + " \"cpu_s\": %.4f, \"cpu_window_s\": %.4f, \"consumed\": %d,"
            + " \"records_out\": %d,"
            + " \"warmup_records\": %d, \"warmup_s\": %.3f, \"warmup_cpu_s\": %.3f}%n",
        n / seconds, seconds, (p.tFirst - r[0]) / 1e9, (r[1] - p.tDone) / 1e9, r[2] / 1e9,
        (p.cpuDone - p.cpuFirst) / 1e9, p.in, p.out, warmup, warmupS, warmupCpu / 1e9);
  }
}
