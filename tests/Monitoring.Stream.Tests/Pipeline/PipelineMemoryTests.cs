using System.Diagnostics;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Pipeline;

public class PipelineMemoryTests
{
    private const long T0 = 1_800_000_000_000;

    private static (MetricsPipeline Pipeline, CountingSink Sink, FakeTimeProvider Time) Create(TimeSpan seriesIdle)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new CountingSink();
        var pipeline = new MetricsPipeline(ReclaimScenario.Options(time, seriesIdle), [sink]);
        pipeline.Start();
        return (pipeline, sink, time);
    }

    /// <summary>
    /// One window: <paramref name="fresh"/> series never seen before (pods that come and go) and
    /// <paramref name="stable"/> that stay, two points each over six decades, so sketches widen; then ten
    /// ticks. Returns the memory report once the sink is done with every emitted window.
    /// </summary>
    /// <remarks>
    /// Every series gets values over the same decades (1e-4 and 10): a pooled sketch serves a different series
    /// each window and keeps the widest bin array it has had, so series of different ranges would make the
    /// pool creep up slowly until every sketch had met the widest (bounded, and left to the soak to show).
    /// </remarks>
    private static async Task<PipelineMemory> Window(MetricsPipeline pipeline, FakeTimeProvider time, PointWriter writer, int window, int fresh, int stable)
    {
        long now = time.GetUtcNow().ToUnixTimeMilliseconds();
        for (int i = 0; i < fresh + stable; i++)
        {
            Label[] labels = i < fresh
                ? [new Label("pod", $"pod-{window}-{i}"), new Label("route", $"/r/{i % 7}")]
                : [new Label("pod", "stable"), new Label("route", $"/r/{i}")];
            Assert.Equal(RejectReason.None, writer.Write("request_seconds", labels, 1e-4 * (1 + (i % 7 / 10.0)), now + (i % 1000)));
            Assert.Equal(RejectReason.None, writer.Write("request_seconds", labels, 10 * (1 + (window % 5 / 10.0)), now + 1000 + (i % 1000)));
        }

        writer.Flush();
        await pipeline.DrainAsync();
        for (int s = 0; s < 10; s++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await pipeline.DrainAsync();
        }

        // The sink runs on its own task: wait, bounded, until it has released every window emitted so far.
        var clock = Stopwatch.StartNew();
        while (true)
        {
            PipelineMetrics m = pipeline.GetMetrics();
            if (m.Sinks[0].BatchesWritten == m.WindowsEmitted && m.Memory.WindowBatchBytes == 0)
            {
                return m.Memory;
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the sink had written {m.Sinks[0].BatchesWritten} of {m.WindowsEmitted} windows after 20 s");
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task Memory_SeriesChurnOverManyWindows_CountedBytesStopRising()
    {
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(30));
        var totals = new List<long>();
        var registry = new List<long>();
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("churn");
            for (int w = 0; w < 150; w++)
            {
                PipelineMemory memory = await Window(pipeline, time, writer, w, fresh: 300, stable: 100);
                totals.Add(memory.TotalBytes);
                registry.Add(memory.RegistryBytes);
                if (w == 149)
                {
                    // Every part the churn exercises is counted.
                    Assert.True(memory.OpenWindowBytes > 0 && memory.SpareWindowBytes > 0 && memory.SketchPoolBytes > 0 && memory.SeriesSlotBytes > 0);
                    Assert.True(memory.PointBatchBytes > 0 && memory.RegistryBytes > 0);
#if DEBUG
                    // A debug build poisons returned column arrays and never pools them again (use after return fails).
                    Assert.Equal(0, memory.ColumnPoolBytes);
#else
                    Assert.True(memory.ColumnPoolBytes > 0);
#endif
                }
            }
        }

        // 45,000 series came and went. After the warm-up (the idle timeout, then the reuse quarantine: about
        // ten windows) the indexes and arrays stop growing: the registry's share never exceeds its peak of
        // windows 50 to 100, and the total stays within 1 % of it (pools fill to their caps a window sooner or
        // later depending on when the sink's task lets a batch go). Without reclaim the registry alone would
        // grow by ~90 KB a window, 4.5 MB over the last 50.
        long warm = totals.Skip(50).Take(50).Max();
        long late = totals.Skip(100).Max();
        Assert.True(late <= warm + (warm / 100), $"counted bytes rose from a peak of {warm:N0} (windows 50-100) to {late:N0} (windows 100-150)");
        Assert.True(registry.Skip(100).Max() <= registry.Skip(50).Take(50).Max(), $"registry {registry.Skip(50).Take(50).Max():N0} -> {registry.Skip(100).Max():N0} bytes");
        Assert.True(totals[^1] < 2 * totals[10], $"{totals[^1]:N0} bytes at the end against {totals[10]:N0} after ten windows");

        PipelineMetrics done = pipeline.GetMetrics();
        Assert.Equal(120_000, done.Accepted);
        Assert.Equal(done.Accepted, done.EmittedPoints + done.Late + done.StalePoints);
        Assert.Equal(0, done.StalePoints);
        Assert.Equal(done.EmittedPoints, sink.Points);
        Assert.True(done.SeriesReclaimed > 40_000, $"only {done.SeriesReclaimed} reclaimed");
    }

    [Fact]
    public async Task SeriesSlotBytes_LargeBatches_CountEachShardsArrayOfBinIndices()
    {
        // A shard keeps one bin index per point of the largest batch it has aggregated: 256 KiB per shard here.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        MetricsPipelineOptions options = ReclaimScenario.Options(time, Timeout.InfiniteTimeSpan);
        options.BatchSize = 65_536;
        await using var pipeline = new MetricsPipeline(options, [new CountingSink()]);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("large-batches");
        SeriesId[] ids = [pipeline.Registry.GetOrAdd("m", [new Label("k", "a")]), pipeline.Registry.GetOrAdd("m", [new Label("k", "b")])];
        for (int i = 0; i < 2 * 65_536; i++)
        {
            Assert.Equal(RejectReason.None, writer.Write(ids[i & 1], 1 + (i % 100), T0 + 1));
        }

        writer.Flush();
        await pipeline.DrainAsync();
        time.Advance(TimeSpan.FromSeconds(1));
        await pipeline.DrainAsync();
        PipelineMemory memory = pipeline.GetMetrics().Memory;
        Assert.True(memory.SeriesSlotBytes >= 2 * 65_536 * sizeof(int), $"{memory.SeriesSlotBytes:N0} bytes of series slots counted");
    }

    [Fact]
    public async Task SketchPool_AfterABurstOfSeries_TrimmedToWhatRecentWindowsUse()
    {
        var (pipeline, _, time) = Create(Timeout.InfiniteTimeSpan);
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("burst");
            await Window(pipeline, time, writer, 0, fresh: 4_000, stable: 0);
            PipelineMemory afterBurst = await Window(pipeline, time, writer, 1, fresh: 0, stable: 40);
            Assert.True(afterBurst.PooledSketches >= 3_000, $"{afterBurst.PooledSketches} sketches pooled right after the burst");

            PipelineMemory later = afterBurst;
            for (int w = 2; w < 12; w++)
            {
                later = await Window(pipeline, time, writer, w, fresh: 0, stable: 40);
            }

            // Eight windows of 40 series later, the pool keeps what such a window needs, not the burst's 4,000.
            Assert.True(later.PooledSketches <= 40, $"{later.PooledSketches} sketches still pooled");
            Assert.True(later.SketchPoolBytes < afterBurst.SketchPoolBytes / 20, $"sketch pool {later.SketchPoolBytes:N0} bytes, {afterBurst.SketchPoolBytes:N0} after the burst");
        }
    }

    /// <summary>Counts points and lets each batch go at once, as a sink that writes through would.</summary>
    private sealed class CountingSink : IWindowSink
    {
        private long _points;

        public string Name => "count";

        public long Points => Interlocked.Read(ref _points);

        public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            Interlocked.Add(ref _points, batch.RecordBatch.Length == 0 ? 0 : batch.Points);
            return ValueTask.CompletedTask;
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
