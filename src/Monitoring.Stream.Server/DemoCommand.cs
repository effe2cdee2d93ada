using System.CommandLine;
using System.Diagnostics;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Prometheus;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Server;

/// <summary>
/// The engine's main job on its embedded defaults: synthetic request latencies from several producer
/// threads through the whole pipeline into the local Arrow store and the recent-window store.
/// </summary>
internal static class DemoCommand
{
    private const string Metric = "http_server_request_duration_seconds";
    private static readonly string[] s_routes = ["/api/orders", "/api/items", "/api/users", "/health", "/api/search"];
    private static readonly string[] s_methods = ["GET", "POST"];

    /// <summary>The <c>demo</c> command and its options.</summary>
    public static Command Create()
    {
        Option<long> points = CliOptions.Number("--points", "points to offer in all", 10_000_000, 1, long.MaxValue);
        Option<long> series = CliOptions.Number("--series", "distinct series", 10_000, 1, 1_000_000);
        Option<long> producers = CliOptions.Number("--producers", "producing threads [default: half the cores, at least 1: the shards need the rest]", Math.Max(1, Environment.ProcessorCount / 2), 1, 64);
        var dataDir = new Option<string>("--data-dir") { Description = "folder of the local Arrow store (files go to <data-dir>/windows)", DefaultValueFactory = _ => "data" };
        Option<long> latePpm = CliOptions.Number("--late-ppm", "points per million sent late on purpose, into windows already closed", 1000, 0, 1_000_000);
        Option<long> maxFileMb = CliOptions.Number("--max-file-mb", "size in MiB at which the store starts a new Arrow file", 64, 1, 4096);
        var resolveLabels = new Option<bool>("--resolve-labels") { Description = "producers pass labels on every write (resolved per call) instead of holding bound series handles" };
        Option<Uri?> remoteWrite = CliOptions.HttpUrl("--remote-write-url", "also send every window by Prometheus remote write, e.g. http://127.0.0.1:8428/api/v1/write (VictoriaMetrics)");
        var command = new Command("demo", "run the pipeline on its embedded defaults with a synthetic load, print progress and a summary, and leave Arrow files in the data folder")
        {
            points, series, producers, dataDir, latePpm, maxFileMb, remoteWrite, resolveLabels,
        };
        command.SetAction((parse, _) => RunAsync(new DemoOptions(
            parse.GetValue(points), (int)parse.GetValue(series), (int)parse.GetValue(producers), parse.GetValue(dataDir)!,
            (int)parse.GetValue(latePpm), (int)parse.GetValue(maxFileMb), parse.GetValue(remoteWrite), parse.GetValue(resolveLabels))));
        return command;
    }

    public static async Task<int> RunAsync(DemoOptions options)
    {
        string storeDir = Path.GetFullPath(Path.Combine(options.DataDirectory, "windows"));
        var pipelineOptions = new MetricsPipelineOptions();
        var fileStore = new ArrowFileStore(new ArrowFileStoreOptions
        {
            Directory = storeDir,
            MaxFileBytes = options.MaxFileMegabytes * (1L << 20),
            TimeProvider = pipelineOptions.TimeProvider,
        });
        var recent = new RecentWindowStore(TimeSpan.FromHours(1), time: pipelineOptions.TimeProvider);
        RemoteWriteSink? remoteWrite = options.RemoteWriteUrl is null ? null : new RemoteWriteSink(new RemoteWriteSinkOptions { Endpoint = options.RemoteWriteUrl });
        await using var pipeline = new MetricsPipeline(pipelineOptions, remoteWrite is null ? [fileStore, recent] : [fileStore, recent, remoteWrite]);

        using var stop = new CancellationTokenSource();
        using var abort = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            if (!stop.IsCancellationRequested)
            {
                Console.WriteLine("stopping: finishing windows (press Ctrl+C again to stop at once)");
                stop.Cancel();
            }
            else
            {
                abort.Cancel();
            }
        };
        Console.CancelKeyPress += onCancel;

        Console.WriteLine($"demo: {options.Points:N0} points, {options.Series:N0} series of {Metric}, {options.Producers} producers " +
            $"({(options.ResolveLabels ? "labels resolved per call" : "bound series handles")}), " +
            $"{pipelineOptions.ShardCount} shards, {pipelineOptions.WindowSize.TotalSeconds:0} s windows, {pipelineOptions.AllowedLateness.TotalSeconds:0} s lateness");
        if (remoteWrite is not null)
        {
            Console.WriteLine($"remote write: {options.RemoteWriteUrl}");
        }

        Console.WriteLine($"store: {storeDir}" +
            (fileStore.PartialFilesRecovered > 0 ? $" ({fileStore.PartialFilesRecovered} partial files from an earlier crash recovered, {fileStore.BatchesRecovered} batches)" : "") +
            (fileStore.FilesSetAside > 0 ? $" ({fileStore.FilesSetAside} damaged files set aside in {fileStore.DamagedDirectory})" : ""));

        Label[][] labels = BuildLabels(options.Series);
        // The points are drawn before the clock starts: the loop then measures the engine, not Math.Log and Math.Cos.
        DemoWorkload[] workloads = [.. Enumerable.Range(0, options.Producers).Select(p => DemoWorkload.Create(p, options.Series, options.LatePerMillion))];
        pipeline.Start();

        // Event time starts a minute back and runs 30 times faster than the wall clock until it has caught up with it,
        // then with it, shared by every producer as real producers share real time: a few windows close early in the
        // run, and then one every window size, as in production. It never runs ahead of the clock: a producer's
        // progress stops at the clock, so windows past it would stay open (and pile up) until the stop, and points
        // beyond MaxFutureSkew would be refused.
        long eventStart = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 60_000;
        long perProducer = options.Points / options.Producers;
        var clock = Stopwatch.StartNew();
        TimeSpan cpuStart = Environment.CpuUsage.TotalTime;
        long allocatedStart = GC.GetTotalAllocatedBytes();
        int gcStart = GC.CollectionCount(0);
        Task<long>[] producers = [.. Enumerable.Range(0, options.Producers).Select(p => Task.Factory.StartNew(
            () => Produce(pipeline, p, perProducer + (p == 0 ? options.Points % options.Producers : 0), labels, workloads[p], options.ResolveLabels, eventStart, clock, stop.Token),
            TaskCreationOptions.LongRunning))];

        Task all = Task.WhenAll(producers);
        var previous = new Progress(TimeSpan.Zero, 0, cpuStart);
        while (!all.IsCompleted)
        {
            await Task.WhenAny(all, Task.Delay(1000)).ConfigureAwait(false);
            previous = PrintProgress(pipeline.GetMetrics(), clock.Elapsed, Environment.CpuUsage.TotalTime, previous);
        }

        await all.ConfigureAwait(false);
        double produceSeconds = clock.Elapsed.TotalSeconds;
        var produceCost = new ProduceCost(Environment.CpuUsage.TotalTime - cpuStart, GC.GetTotalAllocatedBytes() - allocatedStart, GC.CollectionCount(0) - gcStart);
        try
        {
            await pipeline.StopAsync(abort.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            Console.WriteLine("stopped at once: open windows and queued batches were abandoned (see the counts below)");
        }
        catch (TimeoutException e)
        {
            Console.WriteLine($"stop timed out: {e.Message}");
        }

        Console.CancelKeyPress -= onCancel;
        PrintSummary(pipeline.GetMetrics(), produceSeconds, clock.Elapsed.TotalSeconds, produceCost, fileStore, recent, labels);
        Console.WriteLine($"  late injected on purpose (into closed windows): {producers.Sum(p => p.Result):N0}");
        if (remoteWrite is not null)
        {
            PrintRemoteWrite(remoteWrite);
        }

        return 0;
    }

    private static Label[][] BuildLabels(int series)
    {
        var labels = new Label[series][];
        for (int i = 0; i < series; i++)
        {
            labels[i] =
            [
                new("instance", "node-" + (i / (s_routes.Length * s_methods.Length))),
                new("method", s_methods[i % s_methods.Length]),
                new("route", s_routes[i / s_methods.Length % s_routes.Length]),
            ];
        }

        return labels;
    }

    private const int Speedup = 30;

    /// <returns>
    /// The points sent late on purpose: each is stamped inside a window the engine has already closed (its end
    /// at or below every shard's watermark, read a moment before), so each is counted late, and nothing else is.
    /// </returns>
    private static long Produce(MetricsPipeline pipeline, int producer, long points, Label[][] labels, DemoWorkload work, bool resolveLabels, long eventStart, Stopwatch clock, CancellationToken stop)
    {
        long injectedLate = 0;
        using PointWriter writer = pipeline.CreateWriter("demo-producer-" + producer, BackpressureMode.Wait);
        // Bound series ids are the SDK's fast path (a hot loop resolves once); --resolve-labels shows the per-call path.
        SeriesId[]? bound = resolveLabels ? null : [.. labels.Select(l => pipeline.Registry.GetOrAdd(Metric, l))];
        int[] series = work.Series;
        double[] values = work.Values;
        bool[] late = work.Late;
        int mask = series.Length - 1;
        long now = eventStart;
        long windowMs = (long)pipeline.Options.WindowSize.TotalMilliseconds;
        long closedWindowEnd = long.MinValue;
        for (long n = 0; n < points; n++)
        {
            if ((n & 0xFFFF) == 0)
            {
                // Watermarks only rise: a window that ends at or below the lowest one now is closed for good.
                long watermark = pipeline.GetMetrics().Watermarks.Min();
                closedWindowEnd = watermark == long.MinValue ? long.MinValue : watermark - (((watermark % windowMs) + windowMs) % windowMs);
            }

            if ((n & 0xFF) == 0)
            {
                if (stop.IsCancellationRequested)
                {
                    return injectedLate;
                }

                now = Math.Min(eventStart + (clock.ElapsedMilliseconds * Speedup), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            }

            int i = (int)(n & mask);
            long ts = now;
            if (late[i] && closedWindowEnd != long.MinValue)
            {
                // The last millisecond of a closed window, 20 s or more behind.
                ts = Math.Min(ts - 20_000, closedWindowEnd - 1);
                injectedLate++;
            }

            if (bound is not null)
            {
                writer.Write(bound[series[i]], values[i], ts);
            }
            else
            {
                writer.Write(Metric, labels[series[i]], values[i], ts);
            }
        }

        return injectedLate;
    }

    /// <summary>A producer's points, drawn once: series, latency (a NaN now and then, refused and counted) and whether it is sent late.</summary>
    private sealed record DemoWorkload(int[] Series, double[] Values, bool[] Late)
    {
        public static DemoWorkload Create(int producer, int seriesCount, int latePerMillion)
        {
            const int Length = 1 << 20;
            var random = new Random(42 + producer);
            var series = new int[Length];
            var values = new double[Length];
            var late = new bool[Length];
            for (int i = 0; i < Length; i++)
            {
                series[i] = random.Next(seriesCount);
                values[i] = Latency(random, series[i]);
                late[i] = random.Next(1_000_000) < latePerMillion;
            }

            values[7] = double.NaN; // a broken measurement once per million points
            return new DemoWorkload(series, values, late);
        }
    }

    /// <summary>What producing cost the process: CPU time of every thread, bytes allocated, gen-0 collections.</summary>
    private sealed record ProduceCost(TimeSpan Cpu, long AllocatedBytes, int Gen0Collections);

    /// <summary>Log-normal latency whose median depends on the series (5 ms to 80 ms).</summary>
    private static double Latency(Random random, int series)
    {
        double u1 = 1.0 - random.NextDouble();
        double u2 = random.NextDouble();
        double gaussian = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
        return 0.005 * (1 + (series % 16)) * Math.Exp(0.5 * gaussian);
    }

    /// <summary>Where the previous progress line stood: time, points offered, process CPU.</summary>
    private sealed record Progress(TimeSpan Elapsed, long Offered, TimeSpan Cpu);

    /// <summary>Prints the rate and CPU per point of the last interval (warm-up and window closes show as they happen).</summary>
    private static Progress PrintProgress(PipelineMetrics m, TimeSpan elapsed, TimeSpan cpu, Progress previous)
    {
        double fill = m.ShardQueueDepth.Count == 0 ? 0 : m.ShardQueueDepth.Average() / m.ShardQueueCapacity;
        long points = m.Offered - previous.Offered;
        double seconds = (elapsed - previous.Elapsed).TotalSeconds;
        Console.WriteLine($"  {elapsed.TotalSeconds,5:F1} s  offered {m.Offered,13:N0}  {points / seconds,12:N0} points/s  {(points == 0 ? 0 : (cpu - previous.Cpu).TotalNanoseconds / points),6:F0} CPU ns/point  " +
            $"{(cpu - previous.Cpu).TotalSeconds / seconds,4:F2} cores  windows {m.WindowsEmitted,5:N0}  series {m.SeriesActive,7:N0}  late {m.Late,7:N0}  dropped {m.Dropped,5:N0}  queue fill {fill,4:P0}");
        return new Progress(elapsed, m.Offered, cpu);
    }

    private static void PrintRemoteWrite(RemoteWriteSink sink)
    {
        string dropped = string.Join(", ", Enum.GetValues<RemoteWriteDropReason>().Where(r => sink.SamplesDroppedFor(r) > 0).Select(r => $"{r} {sink.SamplesDroppedFor(r):N0}"));
        Console.WriteLine();
        Console.WriteLine($"remote write ({sink.State}): {sink.SamplesSent:N0} samples in {sink.RequestsSent:N0} requests ({sink.BytesSent:N0} bytes), " +
            $"{sink.SamplesRetried:N0} samples retried, {sink.SamplesDropped:N0} dropped{(dropped.Length == 0 ? "" : " (" + dropped + ")")}, " +
            $"{sink.QueueDepth} requests queued{(sink.LastError is null ? "" : ", last error: " + sink.LastError)}");
    }

    private static void PrintSummary(PipelineMetrics m, double produceSeconds, double totalSeconds, ProduceCost cost, ArrowFileStore store, RecentWindowStore recent, Label[][] labels)
    {
        Console.WriteLine();
        Console.WriteLine($"done: {m.Offered:N0} points offered in {produceSeconds:F2} s = {m.Offered / produceSeconds:N0} points/s (all windows out after {totalSeconds:F2} s)");
        Console.WriteLine($"  cost while producing: {cost.Cpu.TotalNanoseconds / Math.Max(1, m.Offered):F0} ns of process CPU per point ({cost.Cpu.TotalSeconds / produceSeconds:F2} of {Environment.ProcessorCount} cores busy: " +
            $"producers, shards, sinks, GC), {(double)cost.AllocatedBytes / Math.Max(1, m.Offered):F1} bytes allocated per point, {cost.Gen0Collections} gen-0 collections");
        Console.WriteLine($"  accepted {m.Accepted:N0} = in emitted windows {m.EmittedPoints:N0} + late {m.Late:N0} + still open {m.OpenWindowPoints:N0} + queued {m.Queued:N0} + lost to faults {m.FaultedPoints:N0}");
        Console.WriteLine($"  rejected {m.Rejected:N0} ({string.Join(", ", m.RejectedByReason.Where(r => r.Value > 0).Select(r => $"{r.Key.ToMetricLabel()} {r.Value:N0}"))})" +
            $", dropped {m.Dropped:N0}, pending in producers {m.Pending:N0}");
        Console.WriteLine($"  windows emitted {m.WindowsEmitted:N0} (one per shard and window), series {m.SeriesActive:N0}");
        foreach (SinkMetrics s in m.Sinks)
        {
            Console.WriteLine($"  sink {s.Name}: {s.BatchesWritten:N0} batches, {s.PointsWritten:N0} points, {s.BatchesFailed:N0} failed, {s.BatchesDropped:N0} dropped, {s.BatchesAbandoned:N0} abandoned, {s.Errors:N0} errors, state {s.State}{(s.LastError is null ? "" : ", last: " + s.LastError)}");
        }

        IReadOnlyList<string> files = store.PublishedFiles();
        Console.WriteLine($"  Arrow files: {files.Count} in {store.Directory} ({files.Sum(f => new FileInfo(f).Length):N0} bytes)");
        if (store.WriteErrors > 0 || store.PendingRecoveries > 0)
        {
            Console.WriteLine($"  store errors: {store.WriteErrors:N0} (disk full {store.DiskFullErrors:N0}), files awaiting recovery {store.PendingRecoveries}, last: {store.LastError}");
        }
        Console.WriteLine();
        Console.WriteLine("statistics over the last 10 minutes, merged from the recent-window store:");
        Console.WriteLine($"  {"series",-58} {"count",9} {"mean ms",8} {"sd ms",7} {"p50 ms",7} {"p90 ms",7} {"p99 ms",7} {"max ms",7}");
        foreach (int i in new[] { 0, 1, labels.Length / 2, labels.Length - 1 }.Distinct())
        {
            SeriesStatistics? s = recent.Query("http_server_request_duration_seconds", LabelSet.Create(labels[i]), TimeSpan.FromMinutes(10));
            if (s is null)
            {
                continue;
            }

            Console.WriteLine($"  {LabelSet.Create(labels[i]),-58} {s.Moments.Count,9:N0} {s.Moments.Mean * 1e3,8:F2} {s.Moments.SampleStdDev * 1e3,7:F2} " +
                $"{s.Quantile(0.5) * 1e3,7:F2} {s.Quantile(0.9) * 1e3,7:F2} {s.Quantile(0.99) * 1e3,7:F2} {s.Moments.Max * 1e3,7:F2}");
        }

        if (files.Count > 0)
        {
            Console.WriteLine();
            Console.WriteLine("read them with any Arrow reader, e.g.: python3 -c \"import pyarrow as pa; print(pa.ipc.open_file('" + files[^1] + "').read_all())\"");
        }
    }
}
