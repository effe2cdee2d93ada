using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Black-box probes of the event-time promises of docs/event-time.md (outlier rule, stalls, idleness),
/// written from the docs and the public API only. Every scenario ends with the accounting identities.
/// </summary>
public class EventTimeBlackBoxTests
{
    private const long Lateness = 5_000;

    internal static MetricsPipelineOptions Options(FakeTimeProvider time, int shards = 2, long windowMs = 10_000, long latenessMs = Lateness, long idleMs = 10_000) => new()
    {
        ShardCount = shards,
        WindowSize = TimeSpan.FromMilliseconds(windowMs),
        AllowedLateness = TimeSpan.FromMilliseconds(latenessMs),
        SourceIdleTimeout = TimeSpan.FromMilliseconds(idleMs),
        TickInterval = TimeSpan.FromSeconds(1),
        ProducerFlushInterval = TimeSpan.FromMilliseconds(200),
        BatchSize = 64,
        ShardQueueBatches = 64,
        SeriesIdleTimeout = Timeout.InfiniteTimeSpan,
        TimeProvider = time,
        Instance = "blackbox",
    };

    internal static long Now(TimeProvider time) => time.GetUtcNow().ToUnixTimeMilliseconds();

    internal static SeriesId[] Register(MetricsPipeline pipeline, int n, string metric = "bb_seconds") =>
        [.. Enumerable.Range(0, n).Select(k => pipeline.Registry.GetOrAdd(metric, [new Label("k", "k" + k)]))];

    /// <summary>Writes <paramref name="perStep"/> in-order points <paramref name="behindMs"/> behind the clock, flushes, advances the clock.</summary>
    private static long Steps(PointWriter writer, SeriesId[] ids, FakeTimeProvider time, int steps, long behindMs, int perStep = 5, long stepMs = 1000)
    {
        long written = 0;
        for (int s = 0; s < steps; s++)
        {
            long now = Now(time);
            for (int i = 0; i < perStep; i++)
            {
                Assert.Equal(RejectReason.None, writer.Write(ids[i % ids.Length], i, now - behindMs + i));
                written++;
            }

            writer.Flush();
            time.Advance(TimeSpan.FromMilliseconds(stepMs));
        }

        return written;
    }

    /// <summary>Stops and disposes a pipeline within a real-time bound (its shutdown timeout runs on the fake clock).</summary>
    internal static async Task StopBounded(MetricsPipeline pipeline)
    {
        using var cts = new CancellationTokenSource(Signals.Bound);
        try
        {
            await pipeline.StopAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            // Forced: the test has already failed, or fails on what it asserted before.
        }

        await pipeline.DisposeAsync();
    }

    private static async Task<PipelineMetrics> SettledMetrics(MetricsPipeline pipeline)
    {
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertIdentities(m);
        return m;
    }

    // ---------------------------------------------------------------- outlier rule

    [Fact]
    public async Task Outlier_LiveSourceLonePointNineMinutesAhead_WatermarkStaysWithOtherPoints()
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(time), [sink]);
        SeriesId[] ids = Register(pipeline, 8);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("live");

        long written = Steps(writer, ids, time, steps: 5, behindMs: 1000);
        long outlierTs = Now(time) + (9 * 60_000);
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1e6, outlierTs));
        written++;
        long lastNormal = Now(time) - 1000;
        Assert.Equal(RejectReason.None, writer.Write(ids[1], 1, lastNormal));
        written++;
        writer.Flush();

        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);
        // Every shard hears from the source (points or a progress mark): its progress is its newest non-outlier point.
        Assert.All(m.Watermarks, w => Assert.Equal(lastNormal - Lateness, w));

        written += Steps(writer, ids, time, steps: 20, behindMs: 1000);
        m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);
        Assert.All(m.Watermarks, w => Assert.True(w <= Now(time) - Lateness, $"watermark {w} passed the clock minus lateness"));

        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(written, m.EmittedPoints);
        WindowRow outlier = Assert.Single(sink.Rows, r => r.Max == 1e6);
        Assert.True(outlier.WindowStartMs <= outlierTs && outlierTs < outlier.WindowEndMs);
    }

    [Fact]
    public async Task Outlier_ReplaySixtySecondsBehind_ClockLaterPassesTheOutlier_ReplayStillNotLate()
    {
        // The replay keeps its pace 60 s behind the clock for three minutes; the lone outlier was stamped two minutes
        // ahead. Once the clock passes the outlier's timestamp, the outlier is no longer "ahead of the clock": if the rule
        // were re-evaluated then, the replay's progress would jump to the outlier, 60 s past its own points.
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(time), [sink]);
        SeriesId[] ids = Register(pipeline, 8);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("replay");

        long written = Steps(writer, ids, time, steps: 3, behindMs: 60_000);
        long outlierTs = Now(time) + 120_000;
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1e6, outlierTs));
        written++;
        written += Steps(writer, ids, time, steps: 60, behindMs: 60_000);
        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);

        written += Steps(writer, ids, time, steps: 120, behindMs: 60_000);
        Assert.True(Now(time) > outlierTs + 30_000, "the clock did not pass the outlier");
        m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);
        Assert.All(m.Watermarks, w => Assert.True(w <= Now(time) - 60_000 - Lateness, $"watermark {w} ran ahead of the replay (clock {Now(time)})"));

        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(written, m.EmittedPoints);
    }

    [Fact]
    public async Task Outlier_AsReplaySourcesVeryFirstPoint_NextPointsNotLate()
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(time), [sink]);
        SeriesId[] ids = Register(pipeline, 8);
        pipeline.Start();

        // A live source moves the clock-bound watermark along meanwhile, so only the replay's own progress can hold it.
        using PointWriter live = pipeline.CreateWriter("live");
        using PointWriter replay = pipeline.CreateWriter("replay");
        // One tick between creating the writers and writing: keeps this test apart from the new-writer bug
        // (Idle_NewWriterCreatedBeforeAnotherSourceFlushes_HoldsTheWatermarkFromCreation).
        time.Advance(TimeSpan.FromSeconds(1));
        long outlierTs = Now(time) + (9 * 60_000);
        Assert.Equal(RejectReason.None, replay.Write(ids[0], 1e6, outlierTs));
        replay.Flush();
        long written = 1;
        for (int s = 0; s < 40; s++)
        {
            long now = Now(time);
            Assert.Equal(RejectReason.None, live.Write(ids[1], s, now));
            Assert.Equal(RejectReason.None, replay.Write(ids[2], s, now - 60_000));
            written += 2;
            live.Flush();
            replay.Flush();
            time.Advance(TimeSpan.FromSeconds(1));
        }

        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);
        Assert.All(m.Watermarks, w => Assert.True(w <= Now(time) - 60_000, $"watermark {w} ran ahead of the replay (clock {Now(time)})"));
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(written, m.EmittedPoints);
    }

    [Fact]
    public async Task Outlier_AsLiveSourcesVeryFirstPoint_AcceptedAndNothingLate()
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(time), [sink]);
        SeriesId[] ids = Register(pipeline, 4);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("live");
        long outlierTs = Now(time) + (9 * 60_000) + 59_999;
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1e6, outlierTs));
        writer.Flush();
        long written = 1 + Steps(writer, ids, time, steps: 30, behindMs: 0, stepMs: 700);
        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(written, m.EmittedPoints);
        WindowRow outlier = Assert.Single(sink.Rows, r => r.Max == 1e6);
        Assert.True(outlier.WindowStartMs <= outlierTs && outlierTs < outlier.WindowEndMs);
    }

    [Fact]
    public async Task Outlier_TwoOutliersCloseTogetherInReplay_CountAsJump_ReplayPointsLateAndCountedAsItsOwn()
    {
        // Documented: "Two outliers close together count as a jump" and progress follows, capped at the clock; for a
        // replay 60 s behind, its later points are then behind the watermark: late, and counted under its name.
        var time = Scenario.Clock(Scenario.T0);
        await using var pipeline = new MetricsPipeline(Options(time), [new CollectingSink()]);
        SeriesId[] ids = Register(pipeline, 4);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("replay");
        Steps(writer, ids, time, steps: 3, behindMs: 60_000);
        long now = Now(time);
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1e6, now + 540_000));
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1e6, now + 541_000));
        writer.Flush();
        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.All(m.Watermarks, w => Assert.Equal(now - Lateness, w));

        Steps(writer, ids, time, steps: 3, behindMs: 60_000);
        m = await SettledMetrics(pipeline);
        Assert.Equal(15, m.Late);
        Assert.Equal(15, Assert.Single(m.Sources, s => s.Source == "replay").Late);
        await pipeline.StopAsync().Within("stop");
        BlackBoxAccounting.AssertStoppedGracefully(pipeline.GetMetrics());
    }

    [Fact]
    public async Task Outlier_TwoLoneOutliersFarApartInReplay_FirstCountsOnceSecondArrives_ReplayLateAndCounted()
    {
        // Two lone outliers 7 min apart, each far ahead of the clock and of each other. The docs' rule read literally
        // ("the next newest counts") makes the first outlier the progress once the second arrives, capped at the clock:
        // 60 s past the replay, whose next points are late. Documented here as the engine behaves; the docs only say
        // "two outliers close together count as a jump" (see the report: ambiguous).
        var time = Scenario.Clock(Scenario.T0);
        await using var pipeline = new MetricsPipeline(Options(time), [new CollectingSink()]);
        SeriesId[] ids = Register(pipeline, 4);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("replay");
        Steps(writer, ids, time, steps: 3, behindMs: 60_000);
        long now = Now(time);
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1e6, now + 120_000));
        Steps(writer, ids, time, steps: 3, behindMs: 60_000);
        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1e6, now + 540_000));
        writer.Flush();
        long clockAtSecond = Now(time);
        m = await SettledMetrics(pipeline);
        Assert.All(m.Watermarks, w => Assert.Equal(clockAtSecond - Lateness, w));
        Steps(writer, ids, time, steps: 2, behindMs: 60_000);
        m = await SettledMetrics(pipeline);
        Assert.Equal(10, m.Late);
        Assert.Equal(10, Assert.Single(m.Sources, s => s.Source == "replay").Late);
        await pipeline.StopAsync().Within("stop");
        BlackBoxAccounting.AssertStoppedGracefully(pipeline.GetMetrics());
    }

    [Fact]
    public async Task Outlier_FourReplaySourcesEachWithOneOutlier_NoneLate_WatermarkFollowsSlowest()
    {
        var time = Scenario.Clock(Scenario.T0);
        await using var pipeline = new MetricsPipeline(Options(time, shards: 3), [new CollectingSink()]);
        SeriesId[] ids = Register(pipeline, 12);
        pipeline.Start();
        long[] behind = [10_000, 25_000, 40_000, 60_000];
        PointWriter[] writers = [.. behind.Select((b, i) => pipeline.CreateWriter("replay" + i))];
        // A tick registers the new writers before the first flush (see the new-writer test for why that matters).
        time.Advance(TimeSpan.FromSeconds(1));
        long written = 0;
        long slowestNewest = long.MinValue;
        for (int s = 0; s < 40; s++)
        {
            long now = Now(time);
            for (int w = 0; w < writers.Length; w++)
            {
                if (s == 5 + (w * 7))
                {
                    Assert.Equal(RejectReason.None, writers[w].Write(ids[w], 1e6, now + 300_000 + (w * 60_000)));
                    written++;
                }

                for (int i = 0; i < 3; i++)
                {
                    Assert.Equal(RejectReason.None, writers[w].Write(ids[(w * 3) + i], i, now - behind[w] + i));
                    written++;
                }

                writers[w].Flush();
            }

            slowestNewest = now - behind[^1] + 2;
            time.Advance(TimeSpan.FromSeconds(1));
        }

        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);
        Assert.All(m.Watermarks, w => Assert.Equal(slowestNewest - Lateness, w));
        foreach (PointWriter w in writers)
        {
            w.Dispose();
        }

        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(written, m.EmittedPoints);
    }

    [Fact]
    public async Task Outlier_SharedWriterFromFourThreadsOneOutlier_NoInOrderPointLate()
    {
        var time = Scenario.Clock(Scenario.T0);
        await using var pipeline = new MetricsPipeline(Options(time), [new CollectingSink()]);
        SeriesId[] ids = Register(pipeline, 16);
        pipeline.Start();
        using SharedPointWriter shared = pipeline.CreateSharedWriter("app", BackpressureMode.Wait);
        const int Threads = 4;
        const int Rounds = 40;
        using var barrier = new Barrier(Threads + 1);
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long written = 0;
        long nowShared = Now(time);
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            for (int round = 0; round < Rounds; round++)
            {
                if (!barrier.SignalAndWait(Signals.Bound))
                {
                    failures.Enqueue("barrier timed out");
                    return;
                }

                long now = Volatile.Read(ref nowShared);
                if (t == 2 && round == 10)
                {
                    Record(shared.Write(ids[t], 1e6, now + 480_000));
                }

                for (int i = 0; i < 5; i++)
                {
                    Record(shared.Write(ids[(t * 4) + (i % 4)], i, now - 30_000 + i));
                }

                if (!barrier.SignalAndWait(Signals.Bound))
                {
                    failures.Enqueue("barrier timed out");
                    return;
                }
            }
        })
        { IsBackground = true }).ToList();

        void Record(RejectReason r)
        {
            if (r != RejectReason.None)
            {
                failures.Enqueue("refused: " + r);
            }

            Interlocked.Increment(ref written);
        }

        threads.ForEach(t => t.Start());
        for (int round = 0; round < Rounds; round++)
        {
            Volatile.Write(ref nowShared, Now(time));
            Assert.True(barrier.SignalAndWait(Signals.Bound), "threads did not reach the round");
            Assert.True(barrier.SignalAndWait(Signals.Bound), "threads did not finish the round");
            // The engine's timer flushes what the (now waiting) threads left buffered.
            time.Advance(TimeSpan.FromMilliseconds(500));
        }

        threads.ForEach(t => Assert.True(t.Join(Signals.Bound), "a producer thread did not end"));
        Assert.Empty(failures);
        shared.Flush();
        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(Interlocked.Read(ref written), m.EmittedPoints);
    }

    [Fact]
    public async Task Outlier_SourceCatchingUpToThePresent_NotAnOutlier_ProgressFollowsAtOnce()
    {
        var time = Scenario.Clock(Scenario.T0);
        await using var pipeline = new MetricsPipeline(Options(time), [new CollectingSink()]);
        SeriesId[] ids = Register(pipeline, 4);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("catching-up");
        Steps(writer, ids, time, steps: 3, behindMs: 60_000);
        long jump = Now(time) - 1000;
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 1, jump));
        writer.Flush();
        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.All(m.Watermarks, w => Assert.Equal(jump - Lateness, w));
        await pipeline.StopAsync().Within("stop");
        BlackBoxAccounting.AssertStoppedGracefully(pipeline.GetMetrics());
    }

    // ---------------------------------------------------------------- stalls

    [Theory]
    [InlineData(9_000)]
    [InlineData(9_999)]
    public async Task Stall_ClockJumpsJustBelowIdleTimeout_TicksBackToBack_NoInOrderPointLate(long jumpMs)
    {
        // Each jump of the fake clock fires the ticks that were due back to back, all reading the clock after the jump;
        // two in-order replay sources (one leaving points buffered across the jump) must not become idle or late.
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 8);
        pipeline.Start();
        using PointWriter a = pipeline.CreateWriter("a");
        using PointWriter b = pipeline.CreateWriter("b");
        // A tick registers the new writers before the first flush (see the new-writer test for why that matters).
        time.Advance(TimeSpan.FromSeconds(1));
        long written = 0;
        for (int s = 0; s < 12; s++)
        {
            long now = Now(time);
            for (int i = 0; i < 4; i++)
            {
                Assert.Equal(RejectReason.None, a.Write(ids[i], i, now - 30_000 + i));
                Assert.Equal(RejectReason.None, b.Write(ids[4 + i], i, now - 45_000 + i));
                written += 2;
            }

            a.Flush();
            if (s % 2 == 0)
            {
                b.Flush();
            }

            // b's points of odd steps are still in its buffer when the clock jumps: the engine's timer flushes them.
            time.Advance(TimeSpan.FromMilliseconds(jumpMs));
            PipelineMetrics mid = await SettledMetrics(pipeline);
            Assert.True(mid.Late == 0, $"step {s}: late {string.Join(", ", mid.Sources.Select(x => $"{x.Source}={x.Late}"))}");
        }

        a.Flush();
        b.Flush();
        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.Equal(0, m.Late);
        Assert.True(m.EmittedPoints > 0, "no window closed: the watermark never moved");
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(written, m.EmittedPoints);
    }

    [Fact]
    public async Task Stall_ShardBlockedBySinkWhileClockRuns_TicksQueueBehindBatches_NoInOrderPointLate()
    {
        // The shard waits on a full sink queue (Block policy) for 30 s of the clock while the producer goes on 20 s
        // behind the clock and ticks arrive; its queue has room, so nothing waits but the shard. The sink's attempt
        // timeout and retry backoff run on the pipeline's (fake) clock: no timeout here, or a retry could wait on a
        // backoff that the fake clock never reaches.
        var time = Scenario.Clock(Scenario.T0);
        // One gate for every call (no per-call gates: nothing can be created after the release and miss it).
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sink = new ProbeSink("gated", _ => new ValueTask(release.Task));
        var options = Options(time, shards: 1, windowMs: 1000, latenessMs: 1000, idleMs: 5000);
        options.ShardQueueBatches = 256;
        var pipeline = new MetricsPipeline(options, [new SinkRegistration(sink, new SinkOptions { QueueCapacity = 1, AttemptTimeout = Timeout.InfiniteTimeSpan })]);
        try
        {
            SeriesId[] ids = Register(pipeline, 4);
            pipeline.Start();
            using PointWriter writer = pipeline.CreateWriter("replay", BackpressureMode.Wait);
            long written = Steps(writer, ids, time, steps: 5, behindMs: 20_000);
            try
            {
                await sink.NextCallAsync().Within("the first window reaches the sink");
                written += Steps(writer, ids, time, steps: 30, behindMs: 20_000);
                PipelineMetrics blocked = pipeline.GetMetrics();
                Assert.True(blocked.ShardQueueDepth[0] > 0, $"the shard was not blocked: {sink.Calls} sink calls, {blocked.WindowsEmitted} windows emitted, late {blocked.Late}");
            }
            finally
            {
                // Also on failure: a stop waits for the sink, and the shutdown timeout runs on the fake clock.
                release.TrySetResult();
            }

            written += Steps(writer, ids, time, steps: 5, behindMs: 20_000);
            PipelineMetrics m = await SettledMetrics(pipeline);
            Assert.Equal(0, m.Late);
            Assert.Equal(0, m.Dropped);
            await pipeline.StopAsync().Within("stop");
            m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            Assert.Equal(written, m.EmittedPoints);
        }
        finally
        {
            release.TrySetResult();
            await StopBounded(pipeline);
        }
    }

    [Fact]
    public async Task Stall_ProducerWaitsOnFullShardLongerThanIdleTimeout_NoInOrderPointLate()
    {
        // memory.md: under a slow sink with Block, "the shard queues fill, and the producers wait". Here the producer
        // (Wait mode, in order, 20 s behind the clock) is blocked on the full shard for 8 s of the clock, longer than
        // SourceIdleTimeout (5 s), while the ticks find the channel full. It never stopped producing: it was held back.
        var time = Scenario.Clock(Scenario.T0);
        // One gate for every call (no per-call gates: nothing can be created after the release and miss it).
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sink = new ProbeSink("gated", _ => new ValueTask(release.Task));
        var options = Options(time, shards: 1, windowMs: 1000, latenessMs: 1000, idleMs: 5000);
        options.BatchSize = 8;
        options.ShardQueueBatches = 2;
        await using var pipeline = new MetricsPipeline(options, [new SinkRegistration(sink, new SinkOptions { QueueCapacity = 1, AttemptTimeout = Timeout.InfiniteTimeSpan })]);
        SeriesId[] ids = Register(pipeline, 4);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("replay", BackpressureMode.Wait);

        long start = Now(time) - 20_000;
        long written = 0;
        // Not disposed: the producer thread may still touch them after a failed assertion (the finally below ends it).
        var permits = new SemaphoreSlim(0);
        var roundsDone = new SemaphoreSlim(0);
        bool stop = false;
        Exception? failure = null;
        var producer = new Thread(() =>
        {
            try
            {
                long k = 0;
                while (permits.Wait(Signals.Bound) && !Volatile.Read(ref stop))
                {
                    // One second of event time, 8 points: exactly one full batch, handed over by the last write.
                    for (int i = 0; i < 8; i++, k++)
                    {
                        Assert.Equal(RejectReason.None, writer.Write(ids[i % 4], i, start + (k * 125)));
                        Interlocked.Increment(ref written);
                    }

                    roundsDone.Release();
                }
            }
            catch (Exception e)
            {
                failure = e;
                roundsDone.Release();
            }
        })
        { IsBackground = true };
        producer.Start();

        async Task Round()
        {
            permits.Release();
            Assert.True(await roundsDone.WaitAsync(Signals.Bound), "the producer did not finish a round");
            Assert.Null(failure);
            time.Advance(TimeSpan.FromSeconds(1));
        }

        try
        {
            for (int r = 0; r < 3; r++)
            {
                await Round();
            }

            // Windows close, the sink holds the first, its queue the second, the shard waits on the third; then the shard's
            // channel fills and the producer waits inside a write. Every part of that is checked before the stall, in this
            // order, as each part stays once it holds. A CI run (twice) stalled the clock with a shard that was only slow
            // (full channel, sink call made) and a producer that then finished its round: silent for 8 s of the clock, it
            // was rightly idle, and its next 24 points late.
            // 1. The shard is blocked for good: it closed the third window (round k touches window k only, and with 1 s of
            //    lateness window k closes with round k + 2's batch), the sink holds the first and its queue the second,
            //    and the third is not handed over.
            // 2. Its channel is full: nothing, batch, progress mark or tick, enters until the release.
            // 3. The producer is inside a managed wait while it has made 7 of its round's 8 writes: the 8th, which hands
            //    the round's batch over (batch size 8) and so cannot return before the release. A thread between that
            //    write's return and its count is not waiting; one waiting for its next permit has made 0 of 8.
            long thirdEnd = start + 3000;
            permits.Release();
            int rounds = 0;
            string state = "";
            await Signals.Until(
                () =>
                {
                    if (roundsDone.Wait(0))
                    {
                        rounds++;
                        time.Advance(TimeSpan.FromSeconds(1));
                        permits.Release();
                    }

                    PipelineMetrics now = pipeline.GetMetrics();
                    bool shardBlocked = sink.Calls == 1 && now.Sinks[0].QueueDepth == 1 && now.WindowsEmitted == 2 && now.Watermarks[0] >= thirdEnd;
                    bool channelFull = shardBlocked && now.ShardQueueDepth[0] == 2;
                    bool waiting = channelFull && (producer.ThreadState & ThreadState.WaitSleepJoin) != 0;
                    bool inEighthWrite = waiting && Interlocked.Read(ref written) % 8 == 7;
                    state = $"rounds {rounds}, sink calls {sink.Calls}, sink queue {now.Sinks[0].QueueDepth}, windows {now.WindowsEmitted}, "
                        + $"watermark {now.Watermarks[0] - start} ms after start, depth {now.ShardQueueDepth[0]}, written {Interlocked.Read(ref written)}";
                    return inEighthWrite;
                },
                () => "the producer blocked on a full, blocked shard (last seen: " + state + ")");
            Assert.True(rounds < 20, "the producer never blocked: " + state);

            // The stall: 8 s of the clock while the producer is held back.
            for (int s = 0; s < 8; s++)
            {
                time.Advance(TimeSpan.FromSeconds(1));
            }

            release.TrySetResult();
            Assert.True(await roundsDone.WaitAsync(Signals.Bound), "the producer was not released");
            Assert.Null(failure);

            // The shard takes the batch that waited out the stall, then a tick, before the producer's next batch. The
            // source handed that batch over just now, after the stall, so it is not idle. It was, with every later point
            // late (32 in one CI run), when the batch kept the stamp of the moment its wait began and the tick reached
            // the shard between the engine's flush of this writer (which clears its buffered mark) and the progress
            // that flush sends: a race of the two timers this test cannot order from outside.
            await SettledMetrics(pipeline);
            time.Advance(TimeSpan.FromSeconds(1));
            await SettledMetrics(pipeline);
            for (int r = 0; r < 3; r++)
            {
                await Round();
            }

            Volatile.Write(ref stop, true);
            permits.Release();
            Assert.True(producer.Join(Signals.Bound), "the producer did not end");
            writer.Flush();
            PipelineMetrics m = await SettledMetrics(pipeline);
            Assert.Equal(0, m.Dropped);
            Assert.Equal(0, m.Late);
            await pipeline.StopAsync().Within("stop");
            m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            Assert.Equal(Interlocked.Read(ref written), m.EmittedPoints);
        }
        finally
        {
            release.TrySetResult();
            Volatile.Write(ref stop, true);
            permits.Release(100);
            producer.Join(Signals.Bound);
        }
    }

    // ---------------------------------------------------------------- idleness

    [Fact]
    public async Task Idle_SilentSource_HoldsUntilIdleTimeoutOnTheClock_ThenReleases()
    {
        var time = Scenario.Clock(Scenario.T0);
        await using var pipeline = new MetricsPipeline(Options(time, shards: 2), [new CollectingSink()]);
        SeriesId[] ids = Register(pipeline, 4);
        pipeline.Start();
        using PointWriter live = pipeline.CreateWriter("live");
        using PointWriter quiet = pipeline.CreateWriter("quiet");
        long quietTs = Now(time) - 29_000;
        Assert.Equal(RejectReason.None, quiet.Write(ids[0], 1, quietTs));
        quiet.Flush();
        long quietHandedAt = Now(time);
        for (int s = 0; s < 14; s++)
        {
            Assert.Equal(RejectReason.None, live.Write(ids[1], s, Now(time)));
            live.Flush();
            time.Advance(TimeSpan.FromSeconds(1));
            PipelineMetrics m = await SettledMetrics(pipeline);
            long silentFor = Now(time) - quietHandedAt;
            if (silentFor < 10_000)
            {
                Assert.All(m.Watermarks, w => Assert.True(w <= quietTs - Lateness, $"after {silentFor} ms the watermark {w} passed the quiet source"));
            }
            else if (silentFor >= 11_000)
            {
                Assert.All(m.Watermarks, w => Assert.True(w > quietTs, $"after {silentFor} ms the quiet source still holds {w}"));
            }
        }

        // It comes back: a point ahead of the watermark is on time and it holds again; one behind it is late, as its own.
        long back = Now(time) - 1000;
        Assert.Equal(RejectReason.None, quiet.Write(ids[2], 2, back));
        Assert.Equal(RejectReason.None, quiet.Write(ids[3], 3, quietTs));
        quiet.Flush();
        PipelineMetrics after = await SettledMetrics(pipeline);
        Assert.Equal(1, after.Late);
        Assert.Equal(1, Assert.Single(after.Sources, s => s.Source == "quiet").Late);
        live.Dispose();
        quiet.Dispose();
        await pipeline.StopAsync().Within("stop");
        BlackBoxAccounting.AssertStoppedGracefully(pipeline.GetMetrics());
    }

    [Fact]
    public async Task Idle_NewWriterCreatedBeforeAnotherSourceFlushes_HoldsTheWatermarkFromCreation()
    {
        // "A new writer holds the watermark from the moment it is created (not from its first point)". The live source
        // flushes between the replay writer's creation and its first point, with no tick in between; the replay's first
        // point was on time when its writer was created (ahead of the watermark then) and must stay so.
        var time = Scenario.Clock(Scenario.T0 - 5_000);
        await using var pipeline = new MetricsPipeline(Options(time), [new CollectingSink()]);
        SeriesId[] ids = Register(pipeline, 4);
        pipeline.Start();
        using PointWriter live = pipeline.CreateWriter("live");
        Steps(live, ids, time, steps: 10, behindMs: 0);
        Assert.Equal(Scenario.T0 + 5_000, Now(time));
        PipelineMetrics before = await SettledMetrics(pipeline);
        Assert.All(before.Watermarks, w => Assert.True(w < Scenario.T0 - 500, $"watermark {w} already past the replay's first point"));

        using PointWriter replay = pipeline.CreateWriter("replay");
        Assert.Equal(RejectReason.None, live.Write(ids[1], 1, Now(time)));
        live.Flush();
        Assert.Equal(RejectReason.None, replay.Write(ids[2], 2, Scenario.T0 - 500));
        replay.Flush();
        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.Equal(0, Assert.Single(m.Sources, s => s.Source == "replay").Late);
        Assert.Equal(0, m.Late);
        live.Dispose();
        replay.Dispose();
        await pipeline.StopAsync().Within("stop");
        BlackBoxAccounting.AssertStoppedGracefully(pipeline.GetMetrics());
    }

    [Fact]
    public async Task Idle_NoSourceActive_TickMovesWatermarkToClockMinusLateness()
    {
        var time = Scenario.Clock(Scenario.T0 + 3_333);
        await using var pipeline = new MetricsPipeline(Options(time, shards: 3), [new CollectingSink()]);
        pipeline.Start();
        time.Advance(TimeSpan.FromSeconds(1));
        PipelineMetrics m = await SettledMetrics(pipeline);
        Assert.All(m.Watermarks, w => Assert.Equal(Now(time) - Lateness, w));
        await pipeline.StopAsync().Within("stop");
    }
}
