using System.Diagnostics;
using System.Globalization;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Series;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Benchmarks.Load;

/// <summary>
/// A long-running overload with series churn: producers in <see cref="BackpressureMode.Wait"/> far faster
/// than one deliberately slow sink (<see cref="SinkQueuePolicy.Block"/>), and every window a share of the
/// series takes new label values, so the registry and the shards keep meeting series they never saw.
/// Prints process and engine memory every few seconds: it must level off.
/// </summary>
/// <remarks>
/// Usage: <c>load --only overload [--seconds 300] [--series 100000] [--churn 2000] [--sink-ms 5000]
/// [--sink-queue 64] [--sink-queue-mib 256] [--idle-seconds 30] [--sample-seconds 10] [--producers 2]</c>. With 1 s windows and
/// the default 2 shards, two windows close a second; a sink taking 5 s each takes a tenth of them: 10x overload.
/// </remarks>
internal static class OverloadSoak
{
    private const string Metric = "http_server_request_duration_seconds";

    public static void Run(OverloadSettings s)
    {
        int shards = Environment.ProcessorCount;
        var slow = new SlowSink(TimeSpan.FromMilliseconds(s.SinkMs));
        var options = new MetricsPipelineOptions
        {
            ShardCount = shards,
            WindowSize = TimeSpan.FromSeconds(1),
            AllowedLateness = TimeSpan.FromMilliseconds(500),
            ShutdownTimeout = TimeSpan.FromSeconds(5),
            SeriesIdleTimeout = TimeSpan.FromSeconds(s.IdleSeconds),
            // Reclaim, not the overflow series, is what bounds the series here.
            Registry = new SeriesRegistryOptions { MaxSeriesPerMetric = 2_000_000 },
        };
        var pipeline = new MetricsPipeline(options, [new SinkRegistration(slow, new SinkOptions { QueueCapacity = s.SinkQueue, QueueCapacityBytes = (long)s.SinkQueueMib << 20 })]);
        var labels = new ChurningLabels(s.Series, s.Churn);
        pipeline.Start();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(s.Seconds));
        Task[] producers = [.. Enumerable.Range(0, s.Producers).Select(p => Task.Factory.StartNew(() =>
        {
            using PointWriter writer = pipeline.CreateWriter("overload-" + p, BackpressureMode.Wait);
            var random = new Random(p);
            while (!stop.IsCancellationRequested)
            {
                long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                Label[][] current = labels.For(now / 1000);
                for (int k = 0; k < 4096; k++)
                {
                    writer.Write(Metric, current[random.Next(current.Length)], random.NextDouble(), now);
                }
            }
        }, TaskCreationOptions.LongRunning))];

        double overload = 1000.0 * s.SinkMs / 1000.0 * shards;
        Console.WriteLine($"# overload soak: pid {Environment.ProcessId}, {s.Producers} producers (Wait) over {s.Series:N0} series of which {s.Churn:N0} take new label values every window, " +
            $"1 s windows, {shards} shards, one sink taking {s.SinkMs} ms per window (Block, queue of {s.SinkQueue} batches or {s.SinkQueueMib} MiB): {overload / 1000:F0}x more windows than it can take; " +
            $"series idle timeout {s.IdleSeconds} s, {s.Seconds} s; server GC {System.Runtime.GCSettings.IsServerGC}, {shards} cores");
        Console.WriteLine("| s | working set MiB | GC heap MiB | live after last gen2 GC MiB | gen2 GCs | engine's count MiB | open windows | spare windows | sketch pool (sketches) | point batches | window batches out | column pool | registry | series live | series ids | reclaimed | shard queue fill | sink queue | sink queue MiB | accepted | written |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        var clock = Stopwatch.StartNew();
        while (!stop.IsCancellationRequested)
        {
            stop.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(s.SampleSeconds));
            PipelineMetrics m = pipeline.GetMetrics();
            PipelineMemory mem = m.Memory;
            using var process = Process.GetCurrentProcess();
            GCMemoryInfo background = GC.GetGCMemoryInfo(GCKind.Background), blocking = GC.GetGCMemoryInfo(GCKind.FullBlocking);
            GCMemoryInfo gen2 = background.Index > blocking.Index ? background : blocking;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {clock.Elapsed.TotalSeconds:F0} | {process.WorkingSet64 >> 20:N0} | {GC.GetTotalMemory(false) >> 20:N0} | {gen2.PromotedBytes >> 20:N0} | {GC.CollectionCount(2)} | " +
                $"{Mib(mem.TotalBytes)} | {Mib(mem.OpenWindowBytes)} | {Mib(mem.SpareWindowBytes)} | {Mib(mem.SketchPoolBytes)} ({mem.PooledSketches:N0}) | {Mib(mem.PointBatchBytes)} | {Mib(mem.WindowBatchBytes)} | {Mib(mem.ColumnPoolBytes)} | {Mib(mem.RegistryBytes)} | " +
                $"{m.SeriesActive:N0} | {pipeline.Registry.Count:N0} | {m.SeriesReclaimed:N0} | {m.ShardQueueDepth.Average() / m.ShardQueueCapacity:P0} | " +
                $"{m.Sinks[0].QueueDepth}/{m.Sinks[0].QueueCapacity} | {Mib(m.Sinks[0].QueueBytes)} | {m.Accepted:N0} | {m.Sinks[0].PointsWritten:N0} |"));
        }

        Task.WaitAll(producers);
        try
        {
            pipeline.StopAsync().GetAwaiter().GetResult();
        }
        catch (TimeoutException)
        {
            // The slow sink cannot drain its queue within 5 s: what it did not get is counted as abandoned.
        }

        PipelineMetrics end = pipeline.GetMetrics();
        SinkMetrics sink = end.Sinks[0];
        long accounted = sink.PointsWritten + sink.PointsAbandoned + sink.PointsFailed + sink.PointsDropped + end.Late + end.StalePoints + end.FaultedPoints + end.OpenWindowPoints + end.Queued;
        Console.WriteLine($"stopped: offered {end.Offered:N0} = accepted {end.Accepted:N0} + rejected {end.Rejected:N0} + dropped {end.Dropped:N0} + pending {end.Pending:N0}; " +
            $"accepted = written {sink.PointsWritten:N0} + abandoned {sink.PointsAbandoned:N0} + late {end.Late:N0} + stale {end.StalePoints:N0} + faulted {end.FaultedPoints:N0} + open {end.OpenWindowPoints:N0} + queued {end.Queued:N0} " +
            $"({(accounted == end.Accepted ? "balanced" : $"OFF BY {end.Accepted - accounted:N0}")}); series reclaimed {end.SeriesReclaimed:N0}");
    }

    private static string Mib(long bytes) => (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture);

    /// <summary>The label sets of every series; the first <c>churn</c> of them carry the window's number, so each window makes them new series.</summary>
    private sealed class ChurningLabels(int series, int churn)
    {
        private readonly Lock _gate = new();
        private Generation _current = new(long.MinValue, []);

        public Label[][] For(long window)
        {
            Generation current = Volatile.Read(ref _current);
            if (current.Window == window)
            {
                return current.Labels;
            }

            lock (_gate)
            {
                if (_current.Window != window)
                {
                    // Only the churning series get new arrays: the others keep theirs, as a real client's would.
                    Label[][] labels = _current.Labels.Length == series ? [.. _current.Labels] : new Label[series][];
                    for (int i = 0; i < series; i++)
                    {
                        if (i < churn || labels[i] is null)
                        {
                            string pod = i < churn ? "pod-" + window.ToString(CultureInfo.InvariantCulture) : "pod-stable";
                            labels[i] = [new("method", i % 2 == 0 ? "GET" : "POST"), new("pod", pod), new("route", "/api/v1/items/" + (i / 4)), new("status", (i % 4) switch { 0 => "200", 1 => "404", 2 => "500", _ => "503" })];
                        }
                    }

                    Volatile.Write(ref _current, new Generation(window, labels));
                }

                return _current.Labels;
            }
        }

        private sealed record Generation(long Window, Label[][] Labels);
    }

    private sealed class SlowSink(TimeSpan delay) : IWindowSink
    {
        public string Name => "slow";

        public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken) => await Task.Delay(delay, cancellationToken).ConfigureAwait(false);

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

/// <summary>Settings of <see cref="OverloadSoak"/>.</summary>
internal sealed record OverloadSettings(int Seconds, int Series, int Churn, int SinkMs, int SinkQueue, int SinkQueueMib, int IdleSeconds, int SampleSeconds, int Producers);
