using CsCheck;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>Per-source watermarks, idleness by the clock, the outlier rule and timestamp bounds, from the outside.</summary>
public class EventTimeTests
{
    private static MetricsPipelineOptions TenSecondWindows(FakeTimeProvider time, int shards) => new()
    {
        ShardCount = shards,
        WindowSize = TimeSpan.FromSeconds(10),
        AllowedLateness = TimeSpan.FromSeconds(5),
        SourceIdleTimeout = TimeSpan.FromSeconds(10),
        TickInterval = TimeSpan.FromSeconds(1),
        BatchSize = 64,
        ShardQueueBatches = 64,
        TimeProvider = time,
        Instance = "hardening",
    };

    private static long Now(TimeProvider time) => time.GetUtcNow().ToUnixTimeMilliseconds();

    private static SeriesId[] Register(MetricsPipeline pipeline, int n) =>
        [.. Enumerable.Range(0, n).Select(k => pipeline.Registry.GetOrAdd("event_time_seconds", [new Label("k", "k" + k)]))];

    [Fact]
    public async Task Watermark_ProducerSixtySecondsBehind_TicksBackToBackAfterStall_NoPointLate()
    {
        var time = Scenario.Clock(Scenario.T0 + 120_000);
        var sink = new ProbeSink("count");
        await using var pipeline = new MetricsPipeline(TenSecondWindows(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 20);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("replay", BackpressureMode.Wait);

        long written = 0;
        for (int step = 0; step < 300; step++)
        {
            // 1,000 points per second of the fake clock, in order, 60 s behind it: batches fill by themselves.
            long now = Now(time);
            for (int i = 0; i < 100; i++)
            {
                Assert.Equal(RejectReason.None, writer.Write(ids[i % 20], i, now - 60_000 + i));
                written++;
            }

            if (step % 50 == 25)
            {
                // The thread pool stalls for 1.5 s (then 3 s): the producer's batches and the shards wait, and
                // the ticks that were due arrive back to back, with no data between them.
                await pipeline.DrainAsync().Within("drain before the stall");
                time.Advance(TimeSpan.FromMilliseconds(step < 150 ? 1500 : 3000));
                await pipeline.DrainAsync().Within("drain after the stall");
                Assert.Equal(0, pipeline.GetMetrics().Late);
            }
            else
            {
                time.Advance(TimeSpan.FromMilliseconds(100));
            }
        }

        writer.Flush();
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertSettled(m);
        Assert.Equal(0, m.Late);
        Assert.True(m.EmittedPoints > written / 2, $"the watermark did not move: {m.EmittedPoints} of {written} emitted");

        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(written, m.EmittedPoints);
        Assert.Equal(written, sink.PointsRead);
    }

    [Fact]
    public async Task Watermark_OutlierNineMinutesAhead_AcceptedAndNextOnTimePointsNotLate()
    {
        var time = Scenario.Clock(Scenario.T0 + 120_000);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(TenSecondWindows(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 10);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("live");

        long outlierTs = Now(time) + (9 * 60_000);
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1e6, outlierTs));
        writer.Flush();
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(RejectReason.None, writer.Write(ids[i % 10], i, Now(time) - 1000));
            if (i % 50 == 49)
            {
                writer.Flush();
                time.Advance(TimeSpan.FromMilliseconds(500));
            }
        }

        await pipeline.DrainAsync().Within("drain");
        Assert.Equal(0, pipeline.GetMetrics().Late);
        writer.Flush();
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(1001, m.EmittedPoints);
        WindowRow outlier = Assert.Single(sink.Rows, r => r.Max == 1e6);
        Assert.True(outlier.WindowStartMs <= outlierTs && outlierTs < outlier.WindowEndMs);
    }

    [Fact]
    public async Task Watermark_SourceSixtySecondsBehindWithOneOutlierNineMinutesAhead_NextPointsNotLate()
    {
        // The clock cap alone protects live sources only: for a source 60 s behind, "now" is 60 s ahead of
        // its points. The outlier stands alone more than the lateness ahead of the source's other points,
        // so it does not count as progress until another point confirms the jump.
        var time = Scenario.Clock(Scenario.T0 + 120_000);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(TenSecondWindows(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 10);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("replay");

        Assert.Equal(RejectReason.None, writer.Write(ids[1], 1, Now(time) - 60_000));
        long outlierTs = Now(time) + (9 * 60_000);
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1e6, outlierTs));
        writer.Flush();
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(RejectReason.None, writer.Write(ids[i % 10], i, Now(time) - 60_000));
            if (i % 50 == 49)
            {
                writer.Flush();
                time.Advance(TimeSpan.FromMilliseconds(500));
            }
        }

        await pipeline.DrainAsync().Within("drain");
        Assert.Equal(0, pipeline.GetMetrics().Late);
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(1002, m.EmittedPoints);
        WindowRow outlier = Assert.Single(sink.Rows, r => r.Max == 1e6);
        Assert.True(outlier.WindowStartMs <= outlierTs && outlierTs < outlier.WindowEndMs);
    }

    [Fact]
    public async Task Watermark_TwoPointsAheadOfTheClock_SecondConfirmsTheJump()
    {
        // A lone point ahead of the clock does not count as progress; a second one near it confirms the
        // jump (a producer whose clock runs ahead), and the watermark follows, capped at the engine's clock.
        var time = Scenario.Clock(Scenario.T0 + 600_000);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(TenSecondWindows(time, shards: 1), [sink]);
        SeriesId[] ids = Register(pipeline, 1);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("skewed");

        long start = Now(time);
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1, start - 120_000));
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 2, start + 60_000));
        writer.Flush();
        await pipeline.DrainAsync().Within("drain");
        Assert.Equal(start - 125_000, pipeline.GetMetrics().Watermarks[0]);

        Assert.Equal(RejectReason.None, writer.Write(ids[0], 3, start + 60_001));
        writer.Flush();
        await pipeline.DrainAsync().Within("drain");
        Assert.Equal(start - 5_000, pipeline.GetMetrics().Watermarks[0]);
        Assert.Equal(0, pipeline.GetMetrics().Late);
        await pipeline.StopAsync().Within("stop");
        Assert.Equal(3, pipeline.GetMetrics().EmittedPoints);
    }

    [Fact]
    public async Task Watermark_SourceCreatedButNotYetWritten_HoldsTheWatermarkBeforeTheNextTick()
    {
        // Two Kafka partitions read unevenly: the first is read a minute ahead before the second's first
        // message. The second's writer exists already, so its points must not find their windows closed,
        // even though no tick (which also registers new sources) came in between.
        var time = Scenario.Clock(Scenario.T0 + 120_000);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(TenSecondWindows(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 10);
        pipeline.Start();
        using PointWriter first = pipeline.CreateWriter("partition-0");
        using PointWriter second = pipeline.CreateWriter("partition-1");
        long start = Now(time) - 60_000;
        for (int i = 0; i < 600; i++)
        {
            Assert.Equal(RejectReason.None, first.Write(ids[i % 10], i, start + (i * 100)));
        }

        first.Flush();
        await pipeline.DrainAsync().Within("drain");
        Assert.Equal(0, pipeline.GetMetrics().WindowsEmitted);

        for (int i = 0; i < 600; i++)
        {
            Assert.Equal(RejectReason.None, second.Write(ids[i % 10], i, start + (i * 100)));
        }

        second.Flush();
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(0, m.Late);
        Assert.True(m.WindowsEmitted > 0, "both sources have written: the old windows close");
        await pipeline.StopAsync().Within("stop");
        Assert.Equal(1200, pipeline.GetMetrics().EmittedPoints);
    }

    [Theory]
    [InlineData(long.MinValue, RejectReason.TimestampTooOld)]
    [InlineData(long.MinValue + 1, RejectReason.TimestampTooOld)]
    [InlineData(-1L, RejectReason.TimestampTooOld)]
    [InlineData(0L, RejectReason.TimestampTooOld)]
    [InlineData(Scenario.T0 - 3_600_001, RejectReason.TimestampTooOld)]
    [InlineData(long.MaxValue, RejectReason.TimestampOutOfRange)]
    [InlineData(long.MaxValue - 1, RejectReason.TimestampOutOfRange)]
    [InlineData(Scenario.T0 + 600_001, RejectReason.TimestampOutOfRange)]
    public async Task Write_TimestampOutOfBounds_RefusedWithReasonAndCounted(long ts, RejectReason expected)
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new ProbeSink("s");
        await using var pipeline = new MetricsPipeline(TenSecondWindows(time, shards: 2), [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("w");
        using SharedPointWriter shared = pipeline.CreateSharedWriter("shared");

        Assert.Equal(expected, writer.Write(id, 1, ts));
        Assert.Equal(expected, writer.Write("a_total", [], 1, ts));
        Assert.Equal(expected, shared.Write(id, 1, ts));
        // The bounds themselves are accepted.
        Assert.Equal(RejectReason.None, writer.Write(id, 1, Scenario.T0 - 3_600_000));
        Assert.Equal(RejectReason.None, writer.Write(id, 1, Scenario.T0 + 600_000));
        writer.Flush();
        shared.Flush();
        await pipeline.DrainAsync().Within("drain");

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(3, m.RejectedByReason[expected]);
        Assert.Equal(3, m.Rejected);
        Assert.Equal(2, m.Accepted);
        Identities.AssertSettled(m);
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(2, m.EmittedPoints + m.Late);
        Assert.Equal(m.EmittedPoints, sink.PointsRead);
    }

    [Fact]
    public async Task Watermark_SilentSource_StopsHoldingWindowsAfterIdleTimeout()
    {
        long c = Scenario.T0 + 100_000;
        var time = Scenario.Clock(c + 30_000);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(TenSecondWindows(time, shards: 1), [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using PointWriter silent = pipeline.CreateWriter("silent");
        using PointWriter live = pipeline.CreateWriter("live");

        // The silent source writes once, 29 s behind the clock, and then nothing (it is not disposed).
        Assert.Equal(RejectReason.None, silent.Write(id, 7, c + 1000));
        silent.Flush();
        long lastSeen = Now(time);
        for (int second = 1; second <= 14; second++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(RejectReason.None, live.Write(id, 1, Now(time) - 500));
            live.Flush();
            await pipeline.DrainAsync().Within("drain");
            PipelineMetrics m = pipeline.GetMetrics();
            bool closed = sink.Rows.Any(r => r.WindowStartMs == c) || m.WindowsEmitted > 0;
            if (Now(time) - lastSeen <= 10_000)
            {
                // Still within its idle timeout: the silent source holds every window from its point on.
                Assert.False(closed, $"window closed {Now(time) - lastSeen} ms after the silent source's last batch");
                Assert.True(m.Watermarks[0] <= c + 1000 - 5000, $"watermark {m.Watermarks[0] - c} ms past the silent source");
            }
            else if (Now(time) - lastSeen >= 12_000)
            {
                Assert.True(m.WindowsEmitted > 0, $"window still held {Now(time) - lastSeen} ms after the silent source's last batch");
            }
        }

        await Signals.Until(() => sink.Rows.Any(r => r.WindowStartMs == c), "the silent source's window reaching the sink");
        Assert.Equal(7, sink.Rows.Single(r => r.WindowStartMs == c).Sum);
        Assert.Equal(0, pipeline.GetMetrics().Late);

        // Writing again makes it active again; its points behind the watermark are now late, and counted as its own.
        Assert.Equal(RejectReason.None, silent.Write(id, 7, c + 2000));
        silent.Flush();
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics after = pipeline.GetMetrics();
        Assert.Equal(1, after.Late);
        Assert.Equal(1, after.Sources.Single(s => s.Source == "silent").Late);
        Identities.AssertSettled(after);
    }

    [Fact]
    public async Task Watermark_DisposedSource_StopsHoldingAtOnce_NoSourceLeft_ClockClosesWindows()
    {
        long c = Scenario.T0 + 100_000;
        var time = Scenario.Clock(c + 30_000);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(TenSecondWindows(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 4);
        pipeline.Start();
        PointWriter writer = pipeline.CreateWriter("w");
        foreach (SeriesId id in ids)
        {
            Assert.Equal(RejectReason.None, writer.Write(id, 1, c + 1000));
        }

        writer.Flush();
        time.Advance(TimeSpan.FromSeconds(1));
        await pipeline.DrainAsync().Within("drain");
        Assert.Equal(0, pipeline.GetMetrics().WindowsEmitted);

        writer.Dispose();
        time.Advance(TimeSpan.FromSeconds(1));
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(4, m.EmittedPoints);
        Assert.All(m.Watermarks, w => Assert.Equal(Now(time) - 5000, w));
        Identities.AssertSettled(m);
    }

    [Fact]
    public async Task Watermark_ShardChannelFullAtTheTicks_DisposedSourceStillStopsHolding()
    {
        long c = Scenario.T0 + 100_000;
        var time = Scenario.Clock(c + 2_000);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = new ProbeSink("stuck", call => new ValueTask(release.Task.WaitAsync(call.Token)));
        MetricsPipelineOptions options = Scenario.Options(time);
        options.BatchSize = 4;
        options.ShardQueueBatches = 2;
        await using var pipeline = new MetricsPipeline(options, [new SinkRegistration(stuck, new SinkOptions { QueueCapacity = 1 })]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        try
        {
            // A source closes three windows: one in the sink's hands, one queued, the shard waits on the third.
            PointWriter quitter = pipeline.CreateWriter("quitter");
            for (int w = -5; w <= -2; w++)
            {
                Assert.Equal(RejectReason.None, quitter.Write(id, 1, c + (w * 1000L)));
                quitter.Flush();
            }

            await stuck.NextCallAsync().Within("the sink's first write");
            await Signals.Until(
                () => pipeline.GetMetrics() is { ShardQueueDepth: [0] } m && m.Sinks[0] is { State: SinkState.Stalled, QueueDepth: 1 },
                "the shard waiting for the sink with its channel empty");
            quitter.Dispose();

            // Another source fills the shard's channel, so the ticks of the next seconds find no room.
            using PointWriter live = pipeline.CreateWriter("live", BackpressureMode.DropNewest);
            for (int b = 0; b < 3; b++)
            {
                for (int i = 0; i < 4; i++)
                {
                    Assert.Equal(RejectReason.None, live.Write(id, 1, Now(time) - 100));
                }
            }

            Assert.Equal(4, pipeline.GetMetrics().DroppedByReason[DropReason.QueueFull]);
            time.Advance(TimeSpan.FromSeconds(3));

            // Released, the shard works through what was queued before the ticks: the quitter still counts there.
            release.SetResult();
            await pipeline.DrainAsync().Within("drain");
            Assert.Equal(c - 2000, pipeline.GetMetrics().Watermarks[0]);

            // The first batch handed over after the ticks brings them in.
            Assert.Equal(RejectReason.None, live.Write(id, 1, Now(time) - 100));
            live.Flush();
            await pipeline.DrainAsync().Within("drain");

            // The quitter was disposed seconds ago and all its batches are in: only the live source holds the watermark.
            PipelineMetrics m = pipeline.GetMetrics();
            Assert.Equal(Now(time) - 100, m.Watermarks[0]);
            Assert.Equal(0, m.Late);
            Identities.AssertSettled(m);
        }
        finally
        {
            release.TrySetResult();
        }

        await pipeline.StopAsync().Within("stop");
        Identities.AssertStopped(pipeline.GetMetrics());
    }

    /// <summary>One run of the property: N writers on one thread, randomly interleaved, disorder below the lateness.</summary>
    private static async Task RunInterleaving(int writers, int shards, int rounds, int disorderMs, int seed)
    {
        var random = new Random(seed);
        var time = Scenario.Clock(Scenario.T0 + 20_000);
        var sink = new CollectingSink();
        var options = new MetricsPipelineOptions
        {
            ShardCount = shards,
            WindowSize = TimeSpan.FromSeconds(2),
            AllowedLateness = TimeSpan.FromSeconds(3),
            BatchSize = random.Next(1, 40),
            ShardQueueBatches = 4096,
            TimeProvider = time,
            Instance = "property",
        };
        await using var pipeline = new MetricsPipeline(options, [sink]);
        SeriesId[] ids = Register(pipeline, 12);
        string[] keys = [.. ids.Select(id => { var d = pipeline.Registry.GetDescriptor(id); return d.Metric + d.Labels; })];
        pipeline.Start();
        PointWriter[] sources = [.. Enumerable.Range(0, writers).Select(w => pipeline.CreateWriter("source-" + w, BackpressureMode.Wait))];
        var expected = new Dictionary<(string Key, long Window), (long Count, double Sum)>();
        long total = 0;
        for (int round = 0; round < rounds; round++)
        {
            long now = Now(time);
            var turns = new List<int>();
            for (int w = 0; w < writers; w++)
            {
                turns.AddRange(Enumerable.Repeat(w, random.Next(1, 25)));
            }

            random.Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(turns));
            foreach (int w in turns)
            {
                int k = random.Next(ids.Length);
                long ts = now - random.Next(0, disorderMs + 1);
                int value = random.Next(-1000, 1000);
                Assert.Equal(RejectReason.None, sources[w].Write(ids[k], value, ts));
                total++;
                var key = (keys[k], ts - (ts % 2000));
                expected[key] = expected.TryGetValue(key, out var e) ? (e.Count + 1, e.Sum + value) : (1, value);
                if (random.Next(10) == 0)
                {
                    sources[w].Flush();
                }
            }

            foreach (PointWriter source in sources)
            {
                source.Flush();
            }

            time.Advance(TimeSpan.FromMilliseconds(random.Next(200, 1001)));
        }

        foreach (PointWriter source in sources)
        {
            source.Dispose();
        }

        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(total, m.EmittedPoints);
        var actual = sink.Rows.GroupBy(r => (r.Key, r.WindowStartMs)).ToDictionary(g => g.Key, g => (Count: g.Sum(r => r.Count), Sum: g.Sum(r => r.Sum)));
        Assert.Equal(expected.Count, actual.Count);
        foreach (var (key, e) in expected)
        {
            Assert.True(actual.TryGetValue(key, out var a), $"window {key} missing");
            Assert.Equal(e.Count, a.Count);
            Assert.Equal(e.Sum, a.Sum);
        }
    }

    [Fact]
    public void Watermark_RandomInterleavingsWithDisorderBelowLateness_NoLatePointsAndExactWindows()
    {
        Gen.Select(Gen.Int[1, 4], Gen.Int[1, 3], Gen.Int[2, 20], Gen.Int[0, 2999], Gen.Int)
            .Sample((writers, shards, rounds, disorder, seed) => RunInterleaving(writers, shards, rounds, disorder, seed).GetAwaiter().GetResult(), iter: 30, threads: 1);
    }
}
