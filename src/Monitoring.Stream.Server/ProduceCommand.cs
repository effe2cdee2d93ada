using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Confluent.Kafka;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Server;

/// <summary>
/// <c>monitoring-stream produce</c>: a load generator that writes point messages in the wire format
/// (docs/wire-format.md, <see cref="PointBatchEncoder"/>) to a Kafka topic — idempotent producer, one
/// message per batch, keyed by a group of series so a series always lands in one partition.
/// </summary>
internal static class ProduceCommand
{
    /// <summary>The metric the generator writes.</summary>
    public const string Metric = "load_request_duration_seconds";

    /// <summary>Series are spread over this many keys (each key's series stay in one partition).</summary>
    private const int KeyGroups = 64;

    /// <summary>The <c>produce</c> command.</summary>
    public static Command Create()
    {
        var bootstrap = new Option<string>("--kafka-bootstrap") { Description = "Kafka bootstrap servers (run --kafka-mock prints its own)", Required = true };
        var topic = new Option<string>("--topic") { Description = "topic of point messages", DefaultValueFactory = _ => "metrics.points" };
        Option<long> points = CliOptions.Number("--points", "points to produce in all", 1_000_000, 1, long.MaxValue);
        Option<long> series = CliOptions.Number("--series", "distinct series", 1000, 1, 10_000_000);
        Option<long> batch = CliOptions.Number("--batch", "points per message", 1000, 1, 200_000);
        Option<long> rate = CliOptions.Number("--rate", "points per second (0: as fast as the producer goes)", 0, 0, 100_000_000);
        var command = new Command("produce", "load generator: write synthetic points to Kafka in the MessagePack wire format, print progress and a summary")
        {
            bootstrap, topic, points, series, batch, rate,
        };
        command.SetAction((parse, ct) => RunAsync(parse.GetValue(bootstrap)!, parse.GetValue(topic)!, parse.GetValue(points), (int)parse.GetValue(series),
            (int)parse.GetValue(batch), parse.GetValue(rate), ct));
        return command;
    }

    private static async Task<int> RunAsync(string bootstrap, string topic, long total, int seriesCount, int batchSize, long rate, CancellationToken cancellationToken)
    {
        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            // The first Ctrl+C stops producing and cuts the final flush short; a second one ends the process at once.
            e.Cancel = !stop.IsCancellationRequested;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using CancellationTokenRegistration linked = cancellationToken.Register(stop.Cancel);
        long delivered = 0, failed = 0, bytes = 0;
        string? lastError = null;
        var config = new ProducerConfig
        {
            BootstrapServers = bootstrap,
            EnableIdempotence = true,
            Acks = Acks.All,
            LingerMs = 5,
            CompressionType = CompressionType.Lz4,
        };
        using IProducer<byte[], byte[]> producer = new ProducerBuilder<byte[], byte[]>(config).SetLogHandler(static (_, _) => { }).Build();
        Label[][] labels = [.. Enumerable.Range(0, seriesCount).Select(i => new Label[] { new("instance", "node-" + (i / 10)), new("route", "/api/r" + (i % 10)) })];
        var encoders = new PointBatchEncoder[KeyGroups];
        var seriesIndex = new Dictionary<int, int>[KeyGroups];
        for (int g = 0; g < KeyGroups; g++)
        {
            encoders[g] = new PointBatchEncoder();
            seriesIndex[g] = [];
        }

        var random = new Random(11);
        var clock = Stopwatch.StartNew();
        TimeSpan nextProgress = TimeSpan.FromSeconds(1);
        long produced = 0;
        Console.WriteLine($"produce: {total:N0} points over {seriesCount:N0} series of {Metric} to '{topic}' at {bootstrap}, {batchSize:N0} points per message{(rate > 0 ? $", {rate:N0} points/s" : string.Empty)}");
        void Send(int group)
        {
            PointBatchEncoder encoder = encoders[group];
            if (encoder.Count == 0)
            {
                return;
            }

            byte[] value = encoder.ToArray();
            encoder.Clear();
            seriesIndex[group].Clear();
            while (true)
            {
                try
                {
                    producer.Produce(topic, new Message<byte[], byte[]> { Key = BitConverter.GetBytes(group), Value = value }, report =>
                    {
                        if (report.Error.IsError)
                        {
                            Interlocked.Increment(ref failed);
                            Volatile.Write(ref lastError, report.Error.Reason);
                        }
                        else
                        {
                            Interlocked.Increment(ref delivered);
                            Interlocked.Add(ref bytes, value.Length);
                        }
                    });
                    return;
                }
                catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    if (stop.IsCancellationRequested)
                    {
                        // Interrupted while the queue is full (brokers unreachable): this message is not sent.
                        Interlocked.Increment(ref failed);
                        return;
                    }

                    producer.Poll(TimeSpan.FromMilliseconds(50));
                }
            }
        }

        while (produced < total && !stop.IsCancellationRequested)
        {
            long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            int s = random.Next(seriesCount);
            int group = s % KeyGroups;
            if (!seriesIndex[group].TryGetValue(s, out int index))
            {
                seriesIndex[group][s] = index = encoders[group].AddSeries(Metric, labels[s]);
            }

            double gaussian = Math.Sqrt(-2.0 * Math.Log(1.0 - random.NextDouble())) * Math.Cos(2.0 * Math.PI * random.NextDouble());
            encoders[group].Add(index, 0.01 * (1 + (s % 8)) * Math.Exp(0.5 * gaussian), now);
            produced++;
            if (encoders[group].Count >= batchSize)
            {
                Send(group);
            }

            if ((produced & 0x3FF) == 0)
            {
                if (rate > 0)
                {
                    double ahead = (produced / (double)rate) - clock.Elapsed.TotalSeconds;
                    if (ahead > 0.001)
                    {
                        await Task.Delay(TimeSpan.FromSeconds(ahead), CancellationToken.None).ConfigureAwait(false);
                    }
                }

                if (clock.Elapsed >= nextProgress)
                {
                    nextProgress += TimeSpan.FromSeconds(1);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {clock.Elapsed.TotalSeconds,5:F1} s  produced {produced,13:N0}  {produced / clock.Elapsed.TotalSeconds,12:N0} points/s  messages delivered {Interlocked.Read(ref delivered),9:N0}  failed {Interlocked.Read(ref failed):N0}"));
                }
            }
        }

        for (int g = 0; g < KeyGroups; g++)
        {
            Send(g);
        }

        // Wait for delivery for at most 30 s, and not at all once interrupted: a broker that cannot be reached used to
        // hold Ctrl+C and SIGTERM for the whole 30 s.
        using (var flushDeadline = CancellationTokenSource.CreateLinkedTokenSource(stop.Token))
        {
            flushDeadline.CancelAfter(TimeSpan.FromSeconds(30));
            try
            {
                producer.Flush(flushDeadline.Token);
            }
            catch (OperationCanceledException)
            {
                // Counted below as undelivered.
            }
        }

        int left = producer.Flush(TimeSpan.Zero);
        if (stop.IsCancellationRequested)
        {
            Console.WriteLine($"interrupted: {left:N0} messages not delivered are dropped");
        }

        Console.CancelKeyPress -= onCancel;
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"done: {produced:N0} points in {seconds:F2} s = {produced / seconds:N0} points/s; messages delivered {delivered:N0} ({bytes:N0} bytes), failed {failed:N0}, undelivered at exit {left:N0}{(lastError is null ? string.Empty : ", last error: " + lastError)}");
        return failed == 0 && left == 0 ? 0 : 1;
    }
}
