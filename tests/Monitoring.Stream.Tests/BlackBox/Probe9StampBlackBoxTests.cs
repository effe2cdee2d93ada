using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;
using Xunit.Abstractions;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Black-box probes of the engine's stamp for points written without a timestamp, from docs/sdk.md ("Without a
/// timestamp the engine stamps its clock …"): on the system clock a stamp is never ahead of the wall clock (the coarse
/// fallback, a few ms at most), lags it by about a millisecond, follows it after the writers go idle and come back,
/// a fake clock is read as is, and a write never fails because of the clock. Windows of 1 ms make each point's stamp
/// visible as its window's start; each point's value is the wall-clock millisecond read just before its write, and the
/// test keeps, per such millisecond, the latest wall clock read just after a write, so "ahead" is measured against an
/// upper bound of the wall clock at the stamp and "lag" against a lower bound.
/// </summary>
// Alone, after the parallel classes: the lag and ahead figures it asserts are the engine's, not those of a machine
// whose two cores the rest of the test project is using.
[Collection(Probe9SerialGroup.Name)]
public class Probe9StampBlackBoxTests(ITestOutputHelper output)
{
    /// <summary>How far ahead of the wall clock a stamp may be: the coarse fallback's tick (4 ms documented) and some margin.</summary>
    private const long AheadToleranceMs = 10;

    /// <summary>Series per pipeline: a point goes to series (wall-clock ms before its write) mod this.</summary>
    private const int SeriesCount = 8;

    private const long LedgerSpanMs = 30_000;

    private static long NowMs() => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) / TimeSpan.TicksPerMillisecond;

    private static MetricsPipelineOptions Options(TimeProvider time, long windowMs = 1) => new()
    {
        ShardCount = 2,
        WindowSize = TimeSpan.FromMilliseconds(windowMs),
        AllowedLateness = TimeSpan.FromSeconds(10),
        SourceIdleTimeout = TimeSpan.FromSeconds(30),
        BatchSize = 1024,
        ShardQueueBatches = 256,
        Sketches = false,
        SeriesIdleTimeout = Timeout.InfiniteTimeSpan,
        TimeProvider = time,
        Instance = "probe9",
    };

    private static SeriesId[] Register(MetricsPipeline pipeline, string metric, int n = SeriesCount) =>
        [.. Enumerable.Range(0, n).Select(k => pipeline.Registry.GetOrAdd(metric, [new Label("k", "k" + k)]))];

    /// <summary>What one writing thread saw: points, refusals, and per wall-clock ms before a write the latest ms after it.</summary>
    private sealed class Ledger(long baseMs)
    {
        public readonly long BaseMs = baseMs;
        public readonly long[] MaxAfter = new long[LedgerSpanMs];
        public long Points;
        public long Refused;
        public RejectReason FirstRefusal;

        public void Merge(Ledger other)
        {
            Assert.Equal(BaseMs, other.BaseMs);
            for (int i = 0; i < MaxAfter.Length; i++)
            {
                MaxAfter[i] = Math.Max(MaxAfter[i], other.MaxAfter[i]);
            }

            Points += other.Points;
            Refused += other.Refused;
            if (FirstRefusal == RejectReason.None)
            {
                FirstRefusal = other.FirstRefusal;
            }
        }
    }

    /// <summary>Writes stamped points as fast as it can until the wall clock reaches <paramref name="untilMs"/>.</summary>
    private static void WriteUntil(Func<SeriesId, double, RejectReason> write, SeriesId[] ids, Ledger ledger, long untilMs)
    {
        while (true)
        {
            long before = NowMs();
            if (before >= untilMs)
            {
                return;
            }

            RejectReason reason = write(ids[(int)(before % ids.Length)], before);
            long after = NowMs();
            if (reason != RejectReason.None)
            {
                if (ledger.Refused++ == 0)
                {
                    ledger.FirstRefusal = reason;
                }
            }
            else
            {
                ledger.Points++;
            }

            long index = before - ledger.BaseMs;
            Assert.InRange(index, 0, LedgerSpanMs - 1);
            if (after > ledger.MaxAfter[index])
            {
                ledger.MaxAfter[index] = after;
            }
        }
    }

    /// <summary>The stamps read back from 1 ms windows against the ledger.</summary>
    private sealed record StampReport(
        long Points, long MaxAheadMs, long PointsAhead, long PointsAheadBeyondTolerance, SortedDictionary<long, long> LagHistogram,
        long MixedRowPoints, long MaxMixedLagMs, int DistinctStamps, long FirstStamp, long LastStamp, int DistinctWallMs)
    {
        public long LagPercentile(double p)
        {
            long total = LagHistogram.Values.Sum();
            long seen = 0;
            foreach ((long lag, long count) in LagHistogram)
            {
                seen += count;
                if (seen >= p * total)
                {
                    return lag;
                }
            }

            return long.MinValue;
        }

        public string Describe()
        {
            string histogram = string.Join(", ", LagHistogram.Select(kv => $"{kv.Key}ms:{kv.Value}"));
            return $"points {Points}, distinct stamps {DistinctStamps} (distinct wall-clock ms with a write {DistinctWallMs}) over {LastStamp - FirstStamp + 1} ms, ahead (stamp - wall after) max {MaxAheadMs} ms, "
                + $"points ahead {PointsAhead}, beyond {AheadToleranceMs} ms {PointsAheadBeyondTolerance}; lag (wall before - stamp) p50 {LagPercentile(0.5)} p99 {LagPercentile(0.99)} "
                + $"p99.9 {LagPercentile(0.999)} max {(LagHistogram.Count == 0 ? 0 : LagHistogram.Keys.Max())} ms; rows mixing ms: {MixedRowPoints} points, lag up to {MaxMixedLagMs} ms; histogram [{histogram}]";
        }
    }

    private static StampReport Analyse(IEnumerable<WindowRow> rows, Ledger ledger, Func<long, bool>? include = null)
    {
        long points = 0, maxAhead = long.MinValue, ahead = 0, beyond = 0, mixed = 0, maxMixedLag = 0;
        var lags = new SortedDictionary<long, long>();
        var stamps = new HashSet<long>();
        foreach (WindowRow row in rows)
        {
            Assert.Equal(row.WindowStartMs + 1, row.WindowEndMs);
            long stamp = row.WindowStartMs;
            long min = (long)row.Min, max = (long)row.Max;
            if (include is not null && !include(min))
            {
                continue;
            }

            points += row.Count;
            stamps.Add(stamp);
            long index = min - ledger.BaseMs;
            Assert.InRange(index, 0, LedgerSpanMs - 1);
            long wallAfter = ledger.MaxAfter[index];
            Assert.True(wallAfter >= min, $"no ledger entry for wall-clock ms {min}");
            long rowAhead = stamp - wallAfter;
            maxAhead = Math.Max(maxAhead, rowAhead);
            if (rowAhead > 0)
            {
                ahead += min == max ? row.Count : 1;
            }

            if (rowAhead > AheadToleranceMs)
            {
                beyond += min == max ? row.Count : 1;
            }

            if (min == max)
            {
                lags[min - stamp] = lags.GetValueOrDefault(min - stamp) + row.Count;
            }
            else
            {
                mixed += row.Count;
                maxMixedLag = Math.Max(maxMixedLag, max - stamp);
            }
        }

        return new StampReport(points, maxAhead, ahead, beyond, lags, mixed, maxMixedLag, stamps.Count,
            stamps.Count == 0 ? 0 : stamps.Min(), stamps.Count == 0 ? 0 : stamps.Max(),
            Enumerable.Range(0, (int)LedgerSpanMs).Count(i => ledger.MaxAfter[i] != 0 && (include is null || include(ledger.BaseMs + i))));
    }

    private static async Task<PipelineMetrics> Stop(MetricsPipeline pipeline)
    {
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(0, m.Dropped);
        Assert.Equal(0, m.Rejected);
        return m;
    }

    private static Thread Start(Action body, List<Exception> errors)
    {
        var thread = new Thread(() =>
        {
            try
            {
                body();
            }
            catch (Exception e)
            {
                lock (errors)
                {
                    errors.Add(e);
                }
            }
        })
        { IsBackground = true };
        thread.Start();
        return thread;
    }

    private static void JoinAll(IEnumerable<Thread> threads)
    {
        foreach (Thread t in threads)
        {
            Assert.True(t.Join(Signals.Bound), "a writing thread did not finish");
        }
    }

    [Fact]
    public async Task Write_FastWriterOnSystemClock_StampNeverAheadOfWallClockAndLagsAboutAMillisecond()
    {
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(TimeProvider.System), [sink]);
        SeriesId[] ids = Register(pipeline, "fast_seconds");
        pipeline.Start();
        long start = NowMs();
        var ledger = new Ledger(start);
        var errors = new List<Exception>();
        Thread t = Start(
            () =>
            {
                using PointWriter writer = pipeline.CreateWriter("fast");
                WriteUntil(writer.Write, ids, ledger, start + 1500);
                writer.Flush();
            },
            errors);
        JoinAll([t]);
        Assert.Empty(errors);
        PipelineMetrics m = await Stop(pipeline);

        Assert.True(ledger.Refused == 0, $"{ledger.Refused} writes refused, first {ledger.FirstRefusal}");
        Assert.Equal(ledger.Points, m.EmittedPoints);
        StampReport all = Analyse(sink.Rows, ledger);
        StampReport warm = Analyse(sink.Rows, ledger, w => w >= start + 300);
        output.WriteLine($"rate {ledger.Points / 1.5:N0} points/s");
        output.WriteLine("all: " + all.Describe());
        output.WriteLine("after 300 ms: " + warm.Describe());
        Assert.Equal(ledger.Points, all.Points);
        Assert.True(all.PointsAheadBeyondTolerance == 0, "stamps ahead of the wall clock: " + all.Describe());
        Assert.True(warm.LagPercentile(0.5) <= 5, "median lag is not about a millisecond: " + warm.Describe());
        Assert.True(all.LagHistogram.Keys.Max() < 1000 && all.MaxMixedLagMs < 1000, "a stamp lags the wall clock by a second or more: " + all.Describe());
    }

    [Fact]
    public async Task Write_FakeClockPipelineBesideAFastSystemClockPipeline_StampedWithTheFakeClockOnly()
    {
        const long FakeStart = 1_000_000_000_000; // 2001-09-09, 25 years before the wall clock
        var fake = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(FakeStart));
        var fakeSink = new CollectingSink();
        var realSink = new CollectingSink();
        await using var fakePipeline = new MetricsPipeline(Options(fake), [fakeSink]);
        await using var realPipeline = new MetricsPipeline(Options(TimeProvider.System), [realSink]);
        SeriesId[] fakeIds = Register(fakePipeline, "fake_seconds");
        SeriesId[] realIds = Register(realPipeline, "real_seconds");
        fakePipeline.Start();
        realPipeline.Start();
        long start = NowMs();
        long until = start + 1500;
        var realLedger = new Ledger(start);
        var errors = new List<Exception>();
        long fakePoints = 0, fakeRefused = 0, fakeSteps = 0;
        RejectReason firstFakeRefusal = RejectReason.None;
        Thread real = Start(
            () =>
            {
                using PointWriter writer = realPipeline.CreateWriter("real");
                WriteUntil(writer.Write, realIds, realLedger, until);
                writer.Flush();
            },
            errors);
        Thread fakeWriter = Start(
            () =>
            {
                using PointWriter writer = fakePipeline.CreateWriter("fake");
                while (NowMs() < until)
                {
                    long now = fake.GetUtcNow().ToUnixTimeMilliseconds();
                    for (int i = 0; i < 5000; i++)
                    {
                        RejectReason reason = writer.Write(fakeIds[i % fakeIds.Length], now);
                        if (reason == RejectReason.None)
                        {
                            fakePoints++;
                        }
                        else if (fakeRefused++ == 0)
                        {
                            firstFakeRefusal = reason;
                        }
                    }

                    fake.Advance(TimeSpan.FromMilliseconds(1));
                    fakeSteps++;
                }

                writer.Flush();
            },
            errors);
        JoinAll([real, fakeWriter]);
        Assert.Empty(errors);
        await Stop(realPipeline);
        await EventTimeBlackBoxTests.StopBounded(fakePipeline);
        PipelineMetrics fm = fakePipeline.GetMetrics();
        output.WriteLine($"fake: {fakePoints} points over {fakeSteps} fake ms, refused {fakeRefused} (first {firstFakeRefusal}); real: {realLedger.Points} points");
        output.WriteLine("real: " + Analyse(realSink.Rows, realLedger).Describe());

        Assert.True(fakeRefused == 0, $"{fakeRefused} fake-clock writes refused, first {firstFakeRefusal}");
        Assert.True(fakeSteps > 0 && realLedger.Points > 0, "a writer did not run");
        Assert.Equal(fakePoints, fm.EmittedPoints);
        Assert.Equal(0, fm.Late);
        long offClock = 0;
        foreach (WindowRow row in fakeSink.Rows)
        {
            // Each point's value is the fake clock's ms at its write: it must be its window's start, exactly.
            if (row.Min != row.WindowStartMs || row.Max != row.WindowStartMs)
            {
                offClock += row.Count;
                output.WriteLine($"fake row at {row.WindowStartMs}: values {row.Min}..{row.Max}, {row.Count} points");
            }

            Assert.InRange(row.WindowStartMs, FakeStart, FakeStart + fakeSteps);
        }

        Assert.Equal(0, offClock);
        Assert.Equal(fakePoints, fakeSink.Rows.Sum(r => r.Count));
    }

    [Fact]
    public async Task Write_BurstThenIdleThenSlowWritesThenBurst_StampsFollowTheWallClockThroughout()
    {
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(TimeProvider.System), [sink]);
        SeriesId[] fastIds = Register(pipeline, "burst_seconds");
        const int SlowWrites = 40;
        SeriesId[] slowIds = Register(pipeline, "slow_seconds", SlowWrites);
        pipeline.Start();
        long start = NowMs();
        var ledger = new Ledger(start);
        var slowBefore = new long[SlowWrites];
        var slowAfter = new long[SlowWrites];
        var slowReasons = new RejectReason[SlowWrites];
        long secondBurstStart = 0;
        var errors = new List<Exception>();
        Thread t = Start(
            () =>
            {
                using PointWriter writer = pipeline.CreateWriter("burst");
                WriteUntil(writer.Write, fastIds, ledger, start + 600);
                writer.Flush();

                // Idle for well over the documented 100 ms check and the 1 s offset refresh: the clock thread should sleep.
                Thread.Sleep(1500);
                for (int i = 0; i < SlowWrites; i++)
                {
                    slowBefore[i] = NowMs();
                    slowReasons[i] = writer.Write(slowIds[i], i);
                    slowAfter[i] = NowMs();
                    Thread.Sleep(25);
                }

                writer.Flush();
                secondBurstStart = NowMs();
                WriteUntil(writer.Write, fastIds, ledger, secondBurstStart + 1000);
                writer.Flush();
            },
            errors);
        JoinAll([t]);
        Assert.Empty(errors);
        PipelineMetrics m = await Stop(pipeline);

        Assert.All(slowReasons, r => Assert.Equal(RejectReason.None, r));
        Assert.True(ledger.Refused == 0, $"{ledger.Refused} writes refused, first {ledger.FirstRefusal}");
        Assert.Equal(ledger.Points + SlowWrites, m.EmittedPoints);

        var slowRows = sink.Rows.Where(r => r.Metric == "slow_seconds").ToList();
        Assert.Equal(SlowWrites, slowRows.Sum(r => r.Count));
        var slowLines = new List<string>();
        long slowMaxLag = long.MinValue, slowMaxAhead = long.MinValue;
        foreach (WindowRow row in slowRows)
        {
            Assert.Equal(1, row.Count); // 25 ms apart: one point per 1 ms window and series
            int i = (int)row.Sum;
            long stamp = row.WindowStartMs;
            slowMaxLag = Math.Max(slowMaxLag, slowBefore[i] - stamp);
            slowMaxAhead = Math.Max(slowMaxAhead, stamp - slowAfter[i]);
            slowLines.Add($"#{i}: before {slowBefore[i] - start} stamp {stamp - start} after {slowAfter[i] - start}");
        }

        var fastRows = sink.Rows.Where(r => r.Metric == "burst_seconds").ToList();
        StampReport first = Analyse(fastRows, ledger, w => w < secondBurstStart);
        StampReport second = Analyse(fastRows, ledger, w => w >= secondBurstStart);
        StampReport secondWarm = Analyse(fastRows, ledger, w => w >= secondBurstStart + 300);
        output.WriteLine($"slow writes: stamp lag max {slowMaxLag} ms, ahead max {slowMaxAhead} ms");
        output.WriteLine(string.Join("; ", slowLines));
        output.WriteLine("first burst: " + first.Describe());
        output.WriteLine("second burst: " + second.Describe());
        output.WriteLine("second burst after 300 ms: " + secondWarm.Describe());

        // A stale stamp (the value published before the idle period) would lag by 1.5 s or more.
        Assert.True(slowMaxLag <= 20, $"a slow write's stamp lags the wall clock by {slowMaxLag} ms: " + string.Join("; ", slowLines));
        Assert.True(slowMaxAhead <= AheadToleranceMs, $"a slow write's stamp is {slowMaxAhead} ms ahead of the wall clock: " + string.Join("; ", slowLines));
        Assert.True(first.PointsAheadBeyondTolerance == 0, "first burst ahead: " + first.Describe());
        Assert.True(second.PointsAheadBeyondTolerance == 0, "second burst ahead: " + second.Describe());
        Assert.True(secondWarm.LagPercentile(0.5) <= 5, "second burst's median lag is not about a millisecond: " + secondWarm.Describe());
        Assert.True(second.LagHistogram.Keys.Max() < 1000 && second.MaxMixedLagMs < 1000, "second burst lags by a second or more: " + second.Describe());
    }

    [Fact]
    public async Task Write_EightSharedWriterThreadsWithFourSpinners_NoStampAheadOfItsWallClockWindow()
    {
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Options(TimeProvider.System), [sink]);
        SeriesId[] ids = Register(pipeline, "starved_seconds");
        pipeline.Start();
        SharedPointWriter shared = pipeline.CreateSharedWriter("starved", BackpressureMode.Wait);
        long start = NowMs();
        long until = start + 2000;
        var errors = new List<Exception>();
        var ledgers = Enumerable.Range(0, 8).Select(_ => new Ledger(start)).ToArray();
        var spinners = Enumerable.Range(0, 4).Select(_ => Start(
            () =>
            {
                long spins = 0;
                while (NowMs() < until)
                {
                    spins++;
                }

                GC.KeepAlive(spins);
            },
            errors)).ToList();
        var writers = ledgers.Select(l => Start(
            () =>
            {
                WriteUntil(shared.Write, ids, l, until);
            },
            errors)).ToList();
        JoinAll([.. writers, .. spinners]);
        Assert.Empty(errors);
        shared.Flush();
        shared.Dispose();
        PipelineMetrics m = await Stop(pipeline);

        var ledger = new Ledger(start);
        foreach (Ledger l in ledgers)
        {
            ledger.Merge(l);
        }

        Assert.True(ledger.Refused == 0, $"{ledger.Refused} writes refused, first {ledger.FirstRefusal}");
        Assert.Equal(ledger.Points, m.EmittedPoints);
        StampReport report = Analyse(sink.Rows, ledger);
        long behind = report.LagHistogram.Where(kv => kv.Key > 0).Sum(kv => kv.Value);
        long behind5 = report.LagHistogram.Where(kv => kv.Key > 5).Sum(kv => kv.Value);
        long behind20 = report.LagHistogram.Where(kv => kv.Key > 20).Sum(kv => kv.Value);
        output.WriteLine($"rate {ledger.Points / 2.0:N0} points/s over 8 threads");
        output.WriteLine($"points in an earlier window than the wall clock before the write: {behind} of {report.Points} "
            + $"(> 5 ms: {behind5}, > 20 ms: {behind20}, mixed rows: {report.MixedRowPoints})");
        output.WriteLine(report.Describe());
        Assert.Equal(ledger.Points, report.Points);
        Assert.True(report.PointsAheadBeyondTolerance == 0, "stamps ahead of the wall clock: " + report.Describe());
    }
}
