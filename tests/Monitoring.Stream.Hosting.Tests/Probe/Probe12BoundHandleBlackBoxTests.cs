using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Series;
using Monitoring.Stream.Hosting.Tests.Support;

namespace Monitoring.Stream.Hosting.Tests.Probe;

/// <summary>
/// Probe 12: the SDK's bound handles (BoundHistogram, BoundGauge, BoundCounter) while the engine reclaims idle
/// series again and again (docs/sdk.md, "Instruments": "a handle notices ... and resolves its labels again, so a
/// handle that sat idle keeps writing to the right series instead of having its points refused as stale. A point
/// it wrote just before the reclaim, still in a writer's buffer, is aggregated").
/// Written from the docs and the public API; every loop is bounded in steps, never in wall-clock time.
/// </summary>
public class Probe12BoundHandleBlackBoxTests
{
    private const long T0 = ReclaimRig.T0;

    /// <summary>The reclaim rig with this probe's source name.</summary>
    private sealed class Rig(int shards = 2, Action<MetricsPipelineOptions>? configure = null, string source = "probe12")
        : ReclaimRig(source, shards, o =>
        {
            o.Instance = "probe12";
            configure?.Invoke(o);
        });

    private static long Rejected(PipelineMetrics m, RejectReason reason) => m.RejectedByReason.GetValueOrDefault(reason);

    private static long LateOf(PipelineMetrics m, string metric) => m.LateByMetric.GetValueOrDefault(metric);

    [Fact]
    public async Task BoundHandles_OwnSeriesReclaimedForEachKind_ReResolveAndStatisticsMergeOldAndNewSeries()
    {
        // sdk.md: after a reclaim the handle "resolves its labels again ... keeps writing to the right series"; a query
        // over the label set merges every series with those labels. Label names are declared out of ordinal order.
        await using var rig = new Rig();
        MetricCounter counter = rig.Collector.CreateCounter("p12_own_total", ["status", "method"]);
        MetricGauge gauge = rig.Collector.CreateGauge("p12_own_level", ["status", "method"]);
        MetricHistogram histogram = rig.Collector.CreateHistogram("p12_own_seconds", ["status", "method"]);
        MetricHistogram keepAlive = rig.Collector.CreateHistogram("p12_keepalive", ["k"]);
        BoundCounter c = counter.Bind("200", "GET");
        BoundCounter c2 = counter.Bind("200", "GET");
        BoundGauge g = gauge.Bind("200", "GET");
        BoundHistogram h = histogram.Bind("200", "GET");
        BoundHistogram alive = keepAlive.Bind("x");
        SeriesId c0 = c.Series, g0 = g.Series, h0 = h.Series;
        Assert.Equal(c0, c2.Series);

        Assert.Equal(RejectReason.None, c.Add(1));
        Assert.Equal(RejectReason.None, c2.Add(2));
        Assert.Equal(RejectReason.None, g.Set(7));
        Assert.Equal(RejectReason.None, g.Set(3));
        Assert.Equal(RejectReason.None, h.Record(0.5));
        Assert.Equal(RejectReason.None, h.Record(1.5));

        int steps = 0;
        for (; steps < 120 && (c.Series == c0 || g.Series == g0 || h.Series == h0); steps++)
        {
            alive.Record(1);
            await rig.StepAsync();
        }

        Assert.True(c.Series != c0 && g.Series != g0 && h.Series != h0,
            $"all three idle series were reclaimed within {steps} steps (reclaimed {rig.Pipeline.Registry.Reclaimed})");
        Assert.Equal(c.Series, c2.Series);                          // both handles resolve to the one fresh series
        Assert.Equal(c.Series, counter.Bind("200", "GET").Series);   // and so does a new bind
        Assert.True(rig.Pipeline.Registry.Owns(c.Series));

        Assert.Equal(RejectReason.None, c.Add(3));
        Assert.Equal(RejectReason.NegativeCounterIncrement, c2.Add(-1));
        Assert.Equal(RejectReason.None, c2.Add(4));
        Assert.Equal(RejectReason.None, counter.Add(5, "200", "GET"));   // labelled call, same series
        Assert.Equal(RejectReason.None, g.Set(9));
        Assert.Equal(RejectReason.None, g.Set(4));
        Assert.Equal(RejectReason.None, h.Record(2.5));
        Assert.Equal(RejectReason.None, histogram.Record(3.5, "200", "GET"));
        await rig.StepAsync();
        await rig.StopAsync();

        PipelineMetrics m = rig.Pipeline.GetMetrics();
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(1, rig.Collector.GetRejectedCount(RejectReason.NegativeCounterIncrement));
        Label[] labels = [new("method", "GET"), new("status", "200")];

        MetricStatistics cs = rig.Stats("p12_own_total", labels)!;
        Assert.Equal(5, cs.Count);
        Assert.Equal(15, cs.Sum);
        Assert.Equal(1, cs.Min);
        Assert.Equal(5, cs.Max);

        MetricStatistics gs = rig.Stats("p12_own_level", labels)!;
        Assert.Equal(4, gs.Count);
        Assert.Equal(4, gs.Last);
        Assert.Equal(3, gs.Min);
        Assert.Equal(9, gs.Max);
        Assert.Equal(23, gs.Sum);

        MetricStatistics hs = rig.Stats("p12_own_seconds", labels)!;
        Assert.Equal(4, hs.Count);
        Assert.Equal(8, hs.Sum);
        Assert.Equal(0.5, hs.Min);
        Assert.Equal(3.5, hs.Max);
    }

    [Fact]
    public async Task BoundHistogram_SixThreadsOneSharedHandleAndOwnHandles_OwnSeriesReclaimedBetweenPhases_EveryPointAccounted()
    {
        // Many threads share one handle, others hold handles of their own to the same series, while the engine reclaims a
        // series every step (any reclaim makes every handle look its series up again), and between two phases the busy
        // series itself is reclaimed. Every point a call took (returned None) must be aggregated, dropped or late; none stale.
        const int Threads = 6;
        const int PerThreadPerPhase = 12_000;
        await using var rig = new Rig();
        using var churnCollector = new MetricsCollector(rig.Pipeline, "probe12-churn");
        MetricHistogram busyMetric = rig.Collector.CreateHistogram("p12_busy", ["route"]);
        MetricHistogram churn = churnCollector.CreateHistogram("p12_churn", ["id"]);
        BoundHistogram shared = busyMetric.Bind("/busy");
        BoundHistogram[] own = [.. Enumerable.Range(0, Threads).Select(_ => busyMetric.Bind("/busy"))];
        long[] taken = new long[Threads];
        double[] takenSum = new double[Threads];
        long[] refused = new long[Threads];
        int churnId = 0;

        async Task Phase()
        {
            int[] done = new int[Threads];
            Task[] writers = [.. Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(() =>
            {
                for (int i = 0; i < PerThreadPerPhase; i++)
                {
                    double value = (i % 10) + 1;
                    BoundHistogram handle = (i & 1) == 0 ? shared : own[t];
                    if (handle.Record(value) == RejectReason.None)
                    {
                        taken[t]++;
                        takenSum[t] += value;
                    }
                    else
                    {
                        refused[t]++;
                    }

                    if (i % 200 == 199)
                    {
                        Thread.Yield();
                    }
                }

                Volatile.Write(ref done[t], 1);
            }, TaskCreationOptions.LongRunning))];

            // Reclaims go on while the writers write (bounded in steps; a starved writer just finishes later).
            for (int step = 0; step < 400 && done.Sum() < Threads; step++)
            {
                churn.Bind("c" + churnId++).Record(1);
                await rig.StepAsync();
            }

            await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(30));
        }

        await Phase();
        SeriesId before = shared.Series;
        long reclaimedBefore = rig.Pipeline.Registry.Reclaimed;
        for (int step = 0; step < 120 && shared.Series == before; step++)
        {
            churn.Bind("c" + churnId++).Record(1);
            await rig.StepAsync();
        }

        Assert.True(before != shared.Series,
            $"the busy series went idle and was reclaimed (reclaimed {rig.Pipeline.Registry.Reclaimed}, retired {rig.Pipeline.Registry.Retired}, watermarks {string.Join(",", rig.Pipeline.GetMetrics().Watermarks)}, sources {rig.Pipeline.GetMetrics().ActiveSources})");
        Assert.All(own, o => Assert.Equal(shared.Series, o.Series));
        await Phase();
        await rig.StepAsync();
        await rig.StopAsync();

        PipelineMetrics m = rig.Pipeline.GetMetrics();
        SourceMetrics source = m.Sources.Single(s => s.Source == "probe12");
        long took = taken.Sum();
        double tookSum = takenSum.Sum();
        Assert.True(rig.Pipeline.Registry.Reclaimed > reclaimedBefore, $"reclaims: {reclaimedBefore} then {rig.Pipeline.Registry.Reclaimed}");
        Assert.Equal(0, refused.Sum());
        Assert.True(m.StalePoints == 0, $"stale {m.StalePoints}, late {m.Late}, dropped {m.Dropped}, reclaimed {m.SeriesReclaimed}, retired {m.SeriesRetired}");
        Assert.Equal(0, m.FaultedPoints);
        Assert.Equal(source.Offered, source.Accepted + source.Rejected + source.Dropped);
        Assert.Equal(2L * Threads * PerThreadPerPhase, source.Offered);
        Assert.Equal(took, source.Accepted + source.Dropped);
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late + m.StalePoints + m.FaultedPoints);

        long late = LateOf(m, "p12_busy");
        MetricStatistics stats = rig.Stats("p12_busy", new Label("route", "/busy"))!;
        Assert.True(took - source.Dropped - late == stats.Count,
            $"took {took}, dropped {source.Dropped}, late {late}, stale {m.StalePoints}, aggregated {stats.Count}, offered {source.Offered}, accepted {source.Accepted}, rejected {source.Rejected}");
        Assert.Equal(1, stats.Min);
        Assert.Equal(10, stats.Max);
        if (source.Dropped == 0 && late == 0)
        {
            Assert.Equal(tookSum, stats.Sum);
        }
        else
        {
            Assert.InRange(stats.Sum, stats.Count, 10.0 * stats.Count);
        }

        // The churn series: one point each, none lost either.
        SourceMetrics churnSource = m.Sources.Single(s => s.Source == "probe12-churn");
        Assert.Equal(churnId - churnSource.Dropped - LateOf(m, "p12_churn"), rig.Matching("p12_churn")!.Count);
    }

    [Fact]
    public async Task BoundCounter_FourThreadsOwnHandlesSameSeries_ReclaimedEverySeventhStep_ExactIncreaseAndNothingStale()
    {
        // The handles' own series goes idle for longer than SeriesIdleTimeout again and again: each burst is written by four
        // threads through handles bound once, at the start, and each burst follows a reclaim of that very series.
        const int Threads = 4;
        const int Bursts = 6;
        const int PerBurst = 500;
        await using var rig = new Rig();
        MetricCounter orders = rig.Collector.CreateCounter("p12_orders_total", ["region"]);
        MetricHistogram keepAlive = rig.Collector.CreateHistogram("p12_keepalive2", ["k"]);
        BoundCounter[] handles = [.. Enumerable.Range(0, Threads).Select(_ => orders.Bind("eu"))];
        BoundHistogram alive = keepAlive.Bind("x");
        long negativeTried = 0;
        long took = 0;
        double tookSum = 0;
        var ids = new HashSet<SeriesId>();
        for (int burst = 0; burst < Bursts; burst++)
        {
            ids.Add(handles[0].Series);
            long[] n = new long[Threads];
            double[] s = new double[Threads];
            long[] neg = new long[Threads];
            Task[] writers = [.. Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(() =>
            {
                for (int i = 0; i < PerBurst; i++)
                {
                    double inc = (i % 3) + 0.25;          // exact in binary
                    if (handles[t].Add(inc) == RejectReason.None)
                    {
                        n[t]++;
                        s[t] += inc;
                    }

                    if (i % 50 == 0 && handles[t].Add(-inc) == RejectReason.NegativeCounterIncrement)
                    {
                        neg[t]++;
                    }
                }
            }, TaskCreationOptions.LongRunning))];
            await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(30));
            took += n.Sum();
            tookSum += s.Sum();
            negativeTried += neg.Sum();

            SeriesId current = handles[0].Series;
            for (int step = 0; step < 60 && handles[0].Series == current; step++)
            {
                alive.Record(1);
                await rig.StepAsync();
            }

            Assert.NotEqual(current, handles[0].Series);
        }

        await rig.StopAsync();
        PipelineMetrics m = rig.Pipeline.GetMetrics();
        SourceMetrics source = m.Sources.Single(s => s.Source == "probe12");
        Assert.Equal(Bursts, ids.Count);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(Threads * Bursts * PerBurst, took + source.Dropped);
        Assert.Equal(Threads * Bursts * (PerBurst / 50), negativeTried);
        Assert.Equal(negativeTried, rig.Collector.GetRejectedCount(RejectReason.NegativeCounterIncrement));
        MetricStatistics stats = rig.Stats("p12_orders_total", new Label("region", "eu"))!;
        long late = LateOf(m, "p12_orders_total");
        Assert.Equal(took - source.Dropped - late, stats.Count);
        if (source.Dropped == 0 && late == 0)
        {
            Assert.Equal(tookSum, stats.Sum);
        }

        Assert.Equal(0.25, stats.Min);
        Assert.Equal(2.25, stats.Max);
    }

    [Fact]
    public async Task BoundHistogram_IdleHandleWritesOnItsOwnThreadWithoutFlush_AcrossRepeatedReclaims_EveryPointAggregated()
    {
        // sdk.md: "A point it wrote just before the reclaim, still in a writer's buffer, is aggregated". A handle writes one
        // point every 13 s of engine time from a thread of its own, through a collector nobody flushes (the engine's flush of
        // idle threads hands its buffer over), while a 5 s idle timeout reclaims its series between writes.
        // A source quiet for 2 s stops holding the watermark (a writer that writes every 13 s would otherwise hold it).
        await using var rig = new Rig(configure: o => o.SourceIdleTimeout = TimeSpan.FromSeconds(2));
        using var quiet = new MetricsCollector(rig.Pipeline, "probe12-quiet");
        MetricHistogram metric = quiet.CreateHistogram("p12_quiet", ["route"]);
        MetricHistogram keepAlive = rig.Collector.CreateHistogram("p12_keepalive3", ["k"]);
        BoundHistogram handle = metric.Bind("/quiet");
        BoundHistogram alive = keepAlive.Bind("x");
        using var go = new SemaphoreSlim(0);
        using var wrote = new SemaphoreSlim(0);
        int writes = 0;
        long took = 0;
        double tookSum = 0;
        bool stop = false;
        Task writer = Task.Factory.StartNew(() =>
        {
            while (true)
            {
                go.Wait();
                if (Volatile.Read(ref stop))
                {
                    return;
                }

                double v = writes + 1;
                writes++;
                if (handle.Record(v) == RejectReason.None)
                {
                    took++;
                    tookSum += v;
                }

                wrote.Release();
            }
        }, TaskCreationOptions.LongRunning);

        var ids = new HashSet<SeriesId>();
        for (int step = 0; step < 130; step++)
        {
            if (step % 13 == 0)
            {
                go.Release();
                Assert.True(await wrote.WaitAsync(TimeSpan.FromSeconds(10)));
                ids.Add(handle.Series);
            }

            alive.Record(1);
            await rig.StepAsync();
        }

        Volatile.Write(ref stop, true);
        go.Release();
        await writer.WaitAsync(TimeSpan.FromSeconds(10));
        await rig.StopAsync();

        PipelineMetrics m = rig.Pipeline.GetMetrics();
        SourceMetrics source = m.Sources.Single(s => s.Source == "probe12-quiet");
        Assert.Equal(10, writes);
        Assert.Equal(10, took);
        Assert.True(ids.Count >= 5, $"the handle's series was reclaimed between writes ({ids.Count} ids over 10 writes)");
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(0, source.Dropped);
        MetricStatistics stats = rig.Stats("p12_quiet", new Label("route", "/quiet"))!;
        long late = LateOf(m, "p12_quiet");
        Assert.Equal(took - late, stats.Count);
        if (late == 0)
        {
            Assert.Equal(tookSum, stats.Sum);
            Assert.Equal(1, stats.Min);
            Assert.Equal(10, stats.Max);
        }
    }

    [Fact]
    public async Task BoundHandles_SeriesLimitReachedAfterTheirSeriesWasReclaimed_FoldIntoOverflowNeverThrow()
    {
        // README: "a metric holds at most 100,000 series by default, and label sets beyond that fold into one overflow
        // series labelled otel_metric_overflow="true", counted". A handle bound while there was room, whose series is then
        // reclaimed while the metric fills up to its limit, must not throw; its points land in the overflow series.
        await using var rig = new Rig(configure: o => o.Registry = new SeriesRegistryOptions { MaxSeriesPerMetric = 3 });
        MetricHistogram histogram = rig.Collector.CreateHistogram("p12_limited", ["k"]);
        MetricGauge gauge = rig.Collector.CreateGauge("p12_limited_level", ["k"]);
        MetricCounter counter = rig.Collector.CreateCounter("p12_limited_total", ["k"]);
        MetricHistogram keepAlive = rig.Collector.CreateHistogram("p12_keepalive4", ["k"]);
        BoundHistogram h = histogram.Bind("a");
        BoundGauge g = gauge.Bind("a");
        BoundCounter c = counter.Bind("a");
        BoundHistogram alive = keepAlive.Bind("x");
        Assert.Equal(RejectReason.None, h.Record(1));
        Assert.Equal(RejectReason.None, g.Set(1));
        Assert.Equal(RejectReason.None, c.Add(1));
        SeriesId h0 = h.Series;
        for (int step = 0; step < 120 && rig.Pipeline.Registry.GetSeriesCount("p12_limited") > 0; step++)
        {
            alive.Record(1);
            await rig.StepAsync();
        }

        Assert.Equal(0, rig.Pipeline.Registry.GetSeriesCount("p12_limited"));
        Assert.Equal(0, rig.Pipeline.Registry.GetSeriesCount("p12_limited_level"));
        Assert.Equal(0, rig.Pipeline.Registry.GetSeriesCount("p12_limited_total"));
        foreach (string k in new[] { "x", "y", "z" })
        {
            Assert.Equal(RejectReason.None, histogram.Record(5, k));
            Assert.Equal(RejectReason.None, gauge.Set(5, k));
            Assert.Equal(RejectReason.None, counter.Add(5, k));
        }

        long overflowBefore = rig.Pipeline.Registry.OverflowResolutions;
        Assert.Equal(RejectReason.None, h.Record(2));
        Assert.Equal(RejectReason.None, h.Record(3));
        Assert.Equal(RejectReason.None, g.Set(2));
        Assert.Equal(RejectReason.None, c.Add(2));
        Assert.NotEqual(h0, h.Series);
        BoundHistogram late = histogram.Bind("b");                 // bound at the limit: folds into the overflow series too
        Assert.Equal(h.Series, late.Series);
        Assert.Equal(RejectReason.None, late.Record(4));
        await rig.StepAsync();
        await rig.StopAsync();

        PipelineMetrics m = rig.Pipeline.GetMetrics();
        Assert.True(rig.Pipeline.Registry.OverflowResolutions > overflowBefore, "the fold is counted");
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(0, m.Rejected);
        var overflow = new Label(SeriesRegistry.OverflowLabelName, "true");
        Assert.Equal(1, rig.Stats("p12_limited", new Label("k", "a"))!.Count);   // before the reclaim, its own series
        MetricStatistics ho = rig.Stats("p12_limited", overflow)!;
        Assert.Equal(3, ho.Count);
        Assert.Equal(9, ho.Sum);
        Assert.Equal(2, rig.Stats("p12_limited_level", overflow)!.Last);
        Assert.Equal(2, rig.Stats("p12_limited_total", overflow)!.Sum);
        MetricStatistics all = rig.Matching("p12_limited")!;         // a, x, y, z and the overflow: nothing lost
        Assert.Equal(1 + 3 + 3, all.Count);
        Assert.Equal(1 + 15 + 9, all.Sum);
    }

    [Fact]
    public async Task BoundHandles_ExplicitTimestamps_FutureFarPastAndLate_RefusedOrLateCountedNeverThrown_AlsoAfterAReclaim()
    {
        // README: timestamps beyond MaxFutureSkew or older than MaxPointAge are refused with a reason and counted; a point
        // behind the watermark by more than the lateness is late, counted. sdk.md: "A call never throws".
        await using var rig = new Rig(configure: o =>
        {
            o.AllowedLateness = TimeSpan.FromSeconds(1);
            o.MaxFutureSkew = TimeSpan.FromMinutes(1);
            o.MaxPointAge = TimeSpan.FromMinutes(10);
        });
        MetricHistogram histogram = rig.Collector.CreateHistogram("p12_ts_seconds", ["k"]);
        MetricGauge gauge = rig.Collector.CreateGauge("p12_ts_level", ["k"]);
        MetricCounter counter = rig.Collector.CreateCounter("p12_ts_total", ["k"]);
        BoundHistogram h = histogram.Bind("a");
        BoundGauge g = gauge.Bind("a");
        BoundCounter c = counter.Bind("a");
        MetricHistogram keepAlive = rig.Collector.CreateHistogram("p12_keepalive5", ["k"]);
        BoundHistogram alive = keepAlive.Bind("x");

        long accepted = 0;
        long outOfRange = 0;
        long tooOld = 0;
        long lateTried = 0;
        var odd = new List<RejectReason>();
        long[] edgeTimestamps = [long.MinValue, long.MaxValue, 0, -1, long.MaxValue / 2];

        async Task Round()
        {
            long now = rig.NowMs;
            foreach (Func<double, long, RejectReason> write in new Func<double, long, RejectReason>[] { h.Record, g.Set, c.Add })
            {
                Assert.Equal(RejectReason.None, write(1, now));
                accepted++;
                Assert.Equal(RejectReason.TimestampOutOfRange, write(1, now + (long)TimeSpan.FromMinutes(2).TotalMilliseconds));
                outOfRange++;
                Assert.Equal(RejectReason.TimestampTooOld, write(1, now - (long)TimeSpan.FromMinutes(20).TotalMilliseconds));
                tooOld++;
                foreach (long ts in edgeTimestamps)
                {
                    RejectReason r = write(1, ts);
                    Assert.NotEqual(RejectReason.None, r);
                    odd.Add(r);
                }
            }

            // Push the watermark well past now, then write behind it (still younger than MaxPointAge): late, counted.
            // Each thread that records is a source of event time of its own and holds the watermark at its newest
            // point less AllowedLateness (1 s here) until SourceIdleTimeout (10 s) without a batch (sdk.md). An
            // awaiting test hops between pool threads when the pool is busy, so the keep-alive writes here each come
            // from a new thread: the worst case, every time. The watermark then stands 12 s behind the clock (20 steps:
            // 8 s past the round's start); a point 18 s behind is in a window closed 5 s before. Written from one
            // thread, 12 s behind was enough; from many (CI, loaded), it fell into an open window and was not late.
            for (int i = 0; i < 20; i++)
            {
                var keeper = new Thread(() => alive.Record(1));
                keeper.Start();
                keeper.Join();
                await rig.StepAsync();
            }

            long behind = rig.NowMs - 18_000;
            Assert.Equal(RejectReason.None, h.Record(100, behind));
            Assert.Equal(RejectReason.None, g.Set(100, behind));
            Assert.Equal(RejectReason.None, c.Add(100, behind));
            lateTried += 3;
            alive.Record(1);
            await rig.StepAsync();
        }

        await Round();
        Assert.Equal(RejectReason.None, h.Record(7));     // an on-time point, so that the series has a window to go idle from
        Assert.Equal(RejectReason.None, g.Set(7));
        Assert.Equal(RejectReason.None, c.Add(7));
        SeriesId h0 = h.Series;
        for (int step = 0; step < 60 && h.Series == h0; step++)
        {
            alive.Record(1);
            await rig.StepAsync();
        }

        Assert.NotEqual(h0, h.Series);
        await Round();
        await rig.StopAsync();

        PipelineMetrics m = rig.Pipeline.GetMetrics();
        long edgeRefusals = odd.Count;
        Assert.Equal(2 * 3 * edgeTimestamps.Length, edgeRefusals);
        Assert.All(odd, r => Assert.Contains(r, new[] { RejectReason.TimestampOutOfRange, RejectReason.TimestampTooOld }));
        Assert.Equal(outOfRange + odd.Count(r => r == RejectReason.TimestampOutOfRange), Rejected(m, RejectReason.TimestampOutOfRange));
        Assert.Equal(tooOld + odd.Count(r => r == RejectReason.TimestampTooOld), Rejected(m, RejectReason.TimestampTooOld));
        Assert.Equal(0, m.StalePoints);
        long late = LateOf(m, "p12_ts_seconds") + LateOf(m, "p12_ts_level") + LateOf(m, "p12_ts_total");
        Assert.Equal(lateTried, late);
        foreach (string metric in new[] { "p12_ts_seconds", "p12_ts_level", "p12_ts_total" })
        {
            MetricStatistics s = rig.Stats(metric, new Label("k", "a"))!;
            Assert.Equal(3, s.Count);      // one on-time point per round and the 7 between; the late ones are not in any window
            Assert.Equal(9, s.Sum);
            Assert.Equal(7, s.Max);
        }

        Assert.Equal(2 * 3, accepted);
    }

    [Fact]
    public async Task BoundHandles_ExtremeValues_RefusedWhereDocumentedCountedOnceAndTheRestExact()
    {
        // README: NaN, infinities and values beyond ±1e100 are refused (ValueOutOfRange), counted; sdk.md: a counter's bad
        // increments are counted by the collector, a gauge's or histogram's by the engine, each refusal once.
        await using var rig = new Rig();
        BoundCounter c = rig.Collector.CreateCounter("p12_x_total", ["k"]).Bind("a");
        BoundGauge g = rig.Collector.CreateGauge("p12_x_level", ["k"]).Bind("a");
        MetricHistogram histogram = rig.Collector.CreateHistogram("p12_x_values", ["k"]);
        BoundHistogram big = histogram.Bind("big");
        BoundHistogram tiny = histogram.Bind("tiny");
        double aboveLimit = Math.BitIncrement(1e100);
        long t = rig.NowMs;

        Assert.Equal(RejectReason.NotANumber, c.Add(double.NaN));
        Assert.Equal(RejectReason.Infinity, c.Add(double.PositiveInfinity));
        Assert.Equal(RejectReason.Infinity, c.Add(double.NegativeInfinity));      // infinite first, then negative
        Assert.Equal(RejectReason.NegativeCounterIncrement, c.Add(-double.Epsilon));
        Assert.Equal(RejectReason.ValueOutOfRange, c.Add(aboveLimit, t));
        Assert.Equal(RejectReason.ValueOutOfRange, c.Add(double.MaxValue));
        Assert.Equal(RejectReason.None, c.Add(1e100));
        Assert.Equal(RejectReason.None, c.Add(double.Epsilon, t));
        Assert.Equal(RejectReason.None, c.Add(-0.0));

        Assert.Equal(RejectReason.NotANumber, g.Set(double.NaN));
        Assert.Equal(RejectReason.Infinity, g.Set(double.NegativeInfinity, t));
        Assert.Equal(RejectReason.Infinity, g.Set(double.PositiveInfinity));
        Assert.Equal(RejectReason.ValueOutOfRange, g.Set(-aboveLimit));
        Assert.Equal(RejectReason.ValueOutOfRange, g.Set(1e300));
        Assert.Equal(RejectReason.None, g.Set(-1e100));
        Assert.Equal(RejectReason.None, g.Set(1e100));
        Assert.Equal(RejectReason.None, g.Set(-double.Epsilon, t));

        Assert.Equal(RejectReason.NotANumber, big.Record(double.NaN));
        Assert.Equal(RejectReason.ValueOutOfRange, big.Record(aboveLimit));
        Assert.Equal(RejectReason.ValueOutOfRange, big.Record(-double.MaxValue, t));
        Assert.Equal(RejectReason.Infinity, big.Record(double.PositiveInfinity));
        Assert.Equal(RejectReason.None, big.Record(1e100));
        Assert.Equal(RejectReason.None, big.Record(1e100, t));
        Assert.Equal(RejectReason.None, big.Record(-1e100));
        Assert.Equal(RejectReason.None, tiny.Record(double.Epsilon));
        Assert.Equal(RejectReason.None, tiny.Record(-0.0));
        Assert.Equal(RejectReason.None, tiny.Record(double.Epsilon, t));
        Assert.Equal(RejectReason.None, tiny.Record(-double.Epsilon));
        await rig.StepAsync();
        await rig.StopAsync();

        PipelineMetrics m = rig.Pipeline.GetMetrics();
        SourceMetrics source = m.Sources.Single(s => s.Source == "probe12");
        Assert.Equal(1, rig.Collector.GetRejectedCount(RejectReason.NotANumber));
        Assert.Equal(2, rig.Collector.GetRejectedCount(RejectReason.Infinity));
        Assert.Equal(1, rig.Collector.GetRejectedCount(RejectReason.NegativeCounterIncrement));
        Assert.Equal(2, rig.Collector.GetRejectedCount(RejectReason.ValueOutOfRange));
        Assert.Equal(6, rig.Collector.Rejected);
        Assert.Equal(9, source.Rejected);        // gauge 5, histogram 4: counted by the engine only
        Assert.Equal(2, Rejected(m, RejectReason.NotANumber));
        Assert.Equal(3, Rejected(m, RejectReason.Infinity));
        Assert.Equal(4, Rejected(m, RejectReason.ValueOutOfRange));
        Assert.Equal(3 + 3 + 7, source.Accepted);

        MetricStatistics cs = rig.Stats("p12_x_total", new Label("k", "a"))!;
        Assert.Equal(3, cs.Count);
        Assert.Equal(1e100, cs.Sum);
        Assert.Equal(0, cs.Min);
        Assert.Equal(1e100, cs.Max);
        MetricStatistics gs = rig.Stats("p12_x_level", new Label("k", "a"))!;
        Assert.Equal(3, gs.Count);
        Assert.Equal(-double.Epsilon, gs.Last);
        Assert.Equal(-1e100, gs.Min);
        Assert.Equal(1e100, gs.Max);
        MetricStatistics bs = rig.Stats("p12_x_values", new Label("k", "big"))!;
        Assert.Equal(3, bs.Count);
        Assert.Equal(1e100, bs.Sum);
        Assert.Equal(-1e100, bs.Min);
        Assert.Equal(1e100, bs.Max);
        Assert.True(double.IsFinite(bs.PopulationVariance), $"moments stay finite ({bs.PopulationVariance})");
        MetricStatistics ts = rig.Stats("p12_x_values", new Label("k", "tiny"))!;
        Assert.Equal(4, ts.Count);
        Assert.Equal(double.Epsilon, ts.Sum);
        Assert.Equal(-double.Epsilon, ts.Min);
        Assert.Equal(double.Epsilon, ts.Max);
    }

    [Fact]
    public async Task BoundHandles_FourThreadsWritingWhileStopAsyncRuns_NoThrowNoHang_EveryTakenPointAggregatedRestWriterClosed()
    {
        // README: StopAsync is graceful (every queued point aggregated), writes after it are refused as WriterClosed; sdk.md:
        // a call never throws. Four threads share one histogram handle and one counter handle while the pipeline stops.
        const int Threads = 4;
        var rig = new Rig();
        MetricHistogram histogram = rig.Collector.CreateHistogram("p12_stop_seconds", ["k"]);
        MetricCounter counter = rig.Collector.CreateCounter("p12_stop_total", ["k"]);
        BoundHistogram h = histogram.Bind("a");
        BoundCounter c = counter.Bind("a");
        long[] took = new long[Threads];
        long[] closed = new long[Threads];
        long[] other = new long[Threads];
        Exception?[] thrown = new Exception?[Threads];
        int started = 0;
        Task[] writers = [.. Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(() =>
        {
            try
            {
                Interlocked.Increment(ref started);
                long closedSeen = 0;
                for (int i = 0; i < 400_000 && closedSeen < 2_000; i++)
                {
                    RejectReason r = (i & 1) == 0 ? h.Record(1) : c.Add(1);
                    if (r == RejectReason.None)
                    {
                        took[t]++;
                    }
                    else if (r == RejectReason.WriterClosed)
                    {
                        closed[t]++;
                        closedSeen++;
                    }
                    else
                    {
                        other[t]++;
                    }

                    if (i % 1000 == 999)
                    {
                        Thread.Yield();
                    }
                }
            }
            catch (Exception e)
            {
                thrown[t] = e;
            }
        }, TaskCreationOptions.LongRunning))];

        for (int spin = 0; spin < 2_000 && (Volatile.Read(ref started) < Threads || took.Sum() < 10_000); spin++)
        {
            await Task.Delay(5);     // waits for progress only; bounded in steps
        }

        await rig.StepAsync();
        await rig.Pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(30));
        PipelineMetrics atStop = rig.Pipeline.GetMetrics();

        // After the stop, after disposal of the pipeline and of the collector: refused, never thrown.
        Assert.Equal(RejectReason.WriterClosed, h.Record(1));
        Assert.Equal(RejectReason.WriterClosed, c.Add(1, rig.NowMs));
        await rig.Pipeline.DisposeAsync();
        Assert.Equal(RejectReason.WriterClosed, h.Record(1));
        rig.Collector.Dispose();
        Assert.Equal(RejectReason.WriterClosed, h.Record(1));
        Assert.Equal(RejectReason.WriterClosed, c.Add(1));
        Assert.Equal(RejectReason.WriterClosed, histogram.Bind("a").Record(1));

        Assert.All(thrown, e => Assert.Null(e));
        Assert.Equal(0, other.Sum());
        PipelineMetrics m = rig.Pipeline.GetMetrics();
        SourceMetrics source = m.Sources.Single(s => s.Source == "probe12");
        Assert.Equal(atStop.EmittedPoints, m.EmittedPoints);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(source.Offered, source.Accepted + source.Rejected + source.Dropped);
        Assert.Equal(took.Sum(), source.Accepted + source.Dropped);
        Assert.Equal(closed.Sum() + 6, Rejected(m, RejectReason.WriterClosed));
        long late = LateOf(m, "p12_stop_seconds") + LateOf(m, "p12_stop_total");
        long aggregated = (rig.Stats("p12_stop_seconds", new Label("k", "a"))?.Count ?? 0) + (rig.Stats("p12_stop_total", new Label("k", "a"))?.Count ?? 0);
        Assert.Equal(took.Sum() - source.Dropped - late, aggregated);
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late);
    }

    [Fact]
    public async Task BoundHandles_TwoPipelinesSameNamesBothReclaiming_AHandleWritesOnlyIntoItsOwnPipeline()
    {
        // README: ids of another pipeline are refused (UnknownSeries). A handle re-resolves in its own pipeline's registry:
        // the same metric and labels in a second pipeline, reclaimed there on another schedule, never receive its points.
        await using var a = new Rig(source: "probe12-a", configure: o => o.SourceIdleTimeout = TimeSpan.FromSeconds(2));
        await using var b = new Rig(source: "probe12-b", configure: o => o.SourceIdleTimeout = TimeSpan.FromSeconds(2));
        MetricHistogram ha = a.Collector.CreateHistogram("p12_two", ["k"]);
        MetricHistogram hb = b.Collector.CreateHistogram("p12_two", ["k"]);
        BoundHistogram boundA = ha.Bind("same");
        BoundHistogram boundB = hb.Bind("same");
        BoundHistogram aliveA = a.Collector.CreateHistogram("p12_two_alive", ["k"]).Bind("x");
        BoundHistogram aliveB = b.Collector.CreateHistogram("p12_two_alive", ["k"]).Bind("x");
        var idsA = new HashSet<SeriesId>();
        var idsB = new HashSet<SeriesId>();
        long wroteA = 0, wroteB = 0;
        for (int step = 0; step < 70; step++)
        {
            // A's handle writes every 13th step (its series is reclaimed between), B's every 17th; both clocks tick.
            if (step % 13 == 0)
            {
                Assert.Equal(RejectReason.None, boundA.Record(1));
                wroteA++;
                idsA.Add(boundA.Series);
            }

            if (step % 17 == 0)
            {
                Assert.Equal(RejectReason.None, boundB.Record(1000));
                wroteB++;
                idsB.Add(boundB.Series);
            }

            aliveA.Record(1);
            aliveB.Record(1);
            await a.StepAsync();
            await b.StepAsync();
        }

        Assert.All(idsA, id => Assert.True(a.Pipeline.Registry.Owns(id)));
        Assert.All(idsB, id => Assert.True(b.Pipeline.Registry.Owns(id)));
        Assert.True(idsA.Count >= 3 && idsB.Count >= 3, $"both handles re-resolved after reclaims ({idsA.Count}, {idsB.Count})");
        await a.StopAsync();
        await b.StopAsync();

        PipelineMetrics ma = a.Pipeline.GetMetrics(), mb = b.Pipeline.GetMetrics();
        Assert.Equal(0, Rejected(ma, RejectReason.UnknownSeries) + Rejected(mb, RejectReason.UnknownSeries));
        Assert.Equal(0, ma.StalePoints + mb.StalePoints);
        MetricStatistics sa = a.Stats("p12_two", new Label("k", "same"))!;
        MetricStatistics sb = b.Stats("p12_two", new Label("k", "same"))!;
        Assert.Equal(wroteA - LateOf(ma, "p12_two"), sa.Count);
        Assert.Equal(wroteB - LateOf(mb, "p12_two"), sb.Count);
        Assert.Equal(1, sa.Max);           // nothing of B's (1000) in A
        Assert.Equal(1000, sb.Min);        // nothing of A's (1) in B
    }
    [Fact]
    public async Task SeriesInternedButNeverAggregated_BindWithoutWriteOrRefusedPoint_IsReclaimedLikeAnyIdleSeries()
    {
        // docs/memory.md, "Series churn": "New label values every window ... would grow every per-series array for ever. A
        // series with no point for SeriesIdleTimeout ... is reclaimed". sdk.md: Bind "resolves the label set to a SeriesId
        // once" (it interns the series). A series interned by a Bind that never writes, or by a labelled call whose point the
        // engine refuses (a timestamp beyond MaxFutureSkew), has had no point for far longer than the idle timeout.
        await using var rig = new Rig(configure: o => o.Registry = new SeriesRegistryOptions { MaxSeriesPerMetric = 20 });
        MetricHistogram bound = rig.Collector.CreateHistogram("p12_never_bound", ["k"]);
        MetricHistogram refused = rig.Collector.CreateHistogram("p12_never_refused", ["k"]);
        BoundHistogram alive = rig.Collector.CreateHistogram("p12_keepalive6", ["k"]).Bind("x");
        long future = rig.NowMs + (long)TimeSpan.FromHours(1).TotalMilliseconds;
        for (int i = 0; i < 20; i++)
        {
            bound.Bind("b" + i);
            Assert.Equal(RejectReason.TimestampOutOfRange, refused.RecordAt(future, 1, "r" + i));
        }

        Assert.Equal(20, rig.Pipeline.Registry.GetSeriesCount("p12_never_bound"));
        Assert.Equal(20, rig.Pipeline.Registry.GetSeriesCount("p12_never_refused"));
        for (int step = 0; step < 60; step++)      // 60 s of engine time against a 5 s idle timeout
        {
            alive.Record(1);
            await rig.StepAsync();
        }

        long overflowBefore = rig.Pipeline.Registry.OverflowResolutions;
        Assert.Equal(RejectReason.None, bound.Record(2, "fresh"));
        Assert.Equal(RejectReason.None, refused.Record(2, "fresh"));
        await rig.StopAsync();

        int boundLeft = rig.Pipeline.Registry.GetSeriesCount("p12_never_bound");
        int refusedLeft = rig.Pipeline.Registry.GetSeriesCount("p12_never_refused");
        long overflow = rig.Pipeline.Registry.OverflowResolutions - overflowBefore;
        Assert.True(boundLeft <= 1 && refusedLeft <= 1 && overflow == 0,
            $"series never written stay interned for ever: {boundLeft} of p12_never_bound and {refusedLeft} of p12_never_refused still listed after 60 s idle (timeout 5 s); "
            + $"a fresh label set then folds into the overflow series ({overflow} overflow resolutions)");
    }
}
