using System.Diagnostics;
using System.Globalization;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Benchmarks.Kafka;

/// <summary>
/// Where the time of decoding into the pipeline goes, by CPU time rather than wall time (which a shared machine
/// stretches): the decoding thread's own CPU (Linux <c>/proc/thread-self/schedstat</c>, nanoseconds on a core) and
/// the process's (the shards' threads included), per point, for the three cases of <see cref="PointDecodeBenchmarks"/>
/// on the same message: parse only, decode into the pipeline, write the same points by id without decoding; and
/// decoding into the pipeline messages whose series tables vary from one message to the next (10 tables cycled, or a
/// random 100 of 1,000 series a message), the series all known.
/// </summary>
/// <remarks>Usage: <c>dotnet Monitoring.Stream.Benchmarks.dll decode-cpu [--messages N] [--rounds N] [--shards N] [--warmup N] [--only case]</c>
/// (<c>--warmup</c>: untimed rounds before each case, 1 by default; <c>--only</c>: one case, by its name, for a profile).</remarks>
public static class DecodeCpuHarness
{
    private const int PointsPerMessage = 1_000;
    private const int SeriesPerMessage = 100;

    public static int Run(string[] args)
    {
        int messages = 5_000;
        int rounds = 5;
        int shards = 1;
        int warmups = 1;
        string? only = null;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            if (args[i] == "--only")
            {
                only = args[i + 1];
                continue;
            }

            int value = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--messages":
                    messages = value;
                    break;
                case "--rounds":
                    rounds = value;
                    break;
                case "--shards":
                    shards = value;
                    break;
                case "--warmup":
                    warmups = value;
                    break;
                default:
                    Console.Error.WriteLine($"unknown argument {args[i]}");
                    return 2;
            }
        }

        if (!File.Exists("/proc/thread-self/schedstat"))
        {
            Console.Error.WriteLine("needs Linux's /proc/thread-self/schedstat");
            return 2;
        }

        var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = shards, Sketches = true }, []);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("bench", BackpressureMode.Wait);
        var decoder = new PointBatchDecoder(pipeline.Registry);
        var encoder = new PointBatchEncoder();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var ids = new SeriesId[PointsPerMessage];
        var values = new double[PointsPerMessage];
        var timestamps = new long[PointsPerMessage];
        for (int i = 0; i < PointsPerMessage; i++)
        {
            int s = i % SeriesPerMessage;
            encoder.Add("http_server_request_duration_seconds", [new("route", "/api/" + s), new("method", "GET"), new("status", "200")], 0.001 * (i % 977), now + (i % 1000));
            pipeline.Registry.TryGetOrAdd("http_server_request_duration_seconds", [new("method", "GET"), new("route", "/api/" + s), new("status", "200")], out ids[i]);
            values[i] = 0.001 * (i % 977);
            timestamps[i] = now + (i % 1000);
        }

        byte[] message = encoder.ToArray();

        // Messages whose tables vary, all of known series (registered by the warm-up round): (a) 10 groups of 100
        // series of 1,000, cycled, as a producer with 10 partitions' worth of series interleaved on one consumer (and
        // as the kafka-e2e harness sends them); (b) 100 series drawn at random from the 1,000 for each of 64 messages,
        // in random order, as a producer that batches whatever series arrived (no two tables alike).
        byte[][] cycled = new byte[10][];
        for (int g = 0; g < cycled.Length; g++)
        {
            encoder.Clear();
            for (int i = 0; i < PointsPerMessage; i++)
            {
                int s = (g * SeriesPerMessage) + (i % SeriesPerMessage);
                encoder.Add("http_server_request_duration_seconds", [new("route", "/api/" + s), new("method", "GET"), new("status", "200")], 0.001 * (i % 977), now + (i % 1000));
            }

            cycled[g] = encoder.ToArray();
        }

        var random = new Random(42);
        byte[][] shuffled = new byte[64][];
        for (int k = 0; k < shuffled.Length; k++)
        {
            encoder.Clear();
            int[] drawn = [.. Enumerable.Range(0, 1_000).OrderBy(_ => random.Next()).Take(SeriesPerMessage)];
            for (int i = 0; i < PointsPerMessage; i++)
            {
                int s = drawn[i % SeriesPerMessage];
                encoder.Add("http_server_request_duration_seconds", [new("route", "/api/" + s), new("method", "GET"), new("status", "200")], 0.001 * (i % 977), now + (i % 1000));
            }

            shuffled[k] = encoder.ToArray();
        }
        long points = (long)messages * PointsPerMessage;
        Console.WriteLine($"{messages:N0} messages of {PointsPerMessage:N0} points ({SeriesPerMessage} known series) a round, {rounds} rounds after {warmups} warm-up round(s) a case, {shards} shard(s); ns per point");
        Console.WriteLine($"{"case",-22} {"wall (loop)",12} {"thread CPU",12} {"wall to drained",16} {"process CPU to drained",24}");
        void Case(string name, Action body)
        {
            if (only is not null && !name.Equals(only, StringComparison.OrdinalIgnoreCase))
            {
                return;
            }

            var wall = new List<double>();
            var thread = new List<double>();
            var drainedWall = new List<double>();
            var drainedCpu = new List<double>();
            for (int round = 1 - warmups; round <= rounds; round++)
            {
                TimeSpan cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
                long thread0 = ThreadCpuNanoseconds();
                long start = Stopwatch.GetTimestamp();
                body();
                TimeSpan loop = Stopwatch.GetElapsedTime(start);
                long threadNs = ThreadCpuNanoseconds() - thread0;
                writer.Flush();
                PipelineMetrics m;
                while ((m = pipeline.GetMetrics()).Queued > 0 || m.Pending > 0)
                {
                    Thread.Yield();
                }

                TimeSpan drained = Stopwatch.GetElapsedTime(start);
                TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu0;
                if (round > 0)
                {
                    wall.Add(loop.TotalNanoseconds / points);
                    thread.Add(threadNs / (double)points);
                    drainedWall.Add(drained.TotalNanoseconds / points);
                    drainedCpu.Add(cpu.TotalNanoseconds / points);
                }
            }

            Console.WriteLine($"{name,-22} {Summary(wall),12} {Summary(thread),12} {Summary(drainedWall),16} {Summary(drainedCpu),24}");
        }

        Case("ParseOnly", () =>
        {
            for (int m = 0; m < messages; m++)
            {
                _ = decoder.Validate(message);
            }
        });
        Case("DecodeIntoPipeline", () =>
        {
            for (int m = 0; m < messages; m++)
            {
                _ = decoder.Decode(message, writer);
            }
        });
        // The decoder's whole work without the core's writer (parse, check, resolve the series; the points stay in
        // the decoder): the decode cost itself, free of the writer's wait when the shard is the slower side.
        Case("Prepare10Tables", () =>
        {
            for (int m = 0; m < messages; m++)
            {
                _ = decoder.Prepare(cycled[m % cycled.Length]);
            }
        });
        Case("PrepareRandomTables", () =>
        {
            for (int m = 0; m < messages; m++)
            {
                _ = decoder.Prepare(shuffled[m % shuffled.Length]);
            }
        });
        Case("Decode10Tables", () =>
        {
            for (int m = 0; m < messages; m++)
            {
                _ = decoder.Decode(cycled[m % cycled.Length], writer);
            }
        });
        Case("DecodeRandomTables", () =>
        {
            for (int m = 0; m < messages; m++)
            {
                _ = decoder.Decode(shuffled[m % shuffled.Length], writer);
            }
        });
        // The same, paced as the Kafka source paces itself (it pauses its partitions at 75 % queue fill): every 32
        // messages the harness waits, asleep, while the shard's queue is more than half full, so the decoding thread
        // never finds it full. Unpaced, the single shard (slower than the decoder) fills its queue and the core's writer
        // then spins and yields on every batch (PointWriter: up to 4,000 yielding spins before it sleeps), and that
        // waiting is in the thread's CPU: the faster the decoder, the more of it. The snapshot the check takes every
        // 32,000 points is counted in the thread's CPU.
        Case("DecodeRandomTablesPaced", () =>
        {
            for (int m = 0; m < messages; m++)
            {
                if (m % 32 == 0)
                {
                    PipelineMetrics metrics;
                    while ((metrics = pipeline.GetMetrics()).ShardQueueDepth.Max() * 2 > metrics.ShardQueueCapacity)
                    {
                        Thread.Sleep(1);
                    }
                }

                _ = decoder.Decode(shuffled[m % shuffled.Length], writer);
            }
        });
        Case("WriteOnly", () =>
        {
            for (int m = 0; m < messages; m++)
            {
                for (int i = 0; i < ids.Length; i++)
                {
                    _ = writer.Write(ids[i], values[i], timestamps[i]);
                }
            }
        });
        pipeline.StopAsync().GetAwaiter().GetResult();
        return 0;
    }

    private static string Summary(List<double> values)
    {
        List<double> sorted = [.. values.Order()];
        return string.Create(CultureInfo.InvariantCulture, $"{sorted[sorted.Count / 2]:F1} ({sorted[0]:F1})");
    }

    /// <summary>Time the calling thread has run on a core, in ns (the first field of Linux's schedstat).</summary>
    private static long ThreadCpuNanoseconds()
    {
        string text = File.ReadAllText("/proc/thread-self/schedstat");
        return long.Parse(text.AsSpan(0, text.IndexOf(' ', StringComparison.Ordinal)), CultureInfo.InvariantCulture);
    }
}
