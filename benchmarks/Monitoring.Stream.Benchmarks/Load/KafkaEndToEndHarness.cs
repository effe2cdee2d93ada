using System.Diagnostics;
using System.Globalization;
using Confluent.Kafka;
using Monitoring.Stream.Kafka;
using Monitoring.Stream.Kafka.Sink;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Benchmarks.Load;

/// <summary>
/// End to end through librdkafka's mock cluster, in this process: 1,000-point messages are produced once to a
/// points topic, then read three times a round, from the same bytes: by a plain Confluent consumer that does nothing
/// with them (the mock consumer's own throughput, the reference), by the same consumer with a value deserializer that
/// copies nothing (the stricter reference: the engine's source copies nothing either), then by the engine (Kafka source, decoder, shards,
/// Kafka sink to an aggregates topic). Each phase is timed from its partitions' assignment (when fetching starts) to its last point handled, with
/// the process's CPU time over the same span (the mock brokers run in this process too, so both phases include
/// the brokers' cost; the difference is the engine's).
/// </summary>
/// <remarks>Usage: <c>dotnet Monitoring.Stream.Benchmarks.dll kafka-e2e [--points N] [--series N] [--warmup N] [--rounds N] [--segment-ms N]</c>
/// (<c>--segment-ms</c>: the source's commit segment interval, 0 = off; default the source's own, 10 s).</remarks>
public static class KafkaEndToEndHarness
{
    private const string Metric = "http_server_request_duration_seconds";
    private const int PointsPerMessage = 1_000;

    public static int Run(string[] args)
    {
        long points = 1_000_000;
        int series = 1_000;
        int rounds = 3;
        int warmups = 2;
        TimeSpan? segments = null;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--points":
                    points = long.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--series":
                    series = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--warmup":
                    warmups = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--rounds":
                    rounds = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--segment-ms":
                    segments = TimeSpan.FromMilliseconds(int.Parse(args[i + 1], CultureInfo.InvariantCulture));
                    break;
                default:
                    Console.Error.WriteLine($"unknown argument {args[i]}");
                    return 2;
            }
        }

        int messages = (int)(points / PointsPerMessage);
        points = (long)messages * PointsPerMessage;
        using var cluster = new KafkaMockCluster();
        const string pointsTopic = "bench.points", aggregatesTopic = "bench.aggregates";
        int partitions = cluster.EnsureTopic(pointsTopic);
        cluster.EnsureTopic(aggregatesTopic);
        long bytes = Produce(cluster.BootstrapServers, pointsTopic, partitions, messages, series);
        Console.WriteLine($"produced {messages:N0} messages of {PointsPerMessage:N0} points ({points:N0} points, {series:N0} series, {bytes / (double)messages:N0} bytes a message) to {partitions} partitions");

        // Warm-up rounds (JIT, tiered compilation, pools) are not counted; each round reads the topic from its
        // start in fresh groups, the plain consumer first, then a fresh engine.
        var ratios = new List<double>();
        var enginePointsPerSecond = new List<double>();
        var plainPointsPerSecond = new List<double>();
        var spanRatios = new List<double>();
        var spanPointsPerSecond = new List<double>();
        var engineCpu = new List<double>();
        for (int round = 1 - warmups; round <= rounds; round++)
        {
            string label = round <= 0 ? "warm-up" : $"round {round}";
            (TimeSpan plainWall, TimeSpan plainCpu) = ReadPlain(cluster.BootstrapServers, pointsTopic, messages, Deserializers.ByteArray);
            Report($"{label}: plain consumer", points, bytes, plainWall, plainCpu);
            (TimeSpan spanWall, TimeSpan spanCpu) = ReadPlain(cluster.BootstrapServers, pointsTopic, messages, new LengthOnly());
            Report($"{label}: plain, no copy", points, bytes, spanWall, spanCpu);
            (TimeSpan engineWall, TimeSpan engineCpuTime, TimeSpan untilWindowsOut) = ReadWithEngine(cluster.BootstrapServers, pointsTopic, aggregatesTopic, points, segments);
            Report($"{label}: engine", points, bytes, engineWall, engineCpuTime);
            Console.WriteLine($"{label}: engine / plain consumer throughput {plainWall / engineWall:P0} (/ plain without a copy {spanWall / engineWall:P0}); every window through the Kafka sink {untilWindowsOut.TotalSeconds:F2} s after the assignment");
            if (round > 0)
            {
                ratios.Add(plainWall / engineWall);
                spanRatios.Add(spanWall / engineWall);
                spanPointsPerSecond.Add(points / spanWall.TotalSeconds);
                enginePointsPerSecond.Add(points / engineWall.TotalSeconds);
                plainPointsPerSecond.Add(points / plainWall.TotalSeconds);
                engineCpu.Add(engineCpuTime.TotalNanoseconds / points);
            }
        }

        static string Summary(List<double> values, string format) =>
            $"{Median(values).ToString(format, CultureInfo.InvariantCulture)} ({values.Min().ToString(format, CultureInfo.InvariantCulture)}-{values.Max().ToString(format, CultureInfo.InvariantCulture)})";
        Console.WriteLine($"median (range) of {rounds} rounds: plain consumer {Summary(plainPointsPerSecond, "N0")} points/s; engine {Summary(enginePointsPerSecond, "N0")} points/s, " +
            $"{Summary(engineCpu, "F0")} ns CPU/point; engine / plain {Summary(ratios, "P0")}; plain without a copy {Summary(spanPointsPerSecond, "N0")} points/s, engine / that {Summary(spanRatios, "P0")}");
        return 0;
    }

    private static double Median(List<double> values)
    {
        List<double> sorted = [.. values.Order()];
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static void Report(string what, long points, long bytes, TimeSpan wall, TimeSpan cpu) =>
        Console.WriteLine($"{what,-26} {wall.TotalSeconds,7:F3} s  {points / wall.TotalSeconds,14:N0} points/s  {bytes / wall.TotalSeconds / 1e6,8:F1} MB/s  CPU {cpu.TotalSeconds,6:F2} s = {cpu.TotalNanoseconds / points,6:F1} ns/point");

    private static long Produce(string bootstrap, string topic, int partitions, int messages, int series)
    {
        using IProducer<Null, byte[]> producer = new ProducerBuilder<Null, byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrap,
            EnableIdempotence = true,
            LingerMs = 5,
        }).SetLogHandler(static (_, _) => { }).Build();
        int seriesPerMessage = Math.Min(series, 100);
        long start = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 120_000;
        long bytes = 0;
        var encoder = new PointBatchEncoder();
        for (int m = 0; m < messages; m++)
        {
            encoder.Clear();
            int group = m % Math.Max(1, series / seriesPerMessage);
            long ts = start + (m * 100_000L / messages);
            for (int i = 0; i < PointsPerMessage; i++)
            {
                int s = (group * seriesPerMessage) + (i % seriesPerMessage);
                encoder.Add(Metric, [new Label("method", "GET"), new Label("route", "/api/" + s.ToString(CultureInfo.InvariantCulture))], 0.001 * ((i * 7) % 977), ts + (i % 50));
            }

            byte[] value = encoder.ToArray();
            bytes += value.Length;
            while (true)
            {
                try
                {
                    producer.Produce(new TopicPartition(topic, m % partitions), new Message<Null, byte[]> { Value = value });
                    break;
                }
                catch (ProduceException<Null, byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    producer.Poll(TimeSpan.FromMilliseconds(50));
                }
            }
        }

        if (producer.Flush(TimeSpan.FromSeconds(60)) != 0)
        {
            throw new InvalidOperationException("the points were not all delivered within 60 s");
        }

        return bytes;
    }

    private static (TimeSpan Wall, TimeSpan Cpu) ReadPlain(string bootstrap, string topic, int messages, IDeserializer<byte[]> values)
    {
        long first = 0;
        TimeSpan cpuAtFirst = TimeSpan.Zero;
        using IConsumer<Ignore, byte[]> consumer = new ConsumerBuilder<Ignore, byte[]>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "plain-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = false,
            QueuedMaxMessagesKbytes = new KafkaPointSourceOptions { BootstrapServers = bootstrap, Topic = topic, GroupId = "x" }.PrefetchKilobytes,
        }).SetValueDeserializer(values).SetLogHandler(static (_, _) => { }).SetPartitionsAssignedHandler((_, _) => Assigned()).Build();
        void Assigned()
        {
            // Timed from the assignment, when librdkafka starts fetching (the group join before it is not the consumer's speed).
            if (first == 0)
            {
                first = Stopwatch.GetTimestamp();
                cpuAtFirst = Process.GetCurrentProcess().TotalProcessorTime;
            }
        }

        consumer.Subscribe(topic);
        long length = 0;
        int read = 0;
        var deadline = Stopwatch.StartNew();
        while (read < messages)
        {
            if (deadline.Elapsed > TimeSpan.FromMinutes(2))
            {
                throw new TimeoutException($"the plain consumer read {read:N0} of {messages:N0} messages in 2 minutes (the mock keeps only a few MB a partition: fewer points?)");
            }

            ConsumeResult<Ignore, byte[]>? result = consumer.Consume(TimeSpan.FromMilliseconds(100));
            if (result is null || result.IsPartitionEOF)
            {
                continue;
            }

            read++;
            length += result.Message.Value.Length;
            length += LengthOnly.LastLength;
        }

        TimeSpan wall = Stopwatch.GetElapsedTime(first);
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuAtFirst;
        GC.KeepAlive(length);
        consumer.Close();
        return (wall, cpu);
    }

    private static (TimeSpan Wall, TimeSpan Cpu, TimeSpan UntilWindowsOut) ReadWithEngine(string bootstrap, string pointsTopic, string aggregatesTopic, long points, TimeSpan? segments)
    {
        var sink = new KafkaWindowSink(new KafkaWindowSinkOptions { BootstrapServers = bootstrap, Topic = aggregatesTopic });
        var pipeline = new MetricsPipeline(new MetricsPipelineOptions { Sketches = true, Instance = "bench" }, [sink]);
        pipeline.Start();
        var sourceOptions = new KafkaPointSourceOptions { BootstrapServers = bootstrap, Topic = pointsTopic, GroupId = "engine-" + Guid.NewGuid().ToString("N") };
        sourceOptions.SegmentInterval = segments ?? sourceOptions.SegmentInterval;
        var source = new KafkaPointSource(pipeline, sourceOptions);
        source.Start();
        var deadline = Stopwatch.StartNew();
        void Within(string what)
        {
            if (deadline.Elapsed > TimeSpan.FromMinutes(2))
            {
                throw new TimeoutException($"{what} not within 2 minutes: {source.GetMetrics()}");
            }

            Thread.Sleep(2);
        }

        // Timed from the first assignment, as the plain consumer is (polled every 2 ms).
        while (!source.FirstAssignment.IsCompleted)
        {
            Within("the engine's first assignment");
        }

        long first = Stopwatch.GetTimestamp();
        TimeSpan cpuAtFirst = Process.GetCurrentProcess().TotalProcessorTime;

        // Done when every point is through the shards: accepted, and none queued or still in a writer. Polled in two
        // steps so that the poll costs little of the CPU it is counted in: the source's counters (a small snapshot)
        // until it has read every point, then the pipeline's whole snapshot until the shards have them.
        while (source.GetMetrics().Points < points)
        {
            Within($"all {points:N0} points read by the source");
        }

        PipelineMetrics m;
        while ((m = pipeline.GetMetrics()).Accepted + m.Rejected + m.Dropped < points || m.Queued > 0)
        {
            Within($"all {points:N0} points through the shards ({m.Accepted:N0} accepted, {m.Queued:N0} queued)");
        }

        long last = Stopwatch.GetTimestamp();
        TimeSpan wall = Stopwatch.GetElapsedTime(first, last);
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuAtFirst;

        // The timed span on the monotonic clock (Stopwatch is CLOCK_MONOTONIC on Linux), to cut a profile to it:
        // `perf record -k CLOCK_MONOTONIC ...`, then `perf report --time <start>,<end>` in seconds.
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"engine span (monotonic s): {first / (double)Stopwatch.Frequency:F6},{last / (double)Stopwatch.Frequency:F6}"));
        if (m.Accepted != points || m.Late != 0)
        {
            throw new InvalidOperationException($"expected {points:N0} points accepted and none late: accepted {m.Accepted:N0}, late {m.Late:N0}, rejected {m.Rejected:N0}, dropped {m.Dropped:N0}");
        }

        source.StopAsync().GetAwaiter().GetResult();
        pipeline.StopAsync().GetAwaiter().GetResult();
        TimeSpan untilWindowsOut = Stopwatch.GetElapsedTime(first);
        m = pipeline.GetMetrics();
        if (m.EmittedPoints != points || sink.Delivered != m.WindowsEmitted)
        {
            throw new InvalidOperationException($"windows: {m.EmittedPoints:N0} points emitted of {points:N0}, {sink.Delivered:N0} of {m.WindowsEmitted:N0} windows delivered");
        }

        Console.WriteLine($"engine: {source.GetMetrics().Cuts} cuts, {m.WindowsEmitted:N0} window batches");
        source.DisposeAsync().AsTask().GetAwaiter().GetResult();
        pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return (wall, cpu, untilWindowsOut);
    }

    /// <summary>
    /// A value deserializer that copies nothing (the engine's source decodes from librdkafka's buffer the same way):
    /// the stricter reference, a consumer that receives every message's bytes and only reads their length.
    /// </summary>
    private sealed class LengthOnly : IDeserializer<byte[]>
    {
        public static int LastLength { get; private set; }

        public byte[] Deserialize(ReadOnlySpan<byte> data, bool isNull, SerializationContext context)
        {
            LastLength = data.Length;
            return [];
        }
    }
}
