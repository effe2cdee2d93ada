using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Monitoring.Stream.Hosting.Bridge;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Monitoring.Stream.Hosting.Benchmarks;

/// <summary>
/// Process CPU time per point, end to end, for one producer thread: OpenTelemetry .NET's histogram (its
/// aggregation runs inside <c>Record</c>; timed until <c>ForceFlush</c> has collected), and the engine's
/// labelled call, bound handle and Meter bridge (timed until <c>StopAsync</c> has aggregated every point on
/// the shards and emitted every window). Not a BenchmarkDotNet benchmark: it counts every thread's CPU.
/// </summary>
/// <remarks>
/// Usage: <c>cpu [--points N] [--rounds R] [--series S] [--shards K] [--queue-batches Q] [--paths opentelemetry,engine-labels,engine-bound,meter-bridge]</c>
/// (default: 1,000 and 100,000 series, those four paths; <c>shared-bound</c> and <c>writer-bound</c> time the
/// engine's writers under the bound handle, <c>writer-labels</c> and <c>registry-lookup</c> the engine's writer
/// and registry under the labelled call, to show what each layer adds). Each path first runs untimed rounds
/// for two seconds (tiering), then R timed rounds, each on a fresh instance that has first recorded as many
/// points untimed (every series created, its sketch grown: a running application's steady state); the median
/// and range are printed. Points/s counts only the points the engine took (its shared writers drop, and count,
/// what a full shard cannot take). Allocation is shown for the calls alone and with the stop, whose window
/// emission in a fresh pipeline allocates its column and sketch buffers once. Process CPU time includes the GC, the JIT's background work and the engine's timer:
/// what a deployment would pay.
/// </remarks>
internal static class CpuPerPoint
{
    private const int Chunk = 4096;

    /// <summary>Points the engine of the case being timed has dropped so far (none for OpenTelemetry).</summary>
    private static Func<long> s_droppedSoFar = () => 0;

    /// <summary>The engine's shard count (<c>--shards</c>); 0 for the default, one a processor.</summary>
    private static int s_shards;

    /// <summary>Each shard's queue in batches (<c>--queue-batches</c>); 0 for the default.</summary>
    private static int s_queueBatches;

    /// <summary>Point batches the engine of the case being timed has allocated so far (its pool grows until it covers the most in flight).</summary>
    private static Func<long> s_batchesSoFar = () => 0;

    /// <summary>Bytes of one point batch of the default size: the object (88 B) and its array (24 B of header, 1,024 points of 24 B).</summary>
    private static readonly long s_batchBytes = 88 + 24 + (new MetricsPipelineOptions().BatchSize * 24L);

    private const int ClockThreadCpuTime = 3;

    private const string Metric = "http_server_request_duration_seconds";

    /// <summary>How long each path runs untimed rounds before its timed ones.</summary>
    private static readonly TimeSpan s_warmUpTime = TimeSpan.FromSeconds(2);

    /// <summary>The pause after each untimed round: longer than the runtime's 100 ms call-counting delay and a background tier-1 compilation.</summary>
    private static readonly TimeSpan s_warmUpPause = TimeSpan.FromMilliseconds(250);

    /// <summary>Untimed rounds at the least, however long they take: each stage of tiering (counted, instrumented, tier 1) needs one.</summary>
    private const int MinWarmUpRounds = 6;

    /// <summary>
    /// The timed points divided by this are recorded untimed on the same instance first, so that every series
    /// exists (OpenTelemetry's metric points, the engine's registry entries, window states and sketches, grown to
    /// their values' range) and the timed part is a running application's steady state, not its first minute.
    /// </summary>
    private const int SteadyStateDivisor = 1;

    public static void Run(string[] args)
    {
        int points = Option(args, "--points", 2_000_000);
        int rounds = Option(args, "--rounds", 3);
        int onlySeries = Option(args, "--series", 0);
        s_shards = Option(args, "--shards", 0);
        s_queueBatches = Option(args, "--queue-batches", 0);
        string[] paths = TextOption(args, "--paths")?.Split(',') ?? ["opentelemetry", "engine-labels", "engine-bound", "meter-bridge"];
        Console.WriteLine($"CPU per point: {points:N0} points per round, {rounds} rounds, {Environment.ProcessorCount} processors, load {File.ReadAllText("/proc/loadavg").Trim()}");
        Console.WriteLine("series | path | CPU ns/point median (range) | producer thread CPU ns/call median (range) | wall Mpoints/s taken, median | allocated B/call while recording | of which batch-pool growth | allocated B/point with the stop | dropped in the timed part");
        foreach (int series in onlySeries > 0 ? [onlySeries] : new[] { 1_000, 100_000 })
        {
            var random = new Random(7);
            int[] visit = [.. Enumerable.Range(0, 1 << 20).Select(_ => random.Next(series))];
            double[] values = [.. Enumerable.Range(0, 1 << 20).Select(_ => Math.Exp(-3 + random.NextDouble()))];
            string[][] labels = [.. Enumerable.Range(0, series).Select(i => new[]
            {
                i % 2 == 0 ? "GET" : "POST", "/api/items/" + (i / 4).ToString(CultureInfo.InvariantCulture), (200 + (i % 4)).ToString(CultureInfo.InvariantCulture),
            })];
            foreach (string path in paths)
            {
                // Untimed rounds until the path has run for a while, each followed by a pause: tiering promotes a
                // method only after its calls are counted, which starts 100 ms after the last method was compiled,
                // and each round compiles a few methods at its end (the counters read, the next pipeline), so
                // back-to-back rounds of 50 ms kept restarting that delay. Without the pauses the runtime's vector
                // logarithm (the shard's bin indices) was still instrumented tier-0 code in the timed rounds: the
                // shard fell behind and the bound handle measured 38 million points a second, not 85 (session 11).
                var warm = Stopwatch.StartNew();
                int warmUpRounds = 0;
                do
                {
                    Measure(series, path, points, labels, visit, values);
                    Thread.Sleep(s_warmUpPause);
                    warmUpRounds++;
                }
                while (warm.Elapsed < s_warmUpTime || warmUpRounds < MinWarmUpRounds);
                var results = new List<(double CpuNs, double Mps, double Alloc, long Dropped, double ProducerNs, double AllocRecording, double PoolGrowth)>();
                for (int r = 0; r < rounds; r++)
                {
                    results.Add(Measure(series, path, points, labels, visit, values));
                }

                double[] cpu = [.. results.Select(x => x.CpuNs).Order()];
                double[] mps = [.. results.Select(x => x.Mps).Order()];
                double[] producer = [.. results.Select(x => x.ProducerNs).Order()];
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{series:N0} | {path} | {cpu[cpu.Length / 2]:F0} ({cpu[0]:F0}–{cpu[^1]:F0}) | {producer[producer.Length / 2]:F1} ({producer[0]:F1}–{producer[^1]:F1}) | {mps[mps.Length / 2]:F2} | {results.Average(x => x.AllocRecording):F3} | {results.Average(x => x.PoolGrowth):F3} | {results.Average(x => x.Alloc):F3} | {string.Join('/', results.Select(x => x.Dropped))}"));
            }
        }
    }

    private static (double CpuNs, double Mps, double Alloc, long Dropped, double ProducerNs, double AllocRecording, double PoolGrowth) Measure(int series, string path, int points, string[][] labels, int[] visit, double[] values)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        using Process process = Process.GetCurrentProcess();
        int warmUpPoints = points / SteadyStateDivisor;
        if (path == "opentelemetry")
        {
            s_droppedSoFar = () => 0;
            s_batchesSoFar = () => 0;
            string name = "cpu-otel-" + Guid.NewGuid().ToString("N");
            using MeterProvider provider = Sdk.CreateMeterProviderBuilder()
                .AddMeter(name)
                .AddView(Metric, new MetricStreamConfiguration { CardinalityLimit = series + 10 })
                .AddInMemoryExporter(new List<Metric>())
                .Build()!;
            using var meter = new Meter(name);
            Histogram<double> histogram = meter.CreateHistogram<double>(Metric);
            TagList[] tags = [.. labels.Select(l => new TagList { { "method", l[0] }, { "route", l[1] }, { "status", l[2] } })];
            return Timed(process, points, warmUpPoints, (i, n) => RecordOpenTelemetry(histogram, tags, visit, values, i, n), () => provider.ForceFlush(), () =>
            {
                provider.ForceFlush();
                return 0;
            });
        }

        // Windows of ten minutes, as in the core load harness: a round never crosses into a new window. A fresh
        // pipeline's first new window allocates every series' state (later ones reuse the closed windows'), which
        // is a one-off cost the window emission benchmarks measure, not a call's.
        var options = new MetricsPipelineOptions { Instance = "cpu", WindowSize = TimeSpan.FromMinutes(10) };
        if (s_shards > 0)
        {
            options.ShardCount = s_shards;
        }

        if (s_queueBatches > 0)
        {
            options.ShardQueueBatches = s_queueBatches;
        }

        var pipeline = new MetricsPipeline(options, []);
        pipeline.Start();
        s_droppedSoFar = () => pipeline.GetMetrics().Dropped;
        s_batchesSoFar = () => pipeline.GetMetrics().BatchesAllocated;
        try
        {
            using var collector = new MetricsCollector(pipeline, "cpu");
            MetricHistogram histogram = collector.CreateHistogram(Metric, ["method", "route", "status"]);
            Action afterWarmUp = () =>
            {
                collector.Flush();
                pipeline.DrainAsync().GetAwaiter().GetResult();
            };
            switch (path)
            {
                case "engine-labels":
                    return Timed(process, points, warmUpPoints, (i, n) => RecordLabelled(histogram, labels, visit, values, i, n), afterWarmUp, () => Drain(collector.Flush, pipeline));
                case "engine-bound":
                    BoundHistogram[] handles = [.. labels.Select(l => histogram.Bind(l))];
                    return Timed(process, points, warmUpPoints, (i, n) => RecordBound(handles, visit, values, i, n), afterWarmUp, () => Drain(collector.Flush, pipeline));
                case "writer-labels":
                case "registry-lookup":
                    // Diagnostic layers under the SDK's labelled call: the engine's one-thread writer resolving the
                    // labels itself (stamped, DropNewest as the SDK's), and the registry's lookup alone (nothing written).
                    Label[][] sets = [.. labels.Select(l => new Label[] { new("method", l[0]), new("route", l[1]), new("status", l[2]) })];
                    if (path == "registry-lookup")
                    {
                        return Timed(process, points, warmUpPoints, (i, n) => LookUp(pipeline.Registry, sets, visit, i, n), () => { }, () => 0);
                    }

                    using (PointWriter writer = pipeline.CreateWriter("cpu-writer", BackpressureMode.DropNewest))
                    {
                        return Timed(process, points, warmUpPoints, (i, n) => WriteLabelledSingle(writer, sets, visit, values, i, n), () =>
                        {
                            writer.Flush();
                            pipeline.DrainAsync().GetAwaiter().GetResult();
                        }, () => Drain(writer.Flush, pipeline));
                    }

                case "shared-bound":
                case "writer-bound":
                    // Diagnostic layers under the SDK's bound handle: the engine's thread-safe writer, and the
                    // one-thread writer under it (both stamping the engine clock, both DropNewest as the SDK's is).
                    SeriesId[] ids = [.. labels.Select(l => pipeline.Registry.GetOrAdd(Metric, [new Label("method", l[0]), new Label("route", l[1]), new Label("status", l[2])]))];
                    if (path == "shared-bound")
                    {
                        using SharedPointWriter shared = pipeline.CreateSharedWriter("cpu-shared");
                        return Timed(process, points, warmUpPoints, (i, n) => WriteShared(shared, ids, visit, values, i, n), () =>
                        {
                            shared.Flush();
                            pipeline.DrainAsync().GetAwaiter().GetResult();
                        }, () => Drain(shared.Flush, pipeline));
                    }

                    using (PointWriter writer = pipeline.CreateWriter("cpu-writer", BackpressureMode.DropNewest))
                    {
                        return Timed(process, points, warmUpPoints, (i, n) => WriteSingle(writer, ids, visit, values, i, n), () =>
                        {
                            writer.Flush();
                            pipeline.DrainAsync().GetAwaiter().GetResult();
                        }, () => Drain(writer.Flush, pipeline));
                    }

                default:
                    string name = "cpu-bridged-" + Guid.NewGuid().ToString("N");
                    using (var bridge = new MeterBridge(collector, new MeterBridgeOptions { Meters = { name }, MetricPrefix = "bridged_" }))
                    using (var meter = new Meter(name))
                    {
                        Histogram<double> bridged = meter.CreateHistogram<double>(Metric);
                        TagList[] tags = [.. labels.Select(l => new TagList { { "method", l[0] }, { "route", l[1] }, { "status", l[2] } })];
                        return Timed(process, points, warmUpPoints, (i, n) => RecordOpenTelemetry(bridged, tags, visit, values, i, n), afterWarmUp, () => Drain(collector.Flush, pipeline));
                    }
            }
        }
        finally
        {
            pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    // PERF (of the harness): the calls run in a method called once per Chunk points, as an application's
    // handlers are called often; one loop of millions of iterations would run as the JIT's on-stack-replacement
    // code instead of a fully optimised method (the core's load harness does the same, docs/benchmarks.md).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RecordOpenTelemetry(Histogram<double> histogram, TagList[] tags, int[] visit, double[] values, int start, int count)
    {
        int mask = visit.Length - 1;
        for (int i = start; i < start + count; i++)
        {
            histogram.Record(values[i & mask], tags[visit[i & mask]]);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RecordLabelled(MetricHistogram histogram, string[][] labels, int[] visit, double[] values, int start, int count)
    {
        int mask = visit.Length - 1;
        for (int i = start; i < start + count; i++)
        {
            histogram.Record(values[i & mask], labels[visit[i & mask]]);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RecordBound(BoundHistogram[] handles, int[] visit, double[] values, int start, int count)
    {
        int mask = visit.Length - 1;
        for (int i = start; i < start + count; i++)
        {
            handles[visit[i & mask]].Record(values[i & mask]);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void LookUp(Series.SeriesRegistry registry, Label[][] sets, int[] visit, int start, int count)
    {
        int mask = visit.Length - 1;
        long sum = 0;
        for (int i = start; i < start + count; i++)
        {
            registry.TryGetOrAdd(Metric, sets[visit[i & mask]], out SeriesId id);
            sum += id.Value;
        }

        s_sink = sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WriteLabelledSingle(PointWriter writer, Label[][] sets, int[] visit, double[] values, int start, int count)
    {
        int mask = visit.Length - 1;
        for (int i = start; i < start + count; i++)
        {
            writer.Write(Metric, sets[visit[i & mask]], values[i & mask]);
        }
    }

    /// <summary>Keeps the lookups' results alive.</summary>
    private static long s_sink;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WriteShared(SharedPointWriter writer, SeriesId[] ids, int[] visit, double[] values, int start, int count)
    {
        int mask = visit.Length - 1;
        for (int i = start; i < start + count; i++)
        {
            writer.Write(ids[visit[i & mask]], values[i & mask]);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WriteSingle(PointWriter writer, SeriesId[] ids, int[] visit, double[] values, int start, int count)
    {
        int mask = visit.Length - 1;
        for (int i = start; i < start + count; i++)
        {
            writer.Write(ids[visit[i & mask]], values[i & mask]);
        }
    }

    /// <summary>Hands the buffered points over and stops the engine, which aggregates and emits everything; returns the points dropped.</summary>
    private static long Drain(Action flush, MetricsPipeline pipeline)
    {
        flush();
        pipeline.StopAsync().GetAwaiter().GetResult();
        PipelineMetrics m = pipeline.GetMetrics();
        if (m.EmittedPoints + m.Dropped + m.Rejected + m.Late != m.Offered)
        {
            throw new InvalidOperationException($"Not every point was accounted for: {m.Offered} offered, {m.EmittedPoints} emitted, {m.Dropped} dropped, {m.Rejected} rejected, {m.Late} late.");
        }

        return m.Dropped;
    }

    /// <summary>
    /// Records <paramref name="warmUpPoints"/> untimed on the instance (then runs <paramref name="afterWarmUp"/>),
    /// then times <paramref name="points"/> calls and <paramref name="finish"/>, which leaves every point aggregated.
    /// </summary>
    private static (double CpuNs, double Mps, double Alloc, long Dropped, double ProducerNs, double AllocRecording, double PoolGrowth) Timed(
        Process process, int points, int warmUpPoints, Action<int, int> record, Action afterWarmUp, Func<long> finish)
    {
        // The warm-up walks the pre-drawn sequence backwards a chunk at a time, so it sees every series
        // (the sequence has 2^20 entries: at least ten visits a series at 100,000) but not the timed chunks first.
        int chunks = (1 << 20) / Chunk;
        for (int i = 0, c = chunks - 1; i < warmUpPoints; i += Chunk, c = c == 0 ? chunks - 1 : c - 1)
        {
            record(c * Chunk, Math.Min(Chunk, warmUpPoints - i));
        }

        afterWarmUp();
        long droppedBefore = s_droppedSoFar();
        long batchesBefore = s_batchesSoFar();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        process.Refresh();
        TimeSpan cpu0 = process.TotalProcessorTime;
        long alloc0 = GC.GetTotalAllocatedBytes(precise: true);
        var wall = Stopwatch.StartNew();
        long t0 = ThreadCpuNs();
        for (int i = 0; i < points; i += Chunk)
        {
            record(i, Math.Min(Chunk, points - i));
        }

        long producerNs = ThreadCpuNs() - t0;
        long allocRecording = GC.GetTotalAllocatedBytes(precise: true) - alloc0;
        // A fresh pipeline's batch pool allocates until it covers the most batches ever in flight (bounded by the
        // shard queues): a one-off of the instance, not of a call, shown apart.
        long poolGrowth = (s_batchesSoFar() - batchesBefore) * s_batchBytes;
        long dropped = finish() - droppedBefore;
        wall.Stop();
        long alloc = GC.GetTotalAllocatedBytes(precise: true) - alloc0;
        process.Refresh();
        double cpuNs = (process.TotalProcessorTime - cpu0).TotalNanoseconds / points;
        // Points/s counts the points the engine took: a point dropped for a full shard (the SDK's writers drop
        // rather than block the application) is not throughput.
        return (cpuNs, (points - dropped) / wall.Elapsed.TotalSeconds / 1e6, alloc / (double)points, dropped, producerNs / (double)points, allocRecording / (double)points, poolGrowth / (double)points);
    }

    /// <summary>The calling thread's CPU time (Linux <c>CLOCK_THREAD_CPUTIME_ID</c>): what the calls cost their caller, whatever else the machine runs.</summary>
    private static long ThreadCpuNs() =>
        ClockGetTime(ClockThreadCpuTime, out Timespec t) == 0 ? (t.Seconds * 1_000_000_000L) + t.Nanoseconds : 0;

    [DllImport("libc", EntryPoint = "clock_gettime")]
#pragma warning disable SYSLIB1054 // a blittable signature: no marshalling code to generate
    private static extern int ClockGetTime(int clock, out Timespec time);
#pragma warning restore SYSLIB1054

    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    private static string? TextOption(string[] args, string name)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
    }

    private static int Option(string[] args, string name, int fallback)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? int.Parse(args[at + 1], CultureInfo.InvariantCulture) : fallback;
    }
}
