package kstream.bench;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Kafka Streams side of bench/latency.py: its two pipelines (stateless filter→map, count
 * per key with every update emitted) serving until SIGTERM, so the Python driver can pace input
 * and time each output record from send to read_committed visibility exactly as it does for
 * kstream and the raw loop.
 *
 * <pre>java -cp kstream-peers-bench.jar kstream.bench.LatencySide --pipeline stateless|count
 *   --guarantee at_least_once|exactly_once --bootstrap HOST:PORT --input T --output T
 *   --app-id ID --state-dir DIR --commit-ms MS</pre>
 *
 * Why these settings: the issue compares latency "with the same commit interval", so the commit
 * interval is passed in (kstream's defaults: 1000 ms at-least-once, 100 ms exactly-once; Kafka
 * Streams' own at-least-once default of 30 s would only make it look worse); the record cache is
 * off so every count update is emitted at once, as kstream and the raw loop do; linger.ms 5 as
 * on the other sides; one stream thread. Output records keep the input record's timestamp
 * (Kafka Streams' default), which is the send time the driver measures from.
 */
public final class LatencySide {
  private LatencySide() {}

  static StreamsBuilder topology(String pipeline, String input, String output) {
    StreamsBuilder b = new StreamsBuilder();
    PeerBench.JsonSerde json = new PeerBench.JsonSerde();
    KStream<String, JsonNode> source = b.stream(input, Consumed.with(Serdes.String(), json));
    if (pipeline.equals("stateless")) {
      PeerBench.filterMap(source).to(output, Produced.with(Serdes.String(), json));
    } else {
      source
          .groupByKey()
          .count()
          .toStream()
          .to(output, Produced.with(Serdes.String(), Serdes.Long()));
    }
    return b;
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> a = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      a.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
    }
    boolean eos = a.get("guarantee").equals("exactly_once");
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, a.get("app-id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
    props.put(
        StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
        eos ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Integer.parseInt(a.get("commit-ms")));
    props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    Path stateDir = Files.createDirectories(Path.of(a.get("state-dir")));
    props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());

    KafkaStreams streams =
        new KafkaStreams(topology(a.get("pipeline"), a.get("input"), a.get("output")).build(),
            props);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setUncaughtExceptionHandler(
        e -> {
          e.printStackTrace();
          stopped.countDown();
          return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close(Duration.ofSeconds(30));
                  stopped.countDown();
                }));
    streams.start();
    stopped.await();
  }
}
