using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Series;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 12b: labelled writes that look their series up inside the writer's gate (PointWriter/SharedPointWriter
/// <c>Write(metric, labels, value[, ts])</c>), and the reclaim of series that never had a point aggregated
/// (docs/memory.md, "Series churn"). Written from the docs and the public API; every loop is bounded in steps.
/// </summary>
public class Probe12bBlackBoxTests
{
    private const long T0 = 1_800_000_000_000;

    private static (MetricsPipeline Pipeline, CollectingSink Sink, FakeTimeProvider Time) Create(
        TimeSpan seriesIdle, Action<MetricsPipelineOptions>? configure = null)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        MetricsPipelineOptions options = ReclaimScenario.Options(time, seriesIdle);
        configure?.Invoke(options);
        var sink = new CollectingSink();
        var pipeline = new MetricsPipeline(options, [sink]);
        pipeline.Start();
        return (pipeline, sink, time);
    }

    private static long NowMs(FakeTimeProvider time) => time.GetUtcNow().ToUnixTimeMilliseconds();

    private static SourceMetrics Source(MetricsPipeline pipeline, string name) =>
        pipeline.GetMetrics().Sources.SingleOrDefault(s => s.Source == name) ?? new SourceMetrics(name, 0, 0, 0, 0, 0);

    private static string Describe(PipelineMetrics m) =>
        $"offered {m.Offered}, accepted {m.Accepted}, rejected {m.Rejected}, dropped {m.Dropped}, emitted {m.EmittedPoints}, " +
        $"late {m.Late}, stale {m.StalePoints}, open {m.OpenWindowPoints}, faulted {m.FaultedPoints}, reclaimed {m.SeriesReclaimed}, " +
        $"retired {m.SeriesRetired}, active {m.SeriesActive}, overflow {m.OverflowResolutions}, misuse {m.WriterMisuse}";

    private static void AssertAccounted(PipelineMetrics m)
    {
        Assert.True(m.Offered == m.Accepted + m.Rejected + m.Dropped, "offered != accepted + rejected + dropped: " + Describe(m));
        Assert.True(m.Accepted == m.EmittedPoints + m.Late + m.StalePoints + m.FaultedPoints + m.OpenWindowPoints,
            "accepted != emitted + late + stale + faulted + open: " + Describe(m));
    }

    /// <summary>Ticks a second at a time, a clock series written each second to move the watermark, until <paramref name="done"/>.</summary>
    private static async Task TickWithClock(MetricsPipeline pipeline, FakeTimeProvider time, PointWriter clock, Func<bool> done, int maxSeconds, string what)
    {
        for (int s = 0; !done(); s++)
        {
            Assert.True(s < maxSeconds, $"{what}: not within {maxSeconds} ticks; {Describe(pipeline.GetMetrics())}");
            Assert.Equal(RejectReason.None, clock.Write("p12b_clock", [new Label("c", "1")], 1, NowMs(time)));
            clock.Flush();
            await pipeline.DrainAsync();
            time.Advance(TimeSpan.FromSeconds(1));
            await pipeline.DrainAsync();
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // 1. Every lookup refusal through the engine's labelled entries.
    // ---------------------------------------------------------------------------------------------------------

    public static TheoryData<string> RefusalCases => new() { "invalid-metric", "empty-metric", "null-metric", "long-metric", "reserved-label", "digit-label",
        "dash-label", "null-label-name", "long-label-name", "duplicate-label", "too-many-labels", "value-too-long", "metric-limit" };

    private static (string Metric, Label[] Labels, RejectReason Expected) Case(string name) => name switch
    {
        "invalid-metric" => ("1bad", [new Label("k", "v")], RejectReason.InvalidMetricName),
        "empty-metric" => ("", [], RejectReason.InvalidMetricName),
        "null-metric" => (null!, [new Label("k", "v")], RejectReason.InvalidMetricName),
        "long-metric" => (new string('m', 21), [new Label("k", "v")], RejectReason.InvalidMetricName),
        "reserved-label" => ("ok_a", [new Label("__k", "v")], RejectReason.InvalidLabelName),
        "digit-label" => ("ok_a", [new Label("1k", "v")], RejectReason.InvalidLabelName),
        "dash-label" => ("ok_a", [new Label("k-x", "v")], RejectReason.InvalidLabelName),
        "null-label-name" => ("ok_a", [new Label(null!, "v")], RejectReason.InvalidLabelName),
        "long-label-name" => ("ok_a", [new Label(new string('n', 21), "v")], RejectReason.InvalidLabelName),
        "duplicate-label" => ("ok_a", [new Label("k", "v"), new Label("k", "w")], RejectReason.DuplicateLabelName),
        "too-many-labels" => ("ok_a", [new Label("a", "1"), new Label("b", "1"), new Label("c", "1"), new Label("d", "1")], RejectReason.TooManyLabels),
        "value-too-long" => ("ok_a", [new Label("k", "123456789")], RejectReason.LabelValueTooLong),
        "metric-limit" => ("third_metric", [new Label("k", "v")], RejectReason.MetricLimitExceeded),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(RefusalCases))]
    public async Task LabelledWrite_EachLookupRefusal_ThroughAllFourEngineEntries_ReturnedCountedOnceInItsSourceNeverThrown(string caseName)
    {
        (string metric, Label[] labels, RejectReason expected) = Case(caseName);
        var (pipeline, sink, _) = Create(TimeSpan.FromSeconds(30), o =>
            o.Registry = new SeriesRegistryOptions { MaxMetrics = 2, MaxLabelsPerSeries = 3, MaxLabelValueLength = 8, MaxNameLength = 20 });
        await using (pipeline)
        {
            using PointWriter single = pipeline.CreateWriter("p12b-single");
            using SharedPointWriter shared = pipeline.CreateSharedWriter("p12b-shared");
            Assert.Equal(RejectReason.None, single.Write("ok_a", [new Label("k", "v")], 1, T0));
            Assert.Equal(RejectReason.None, shared.Write("ok_b", [new Label("k", "v")], 1, T0));
            single.Flush();
            shared.Flush();

            var entries = new (string Source, Func<RejectReason> Call)[]
            {
                ("p12b-single", () => single.Write(metric, labels, 2, T0)),
                ("p12b-single", () => single.Write(metric, labels, 2)),
                ("p12b-shared", () => shared.Write(metric, labels, 2, T0)),
                ("p12b-shared", () => shared.Write(metric, labels, 2)),
            };

            int call = 0;
            foreach ((string source, Func<RejectReason> write) in entries)
            {
                // Twice each: the second call of the same objects may be answered by another path of the registry.
                for (int repeat = 0; repeat < 2; repeat++, call++)
                {
                    PipelineMetrics before = pipeline.GetMetrics();
                    SourceMetrics sourceBefore = Source(pipeline, source);
                    RejectReason got = RejectReason.None;
                    Exception? thrown = Record.Exception(() => got = write());
                    Assert.True(thrown is null, $"call {call} ({source}) threw {thrown}");
                    Assert.Equal(expected, got);
                    PipelineMetrics after = pipeline.GetMetrics();
                    SourceMetrics sourceAfter = Source(pipeline, source);
                    Assert.Equal(1, after.RejectedByReason[expected] - before.RejectedByReason[expected]);
                    Assert.Equal(1, after.Rejected - before.Rejected);
                    Assert.Equal(1, after.Offered - before.Offered);
                    Assert.Equal(0, after.Accepted - before.Accepted);
                    Assert.Equal(1, sourceAfter.Rejected - sourceBefore.Rejected);
                    Assert.Equal(1, sourceAfter.Offered - sourceBefore.Offered);
                }
            }

            // The writers still work afterwards (no gate left entered by a refusal).
            Assert.Equal(RejectReason.None, single.Write("ok_a", [new Label("k", "v")], 3, T0));
            Assert.Equal(RejectReason.None, shared.Write("ok_b", [new Label("k", "v")], 3, T0));
            Assert.Equal(1, pipeline.Registry.GetSeriesCount("ok_a"));
            Assert.Equal(1, pipeline.Registry.GetSeriesCount("ok_b"));
            single.Flush();
            shared.Flush();
            await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(4, m.Accepted);
        Assert.Equal(8, m.Rejected);
        Assert.Equal(4, sink.Rows.Sum(r => r.Count));
        Assert.Equal(8.0, sink.Rows.Sum(r => r.Sum));
    }

    [Fact]
    public async Task LabelledWrite_ClosedWriterWithABadLookup_RefusedAsWriterClosedCountedOnce_NeverThrown()
    {
        var (pipeline, _, _) = Create(TimeSpan.FromSeconds(30), o => o.Registry = new SeriesRegistryOptions { MaxLabelValueLength = 8 });
        await using (pipeline)
        {
            PointWriter disposed = pipeline.CreateWriter("p12b-disposed");
            SharedPointWriter sharedDisposed = pipeline.CreateSharedWriter("p12b-shared-disposed");
            Assert.Equal(RejectReason.None, disposed.Write("ok_a", [new Label("k", "v")], 1, T0));
            Assert.Equal(RejectReason.None, sharedDisposed.Write("ok_a", [new Label("k", "w")], 1, T0));
            disposed.Dispose();
            sharedDisposed.Dispose();

            // A closed writer answers WriterClosed before any lookup (until session 12's fix it ran the lookup first and
            // answered its refusal, or interned a new label set and then refused it): one refusal counted, nothing
            // thrown, nothing accepted, nothing interned.
            // Beside each call, what its lookup alone would answer.
            var calls = new (Func<RejectReason> Call, RejectReason Lookup)[]
            {
                (() => disposed.Write("ok_a", [new Label("k", "v")], 2, T0), RejectReason.WriterClosed),
                (() => disposed.Write("1bad", [new Label("k", "v")], 2, T0), RejectReason.InvalidMetricName),
                (() => disposed.Write("ok_a", [new Label("__k", "v")], 2), RejectReason.InvalidLabelName),
                (() => disposed.Write("ok_a", [new Label("k", "123456789")], double.NaN, T0), RejectReason.LabelValueTooLong),
                (() => sharedDisposed.Write("ok_a", [new Label("k", "v")], 2, T0), RejectReason.WriterClosed),
                (() => sharedDisposed.Write("1bad", [new Label("k", "v")], 2, T0), RejectReason.InvalidMetricName),
                (() => sharedDisposed.Write("ok_a", [new Label("k", "123456789")], 2), RejectReason.LabelValueTooLong),
                (() => disposed.Write("ok_a", [new Label("k", "never-interned")], 2, T0), RejectReason.WriterClosed),
                (() => sharedDisposed.Write("ok_a", [new Label("k", "not-either")], 2, T0), RejectReason.WriterClosed),
            };
            int interned = pipeline.Registry.Count;
            for (int i = 0; i < calls.Length; i++)
            {
                PipelineMetrics before = pipeline.GetMetrics();
                RejectReason got = RejectReason.None;
                Exception? thrown = Record.Exception(() => got = calls[i].Call());
                Assert.True(thrown is null, $"closed call {i} threw {thrown}");
                Assert.Equal(RejectReason.WriterClosed, got);
                PipelineMetrics after = pipeline.GetMetrics();
                Assert.Equal(1, after.RejectedByReason[got] - before.RejectedByReason[got]);
                Assert.Equal(1, after.Rejected - before.Rejected);
                Assert.Equal(1, after.Offered - before.Offered);
                Assert.Equal(0, after.Accepted - before.Accepted);
            }

            Assert.Equal(interned, pipeline.Registry.Count);

            await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
            using PointWriter afterStop = pipeline.CreateWriter("p12b-after-stop");
            PipelineMetrics b = pipeline.GetMetrics();
            RejectReason afterStopGot = afterStop.Write("1bad", [new Label("__k", "v")], 1, T0);
            Assert.Equal(RejectReason.WriterClosed, afterStopGot);
            Assert.Equal(1, pipeline.GetMetrics().Rejected - b.Rejected);
            Assert.Equal(RejectReason.WriterClosed, afterStop.Write("ok_a", [new Label("k", "v")], 1, T0));
            Assert.Equal(2, pipeline.GetMetrics().Rejected - b.Rejected);
        }

        AssertAccounted(pipeline.GetMetrics());
    }

    // ---------------------------------------------------------------------------------------------------------
    // 2. Two threads on one PointWriter doing labelled writes.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task PointWriter_TwoThreadsLabelledAtOnce_OverlapThrowsInvalidOperation_MisuseCounted_NoPointLostOrDoubled()
    {
        var (pipeline, sink, _) = Create(TimeSpan.FromMinutes(15), o => o.ShardCount = 2);
        long[] ok = new long[2];
        long[] misuse = new long[2];
        var other = new List<Exception>();
        await using (pipeline)
        {
            PointWriter writer = pipeline.CreateWriter("p12b-misuse", BackpressureMode.Wait);
            string[][] values = [.. Enumerable.Range(0, 2).Select(t => Enumerable.Range(0, 300).Select(i => $"v{t}-{i}").ToArray())];
            string[] threadNames = ["t0", "t1"];
            // Both threads write until enough overlaps were caught, or for at most 20 s. No rounds: rounds released by a
            // barrier were each shorter than a thread's wake-up on a loaded 2-core machine (CI once saw no overlap
            // in 400 of them). Over a longer stretch, overlap comes from both threads running at once or from one
            // being preempted inside its call while the other runs.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            bool Done() => Interlocked.Read(ref misuse[0]) + Interlocked.Read(ref misuse[1]) >= 40
                || clock.Elapsed > TimeSpan.FromSeconds(20);
            Thread[] threads = [.. Enumerable.Range(0, 2).Select(t => new Thread(() =>
            {
                Label[] labels = new Label[2];
                while (!Done())
                {
                    for (int i = 0; i < 300; i++)
                    {
                        // Thread t's own label set; a new string for the value every other call (the slower, by-value lookup).
                        labels[0] = new Label("thread", threadNames[t]);
                        labels[1] = new Label("k", (i & 1) == 0 ? values[t][i] : new string(values[t][i].AsSpan()));
                        try
                        {
                            RejectReason r = writer.Write("p12b_misuse", labels, 1, T0 + 1);
                            if (r == RejectReason.None)
                            {
                                ok[t]++;
                            }
                            else
                            {
                                lock (other)
                                {
                                    other.Add(new InvalidDataException($"refused {r}"));
                                }
                            }
                        }
                        catch (InvalidOperationException)
                        {
                            Interlocked.Increment(ref misuse[t]);
                        }
                        catch (Exception e)
                        {
                            lock (other)
                            {
                                other.Add(e);
                            }
                        }
                    }
                }
            })
            { IsBackground = true })];
            foreach (Thread th in threads)
            {
                th.Start();
            }

            foreach (Thread th in threads)
            {
                Assert.True(th.Join(TimeSpan.FromSeconds(30)), "a writer thread did not end");
            }

            Assert.Empty(other);
            // The writer is not left entered by either thread: this thread takes it over and writes.
            Assert.Equal(RejectReason.None, writer.Write("p12b_misuse", [new Label("thread", "main")], 5, T0 + 2));
            writer.Flush();
            writer.Dispose();
            long caught = misuse[0] + misuse[1];
            PipelineMetrics mid = pipeline.GetMetrics();
            Assert.True(caught > 0, $"no overlap in {ok[0] + ok[1]} calls over {clock.Elapsed.TotalSeconds:F1} s of two threads on one writer (inconclusive, not a finding); {Describe(mid)}");
            Assert.Equal(caught, mid.WriterMisuse);
            await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        long total = ok[0] + ok[1] + 1;
        Assert.True(m.Offered == total, $"offered {m.Offered}, successful calls {total}: {Describe(m)}");
        Assert.Equal(total, m.Accepted);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(0, m.Late);
        for (int t = 0; t < 2; t++)
        {
            long emitted = sink.Rows.Where(r => r.Labels.GetValue("thread") == threadNamesOf(t)).Sum(r => r.Count);
            Assert.True(emitted == ok[t], $"thread {t}: {ok[t]} calls returned None, {emitted} points emitted; misuse {misuse[t]}");
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // 3. Reclaim of series without points at scale; the series limit frees up; reused indexes work.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task TwelveThousandSeriesWithoutPoints_FourShards_Reclaimed_LimitFreed_ReusedIndexesGetWorkingSeries()
    {
        const int N = 12_000;
        const string Metric = "p12b_scale";
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(5), o =>
        {
            o.ShardCount = 4;
            o.Registry = new SeriesRegistryOptions { MaxSeriesPerMetric = N };
        });
        long farFuture = T0 + (long)TimeSpan.FromDays(1).TotalMilliseconds;
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("p12b-scale");
            using SharedPointWriter shared = pipeline.CreateSharedWriter("p12b-scale-shared");
            using PointWriter clock = pipeline.CreateWriter("p12b-clock");
            for (int i = 0; i < N; i++)
            {
                Label[] labels = [new Label("pod", $"first-{i}")];
                switch (i % 3)
                {
                    case 0:
                        _ = pipeline.Registry.GetOrAdd(Metric, labels);
                        break;
                    case 1:
                        Assert.Equal(RejectReason.TimestampOutOfRange, writer.Write(Metric, labels, 1, farFuture));
                        break;
                    default:
                        Assert.Equal(RejectReason.NotANumber, shared.Write(Metric, labels, double.NaN, T0));
                        break;
                }
            }

            Assert.Equal(N, pipeline.Registry.GetSeriesCount(Metric));
            Assert.True(pipeline.Registry.GetDescriptor(pipeline.Registry.GetOrAdd(Metric, [new Label("pod", "one-too-many")])).IsOverflow);
            long overflowAtLimit = pipeline.Registry.GetOverflowResolutions(Metric);

            await TickWithClock(pipeline, time, clock, () => pipeline.Registry.GetSeriesCount(Metric) == 0, 60, "12,000 series without points reclaimed");
            Assert.True(pipeline.GetMetrics().SeriesReclaimed >= N, Describe(pipeline.GetMetrics()));

            // The limit is free again: 12,000 new label sets, each a regular series, each written once.
            long now = NowMs(time);
            for (int i = 0; i < N; i++)
            {
                Assert.Equal(RejectReason.None, writer.Write(Metric, [new Label("pod", $"second-{i}")], i, now));
            }

            Assert.Equal(overflowAtLimit, pipeline.Registry.GetOverflowResolutions(Metric));
            Assert.Equal(N, pipeline.Registry.GetSeriesCount(Metric));
            int indexesAfterSecond = pipeline.Registry.Count;

            // Once those are reclaimed too, and the quarantine has passed, a third generation reuses indexes.
            await TickWithClock(pipeline, time, clock, () => pipeline.Registry.GetSeriesCount(Metric) == 0 && pipeline.GetMetrics().SeriesRetired >= 2L * N, 120,
                "the second 12,000 reclaimed and retired");
            long retiredAt = NowMs(time);
            await TickWithClock(pipeline, time, clock, () => NowMs(time) >= retiredAt + 15_000, 20, "the quarantine (one more idle timeout)");

            now = NowMs(time);
            for (int i = 0; i < N; i++)
            {
                Assert.Equal(RejectReason.None, shared.Write(Metric, [new Label("pod", $"third-{i}")], 2.0 * i, now));
            }

            Assert.Equal(overflowAtLimit, pipeline.Registry.GetOverflowResolutions(Metric));
            Assert.True(pipeline.Registry.Count <= indexesAfterSecond + 16, $"indexes grew from {indexesAfterSecond} to {pipeline.Registry.Count}: reclaimed indexes not reused");
            writer.Flush();
            shared.Flush();
            clock.Flush();
            await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(0, m.Late);
        WindowRow[] rows = [.. sink.Rows.Where(r => r.Metric == Metric)];
        Assert.DoesNotContain(rows, r => r.Labels.GetValue("pod")?.StartsWith("first-", StringComparison.Ordinal) == true);
        Assert.DoesNotContain(rows, r => r.Labels.GetValue(SeriesRegistry.OverflowLabelName) is not null);
        var second = rows.Where(r => r.Labels.GetValue("pod")?.StartsWith("second-", StringComparison.Ordinal) == true).ToList();
        var third = rows.Where(r => r.Labels.GetValue("pod")?.StartsWith("third-", StringComparison.Ordinal) == true).ToList();
        Assert.Equal(N, second.Count);
        Assert.Equal(N, third.Count);
        Assert.All(second.Concat(third), r => Assert.Equal(1, r.Count));
        Assert.Equal((double)N * (N - 1) / 2, second.Sum(r => r.Sum));
        Assert.Equal((double)N * (N - 1), third.Sum(r => r.Sum));
    }

    // ---------------------------------------------------------------------------------------------------------
    // 4. The overflow series is never reclaimed, even without points.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task OverflowSeriesWithoutPoints_IdleManyTimeouts_NeverReclaimed_HeldIdStillAggregates()
    {
        const string Metric = "p12b_overflow";
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(5), o => o.Registry = new SeriesRegistryOptions { MaxSeriesPerMetric = 3 });
        SeriesId overflow;
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("p12b-overflow");
            using PointWriter clock = pipeline.CreateWriter("p12b-clock");
            for (int i = 0; i < 3; i++)
            {
                _ = pipeline.Registry.GetOrAdd(Metric, [new Label("pod", $"p{i}")]);
            }

            overflow = pipeline.Registry.GetOrAdd(Metric, [new Label("pod", "beyond-1")]);
            Assert.True(pipeline.Registry.GetDescriptor(overflow).IsOverflow);
            Assert.Equal(overflow, pipeline.Registry.GetOrAdd(Metric, [new Label("pod", "beyond-2")]));

            // 60 s of event time: twelve idle timeouts. The three regular series go; the overflow series must stay.
            await TickWithClock(pipeline, time, clock, () => NowMs(time) >= T0 + 60_000, 70, "60 s");
            Assert.Equal(0, pipeline.Registry.GetSeriesCount(Metric));
            Assert.Equal(3, pipeline.GetMetrics().SeriesReclaimed);

            long now = NowMs(time);
            Assert.Equal(RejectReason.None, writer.Write(overflow, 7, now));

            // The limit is free again for three new label sets; the fourth folds into the same overflow series.
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(RejectReason.None, writer.Write(Metric, [new Label("pod", $"q{i}")], 1, now));
            }

            Assert.Equal(overflow, pipeline.Registry.GetOrAdd(Metric, [new Label("pod", "beyond-3")]));
            Assert.Equal(RejectReason.None, writer.Write(Metric, [new Label("pod", "beyond-4")], 11, now));
            writer.Flush();
            await TickWithClock(pipeline, time, clock, () => NowMs(time) >= now + 30_000, 40, "30 s more");
            Assert.Equal(RejectReason.None, writer.Write(overflow, 13, NowMs(time)));
            writer.Flush();
            await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.True(m.StalePoints == 0, "a point through the overflow series' id was refused as stale: it was reclaimed. " + Describe(m));
        WindowRow[] overflowRows = [.. sink.Rows.Where(r => r.Metric == Metric && r.Labels.GetValue(SeriesRegistry.OverflowLabelName) == "true")];
        Assert.Equal(3, overflowRows.Sum(r => r.Count));
        Assert.Equal(31.0, overflowRows.Sum(r => r.Sum));
    }

    // ---------------------------------------------------------------------------------------------------------
    // 5. A first point right around the moment its series would be reclaimed.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task SeriesWithoutPoints_FirstPointSweptAcrossTheReclaimMoment_NeverLostNeverStale()
    {
        const string Metric = "p12b_sweep";
        const int Sweep = 40;
        const int Racing = 3_000;
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(5), o => o.ShardCount = 3);
        long racingOk = 0, racingClosed = 0;
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("p12b-sweep");
            using PointWriter clock = pipeline.CreateWriter("p12b-clock");
            using SharedPointWriter shared = pipeline.CreateSharedWriter("p12b-racing", BackpressureMode.Wait);
            for (int i = 0; i < Sweep; i++)
            {
                _ = pipeline.Registry.GetOrAdd(Metric, [new Label("pod", $"s{i}")]);
            }

            for (int i = 0; i < Racing; i++)
            {
                _ = pipeline.Registry.GetOrAdd(Metric, [new Label("pod", $"r{i}")]);
            }

            // A thread writes the first point of the racing series, at the fake clock's time, while the clock moves.
            Task racer = Task.Factory.StartNew(() =>
            {
                for (int i = 0; i < Racing; i++)
                {
                    RejectReason r = shared.Write(Metric, [new Label("pod", $"r{i}")], 1, NowMs(time));
                    if (r == RejectReason.None)
                    {
                        racingOk++;
                    }
                    else
                    {
                        racingClosed++;
                    }

                    if (i % 50 == 0)
                    {
                        Thread.Sleep(1);
                    }
                }
            }, TaskCreationOptions.LongRunning);

            // One sweep series gets its first point each second: before, at and after the second its series would go.
            for (int s = 0; s < Sweep; s++)
            {
                Assert.Equal(RejectReason.None, writer.Write(Metric, [new Label("pod", $"s{s}")], 1, NowMs(time)));
                writer.Flush();
                long stepFrom = NowMs(time);
                await TickWithClock(pipeline, time, clock, () => NowMs(time) > stepFrom, 2, "step");
            }

            await racer.WaitAsync(TimeSpan.FromSeconds(10));
            shared.Flush();
            await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(0, racingClosed);
        Assert.True(m.StalePoints == 0, "a labelled in-order first point was refused as stale: " + Describe(m));
        WindowRow[] rows = [.. sink.Rows.Where(r => r.Metric == Metric)];
        for (int s = 0; s < Sweep; s++)
        {
            Assert.True(rows.Where(r => r.Labels.GetValue("pod") == $"s{s}").Sum(r => r.Count) == 1, $"sweep series s{s} lost its point; {Describe(m)}");
        }

        long racingEmitted = rows.Where(r => r.Labels.GetValue("pod")?.StartsWith('r') == true).Sum(r => r.Count);
        long racingLate = m.LateByMetric.GetValueOrDefault(Metric);
        Assert.True(racingEmitted + racingLate == racingOk, $"racing: {racingOk} accepted calls, {racingEmitted} emitted, {racingLate} late; {Describe(m)}");
    }

    // ---------------------------------------------------------------------------------------------------------
    // 6. A label set whose every point is late.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task LateOnlySeries_EveryPointCountedLate_SeriesReclaimed_ThenALiveLookupWorks()
    {
        const string Metric = "p12b_late";
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(5));
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("p12b-late");
            using PointWriter clock = pipeline.CreateWriter("p12b-clock");
            await TickWithClock(pipeline, time, clock, () => NowMs(time) >= T0 + 60_000, 70, "60 s");
            for (int i = 0; i < 25; i++)
            {
                // 40-50 s old: behind the watermark, within MaxPointAge.
                Assert.Equal(RejectReason.None, writer.Write(Metric, [new Label("pod", "late-only")], i, T0 + 10_000 + i));
                Assert.Equal(RejectReason.None, writer.Write(Metric, [new Label("pod", new string("late-only".AsSpan()))], i, T0 + 10_000 + i));
            }

            writer.Flush();
            await pipeline.DrainAsync();
            Assert.Equal(50, pipeline.GetMetrics().LateByMetric.GetValueOrDefault(Metric));
            Assert.Equal(1, pipeline.Registry.GetSeriesCount(Metric));
            long reclaimedBefore = pipeline.GetMetrics().SeriesReclaimed;
            await TickWithClock(pipeline, time, clock, () => pipeline.Registry.GetSeriesCount(Metric) == 0, 40, "the late-only series reclaimed");
            Assert.True(pipeline.GetMetrics().SeriesReclaimed > reclaimedBefore);

            Assert.Equal(RejectReason.None, writer.Write(Metric, [new Label("pod", "late-only")], 100, NowMs(time)));
            writer.Flush();
            await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(50, m.Late);
        Assert.Equal(50, m.LateByMetric.GetValueOrDefault(Metric));
        WindowRow[] rows = [.. sink.Rows.Where(r => r.Metric == Metric)];
        Assert.Single(rows);
        Assert.Equal(1, rows[0].Count);
        Assert.Equal(100.0, rows[0].Sum);
    }

    // ---------------------------------------------------------------------------------------------------------
    // 7. Fresh strings per call vs the same objects, across reclaims.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task LabelledWrites_FreshStringsAndSameObjects_AcrossThreeReclaims_OneSeriesPerLabelSet_ExactStatistics()
    {
        const string Metric = "p12b_identity";
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(5), o => o.ShardCount = 2);
        string[] routes = ["/cart", "/checkout", "/a-much-longer-route-value-than-eight-chars"];
        const string Name = "route";
        var expected = routes.ToDictionary(r => r, _ => new List<double>());
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("p12b-identity");
            using SharedPointWriter shared = pipeline.CreateSharedWriter("p12b-identity-shared");
            using PointWriter clock = pipeline.CreateWriter("p12b-clock");
            for (int cycle = 0; cycle < 3; cycle++)
            {
                long reclaimedBefore = pipeline.GetMetrics().SeriesReclaimed;
                for (int i = 0; i < 40; i++)
                {
                    long now = NowMs(time);
                    for (int r = 0; r < routes.Length; r++)
                    {
                        double v = (cycle * 1000) + (i * 3) + r + 0.25;
                        Label[] labels = (i % 4) switch
                        {
                            0 => [new Label(Name, routes[r])],
                            1 => [new Label(new string(Name.AsSpan()), new string(routes[r].AsSpan()))],
                            2 => [new Label(Name, new string(routes[r].AsSpan()))],
                            _ => [new Label(new string(Name.AsSpan()), routes[r])],
                        };
                        RejectReason got = (i & 1) == 0 ? writer.Write(Metric, labels, v, now) : shared.Write(Metric, labels, v, now);
                        Assert.Equal(RejectReason.None, got);
                        expected[routes[r]].Add(v);
                    }

                    Assert.Equal(routes.Length, pipeline.Registry.GetSeriesCount(Metric));
                    if (i % 10 == 9)
                    {
                        writer.Flush();
                        shared.Flush();
                        long stepFrom = NowMs(time);
                        await TickWithClock(pipeline, time, clock, () => NowMs(time) > stepFrom, 2, "step");
                    }
                }

                writer.Flush();
                shared.Flush();
                await TickWithClock(pipeline, time, clock, () => pipeline.Registry.GetSeriesCount(Metric) == 0, 60, $"cycle {cycle}: reclaimed");
                Assert.True(pipeline.GetMetrics().SeriesReclaimed >= reclaimedBefore + routes.Length);
            }

            await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(0, m.Late);
        WindowRow[] rows = [.. sink.Rows.Where(r => r.Metric == Metric)];
        Assert.Equal(routes.Length, rows.Select(r => r.Labels.ToString()).Distinct().Count());
        foreach (string route in routes)
        {
            WindowRow[] mine = [.. rows.Where(r => r.Labels.Equals(LabelSet.Create(new Label(Name, route))))];
            List<double> values = expected[route];
            Assert.Equal(values.Count, mine.Sum(r => r.Count));
            Assert.Equal(values.Sum(), mine.Sum(r => r.Sum), 9);
            Assert.Equal(values.Min(), mine.Min(r => r.Min));
            Assert.Equal(values.Max(), mine.Max(r => r.Max));
            // One row per window: reclaims never split a window of one label set into two series here.
            Assert.Equal(mine.Length, mine.Select(r => r.WindowStartMs).Distinct().Count());
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // 8. Labelled writes racing StopAsync / DisposeAsync.
    // ---------------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task LabelledWrites_RacingStopOrDispose_NoHangNoThrow_EveryAcceptedPointAccounted(bool dispose)
    {
        var (pipeline, sink, _) = Create(TimeSpan.FromSeconds(5), o => o.ShardCount = 2);
        const int Threads = 3;
        long[] ok = new long[Threads], closed = new long[Threads], refusedOther = new long[Threads];
        var errors = new List<Exception>();
        PointWriter w0 = pipeline.CreateWriter("p12b-race-0", BackpressureMode.DropNewest);
        PointWriter w1 = pipeline.CreateWriter("p12b-race-1", BackpressureMode.Wait);
        SharedPointWriter w2 = pipeline.CreateSharedWriter("p12b-race-2");
        Func<string, Label[], double, RejectReason>[] writes =
        [
            (m, l, v) => w0.Write(m, l, v, T0 + 1),
            (m, l, v) => w1.Write(m, l, v, T0 + 2),
            (m, l, v) => w2.Write(m, l, v, T0 + 3),
        ];
        using var started = new CountdownEvent(Threads);
        Thread[] threads = [.. Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                for (int i = 0; i < 5_000_000; i++)
                {
                    if (i == 2_000)
                    {
                        started.Signal();
                    }

                    // A bad label name every 97th call: a lookup refusal, counted by the source.
                    string name = i % 97 == 0 ? "__bad" : "k";
                    RejectReason r = writes[t]("p12b_race", [new Label("t", $"{t}"), new Label(name, $"v{i % 500}")], 1);
                    if (r == RejectReason.None)
                    {
                        ok[t]++;
                    }
                    else if (r == RejectReason.WriterClosed)
                    {
                        closed[t]++;
                        if (closed[t] >= 100)
                        {
                            return;
                        }
                    }
                    else
                    {
                        refusedOther[t]++;
                    }
                }
            }
            catch (Exception e)
            {
                lock (errors)
                {
                    errors.Add(e);
                }
            }
        })
        { IsBackground = true })];
        foreach (Thread th in threads)
        {
            th.Start();
        }

        Assert.True(started.Wait(TimeSpan.FromSeconds(10)), "writers did not start");
        Task stop = dispose ? pipeline.DisposeAsync().AsTask() : pipeline.StopAsync();
        await stop.WaitAsync(TimeSpan.FromSeconds(10));
        foreach (Thread th in threads)
        {
            Assert.True(th.Join(TimeSpan.FromSeconds(10)), "a writer thread hung after the stop");
        }

        Assert.Empty(errors);
        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(0, m.Late);
        Assert.Equal(0, m.OpenWindowPoints);
        for (int t = 0; t < Threads; t++)
        {
            SourceMetrics s = m.Sources.Single(x => x.Source == $"p12b-race-{t}");
            Assert.True(closed[t] >= 100, $"thread {t} never saw WriterClosed after the stop");
            Assert.True(s.Accepted + s.Dropped == ok[t], $"thread {t}: {ok[t]} calls returned None; source accepted {s.Accepted} + dropped {s.Dropped}");
            Assert.True(s.Rejected == closed[t] + refusedOther[t], $"thread {t}: {closed[t]} WriterClosed + {refusedOther[t]} other returned; source rejected {s.Rejected}");
            long emitted = sink.Rows.Where(r => r.Labels.GetValue("t") == $"{t}").Sum(r => r.Count);
            Assert.Equal(s.Accepted, emitted);
        }

        Assert.Equal(closed.Sum(), m.RejectedByReason[RejectReason.WriterClosed]);
        Assert.Equal(refusedOther.Sum(), m.RejectedByReason[RejectReason.InvalidLabelName]);
        w0.Dispose();
        w1.Dispose();
        w2.Dispose();
        await pipeline.DisposeAsync();
    }

    // ---------------------------------------------------------------------------------------------------------
    // 9. Reused indexes interned without points are reclaimed too; a pipeline with no point at all.
    // ---------------------------------------------------------------------------------------------------------

    [Fact]
    public async Task ReusedIndexes_InternedWithoutPoints_AreDatedAndReclaimedLikeFreshOnes()
    {
        const string Metric = "p12b_reuse";
        const int N = 300;
        var (pipeline, sink, time) = Create(TimeSpan.FromSeconds(5), o => o.ShardCount = 3);
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("p12b-reuse");
            using PointWriter clock = pipeline.CreateWriter("p12b-clock");
            for (int i = 0; i < N; i++)
            {
                Assert.Equal(RejectReason.None, writer.Write(Metric, [new Label("pod", $"a{i}")], 1, NowMs(time)));
            }

            writer.Flush();
            await TickWithClock(pipeline, time, clock, () => pipeline.Registry.GetSeriesCount(Metric) == 0 && pipeline.GetMetrics().SeriesRetired >= N, 60, "generation a retired");
            long retiredAt = NowMs(time);
            await TickWithClock(pipeline, time, clock, () => NowMs(time) >= retiredAt + 10_000, 15, "quarantine");
            int indexes = pipeline.Registry.Count;

            for (int cycle = 0; cycle < 3; cycle++)
            {
                // Interned on reused indexes, never written: dated by the scan and reclaimed.
                for (int i = 0; i < N; i++)
                {
                    _ = pipeline.Registry.GetOrAdd(Metric, [new Label("pod", $"c{cycle}-{i}")]);
                }

                Assert.True(pipeline.Registry.Count <= indexes + 3, $"cycle {cycle}: indexes {pipeline.Registry.Count}, were {indexes}: not reused");
                Assert.Equal(N, pipeline.Registry.GetSeriesCount(Metric));
                long internedAt = NowMs(time);
                await TickWithClock(pipeline, time, clock, () => pipeline.Registry.GetSeriesCount(Metric) == 0 && pipeline.GetMetrics().SeriesRetired >= (cycle + 2L) * N, 60,
                    $"cycle {cycle}: the {N} series interned on reused indexes reclaimed");
                // Not before their idle timeout: dated when first scanned, reclaimed at least 5 s of event time later.
                Assert.True(NowMs(time) - internedAt >= 5_000, $"cycle {cycle}: reclaimed {NowMs(time) - internedAt} ms after interning, before the 5 s idle timeout");
                long at = NowMs(time);
                await TickWithClock(pipeline, time, clock, () => NowMs(time) >= at + 10_000, 15, "quarantine");
            }

            await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }

        PipelineMetrics m = pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(N, sink.Rows.Where(r => r.Metric == Metric).Sum(r => r.Count));
    }

    [Fact]
    public async Task SeriesInternedOnly_NoPointEverWritten_ClockMovesTwoMinutes_Reclaimed()
    {
        // docs/memory.md: a series "interned by a lookup or a Bind only ... is dated at the watermark by the first scan
        // that sees it" and reclaimed once idle; docs/event-time.md: when every source of a shard is idle, the clock
        // closes its windows. Here no point was ever written: is there a watermark to date them at?
        const string Metric = "p12b_nopoint";
        var (pipeline, _, time) = Create(TimeSpan.FromSeconds(5), o => o.Registry = new SeriesRegistryOptions { MaxSeriesPerMetric = 10 });
        await using (pipeline)
        {
            for (int i = 0; i < 10; i++)
            {
                _ = pipeline.Registry.GetOrAdd(Metric, [new Label("pod", $"p{i}")]);
            }

            for (int s = 0; s < 120 && pipeline.Registry.GetSeriesCount(Metric) > 0; s++)
            {
                time.Advance(TimeSpan.FromSeconds(1));
                await pipeline.DrainAsync();
            }

            PipelineMetrics m = pipeline.GetMetrics();
            Assert.True(pipeline.Registry.GetSeriesCount(Metric) == 0,
                $"{pipeline.Registry.GetSeriesCount(Metric)} series interned without points still listed after 120 s of clock with no point ever written " +
                $"(watermarks {string.Join(",", m.Watermarks)}); the metric stays at its limit: {Describe(m)}");
        }
    }

    private static string threadNamesOf(int t) => t == 0 ? "t0" : "t1";
}
