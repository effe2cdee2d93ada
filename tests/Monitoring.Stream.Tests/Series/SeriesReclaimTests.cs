using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Series;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Series;

public class SeriesReclaimTests
{
    private const long T0 = 1_800_000_000_000;

    private static (MetricsPipeline Pipeline, CollectingSink Sink, FakeTimeProvider Time) Create(TimeSpan seriesIdle, TimeSpan? producerFlush = null)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new CollectingSink();
        var pipeline = new MetricsPipeline(ReclaimScenario.Options(time, seriesIdle, producerFlush), [sink]);
        pipeline.Start();
        return (pipeline, sink, time);
    }

    /// <summary>Each window brings 50 new label values and never sees the old ones again (pods that come and go).</summary>
    private static async Task Churn(MetricsPipeline pipeline, FakeTimeProvider time, PointWriter writer, int fromWindow, int toWindow)
    {
        for (int w = fromWindow; w < toWindow; w++)
        {
            long now = time.GetUtcNow().ToUnixTimeMilliseconds();
            for (int i = 0; i < 50; i++)
            {
                Assert.Equal(RejectReason.None, writer.Write("churn_seconds", [new Label("pod", $"pod-{w}-{i}")], i, now + i));
            }

            writer.Flush();
            await pipeline.DrainAsync();
            for (int s = 0; s < 10; s++)
            {
                time.Advance(TimeSpan.FromSeconds(1));
                await pipeline.DrainAsync();
            }
        }
    }

    [Fact]
    public async Task Churn_ManyWindowsOfNewSeries_IdsAndStateStayBounded_EveryPointAccounted()
    {
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(30));
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("churn");
            await Churn(pipeline, time, writer, 0, 40);
            int idsAfterWarmUp = pipeline.Registry.Count;
            long heldAfterWarmUp = pipeline.GetMetrics().HeldStateBytes;

            await Churn(pipeline, time, writer, 40, 200);
            PipelineMetrics m = pipeline.GetMetrics();

            // 10,000 series came and went; the indexes in use level off at what the idle timeout and the
            // quarantine keep (about 50 per window for 30 s + 30 s + a scan interval), not at 10,000.
            Assert.True(pipeline.Registry.Count <= idsAfterWarmUp + 100, $"ids grew from {idsAfterWarmUp} to {pipeline.Registry.Count}");
            Assert.True(pipeline.Registry.Count < 1_000, $"{pipeline.Registry.Count} indexes for at most ~400 live series");
            Assert.True(m.SeriesReclaimed > 9_000, $"only {m.SeriesReclaimed} reclaimed");
            // Every writer flushes each window, so each unlisted series is retired at the same tick or the next.
            Assert.True(m.SeriesReclaimed - m.SeriesRetired <= 100, $"{m.SeriesReclaimed - m.SeriesRetired} series unlisted but not retired");
            Assert.True(m.SeriesActive < 600, $"{m.SeriesActive} live series");
            Assert.True(m.HeldStateBytes <= heldAfterWarmUp * 2, $"held state grew from {heldAfterWarmUp} to {m.HeldStateBytes} bytes");
        }

        // Every point of every series, reclaimed or not, reached the sink under its own labels.
        PipelineMetrics done = pipeline.GetMetrics();
        Assert.Equal(10_000, done.Accepted);
        Assert.Equal(done.Accepted, done.EmittedPoints + done.Late + done.StalePoints);
        Assert.Equal(0, done.StalePoints);
        Assert.Equal(10_000, sink.Rows.Select(r => r.Labels.ToString()).Distinct().Count());
        Assert.All(sink.Rows, r => Assert.Equal(1, r.Count));
    }

    [Fact]
    public async Task BoundHandle_HeldPastReclaim_RefusedAsStaleAndCounted_NewLookupGetsFreshSeries()
    {
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(30));
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("app");
            SeriesId held = pipeline.Registry.GetOrAdd("queue_depth", new Label("queue", "orders"));
            writer.Write(held, 5, T0);
            await Churn(pipeline, time, writer, 0, 12); // 120 s: the queue series is idle past its timeout

            Assert.Equal(RejectReason.None, writer.Write(held, 7, time.GetUtcNow().ToUnixTimeMilliseconds()));
            writer.Flush();
            await pipeline.DrainAsync();
            Assert.Equal(1, pipeline.GetMetrics().StalePoints);

            SeriesId fresh = pipeline.Registry.GetOrAdd("queue_depth", new Label("queue", "orders"));
            Assert.NotEqual(held, fresh);
            writer.Write(fresh, 9, time.GetUtcNow().ToUnixTimeMilliseconds());
            writer.Flush();
            await pipeline.StopAsync();
        }

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late + m.StalePoints + m.OpenWindowPoints);
        double[] values = [.. sink.Rows.Where(r => r.Metric == "queue_depth").OrderBy(r => r.WindowStartMs).Select(r => r.Sum)];
        Assert.Equal([5.0, 9.0], values);
    }

    /// <summary>offered = accepted + rejected + dropped, and accepted = emitted + late + stale + faulted + open, exactly.</summary>
    private static void AssertAccounted(PipelineMetrics m)
    {
        Assert.Equal(m.Offered, m.Accepted + m.Rejected + m.Dropped);
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late + m.StalePoints + m.FaultedPoints + m.OpenWindowPoints);
    }

    [Fact]
    public async Task Reclaim_PointBufferedInWriterWhenSeriesIsUnlisted_AggregatedNotStale()
    {
        // The writer never flushes by itself (flush interval of an hour): its point stays buffered across the reclaim.
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(30), producerFlush: TimeSpan.FromHours(1));
        Label[] queue = [new Label("queue", "orders")];
        SeriesId first;
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("app");
            Assert.Equal(RejectReason.None, writer.Write("queue_depth", queue, 1, T0));
            writer.Flush();
            await pipeline.DrainAsync();
            first = pipeline.Registry.GetOrAdd("queue_depth", queue);

            // 40 s on, at a window start: the series' last window ended 30 s ago, so the next scan reclaims it.
            await ReclaimScenario.TickUntil(pipeline, time, () => time.GetUtcNow().ToUnixTimeMilliseconds() >= T0 + 40_000, 60, "clock at T0 + 40 s");
            Assert.Equal(0, pipeline.GetMetrics().SeriesReclaimed);
            long now = time.GetUtcNow().ToUnixTimeMilliseconds();
            Assert.Equal(RejectReason.None, writer.Write("queue_depth", queue, 2, now));
            await ReclaimScenario.TickUntil(pipeline, time, () => pipeline.GetMetrics().SeriesReclaimed == 1, 9, "the idle series unlisted");

            // Unlisted: a new lookup gets another id, and the memory report no longer counts the series as active...
            Assert.NotEqual(first, pipeline.Registry.GetOrAdd("queue_depth", queue));
            Assert.Equal(1, pipeline.GetMetrics().SeriesActive);

            // ...but the point written before is still on its way, and its id stays valid until it is in.
            writer.Flush();
            await pipeline.DrainAsync();
            await ReclaimScenario.TickUntil(pipeline, time, () => time.GetUtcNow().ToUnixTimeMilliseconds() >= now + 20_000, 30, "its window closed");
            PipelineMetrics m = pipeline.GetMetrics();
            Assert.Equal(0, m.StalePoints);
            AssertAccounted(m);
        }

        PipelineMetrics done = pipeline.GetMetrics();
        Assert.Equal(0, done.StalePoints);
        Assert.Equal(2, done.Accepted);
        AssertAccounted(done);
        Assert.Equal(2, done.EmittedPoints);
        double[] values = [.. sink.Rows.Where(r => r.Metric == "queue_depth").OrderBy(r => r.WindowStartMs).Select(r => r.Sum)];
        Assert.Equal([1.0, 2.0], values);
    }

    [Fact]
    public async Task Reclaim_PointQueuedInShardChannelBehindTheUnlisting_AggregatedNotStale()
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new CollectingSink();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = new ProbeSink("stuck", call => new ValueTask(release.Task.WaitAsync(call.Token)));
        MetricsPipelineOptions options = ReclaimScenario.Options(time, TimeSpan.FromSeconds(30));
        options.ShardCount = 1;
        options.ShardQueueBatches = 64;
        var pipeline = new MetricsPipeline(options, [new SinkRegistration(sink), new SinkRegistration(stuck, new SinkOptions { QueueCapacity = 1 })]);
        pipeline.Start();
        Label[] queue = [new Label("queue", "orders")];
        SeriesId first;
        await using (pipeline)
        {
            try
            {
                using PointWriter writer = pipeline.CreateWriter("app");
                Assert.Equal(RejectReason.None, writer.Write("queue_depth", queue, 1, T0));
                writer.Flush();
                first = pipeline.Registry.GetOrAdd("queue_depth", queue);

                // Two more windows with data: the stuck sink holds the first, its queue the second, and the shard
                // waits on the third from the tick at T0 + 31 s on.
                for (int w = 1; w <= 2; w++)
                {
                    await ReclaimScenario.TickUntil(pipeline, time, () => time.GetUtcNow().ToUnixTimeMilliseconds() >= T0 + (w * 10_000), 20, $"window {w}");
                    writer.Write("other", [], w, T0 + (w * 10_000));
                    writer.Flush();
                }

                await stuck.NextCallAsync().Within("the stuck sink's first write");
                await ReclaimScenario.TickUntil(pipeline, time, () => time.GetUtcNow().ToUnixTimeMilliseconds() >= T0 + 30_000, 20, "clock at T0 + 30 s");
                // At T0 + 31 s the source is idle, the clock closes the third window and the shard waits on the sink.
                time.Advance(TimeSpan.FromSeconds(1));
                await Signals.Until(() => pipeline.GetMetrics().Watermarks[0] >= T0 + 31_000, "the shard at the tick of T0 + 31 s");

                // Ticks to T0 + 48 s queue behind the shard's wait; one of them scans for idle series past T0 + 40 s.
                for (int t = 0; t < 17; t++)
                {
                    time.Advance(TimeSpan.FromSeconds(1));
                }

                Assert.Equal(0, pipeline.GetMetrics().SeriesReclaimed);
                Assert.True(pipeline.GetMetrics().ShardQueueDepth[0] >= 17, "the ticks wait in the shard's channel");

                // Resolved before the shard reaches the scan, handed over behind it.
                long now = time.GetUtcNow().ToUnixTimeMilliseconds();
                writer.Flush(); // nothing buffered: only reads the clock, so the point below is not taken for an outlier
                Assert.Equal(RejectReason.None, writer.Write("queue_depth", queue, 2, now));
                Assert.Equal(first, pipeline.Registry.GetOrAdd("queue_depth", queue));
                writer.Flush();
                release.SetResult();
                await pipeline.DrainAsync().Within("drain");

                PipelineMetrics m = pipeline.GetMetrics();
                Assert.True(m.SeriesReclaimed >= 1, "the scan behind the wait unlisted the idle series");
                Assert.NotEqual(first, pipeline.Registry.GetOrAdd("queue_depth", queue));
                Assert.Equal(0, m.StalePoints);
                await ReclaimScenario.TickUntil(pipeline, time, () => time.GetUtcNow().ToUnixTimeMilliseconds() >= now + 10_000, 20, "its window closed");
                await ReclaimScenario.TickUntil(pipeline, time, () => pipeline.GetMetrics().SeriesRetired >= 1, 10, "the id retired");
            }
            finally
            {
                release.TrySetResult();
            }
        }

        PipelineMetrics done = pipeline.GetMetrics();
        Assert.Equal(0, done.StalePoints);
        Assert.Equal(4, done.EmittedPoints);
        AssertAccounted(done);
        double[] values = [.. sink.Rows.Where(r => r.Metric == "queue_depth").OrderBy(r => r.WindowStartMs).Select(r => r.Sum)];
        Assert.Equal([1.0, 2.0], values);
    }

    [Fact]
    public async Task BoundHandle_HeldAcrossUnlistingAndRetirement_AggregatedUntilRetiredThenStale()
    {
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(30), producerFlush: TimeSpan.FromHours(1));
        Label[] queue = [new Label("queue", "orders")];
        SeriesId held = pipeline.Registry.GetOrAdd("queue_depth", queue);
        await using (pipeline)
        {
            using PointWriter app = pipeline.CreateWriter("app");
            using PointWriter other = pipeline.CreateWriter("other");
            app.Write(held, 1, T0);
            app.Flush();
            await ReclaimScenario.TickUntil(pipeline, time, () => time.GetUtcNow().ToUnixTimeMilliseconds() >= T0 + 40_000, 60, "clock at T0 + 40 s");

            // A point of another series sits in a writer's buffer: the retirement waits for that writer's flush.
            other.Write("unrelated", [], 3, time.GetUtcNow().ToUnixTimeMilliseconds());
            await ReclaimScenario.TickUntil(pipeline, time, () => pipeline.GetMetrics().SeriesReclaimed == 1, 9, "the idle series unlisted");
            for (int s = 0; s < 3; s++)
            {
                time.Advance(TimeSpan.FromSeconds(1));
                await pipeline.DrainAsync();
            }

            Assert.Equal(0, pipeline.GetMetrics().SeriesRetired);

            // Unlisted, not retired: the handle still writes to its series.
            Assert.Equal(RejectReason.None, app.Write(held, 2, time.GetUtcNow().ToUnixTimeMilliseconds()));
            app.Flush();
            await pipeline.DrainAsync();
            Assert.Equal(0, pipeline.GetMetrics().StalePoints);

            // The other writer flushes: nothing written before the unlisting is on its way any more. The series'
            // id is retired once its last window is out.
            other.Flush();
            await ReclaimScenario.TickUntil(pipeline, time, () => pipeline.GetMetrics().SeriesRetired == 1, 15, "the id retired");
            Assert.Equal(1, pipeline.Registry.Retired);

            // Retired: the handle's point is refused by its shard and counted, never written to another series.
            Assert.Equal(RejectReason.None, app.Write(held, 4, time.GetUtcNow().ToUnixTimeMilliseconds()));
            app.Flush();
            await pipeline.DrainAsync();
            Assert.Equal(1, pipeline.GetMetrics().StalePoints);

            SeriesId fresh = pipeline.Registry.GetOrAdd("queue_depth", queue);
            Assert.NotEqual(held, fresh);
            app.Write(fresh, 8, time.GetUtcNow().ToUnixTimeMilliseconds());
            app.Flush();
        }

        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(5, m.Offered);
        Assert.Equal(1, m.StalePoints);
        Assert.Equal(4, m.EmittedPoints);
        double[] values = [.. sink.Rows.Where(r => r.Metric == "queue_depth").OrderBy(r => r.WindowStartMs).Select(r => r.Sum)];
        Assert.Equal([1.0, 2.0, 8.0], values);
    }

    [Fact]
    public async Task InfiniteIdleTimeout_NothingReclaimed()
    {
        var (pipeline, _, time) = Create(Timeout.InfiniteTimeSpan);
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("churn");
            await Churn(pipeline, time, writer, 0, 20);
            Assert.Equal(1_000, pipeline.Registry.Count);
            Assert.Equal(0, pipeline.GetMetrics().SeriesReclaimed);
        }
    }

    [Fact]
    public async Task SeriesWithoutAnyAggregatedPoint_InternedOnlyOrEveryPointRefused_IsReclaimedOnceIdle()
    {
        // A series that never reaches a window (looked up and never written, or whose every point is refused)
        // has no window to date its last activity: it must still be reclaimed, or it holds its place under the
        // metric's series limit for good and every new label set folds into the overflow series.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        MetricsPipelineOptions options = ReclaimScenario.Options(time, TimeSpan.FromSeconds(5));
        options.Registry = new SeriesRegistryOptions { MaxSeriesPerMetric = 20 };
        var pipeline = new MetricsPipeline(options, [new CollectingSink()]);
        pipeline.Start();
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("quiet");
            using PointWriter clock = pipeline.CreateWriter("clock");
            for (int i = 0; i < 10; i++)
            {
                _ = pipeline.Registry.GetOrAdd("quiet_seconds", [new Label("pod", $"looked-up-{i}")]);
                long farFuture = time.GetUtcNow().ToUnixTimeMilliseconds() + (long)TimeSpan.FromDays(1).TotalMilliseconds;
                Assert.Equal(RejectReason.TimestampOutOfRange, writer.Write("quiet_seconds", [new Label("pod", $"refused-{i}")], 1, farFuture));
            }

            Assert.Equal(20, pipeline.Registry.GetSeriesCount("quiet_seconds"));

            // Another series moves event time (the watermark) on.
            await ReclaimScenario.TickUntil(pipeline, time, () =>
            {
                clock.Write("clock_seconds", [new Label("pod", "a")], 1, time.GetUtcNow().ToUnixTimeMilliseconds());
                clock.Flush();
                return pipeline.Registry.GetSeriesCount("quiet_seconds") == 0;
            }, 60, "the 20 series without points were reclaimed");

            SeriesId fresh = pipeline.Registry.GetOrAdd("quiet_seconds", [new Label("pod", "new")]);
            Assert.False(pipeline.Registry.GetDescriptor(fresh).IsOverflow);
            Assert.True(pipeline.GetMetrics().SeriesReclaimed >= 20);
        }
    }

    [Fact]
    public async Task LabelledWrites_FourThreadsWhileTheirSeriesIsReclaimedAgainAndAgain_NoPointIsStale()
    {
        // Engine time runs a second per step, so a writer the scheduler leaves out for a few steps lets its series
        // go idle and be reclaimed under it. A point looked up before the reclaim and appended after must not
        // arrive with a retired id: the writer looks the series up holding its gate, so the engine cannot flush
        // it past the reclaim in between.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        MetricsPipelineOptions options = ReclaimScenario.Options(time, TimeSpan.FromSeconds(5));
        options.WindowSize = TimeSpan.FromSeconds(1);
        options.AllowedLateness = TimeSpan.FromSeconds(5);
        var sink = new CollectingSink();
        var pipeline = new MetricsPipeline(options, [sink]);
        pipeline.Start();
        long total;
        await using (pipeline)
        {
            using SharedPointWriter shared = pipeline.CreateSharedWriter("labelled", BackpressureMode.DropNewest);
            using var stop = new CancellationTokenSource();
            long[] accepted = new long[4];
            Label[] busy = [new Label("route", "/busy")];
            Task[] writers = [.. Enumerable.Range(0, 4).Select(w => Task.Factory.StartNew(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    for (int i = 0; i < 256; i++)
                    {
                        if (shared.Write("labelled_seconds", busy, 1) == RejectReason.None)
                        {
                            accepted[w]++;
                        }
                    }

                    Thread.Yield();
                }
            }, TaskCreationOptions.LongRunning))];

            using PointWriter idle = pipeline.CreateWriter("idle");
            int steps = 0;
            for (; steps < 600 && pipeline.Registry.Reclaimed < 20; steps++)
            {
                Assert.Equal(RejectReason.None, idle.Write("labelled_seconds", [new Label("route", "/idle-" + steps)], 1, time.GetUtcNow().ToUnixTimeMilliseconds()));
                idle.Flush();
                shared.Flush();
                await pipeline.DrainAsync();
                time.Advance(TimeSpan.FromSeconds(1));
            }

            await stop.CancelAsync();
            await Task.WhenAll(writers);
            Assert.True(pipeline.Registry.Reclaimed >= 20, $"series were reclaimed while the threads wrote ({pipeline.Registry.Reclaimed})");
            total = accepted.Sum() + steps;
            shared.Flush();
        }

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.True(m.StalePoints == 0, $"{m.StalePoints} stale, {m.Late} late, {m.Dropped} dropped, {m.SeriesReclaimed} reclaimed");
        Assert.Equal(total, m.Accepted + m.Dropped);
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late);
        Assert.Equal(m.EmittedPoints, sink.Rows.Sum(r => r.Count));
    }
}
