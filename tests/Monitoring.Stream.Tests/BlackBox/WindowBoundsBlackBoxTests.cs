using Apache.Arrow;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Timestamp bounds and window arithmetic through the public API: the writer's bounds at and around
/// MaxPointAge/MaxFutureSkew, on clocks anywhere a <see cref="TimeProvider"/> can be, and a seeded property over
/// random interleavings of sources whose disorder stays within the allowed lateness.
/// </summary>
public class WindowBoundsBlackBoxTests
{
    /// <summary>A sink that keeps each batch's window and its raw Arrow window columns (nanoseconds, unconverted).</summary>
    private sealed class WindowColumnsSink : IWindowSink
    {
        private readonly List<(long StartMs, long EndMs, long StartNs, long EndNs, long Count)> _rows = [];

        public string Name => "columns";

        public IReadOnlyList<(long StartMs, long EndMs, long StartNs, long EndNs, long Count)> Rows
        {
            get
            {
                lock (_rows)
                {
                    return [.. _rows];
                }
            }
        }

        public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            RecordBatch rb = batch.RecordBatch;
            var start = (TimestampArray)rb.Column("window_start");
            var end = (TimestampArray)rb.Column("window_end");
            var count = (Int64Array)rb.Column("count");
            lock (_rows)
            {
                for (int r = 0; r < rb.Length; r++)
                {
                    _rows.Add((batch.WindowStartUnixMs, batch.WindowEndUnixMs, start.GetValue(r)!.Value, end.GetValue(r)!.Value, count.GetValue(r)!.Value));
                }
            }

            return ValueTask.CompletedTask;
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private static long FloorStart(long ts, long windowMs)
    {
        (Int128 q, Int128 r) = Int128.DivRem(ts, windowMs);
        return (long)(r < 0 ? (q - 1) * windowMs : q * windowMs);
    }

    /// <summary>Whether the window holding <paramref name="ts"/> fits in Arrow's timestamp[ns] range, as docs/event-time.md states.</summary>
    private static bool Representable(long ts, long windowMs)
    {
        Int128 start = FloorStart(ts, windowMs);
        return start * 1_000_000 >= long.MinValue && (start + windowMs) * 1_000_000 <= long.MaxValue;
    }

    [Theory]
    [InlineData(-62_135_589_600_000)] // year 1 + 2 h
    [InlineData(253_402_293_599_999)] // year 9999 - 2 h
    public async Task Write_ClockOutsideTheArrowTimestampRange_EveryPointRefusedOutOfRangeAndNoWindowWraps(long clockMs)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(clockMs));
        var options = EventTimeBlackBoxTests.Options(time, shards: 2, windowMs: 7_000, latenessMs: 3_000);
        var sink = new WindowColumnsSink();
        await using var pipeline = new MetricsPipeline(options, [sink]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 3);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("far");
        long[] stamps = [clockMs - 1, clockMs, clockMs + 1];
        for (int i = 0; i < stamps.Length; i++)
        {
            Assert.Equal(RejectReason.TimestampOutOfRange, writer.Write(ids[i], 1, stamps[i]));
        }

        writer.Flush();
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(stamps.Length, m.Rejected);
        Assert.Equal(0, m.EmittedPoints);
        Assert.Empty(sink.Rows);
    }

    [Theory]
    [InlineData(1_800_000_000_000)]          // 2027
    [InlineData(0)]                          // the epoch: bounds straddle zero
    [InlineData(-1)]
    [InlineData(-1_576_800_000_000)]         // 1920
    [InlineData(-9_223_372_036_854 + 1_800_000)] // 1677-09-21 + 30 min: the oldest allowed hour is partly beyond the Arrow range
    [InlineData(9_223_372_036_854 - 300_000)]    // 2262-04-11 - 5 min: the allowed future skew is partly beyond it
    public async Task Write_AtAndAroundTheBoundsOnAnyClock_BoundsExact_WindowsAlignedAndContainTheirPoints(long clockMs)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(clockMs));
        long windowMs = 7_000;
        var options = EventTimeBlackBoxTests.Options(time, shards: 2, windowMs: windowMs, latenessMs: 3_000);
        options.MaxPointAge = TimeSpan.FromHours(1);
        options.MaxFutureSkew = TimeSpan.FromMinutes(10);
        var sink = new WindowColumnsSink();
        await using var pipeline = new MetricsPipeline(options, [sink]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 6);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("bounds");
        long oldest = clockMs - 3_600_000;
        long newest = clockMs + 600_000;
        long[] candidates = [oldest, oldest + 1, clockMs - 1, clockMs, newest - 1, newest];
        long[] accepted = candidates.Where(ts => Representable(ts, windowMs)).ToArray();
        (long Ts, RejectReason Reason)[] refused =
        [
            .. candidates.Where(ts => !Representable(ts, windowMs)).Select(ts => (ts, RejectReason.TimestampOutOfRange)),
            (long.MinValue, RejectReason.TimestampTooOld),
            (long.MinValue + 1, RejectReason.TimestampTooOld),
            (oldest - 1, RejectReason.TimestampTooOld),
            (newest + 1, RejectReason.TimestampOutOfRange),
            (long.MaxValue - 1, RejectReason.TimestampOutOfRange),
            (long.MaxValue, RejectReason.TimestampOutOfRange),
        ];

        foreach ((long ts, RejectReason reason) in refused)
        {
            Assert.Equal(reason, writer.Write(ids[0], 1, ts));
        }

        for (int i = 0; i < accepted.Length; i++)
        {
            Assert.Equal(RejectReason.None, writer.Write(ids[i], i, accepted[i]));
        }

        writer.Flush();
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertIdentities(m);
        Assert.Equal(refused.Length, m.Rejected);
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Faults);
        Assert.Equal(0, m.Late);
        Assert.Equal(accepted.Length, m.EmittedPoints);

        var rows = sink.Rows;
        Assert.Equal(accepted.Length, rows.Sum(r => r.Count));
        foreach (long ts in accepted)
        {
            long start = FloorStart(ts, windowMs);
            Assert.Contains(rows, r => r.StartMs == start && r.EndMs == start + windowMs);
        }

        foreach (var r in rows)
        {
            Assert.Equal(0, FloorStart(r.StartMs, windowMs) - r.StartMs);
            Assert.Equal(windowMs, r.EndMs - r.StartMs);
            // The Arrow columns are timestamp[ns]: the same instant, or the batch says something else than its columns.
            Assert.Equal((Int128)r.StartMs * 1_000_000, (Int128)r.StartNs);
            Assert.Equal((Int128)r.EndMs * 1_000_000, (Int128)r.EndNs);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(50)]
    [InlineData(100)]
    [InlineData(150)]
    public async Task Write_AtTheBoundsAfterTheClockMovedLessThanAFlushInterval_BoundsFollowTheClock(long advanceMs)
    {
        // The bounds are "ahead of the clock" and "behind the clock": the clock of the moment of the write, also when
        // the writer last looked at the clock a moment ago (a flush, then the clock moves less than the flush interval).
        var time = Scenario.Clock(Scenario.T0);
        await using var pipeline = new MetricsPipeline(EventTimeBlackBoxTests.Options(time, shards: 1), [new CollectingSink()]);
        SeriesId id = pipeline.Registry.GetOrAdd("bb_bounds_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("bounds");
        Assert.Equal(RejectReason.None, writer.Write(id, 1, Scenario.T0));
        writer.Flush();
        time.Advance(TimeSpan.FromMilliseconds(advanceMs));
        long now = EventTimeBlackBoxTests.Now(time);
        Assert.Equal(RejectReason.None, writer.Write(id, 2, now + 600_000));
        Assert.Equal(RejectReason.TimestampTooOld, writer.Write(id, 3, now - 3_600_001));
        writer.Flush();
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(2, m.EmittedPoints);
        Assert.Equal(1, m.Rejected);
    }

    [Fact]
    public async Task Write_LargestWindowAndBoundsNearTheEpoch_WindowsContainPoints()
    {
        // The largest window (366 days) and the largest bounds (3650 days) around a clock near the epoch: windows
        // start before 1970 for some points and are still floor-aligned.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(1_000));
        long windowMs = 366L * 86_400_000;
        var options = EventTimeBlackBoxTests.Options(time, shards: 1, windowMs: windowMs, latenessMs: 0);
        options.MaxPointAge = TimeSpan.FromDays(3650);
        options.MaxFutureSkew = TimeSpan.FromDays(3650);
        var sink = new WindowColumnsSink();
        await using var pipeline = new MetricsPipeline(options, [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("bb_bounds_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("bounds");
        long span = 3650L * 86_400_000;
        long[] accepted = [1_000 - span, -1, 0, 1_000 + span];
        foreach (long ts in accepted)
        {
            Assert.Equal(RejectReason.None, writer.Write(id, 1, ts));
        }

        Assert.Equal(RejectReason.TimestampTooOld, writer.Write(id, 1, 1_000 - span - 1));
        Assert.Equal(RejectReason.TimestampOutOfRange, writer.Write(id, 1, 1_000 + span + 1));
        writer.Flush();
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(accepted.Length, m.EmittedPoints);
        foreach (long ts in accepted)
        {
            long start = FloorStart(ts, windowMs);
            Assert.Contains(sink.Rows, r => r.StartMs == start && r.EndMs == start + windowMs);
        }
    }

    [Fact]
    public async Task Windows_SeededRandomInterleavingsOfSourcesWithDisorderWithinLateness_NoLateAndExactWindows()
    {
        var seeds = new Random(20261129);
        for (int run = 0; run < 14; run++)
        {
            await RunInterleaving(seeds.Next(), run);
        }
    }

    private static async Task RunInterleaving(int seed, int run)
    {
        var rng = new Random(seed);
        long[] windows = [1_000, 7_000, 10_000, 333];
        long[] latenesses = [0, 500, 3_000, 5_000];
        long[] clocks = [Scenario.T0 + 1_234, 20_000, -86_400_000, -7_000 * 3];
        long windowMs = windows[rng.Next(windows.Length)];
        long latenessMs = latenesses[rng.Next(latenesses.Length)];
        int shards = rng.Next(1, 4);
        int sources = rng.Next(1, 5);
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(clocks[run % clocks.Length] + rng.Next(0, 1000)));
        string what = $"seed {seed} (run {run}): window {windowMs} ms, lateness {latenessMs} ms, {shards} shards, {sources} sources, clock {EventTimeBlackBoxTests.Now(time)}";

        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(EventTimeBlackBoxTests.Options(time, shards, windowMs, latenessMs), [sink]);
        const int Series = 9;
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, Series, "bb_prop");
        pipeline.Start();
        var writers = Enumerable.Range(0, sources).Select(s => pipeline.CreateWriter("s" + s, BackpressureMode.Wait)).ToArray();
        // Each source runs at its own offset from the clock: behind it (a replay), at it, or a little ahead (a fast clock).
        long[] offset = [.. Enumerable.Range(0, sources).Select(_ => (long)rng.Next(-2_000, 30_000))];
        // A tick registers the new writers before the first flush (see the new-writer test in EventTimeBlackBoxTests).
        time.Advance(TimeSpan.FromSeconds(1));
        long[] lastTouched = [.. Enumerable.Repeat(EventTimeBlackBoxTests.Now(time), sources)];
        var expected = new Dictionary<(int Series, long Start), (long Count, double Sum, double Min, double Max)>();
        long written = 0;
        for (int step = 0; step < 300; step++)
        {
            long now = EventTimeBlackBoxTests.Now(time);
            int s = rng.Next(sources);
            int overdue = System.Array.FindIndex(lastTouched, t => now - t > 3_000);
            if (overdue >= 0)
            {
                s = overdue;
            }

            int n = rng.Next(1, 6);
            for (int i = 0; i < n; i++)
            {
                long ts = now - offset[s] - (latenessMs == 0 ? 0 : rng.NextInt64(0, latenessMs + 1));
                if (latenessMs == 0)
                {
                    // No disorder allowed: strictly in order per source (the newest is the clock minus the offset).
                    ts = now - offset[s];
                }

                int series = rng.Next(Series);
                double value = rng.Next(-1000, 1001);
                RejectReason r = writers[s].Write(ids[series], value, ts);
                Assert.True(r == RejectReason.None, $"{what}: refused {r}");
                written++;
                long start = FloorStart(ts, windowMs);
                expected[(series, start)] = expected.TryGetValue((series, start), out var e)
                    ? (e.Count + 1, e.Sum + value, Math.Min(e.Min, value), Math.Max(e.Max, value))
                    : (1, value, value, value);
            }

            lastTouched[s] = now;
            if (rng.Next(3) == 0)
            {
                writers[s].Flush();
            }

            time.Advance(TimeSpan.FromMilliseconds(rng.Next(0, 300)));
            if (step % 100 == 99)
            {
                await pipeline.DrainAsync().Within("drain");
                PipelineMetrics mid = pipeline.GetMetrics();
                BlackBoxAccounting.AssertIdentities(mid);
                Assert.True(mid.Late == 0, $"{what}: {mid.Late} late at step {step}");
            }
        }

        foreach (PointWriter w in writers)
        {
            w.Dispose();
        }

        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.True(m.Late == 0, $"{what}: {m.Late} late");
        Assert.True(m.Dropped == 0, $"{what}: {m.Dropped} dropped");
        Assert.True(written == m.EmittedPoints, $"{what}: {m.EmittedPoints} of {written} emitted");

        var actual = new Dictionary<(int Series, long Start), (long Count, double Sum, double Min, double Max)>();
        foreach (WindowRow row in sink.Rows)
        {
            Assert.True(row.WindowEndMs - row.WindowStartMs == windowMs && FloorStart(row.WindowStartMs, windowMs) == row.WindowStartMs, $"{what}: window [{row.WindowStartMs}, {row.WindowEndMs})");
            int series = int.Parse(row.Labels.GetValue("k")!.AsSpan(1), System.Globalization.CultureInfo.InvariantCulture);
            var key = (series, row.WindowStartMs);
            Assert.False(actual.ContainsKey(key), $"{what}: window {key} emitted twice");
            actual[key] = (row.Count, row.Sum, row.Min, row.Max);
        }

        Assert.True(expected.Count == actual.Count, $"{what}: {actual.Count} windows emitted, {expected.Count} expected");
        foreach (var (key, e) in expected)
        {
            Assert.True(actual.TryGetValue(key, out var a), $"{what}: window {key} missing");
            Assert.True(e == a, $"{what}: window {key} is {a}, expected {e}");
        }
    }
}
