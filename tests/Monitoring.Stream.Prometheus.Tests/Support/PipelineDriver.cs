using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>Runs a real <see cref="MetricsPipeline"/> over synthetic series, window after window, with a collecting sink beside the one under test.</summary>
internal static class PipelineDriver
{
    public const long WindowMs = 10_000;
    public const string LatencyMetric = "test_latency_seconds";
    public const string JobsMetric = "test_jobs_total";
    public const string EngineInstance = "engine-test";

    /// <summary>The start of a window aligned to the epoch, <paramref name="windowsBack"/> windows before now.</summary>
    public static long WindowStartBeforeNow(int windowsBack) =>
        ((DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / WindowMs) - windowsBack) * WindowMs;

    /// <summary>Series <paramref name="i"/>: 80 % latencies with an <c>instance</c> label of their own, 20 % a <c>_total</c> metric.</summary>
    public static (string Metric, Label[] Labels) Series(int i, int series) => i < series * 4 / 5
        ? (LatencyMetric, [new("instance", "node-" + (i % 10)), new("route", "/r" + i)])
        : (JobsMetric, [new("queue", "q" + i)]);

    /// <summary>
    /// Writes <paramref name="windows"/> windows of <paramref name="pointsPerWindow"/> points per series, then stops the
    /// pipeline (which emits the last window and waits for the sinks). <paramref name="afterWindowClosed"/> runs once
    /// window k has been handed to the sinks' queues.
    /// </summary>
    public static async Task<RowCollectingSink> RunAsync(
        IWindowSink sink, int series, int windows, int pointsPerWindow, long firstWindowStartMs, int shards = 2,
        Func<int, Task>? afterWindowClosed = null, TimeSpan? shutdownTimeout = null)
    {
        var collect = new RowCollectingSink();
        var options = new MetricsPipelineOptions
        {
            ShardCount = shards,
            WindowSize = TimeSpan.FromMilliseconds(WindowMs),
            AllowedLateness = TimeSpan.Zero,
            Instance = EngineInstance,
            ShutdownTimeout = shutdownTimeout ?? TimeSpan.FromSeconds(60),
            TimeProvider = FrozenClock(),
        };
        await using var pipeline = new MetricsPipeline(options, [collect, sink], new SinkOptions { MaxAttempts = 1 });
        pipeline.Start();
        var ids = new SeriesId[series];
        for (int i = 0; i < series; i++)
        {
            (string metric, Label[] labels) = Series(i, series);
            ids[i] = pipeline.Registry.GetOrAdd(metric, labels);
        }

        var random = new Random(20261129);
        using (PointWriter writer = pipeline.CreateWriter("test", BackpressureMode.Wait))
        {
            for (int w = 0; w < windows; w++)
            {
                long start = firstWindowStartMs + (w * WindowMs);
                for (int p = 0; p < pointsPerWindow; p++)
                {
                    for (int i = 0; i < series; i++)
                    {
                        long ts = start + (p * (WindowMs / pointsPerWindow)) + (i % 97);
                        double value = i < series * 4 / 5
                            ? 0.001 * (1 + (i % 50)) * Math.Exp(random.NextDouble() * 2)
                            : random.Next(0, 1000) - 100;
                        Assert.Equal(RejectReason.None, writer.Write(ids[i], value, ts));
                    }
                }

                writer.Flush();
                await pipeline.DrainAsync();
                if (w > 0 && afterWindowClosed is not null)
                {
                    // Window w - 1 closed when the points of window w moved the watermark past its end.
                    await afterWindowClosed(w - 1);
                }
            }
        }

        await pipeline.StopAsync();
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.True(m.Late == 0 && m.Rejected == 0 && m.Dropped == 0 && m.EmittedPoints == m.Offered,
            $"offered {m.Offered}, emitted {m.EmittedPoints}, late {m.Late}, rejected {m.Rejected}, dropped {m.Dropped}, windows {m.WindowsEmitted}");
        if (afterWindowClosed is not null)
        {
            await afterWindowClosed(windows - 1);
        }

        return collect;
    }

    /// <summary>
    /// The engine's clock for these runs: the real time now, standing still. Windows then close by event time only:
    /// the engine's tick, which moves an idle shard's watermark to the clock, never fires, so a test that pauses
    /// between windows (to stop a database, say) does not turn the next window of past timestamps into late points.
    /// </summary>
    private static FakeTimeProvider FrozenClock() => new(DateTimeOffset.UtcNow);

    /// <summary>Runs the given points, in time order, through a one-shard pipeline with <paramref name="sink"/> and stops it.</summary>
    public static async Task RunPointsAsync(IWindowSink sink, IEnumerable<(string Metric, Label[] Labels, double Value, long TimestampMs)> points, bool sketches = true)
    {
        var options = new MetricsPipelineOptions
        {
            ShardCount = 1,
            WindowSize = TimeSpan.FromMilliseconds(WindowMs),
            AllowedLateness = TimeSpan.Zero,
            Instance = EngineInstance,
            Sketches = sketches,
            TimeProvider = FrozenClock(),
        };
        await using var pipeline = new MetricsPipeline(options, [sink]);
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("test", BackpressureMode.Wait))
        {
            foreach ((string metric, Label[] labels, double value, long ts) in points)
            {
                Assert.Equal(RejectReason.None, writer.Write(metric, labels, value, ts));
            }
        }

        await pipeline.StopAsync();
    }

    /// <summary>Waits for <paramref name="condition"/> with a bounded deadline that fails the test.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, Func<string> describe)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out after {timeout.TotalSeconds:0.#} s waiting: {describe()}");
            }

            await Task.Delay(20);
        }
    }
}
