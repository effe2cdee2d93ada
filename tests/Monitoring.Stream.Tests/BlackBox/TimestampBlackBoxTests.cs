using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Black-box probes of timestamps, from docs/event-time.md ("Late and refused points": beyond MaxFutureSkew or the
/// Arrow timestamp[ns] range is TimestampOutOfRange, beyond MaxPointAge is TimestampTooOld) and README.md / docs/sdk.md
/// ("Writes without a timestamp are stamped with the engine's clock"; "a test's fake clock is read as is"): the
/// extremes of <see cref="long"/>, settings that make the skew and age bounds overflow, and clocks far from now.
/// </summary>
public class TimestampBlackBoxTests
{
    private const long WindowMs = 10_000;

    /// <summary>1677-09-21 00:12:43.145 UTC and 2262-04-11 23:47:16.854 UTC, the Arrow timestamp[ns] range in ms.</summary>
    private const long ArrowMinMs = -9_223_372_036_854;
    private const long ArrowMaxMs = 9_223_372_036_854;

    private static long FloorStart(long ts) => (long)(Int128.DivRem(ts, WindowMs) is var (q, r) && r < 0 ? (q - 1) * WindowMs : q * WindowMs);

    private static MetricsPipelineOptions Options(FakeTimeProvider time) =>
        EventTimeBlackBoxTests.Options(time, shards: 2, windowMs: WindowMs, latenessMs: 5_000);

    [Theory]
    [InlineData(long.MinValue)]
    [InlineData(long.MinValue + 1)]
    [InlineData(long.MaxValue)]
    [InlineData(long.MaxValue - 1)]
    [InlineData(-62_135_596_800_000)] // 0001-01-01
    [InlineData(253_402_300_799_999)] // 9999-12-31 23:59:59.999
    [InlineData(ArrowMinMs - 1)]
    [InlineData(ArrowMaxMs + 1)]
    public async Task Write_ExtremeTimestampOnDefaultBounds_RefusedForItsTimestampByEveryOverload(long ts)
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(time), [sink]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 2, "extreme_seconds");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("extreme");
        SharedPointWriter shared = pipeline.CreateSharedWriter("extreme-shared");
        RejectReason[] reasons =
        [
            writer.Write(ids[0], 1.0, ts),
            writer.Write("extreme_seconds", [new Label("k", "k1")], 1.0, ts),
            shared.Write(ids[1], 1.0, ts),
            shared.Write("extreme_seconds", [new Label("k", "k0")], 1.0, ts),
        ];
        RejectReason[] allowed = ts > Scenario.T0
            ? [RejectReason.TimestampOutOfRange]
            : [RejectReason.TimestampOutOfRange, RejectReason.TimestampTooOld];
        Assert.All(reasons, r => Assert.Contains(r, allowed));

        // The writers still work for a point of now.
        Assert.Equal(RejectReason.None, writer.Write(ids[0], 2.0, Scenario.T0));
        writer.Flush();
        shared.Dispose();
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(5, m.Offered);
        Assert.Equal(4, m.Rejected);
        Assert.Equal(1, m.EmittedPoints);
        WindowRow row = Assert.Single(sink.Rows);
        Assert.Equal(Scenario.T0, row.WindowStartMs);
        Assert.Equal(2.0, row.Sum);
    }

    private const long Clock1680 = -9_151_488_000_000;
    private const long Clock2260 = 9_151_488_000_000;

    /// <summary>What the writer must say: accept, TimestampOutOfRange, or either timestamp refusal.</summary>
    public enum Expect
    {
        Accepted,
        OutOfRange,
        AnyTimestampRefusal,
    }

    public static TheoryData<long, long, Expect> WidestBoundsCases() => new()
    {
        // clock, timestamp, expected; MaxFutureSkew and MaxPointAge at their largest (3,650 days)
        { Clock1680, long.MinValue, Expect.AnyTimestampRefusal },
        { Clock1680, long.MinValue + 1, Expect.AnyTimestampRefusal },
        { Clock1680, -9_309_254_400_000, Expect.OutOfRange },       // 1675: within the age, outside Arrow's range
        { Clock1680, ArrowMinMs - 1, Expect.OutOfRange },
        { Clock1680, -9_223_372_030_001, Expect.OutOfRange },       // its window starts before the range
        { Clock1680, -9_223_372_030_000, Expect.Accepted },         // the first whole window inside it
        { Clock1680, -9_214_560_000_000, Expect.Accepted },         // 1678
        { Clock1680, long.MaxValue, Expect.OutOfRange },
        { Clock2260, long.MaxValue, Expect.OutOfRange },
        { Clock2260, long.MaxValue - 1, Expect.OutOfRange },
        { Clock2260, 9_309_340_800_000, Expect.OutOfRange },        // 2265: within the skew, outside Arrow's range
        { Clock2260, ArrowMaxMs + 1, Expect.OutOfRange },
        { Clock2260, 9_223_372_030_000, Expect.OutOfRange },        // its window ends after the range
        { Clock2260, 9_223_372_029_999, Expect.Accepted },          // the last whole window inside it
        { Clock2260, 9_214_646_400_000, Expect.Accepted },          // 2262-01-01
        { Clock2260, long.MinValue, Expect.AnyTimestampRefusal },
    };

    [Theory]
    [MemberData(nameof(WidestBoundsCases))]
    public async Task Write_WidestSkewAndAgeNearTheArrowBounds_ArrowRangeRefusesAndNothingOverflows(long clockMs, long ts, Expect expect)
    {
        var time = Scenario.Clock(clockMs);
        MetricsPipelineOptions options = Options(time);
        options.MaxFutureSkew = TimeSpan.FromDays(3650);
        options.MaxPointAge = TimeSpan.FromDays(3650);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(options, [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("centuries_seconds", []);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("centuries");
        RejectReason reason = writer.Write(id, 3.0, ts);
        bool ok = expect switch
        {
            Expect.Accepted => reason == RejectReason.None,
            Expect.OutOfRange => reason == RejectReason.TimestampOutOfRange,
            _ => reason is RejectReason.TimestampOutOfRange or RejectReason.TimestampTooOld,
        };
        Assert.True(ok, $"clock {clockMs}: a point at {ts} was {reason}, expected {expect}");
        writer.Flush();
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(expect == Expect.Accepted ? 1 : 0, m.Accepted);
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late);

        // Whatever was emitted is the point's own window, never a wrapped one.
        foreach (WindowRow row in sink.Rows)
        {
            Assert.Equal(FloorStart(ts), row.WindowStartMs);
            Assert.Equal(FloorStart(ts) + WindowMs, row.WindowEndMs);
        }
    }

    [Theory]
    [InlineData(-8_520_336_000_001)] // 1699-12-31 23:59:59.999
    [InlineData(9_223_372_032_000)]  // 2262-04-11 23:47:12: its window ends past the Arrow range, refused
    [InlineData(9_223_372_020_000)]  // 2262-04-11 23:47:00: the last window that Arrow holds; the next one is refused
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(1_800_000_009_999)]
    public async Task Write_WithoutTimestampOnAFakeClockFarFromNow_StampedWithTheClockAsIs(long clockMs)
    {
        // Set the clock one millisecond before a window's end: the stamp must be this instant, not a cached one.
        long end = FloorStart(clockMs) + WindowMs;
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(end - 1));
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(time), [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("stamped_seconds", [new Label("k", "a")]);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("stamped");
        SharedPointWriter shared = pipeline.CreateSharedWriter("stamped-shared");

        bool firstWindowRepresentable = (Int128)end * 1_000_000 <= long.MaxValue;
        bool secondWindowRepresentable = (Int128)(end + WindowMs) * 1_000_000 <= long.MaxValue;
        RejectReason expectedFirst = firstWindowRepresentable ? RejectReason.None : RejectReason.TimestampOutOfRange;
        Assert.Equal(expectedFirst, writer.Write(id, 1.0));
        Assert.Equal(expectedFirst, writer.Write("stamped_seconds", [new Label("k", "a")], 1.0));
        Assert.Equal(expectedFirst, shared.Write(id, 1.0));
        time.Advance(TimeSpan.FromMilliseconds(1)); // now exactly the next window's start
        RejectReason expectedNext = secondWindowRepresentable ? RejectReason.None : RejectReason.TimestampOutOfRange;
        Assert.Equal(expectedNext, writer.Write(id, 10.0));
        Assert.Equal(expectedNext, writer.Write("stamped_seconds", [new Label("k", "a")], 10.0));
        Assert.Equal(expectedNext, shared.Write(id, 10.0));
        writer.Flush();
        shared.Flush();
        shared.Dispose();
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Late);
        var byWindow = sink.Rows.GroupBy(r => r.WindowStartMs).ToDictionary(g => g.Key, g => (Count: g.Sum(r => r.Count), Sum: g.Sum(r => r.Sum)));
        if (firstWindowRepresentable)
        {
            Assert.Equal((3L, 3.0), byWindow[end - WindowMs]);
        }

        if (secondWindowRepresentable)
        {
            Assert.Equal((3L, 30.0), byWindow[end]);
        }

        Assert.Equal((firstWindowRepresentable ? 1 : 0) + (secondWindowRepresentable ? 1 : 0), byWindow.Count);
        Assert.Equal((firstWindowRepresentable ? 0 : 3) + (secondWindowRepresentable ? 0 : 3), m.RejectedByReason.GetValueOrDefault(RejectReason.TimestampOutOfRange));
    }
}
