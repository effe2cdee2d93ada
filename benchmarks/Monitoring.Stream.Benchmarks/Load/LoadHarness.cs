using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Monitoring.Stream.Arrow;
using Monitoring.Stream.Store;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Series;
using Monitoring.Stream.Windows;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Monitoring.Stream.Benchmarks.Load;

/// <summary>
/// End-to-end load: the whole pipeline against the OpenTelemetry .NET SDK recording the same points into
/// a histogram, in the same process and run: 3 labels, 1,000 and 100,000 series, 2 producer threads.
/// Also times a 100,000-series window into Arrow and measures memory per active series.
/// </summary>
/// <remarks>Usage: <c>dotnet run -c Release --project benchmarks/Monitoring.Stream.Benchmarks -- load [--points N] [--rounds N] [--only throughput|arrow|memory|overload] [--arrow-runs N] [--arrow-shards N] [--shard-queue N]</c>; the overload soak's options are on <see cref="OverloadSoak"/>.</remarks>
public static partial class LoadHarness
{
    private const string Metric = "http_server_request_duration_seconds";
    private static int s_producers = 2;
    private static int s_arrowRuns = 10;

    /// <summary>Untimed builds before the timed ones of a window to Arrow (see <see cref="TimeWindowToArrow"/>).</summary>
    private const int ArrowWarmUpBuilds = 20;
    private static int s_shardQueue = new MetricsPipelineOptions().ShardQueueBatches;
    private static int s_arrowShards;

    public static int Run(string[] args)
    {
        if (args.Length > 0 && args[0] == "--check")
        {
            return Check(args[1..]);
        }

        long points = 10_000_000;
        int rounds = 3;
        string only = "all";
        int seconds = 60;
        int[] seriesCounts = [1_000, 100_000];
        string engine = "all";
        // The overload soak's defaults are the sink's own (64 batches, 256 MiB).
        int churn = 2_000, sinkMs = 5_000, sinkQueue = 64, sinkQueueMib = 256, idleSeconds = 30, sampleSeconds = 10;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--points":
                    points = long.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--rounds":
                    rounds = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--producers":
                    s_producers = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--engine" when args[i + 1] is "otel" or "prometheus-net" or "resolved" or "bound" or "all":
                    engine = args[i + 1];
                    break;
                case "--series":
                    seriesCounts = [int.Parse(args[i + 1], CultureInfo.InvariantCulture)];
                    break;
                case "--shard-queue":
                    s_shardQueue = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--arrow-runs":
                    s_arrowRuns = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--arrow-shards":
                    s_arrowShards = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--seconds":
                    seconds = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--churn":
                    churn = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--sink-ms":
                    sinkMs = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--sink-queue":
                    sinkQueue = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--sink-queue-mib":
                    sinkQueueMib = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--idle-seconds":
                    idleSeconds = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--sample-seconds":
                    sampleSeconds = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--only" when args[i + 1] is "throughput" or "arrow" or "memory" or "overload":
                    only = args[i + 1];
                    break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}");
                    return 2;
            }
        }

        if (only == "arrow")
        {
            // --arrow-shards N times that layout alone (1: the one-shard target of issue 13).
            if (s_arrowShards is 0 or 1)
            {
                TimeWindowToArrow(100_000, shards: 1);
            }

            if (s_arrowShards != 1)
            {
                TimeWindowToArrow(100_000, s_arrowShards > 1 ? s_arrowShards : Environment.ProcessorCount);
            }

            return 0;
        }

        if (only == "overload")
        {
            int series = seriesCounts.Length == 1 ? seriesCounts[0] : 100_000;
            OverloadSoak.Run(new OverloadSettings(seconds, series, churn, sinkMs, sinkQueue, sinkQueueMib, idleSeconds, sampleSeconds, s_producers));
            return 0;
        }

        if (only == "memory")
        {
            MeasureMemoryPerSeries(100_000, pointsPerSeries: 200);
            return 0;
        }

        Console.WriteLine($"# load harness: {points:N0} timed points per run after a warm-up pass of a quarter of that, {s_producers} producer threads, one untimed round then {rounds} rounds, median reported");
        Console.WriteLine($"# {Environment.ProcessorCount} cores, .NET {Environment.Version}, server GC {System.Runtime.GCSettings.IsServerGC}");
        Console.WriteLine();
        Console.WriteLine("# CPU ns/point = process CPU time (all threads: producers, shards, GC) over the timed phase including the stop, divided by the points");
        Console.WriteLine("| series | engine | points/s (median) | range | ratio to OpenTelemetry | CPU ns/point (median) | range | allocated bytes/point while producing | of which batch-pool growth |");
        Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (int series in seriesCounts)
        {
            Label[][] labels = BuildLabels(series);
            Workload work = Workload.Create(labels.Length, points / s_producers);
            var otel = new List<Result>();
            var promNet = new List<Result>();
            var resolved = new List<Result>();
            var bound = new List<Result>();

            // One untimed round of each engine first: the first long run of a loop is when the JIT
            // replaces its code, and it made round 1 of the resolved path half as fast as the rest.
            bool runOtel = engine is "all" or "otel", runResolved = engine is "all" or "resolved", runBound = engine is "all" or "bound";
            bool runPromNet = engine is "all" or "prometheus-net";
            if (runOtel)
            {
                _ = RunOpenTelemetry(labels, work);
            }

            if (runPromNet)
            {
                _ = RunPrometheusNet(labels, work);
            }

            if (runResolved)
            {
                _ = RunPipeline(labels, work, boundHandles: false);
            }

            if (runBound)
            {
                _ = RunPipeline(labels, work, boundHandles: true);
            }

            for (int r = 0; r < rounds; r++)
            {
                // Interleave the engines so drift of a shared machine hits all of them alike.
                if (runOtel)
                {
                    otel.Add(RunOpenTelemetry(labels, work));
                }

                if (runPromNet)
                {
                    promNet.Add(RunPrometheusNet(labels, work));
                }

                if (runResolved)
                {
                    resolved.Add(RunPipeline(labels, work, boundHandles: false));
                }

                if (runBound)
                {
                    bound.Add(RunPipeline(labels, work, boundHandles: true));
                }

                Console.Error.WriteLine($"  round {r + 1}/{rounds} at {series:N0} series: otel {Describe(otel)}, prometheus-net {Describe(promNet)}, resolved {Describe(resolved)}, bound {Describe(bound)}");
            }

            double otelMedian = otel.Count > 0 ? Median(otel.Select(x => x.PointsPerSecond)) : double.NaN;
            Print(series, "OpenTelemetry SDK histogram (reference)", otel, otelMedian);
            Print(series, "prometheus-net histogram, WithLabels per call", promNet, otelMedian);
            Print(series, "Monitoring.Stream, labels resolved per call", resolved, otelMedian);
            Print(series, "Monitoring.Stream, bound series handles", bound, otelMedian);
        }

        if (only == "throughput")
        {
            return 0;
        }

        Console.WriteLine();
        TimeWindowToArrow(100_000, shards: 1);
        TimeWindowToArrow(100_000, Environment.ProcessorCount);
        Console.WriteLine();
        MeasureMemoryPerSeries(100_000, pointsPerSeries: 200);
        return 0;
    }

    private sealed record Result(double PointsPerSecond, double AllocatedPerPoint, double CpuNsPerPoint, double PoolGrowthPerPoint = 0)
    {
        /// <summary>CPU of the producer threads alone over the timed phase, per point (the rest: shards, GC, stop).</summary>
        public double ProducerCpuNsPerPoint { get; init; }
    }

    /// <summary>CPU time of the producer threads in the last <see cref="RunProducers"/>, in ns (Linux schedstat; 0 elsewhere).</summary>
    private static long s_producerCpuNs;

    private static TimeSpan ProcessCpu() => Environment.CpuUsage.TotalTime;

    /// <summary>Per producer: a pre-drawn sequence of series indices and latency values, so every engine sees the same points.</summary>
    private sealed record Workload(int[][] Series, double[][] Values, long PerProducer)
    {
        public static Workload Create(int seriesCount, long perProducer)
        {
            const int Length = 1 << 20;
            var series = new int[s_producers][];
            var values = new double[s_producers][];
            for (int p = 0; p < s_producers; p++)
            {
                var random = new Random(17 + p);
                series[p] = new int[Length];
                values[p] = new double[Length];
                for (int i = 0; i < Length; i++)
                {
                    series[p][i] = random.Next(seriesCount);
                    double u1 = 1.0 - random.NextDouble();
                    double u2 = random.NextDouble();
                    values[p][i] = 0.02 * Math.Exp(0.5 * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
                }
            }

            return new Workload(series, values, perProducer);
        }
    }

    private static Label[][] BuildLabels(int series)
    {
        var labels = new Label[series][];
        for (int i = 0; i < series; i++)
        {
            labels[i] = [new("method", i % 2 == 0 ? "GET" : "POST"), new("route", "/api/v1/items/" + (i / 4)), new("status", (i % 4) switch { 0 => "200", 1 => "404", 2 => "500", _ => "503" })];
        }

        return labels;
    }

    private static Result RunPipeline(Label[][] labels, Workload work, bool boundHandles)
    {
        var options = new MetricsPipelineOptions { ShardCount = Environment.ProcessorCount, WindowSize = TimeSpan.FromMinutes(10), ShardQueueBatches = s_shardQueue };
        var pipeline = new MetricsPipeline(options, []);
        SeriesId[] ids = [.. labels.Select(l => pipeline.Registry.GetOrAdd(Metric, l))];
        long ts = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        pipeline.Start();
        PointWriter[] writers = [.. Enumerable.Range(0, s_producers).Select(p => pipeline.CreateWriter("load-" + p, BackpressureMode.Wait))];

        void Produce(int p, long count)
        {
            PointWriter writer = writers[p];
            int[] series = work.Series[p];
            double[] values = work.Values[p];
            int mask = series.Length - 1;
            // Chunks of the pre-drawn sequence through a method called many times, as an application
            // records from handlers: the JIT's optimised code, not the on-stack replacement of one long loop.
            for (long n = 0; n < count; n += Chunk)
            {
                int start = (int)(n & mask);
                int length = (int)Math.Min(Chunk, count - n);
                if (boundHandles)
                {
                    WriteBound(writer, ids, series, values, start, length, ts);
                }
                else
                {
                    WriteLabelled(writer, labels, series, values, start, length, ts);
                }
            }

            writer.Flush();
        }

        // Warm-up pass: every series seen, window states and sketches grown, code jitted.
        RunProducers(p => Produce(p, work.PerProducer / 4));
        pipeline.DrainAsync().GetAwaiter().GetResult();
        Collect();

        long batchesBefore = pipeline.GetMetrics().BatchesAllocated;
        long allocated = GC.GetTotalAllocatedBytes(precise: true);
        TimeSpan cpu = ProcessCpu();
        var clock = Stopwatch.StartNew();
        RunProducers(p => Produce(p, work.PerProducer));
        long producerCpuNs = s_producerCpuNs;
        long allocatedWhileProducing = GC.GetTotalAllocatedBytes(precise: true) - allocated;
        // The batch pool allocates until it covers the most batches ever in flight (bounded by the
        // shard queues); a longer timed phase can reach a new peak. Reported apart from the rest.
        long newBatches = pipeline.GetMetrics().BatchesAllocated - batchesBefore;
        long poolGrowthBytes = newBatches * ((options.BatchSize * 24L) + 88);
        TimeSpan cpuBeforeStop = ProcessCpu();
        TimeSpan wallBeforeStop = clock.Elapsed;
        pipeline.StopAsync().GetAwaiter().GetResult();
        clock.Stop();
        TimeSpan stopCpu = ProcessCpu() - cpuBeforeStop;
        cpu = ProcessCpu() - cpu;
        Console.Error.WriteLine($"    engine stop: {(clock.Elapsed - wallBeforeStop).TotalMilliseconds:F1} ms wall, {stopCpu.TotalMilliseconds:F1} ms CPU (inside the timed phase)");

        long timed = work.PerProducer * s_producers;
        long total = timed + (work.PerProducer / 4 * s_producers);
        PipelineMetrics m = pipeline.GetMetrics();
        if (m.EmittedPoints != total)
        {
            throw new InvalidOperationException($"pipeline emitted {m.EmittedPoints} of {total} points");
        }

        pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return new Result(timed / clock.Elapsed.TotalSeconds, allocatedWhileProducing / (double)timed, cpu.TotalNanoseconds / timed, Math.Min(poolGrowthBytes, allocatedWhileProducing) / (double)timed) { ProducerCpuNsPerPoint = producerCpuNs / (double)timed };
    }

    /// <summary>Points per call of the recording methods below; divides the pre-drawn sequence's length.</summary>
    private const int Chunk = 4096;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WriteBound(PointWriter writer, SeriesId[] ids, int[] series, double[] values, int start, int length, long ts)
    {
        for (int i = start; i < start + length; i++)
        {
            writer.Write(ids[series[i]], values[i], ts);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WriteLabelled(PointWriter writer, Label[][] labels, int[] series, double[] values, int start, int length, long ts)
    {
        for (int i = start; i < start + length; i++)
        {
            writer.Write(Metric, labels[series[i]], values[i], ts);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RecordOpenTelemetry(Histogram<double> histogram, TagList[] tags, int[] series, double[] values, int start, int length)
    {
        for (int i = start; i < start + length; i++)
        {
            histogram.Record(values[i], tags[series[i]]);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ObservePrometheusNet(global::Prometheus.Histogram histogram, string[][] labelValues, int[] series, double[] values, int start, int length)
    {
        for (int i = start; i < start + length; i++)
        {
            histogram.WithLabels(labelValues[series[i]]).Observe(values[i]);
        }
    }

    private static void RunProducers(Action<int> produce)
    {
        long total = 0;
        Task.WaitAll([.. Enumerable.Range(0, s_producers).Select(p => Task.Factory.StartNew(
            () =>
            {
                long start = ThreadCpuNanoseconds();
                produce(p);
                Interlocked.Add(ref total, ThreadCpuNanoseconds() - start);
            },
            TaskCreationOptions.LongRunning))]);
        s_producerCpuNs = total;
    }

    /// <summary>Time the calling thread has run on a core, in ns (the first field of Linux's schedstat), or 0 where there is none.</summary>
    private static long ThreadCpuNanoseconds()
    {
        try
        {
            string text = File.ReadAllText("/proc/thread-self/schedstat");
            return long.Parse(text.AsSpan(0, text.IndexOf(' ', StringComparison.Ordinal)), CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }

    private static Result RunOpenTelemetry(Label[][] labels, Workload work)
    {
        string meterName = "load-" + Guid.NewGuid().ToString("N");
        var exported = new List<Metric>();
        using MeterProvider provider = Sdk.CreateMeterProviderBuilder()
            .AddMeter(meterName)
            .AddView(Metric, new MetricStreamConfiguration { CardinalityLimit = labels.Length + 10 })
            .AddInMemoryExporter(exported)
            .Build();
        using var meter = new Meter(meterName);
        Histogram<double> histogram = meter.CreateHistogram<double>(Metric);
        var tags = labels.Select(l => new TagList { { l[0].Name, l[0].Value }, { l[1].Name, l[1].Value }, { l[2].Name, l[2].Value } }).ToArray();

        void Record(int p, long count)
        {
            int[] series = work.Series[p];
            double[] values = work.Values[p];
            int mask = series.Length - 1;
            for (long n = 0; n < count; n += Chunk)
            {
                RecordOpenTelemetry(histogram, tags, series, values, (int)(n & mask), (int)Math.Min(Chunk, count - n));
            }
        }

        RunProducers(p => Record(p, work.PerProducer / 4));
        Collect();
        long allocated = GC.GetTotalAllocatedBytes(precise: true);
        TimeSpan cpu = ProcessCpu();
        var clock = Stopwatch.StartNew();
        RunProducers(p => Record(p, work.PerProducer));
        long producerCpuNs = s_producerCpuNs;
        long allocatedWhileProducing = GC.GetTotalAllocatedBytes(precise: true) - allocated;
        provider.ForceFlush();
        clock.Stop();
        cpu = ProcessCpu() - cpu;
        long timed = work.PerProducer * s_producers;
        long total = timed + (work.PerProducer / 4 * s_producers);
        long recorded = exported.Where(x => x.Name == Metric).Sum(x =>
        {
            long sum = 0;
            foreach (ref readonly OpenTelemetry.Metrics.MetricPoint point in x.GetMetricPoints())
            {
                sum += point.GetHistogramCount();
            }

            return sum;
        });
        if (recorded != total)
        {
            throw new InvalidOperationException($"OpenTelemetry recorded {recorded} of {total} points");
        }

        return new Result(timed / clock.Elapsed.TotalSeconds, allocatedWhileProducing / (double)timed, cpu.TotalNanoseconds / timed) { ProducerCpuNsPerPoint = producerCpuNs / (double)timed };
    }

    /// <summary>
    /// prometheus-net's histogram with the same three labels, looked up per call (<c>WithLabels</c>) as the
    /// labelled path is: its default buckets, a registry of its own; every observation is counted back.
    /// </summary>
    private static Result RunPrometheusNet(Label[][] labels, Workload work)
    {
        global::Prometheus.CollectorRegistry registry = global::Prometheus.Metrics.NewCustomRegistry();
        global::Prometheus.Histogram histogram = global::Prometheus.Metrics.WithCustomRegistry(registry).CreateHistogram(
            Metric, "load harness", new global::Prometheus.HistogramConfiguration { LabelNames = ["method", "route", "status"] });
        string[][] values = [.. labels.Select(l => new[] { l[0].Value, l[1].Value, l[2].Value })];

        void Observe(int p, long count)
        {
            int[] series = work.Series[p];
            double[] drawn = work.Values[p];
            int mask = series.Length - 1;
            for (long n = 0; n < count; n += Chunk)
            {
                ObservePrometheusNet(histogram, values, series, drawn, (int)(n & mask), (int)Math.Min(Chunk, count - n));
            }
        }

        RunProducers(p => Observe(p, work.PerProducer / 4));
        Collect();
        long allocated = GC.GetTotalAllocatedBytes(precise: true);
        TimeSpan cpu = ProcessCpu();
        var clock = Stopwatch.StartNew();
        RunProducers(p => Observe(p, work.PerProducer));
        long producerCpuNs = s_producerCpuNs;
        long allocatedWhileProducing = GC.GetTotalAllocatedBytes(precise: true) - allocated;
        clock.Stop();
        cpu = ProcessCpu() - cpu;
        long timed = work.PerProducer * s_producers;
        long total = timed + (work.PerProducer / 4 * s_producers);
        long recorded = (long)values.Sum(v => histogram.WithLabels(v).Count);
        if (recorded != total)
        {
            throw new InvalidOperationException($"prometheus-net recorded {recorded} of {total} points");
        }

        return new Result(timed / clock.Elapsed.TotalSeconds, allocatedWhileProducing / (double)timed, cpu.TotalNanoseconds / timed) { ProducerCpuNsPerPoint = producerCpuNs / (double)timed };
    }

    private static string Describe(List<Result> results) =>
        results.Count == 0 ? "-" : $"{results[^1].PointsPerSecond:N0}/s {results[^1].CpuNsPerPoint:F0} ns (producers {results[^1].ProducerCpuNsPerPoint:F1})";

    private static void Print(int series, string engine, List<Result> results, double otelMedian)
    {
        if (results.Count == 0)
        {
            return;
        }

        double median = Median(results.Select(r => r.PointsPerSecond));
        double cpu = Median(results.Select(r => r.CpuNsPerPoint));
        double alloc = Median(results.Select(r => r.AllocatedPerPoint));
        double pool = Median(results.Select(r => r.PoolGrowthPerPoint));
        string rate = $"{results.Min(r => r.PointsPerSecond) / 1e6:F1}-{results.Max(r => r.PointsPerSecond) / 1e6:F1} M";
        string cost = $"{results.Min(r => r.CpuNsPerPoint):F0}-{results.Max(r => r.CpuNsPerPoint):F0}";
        Console.WriteLine($"| {series:N0} | {engine} | {median:N0} | {rate} | {median / otelMedian:F2} | {cpu:F1} | {cost} | {alloc:F3} | {pool:F3} |");
    }

    private static double Median(IEnumerable<double> values)
    {
        double[] sorted = [.. values.Order()];
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static void Collect()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    /// <summary>
    /// Writes <paramref name="batches"/> into a new Arrow IPC file, as the local store does (ArrowFileStore):
    /// unbuffered, each batch's blocks reserved before it is appended, the footer written and the
    /// reservation's unwritten tail cut off. Not flushed to disk: the store's fsync times the disk, not the engine.
    /// </summary>
    private static void WriteIpcFile(string path, Schema schema, IReadOnlyList<RecordBatch> batches)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read, bufferSize: 0);
        using var file = new ArrowFileWriter(stream, schema, leaveOpen: true);
        long reservedEnd = 0;
        foreach (RecordBatch batch in batches)
        {
            FileSpace.ReserveFor(stream.SafeFileHandle, stream.Length, batch, ref reservedEnd);
            file.WriteRecordBatch(batch);
        }

        file.WriteEnd();
        FileSpace.ReleaseUnwritten(stream, reservedEnd);
    }

    /// <summary>
    /// A window of <paramref name="series"/> latency series (20 points each) closed the way the
    /// pipeline closes it with <paramref name="shards"/> shards: each shard builds the batch of its
    /// own series on its own thread, then the file store writes every shard's batch into one new IPC
    /// file. Timed from the close to the last byte written; with one shard, one thread builds all rows.
    /// </summary>
    private static (double Build, double Total, double Cpu, double FastestCpu) TimeWindowToArrow(int series, int shards)
    {
        var registry = new SeriesRegistry();
        Label[][] labels = BuildLabels(series);
        var windows = new WindowBuffer[shards];
        for (int s = 0; s < shards; s++)
        {
            windows[s] = new WindowBuffer((series / shards) + 1, withSketches: true, 0.01, 2048) { Start = 0, End = 10_000 };
        }

        var random = new Random(1);
        foreach (Label[] l in labels)
        {
            int id = registry.GetOrAdd(Metric, l).Value;
            for (int k = 0; k < 20; k++)
            {
                // Slot = id / shards within shard id % shards, as the aggregators lay them out.
                windows[id % shards].Add(id / shards, 0.02 * Math.Exp(random.NextDouble() * 2), k);
            }
        }

        Schema schema = WindowSchema.Create("load");
        ArrowWindowWriter[] writers = [.. Enumerable.Range(0, shards).Select(_ => new ArrowWindowWriter(registry, shards, schema))];
        string path = Path.Combine(Path.GetTempPath(), "ms-load-window.arrow");
        var build = new List<double>();
        var total = new List<double>();
        var cpu = new List<double>();
        long bytes = 0;
        // Warm-up builds until tiering has settled: a window build calls its summary and copy helpers 100,000
        // times, so they are promoted at once, but through tier 0, an instrumented tier and tier 1, each after
        // the runtime's call-counting delay; the first builds ran 3-4 times slower than the steady state, and
        // with one warm-up build half of a 20-build median could still fall among them. A shard emits one
        // window every 10 s by default, so the first minutes of a service see those slower builds.
        var warmUp = new List<double>();
        // Shards other than the first build on threads of their own, started once, as a pipeline's shards
        // are already running when a window closes. Parallel.For handed the second shard to a thread-pool
        // worker woken for each build, and spun while waiting for it: half of the two-shard runs measured
        // twice the CPU and wall time of the others (session 11).
        var batches = new RecordBatch[shards];
        long sequence = 0;
        bool finished = false;
        using var startBuild = new Barrier(shards);
        using var endBuild = new Barrier(shards);
        Thread[] builders = [.. Enumerable.Range(1, shards - 1).Select(s => new Thread(() =>
        {
            while (true)
            {
                startBuild.SignalAndWait();
                if (Volatile.Read(ref finished))
                {
                    return;
                }

                batches[s] = writers[s].Build(windows[s], s, Volatile.Read(ref sequence));
                endBuild.SignalAndWait();
            }
        })
        { IsBackground = true, Name = $"shard {s} build" })];
        foreach (Thread builder in builders)
        {
            builder.Start();
        }

        for (int run = -ArrowWarmUpBuilds; run < s_arrowRuns; run++)
        {
            System.Array.Clear(batches);
            File.Delete(path);
            using var process = Process.GetCurrentProcess();
            TimeSpan cpuBefore = process.TotalProcessorTime;
            Volatile.Write(ref sequence, run + ArrowWarmUpBuilds + 1);
            var clock = Stopwatch.StartNew();
            if (shards > 1)
            {
                startBuild.SignalAndWait();
            }

            batches[0] = writers[0].Build(windows[0], 0, run + ArrowWarmUpBuilds + 1);
            if (shards > 1)
            {
                endBuild.SignalAndWait();
            }

            double built = clock.Elapsed.TotalMilliseconds;
            WriteIpcFile(path, schema, batches);
            clock.Stop();
            process.Refresh();
            double cpuMs = (process.TotalProcessorTime - cpuBefore).TotalMilliseconds;
            bytes = new FileInfo(path).Length;
            foreach (RecordBatch batch in batches)
            {
                // Returns the columns' pooled arrays for the next run, as the pipeline does when every sink is done.
                batch.Dispose();
            }

            if (run < 0)
            {
                warmUp.Add(clock.Elapsed.TotalMilliseconds);
            }
            else
            {
                build.Add(built);
                total.Add(clock.Elapsed.TotalMilliseconds);
                cpu.Add(cpuMs);
            }
        }

        Volatile.Write(ref finished, true);
        if (shards > 1)
        {
            startBuild.SignalAndWait();
        }

        foreach (Thread builder in builders)
        {
            builder.Join();
        }

        File.Delete(path);
        string how = shards == 1 ? "one shard builds every row" : $"{shards} shards build in parallel, as the pipeline closes it; one file gets every batch";
        Console.WriteLine($"window of {series:N0} series (20 points each) -> Arrow, {how}: build median {Median(build):F1} ms; " +
            $"+ IPC file write: median {Median(total):F1} ms (range {total.Min():F1}-{total.Max():F1}); process CPU median {Median(cpu):F1} ms " +
            $"(fastest: build {build.Min():F1} ms, process CPU {cpu.Min():F1} ms) " +
            $"({bytes:N0} bytes, {s_arrowRuns} runs after {ArrowWarmUpBuilds} warm-up builds: the first {warmUp[0]:F1} ms, the last {warmUp[^1]:F1} ms)");
        return (Median(build), Median(total), Median(cpu), cpu.Min());
    }

    /// <summary>Bytes of one pooled point batch: the object (header and nine fields, 88 B) and its point array (24 B of header, 24 B a point).</summary>
    private static long BatchBytes(int batchSize) => 88 + 24 + ((long)batchSize * System.Runtime.CompilerServices.Unsafe.SizeOf<Monitoring.Stream.Ingest.IngestPoint>());

    /// <summary>Managed heap growth per series when a pipeline holds one open window of latency-like data for each.</summary>
    private static double MeasureMemoryPerSeries(int series, int pointsPerSeries)
    {
        Label[][] labels = BuildLabels(series);
        Collect();
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = Environment.ProcessorCount, WindowSize = TimeSpan.FromMinutes(10) }, []);
        pipeline.Start();
        long ts = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var random = new Random(3);
        using (PointWriter writer = pipeline.CreateWriter("memory"))
        {
            for (int k = 0; k < pointsPerSeries; k++)
            {
                for (int s = 0; s < series; s++)
                {
                    double u1 = 1.0 - random.NextDouble();
                    double u2 = random.NextDouble();
                    double latency = 0.02 * Math.Exp(0.5 * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
                    writer.Write(Metric, labels[s], latency, ts);
                }
            }
        }

        pipeline.DrainAsync().GetAwaiter().GetResult();
        long after = GC.GetTotalMemory(forceFullCollection: true);
        // The writer's point batches, kept by the pipeline's pool for reuse once the shards are done with them, are
        // not per series: their number follows how far the shards fell behind the writer in this run (up to
        // ShardCount x ShardQueueBatches x 2 batches of 24 KiB), which moved this figure by up to 70 B per series
        // from run to run. They are counted apart and left out of the per-series figure.
        long batches = pipeline.GetMetrics().BatchesAllocated;
        long batchBytes = batches * BatchBytes(pipeline.Settings.BatchSize);
        after -= batchBytes;
        Console.WriteLine($"memory: {series:N0} active series, {pointsPerSeries} log-normal latencies each (sigma 0.5), one open window: " +
            $"heap +{(after - before) / 1048576.0:F1} MiB = {(after - before) / (double)series:F0} bytes per series " +
            $"(registry entry, window state and sketch; the label strings are the caller's; not counted: the ingest batch pool, {batches:N0} batches, {batchBytes / 1048576.0:F1} MiB)");

        // What a series keeps once its first window has been emitted: its names in UTF-8 (its labels, and
        // the index of its metric's record, which is kept once per metric), as ArrowWindowWriter makes them.
        for (int id = 0; id < pipeline.Registry.Count; id++)
        {
            SeriesDescriptor d = pipeline.Registry.GetDescriptor(new SeriesId(id));
            int metric = pipeline.Registry.GetMetricNamesIndex(d.Metric, SeriesUtf8.EncodeMetric);
            pipeline.Registry.SetNames(id, SeriesUtf8.Encode(metric, d));
        }

        long emitted = GC.GetTotalMemory(forceFullCollection: true) - batchBytes;
        Console.WriteLine($"  + {(emitted - after) / (double)series:F0} bytes per series of UTF-8 names cached at its first emitted window " +
            $"= {(emitted - before) / (double)series:F0} bytes per series in all");
        GC.KeepAlive(labels);
        pipeline.StopAsync().GetAwaiter().GetResult();
        return (emitted - before) / (double)series;
    }
}
