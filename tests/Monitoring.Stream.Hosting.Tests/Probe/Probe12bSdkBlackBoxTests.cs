using System.Diagnostics.Metrics;
using Monitoring.Stream.Hosting.Bridge;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Series;
using Monitoring.Stream.Hosting.Tests.Support;

namespace Monitoring.Stream.Hosting.Tests.Probe;

/// <summary>
/// Probe 12b: the SDK's labelled calls and the Meter bridge now look their series up inside the per-thread writer's
/// gate; series that never had a point aggregated are reclaimed once idle (docs/sdk.md, "Instruments" and "Bridge";
/// docs/memory.md, "Series churn"). From the docs and the public API; loops bounded in steps.
/// </summary>
public class Probe12bSdkBlackBoxTests
{
    private const long T0 = ReclaimRig.T0;
    private const string Source = "p12b-sdk";

    /// <summary>The reclaim rig with a second of lateness, an hour of queries and two hours of retention.</summary>
    private sealed class Rig(Action<MetricsPipelineOptions>? configure = null)
        : ReclaimRig(Probe12bSdkBlackBoxTests.Source, configure: o =>
        {
            o.Instance = "p12b";
            o.AllowedLateness = TimeSpan.FromSeconds(1);
            configure?.Invoke(o);
        }, lookBack: TimeSpan.FromHours(1), retention: TimeSpan.FromHours(2), drainAfterStep: true);

    private static string Describe(PipelineMetrics m) =>
        $"offered {m.Offered}, accepted {m.Accepted}, rejected {m.Rejected}, dropped {m.Dropped}, emitted {m.EmittedPoints}, late {m.Late}, " +
        $"stale {m.StalePoints}, open {m.OpenWindowPoints}, reclaimed {m.SeriesReclaimed}, retired {m.SeriesRetired}, overflow {m.OverflowResolutions}";

    private static void AssertAccounted(PipelineMetrics m)
    {
        Assert.True(m.Offered == m.Accepted + m.Rejected + m.Dropped, Describe(m));
        Assert.True(m.Accepted == m.EmittedPoints + m.Late + m.StalePoints + m.FaultedPoints + m.OpenWindowPoints, Describe(m));
    }

    /// <summary>Runs <paramref name="call"/> and checks it returned <paramref name="expected"/>, threw nothing, and was counted exactly once, by the collector or by the engine as said.</summary>
    private static void AssertRefusedOnce(Rig rig, Func<RejectReason> call, RejectReason expected, bool byCollector, string what)
    {
        PipelineMetrics before = rig.Pipeline.GetMetrics();
        long collectorBefore = rig.Collector.Rejected;
        long reasonBefore = rig.Collector.GetRejectedCount(expected);
        RejectReason got = RejectReason.None;
        Exception? thrown = Record.Exception(() => got = call());
        Assert.True(thrown is null, $"{what} threw {thrown}");
        Assert.True(got == expected, $"{what}: returned {got}, expected {expected}");
        PipelineMetrics after = rig.Pipeline.GetMetrics();
        long engineDelta = after.Rejected - before.Rejected;
        long collectorDelta = rig.Collector.Rejected - collectorBefore;
        Assert.True(engineDelta + collectorDelta == 1, $"{what}: counted {collectorDelta} time(s) by the collector and {engineDelta} by the engine");
        if (byCollector)
        {
            Assert.Equal(1, rig.Collector.GetRejectedCount(expected) - reasonBefore);
            Assert.Equal(0, after.Offered - before.Offered);
        }
        else
        {
            Assert.Equal(1, after.RejectedByReason[expected] - before.RejectedByReason[expected]);
            Assert.Equal(1, after.Offered - before.Offered);
        }

        Assert.Equal(0, after.Accepted - before.Accepted);
    }

    [Fact]
    public async Task LabelledCalls_EveryLookupRefusal_EveryEntryAndLabelCount_CountedOnceByTheCollector_NeverThrown()
    {
        await using var rig = new Rig(o => o.Registry = new SeriesRegistryOptions { MaxMetrics = 5, MaxLabelValueLength = 8 });
        MetricHistogram h = rig.Collector.CreateHistogram("p12b_sdk_seconds", ["b", "a"]);
        MetricCounter c = rig.Collector.CreateCounter("p12b_sdk_total", ["b", "a"]);
        MetricGauge g = rig.Collector.CreateGauge("p12b_sdk_level", ["b", "a"]);
        string[] six = ["f", "e", "d", "c", "b", "a"];
        string[] ten = ["j", "i", "h", "g", "f", "e", "d", "c", "b", "a"];
        MetricHistogram h6 = rig.Collector.CreateHistogram("p12b_sdk_six", six);
        MetricHistogram h10 = rig.Collector.CreateHistogram("p12b_sdk_ten", ten);
        MetricHistogram sixth = rig.Collector.CreateHistogram("p12b_sdk_sixth_metric", ["a"]);
        const string TooLong = "123456789";
        string[] sixOk = ["1", "2", "3", "4", "5", "6"];
        string[] sixBad = ["1", "2", "3", "4", "5", TooLong];
        string[] tenOk = [.. Enumerable.Range(0, 10).Select(i => $"{i}")];
        string[] tenBad = [TooLong, .. tenOk[1..]];

        // Five metrics interned by good calls: the limit (MaxMetrics = 5) is reached.
        Assert.Equal(RejectReason.None, h.Record(1, "x", "y"));
        Assert.Equal(RejectReason.None, c.Add(1, "x", "y"));
        Assert.Equal(RejectReason.None, g.Set(1, "x", "y"));
        Assert.Equal(RejectReason.None, h6.Record(1, sixOk));
        Assert.Equal(RejectReason.None, h10.Record(1, tenOk));

        for (int repeat = 0; repeat < 2; repeat++)
        {
            AssertRefusedOnce(rig, () => h.Record(1, TooLong, "y"), RejectReason.LabelValueTooLong, true, "Record");
            AssertRefusedOnce(rig, () => h.RecordAt(T0, 1, "x", TooLong), RejectReason.LabelValueTooLong, true, "RecordAt");
            AssertRefusedOnce(rig, () => c.Add(1, TooLong, "y"), RejectReason.LabelValueTooLong, true, "Add");
            AssertRefusedOnce(rig, () => c.AddAt(T0, 1, "x", new string('z', 9)), RejectReason.LabelValueTooLong, true, "AddAt");
            AssertRefusedOnce(rig, () => g.Set(1, TooLong, "y"), RejectReason.LabelValueTooLong, true, "Set");
            AssertRefusedOnce(rig, () => g.SetAt(T0, 1, "x", TooLong), RejectReason.LabelValueTooLong, true, "SetAt");
            AssertRefusedOnce(rig, () => h6.Record(1, sixBad), RejectReason.LabelValueTooLong, true, "six labels");
            AssertRefusedOnce(rig, () => h10.Record(1, tenBad), RejectReason.LabelValueTooLong, true, "ten labels");
            AssertRefusedOnce(rig, () => h10.RecordAt(T0, 1, tenBad), RejectReason.LabelValueTooLong, true, "ten labels, at");
            AssertRefusedOnce(rig, () => sixth.Record(1, "x"), RejectReason.MetricLimitExceeded, true, "a sixth metric");
            AssertRefusedOnce(rig, () => sixth.RecordAt(T0, 1, "x"), RejectReason.MetricLimitExceeded, true, "a sixth metric, at");
            // Two faults in one call: counted once.
            AssertRefusedOnce(rig, () => h.Record(double.NaN, TooLong, "y"), RejectReason.LabelValueTooLong, true, "NaN and a long value");
            AssertRefusedOnce(rig, () => c.Add(-1, TooLong, "y"), RejectReason.NegativeCounterIncrement, true, "negative and a long value");
            AssertRefusedOnce(rig, () => h.Record(1, "x"), RejectReason.LabelCountMismatch, true, "one value for two labels");
            // Refusals of the engine after a good lookup are the engine's.
            AssertRefusedOnce(rig, () => h.Record(double.NaN, "x", "y"), RejectReason.NotANumber, false, "NaN");
            AssertRefusedOnce(rig, () => h.RecordAt(T0 + (long)TimeSpan.FromDays(1).TotalMilliseconds, 1, "x", "y"), RejectReason.TimestampOutOfRange, false, "far future");
        }

        // Nothing left entered: good calls of every kind go on from this thread and another.
        Assert.Equal(RejectReason.None, h.Record(2, "x", "y"));
        Assert.Equal(RejectReason.None, await Task.Run(() => h.Record(3, "x", "y")));
        Assert.Equal(RejectReason.None, h10.Record(2, tenOk));
        rig.Collector.Flush();
        await rig.Pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        PipelineMetrics m = rig.Pipeline.GetMetrics();
        AssertAccounted(m);
        MetricStatistics? xy = rig.Stats("p12b_sdk_seconds", new Label("a", "y"), new Label("b", "x"));
        Assert.NotNull(xy);
        Assert.Equal(3, xy.Count);
        Assert.Equal(6.0, xy.Sum);
        Assert.Equal(2, rig.Stats("p12b_sdk_ten", [.. ten.Select((n, i) => new Label(n, tenOk[i]))])!.Count);
        Assert.Equal(0, rig.Pipeline.Registry.GetSeriesCount("p12b_sdk_sixth_metric"));
    }

    [Fact]
    public async Task LabelledCalls_AfterTheCollectorIsDisposedOrThePipelineStopped_NeverThrow_CountedOnce()
    {
        await using var rig = new Rig(o => o.Registry = new SeriesRegistryOptions { MaxLabelValueLength = 8 });
        MetricHistogram h = rig.Collector.CreateHistogram("p12b_closed_seconds", ["a"]);
        var second = new MetricsCollector(rig.Pipeline, "p12b-second");
        MetricHistogram h2 = second.CreateHistogram("p12b_closed2_seconds", ["a"]);
        Assert.Equal(RejectReason.None, h2.Record(1, "x"));
        second.Dispose();
        for (int i = 0; i < 3; i++)
        {
            PipelineMetrics before = rig.Pipeline.GetMetrics();
            long secondBefore = second.Rejected;
            RejectReason got = RejectReason.None;
            Exception? thrown = Record.Exception(() => got = h2.Record(1, i == 0 ? "x" : i == 1 ? "fresh" : "123456789"));
            Assert.True(thrown is null, $"a call after the collector's Dispose threw {thrown}");
            Assert.True(got != RejectReason.None, $"call {i} after the collector's Dispose was accepted");
            long counted = (rig.Pipeline.GetMetrics().Rejected - before.Rejected) + (second.Rejected - secondBefore);
            Assert.True(counted == 1, $"call {i} after the collector's Dispose: {got}, counted {counted} times");
        }

        Assert.Equal(RejectReason.None, h.Record(1, "x"));
        rig.Collector.Flush();
        await rig.Pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));

        PipelineMetrics b = rig.Pipeline.GetMetrics();
        long collectorBefore = rig.Collector.Rejected;
        Assert.Equal(RejectReason.WriterClosed, h.Record(1, "x"));
        Assert.Equal(RejectReason.WriterClosed, h.RecordAt(T0, 1, "unseen"));
        RejectReason both = h.Record(1, "123456789");
        Assert.True(both is RejectReason.WriterClosed or RejectReason.LabelValueTooLong, $"{both}");
        PipelineMetrics a = rig.Pipeline.GetMetrics();
        Assert.Equal(3, (a.Rejected - b.Rejected) + (rig.Collector.Rejected - collectorBefore));
        Assert.Equal(0, a.Accepted - b.Accepted);
    }

    [Fact]
    public async Task Bridge_BadTagNamesTooManyTagsLongValuesMetricLimit_RefusedByTheEngineCountedOnce_NeverThrownAtTheCallSite()
    {
        await using var rig = new Rig(o => o.Registry = new SeriesRegistryOptions { MaxMetrics = 3, MaxLabelsPerSeries = 4, MaxLabelValueLength = 8 });
        string meterName = "P12b.Bridge." + Guid.NewGuid().ToString("N");
        using var meter = new Meter(meterName);
        using var bridge = new MeterBridge(rig.Collector, new MeterBridgeOptions { Meters = { meterName } }, rig.Time);
        Counter<long> counter = meter.CreateCounter<long>("p12b.orders");
        Histogram<double> histogram = meter.CreateHistogram<double>("p12b.latency");
        Histogram<double> longName = meter.CreateHistogram<double>("p12b." + new string('x', 300));
        Histogram<double> third = meter.CreateHistogram<double>("p12b.third");
        Histogram<double> fourth = meter.CreateHistogram<double>("p12b.fourth");
        static KeyValuePair<string, object?> T(string k, object? v) => new(k, v);

        counter.Add(1, T("region", "eu"));
        histogram.Record(0.5, T("route", "/a"));
        third.Record(1, T("k", "v"));

        void Refused(Action call, RejectReason expected, string what)
        {
            long measurements = bridge.Measurements;
            AssertRefusedOnce(rig, () =>
            {
                call();
                return expected;
            }, expected, byCollector: false, what);
            Assert.Equal(measurements + 1, bridge.Measurements);
        }

        for (int repeat = 0; repeat < 2; repeat++)
        {
            Refused(() => counter.Add(1, T("__reserved", "v")), RejectReason.InvalidLabelName, "a reserved tag name");
            Refused(() => histogram.Record(1, T("", "v")), RejectReason.InvalidLabelName, "an empty tag name");
            Refused(() => histogram.Record(1, T("a.b", "1"), T("a_b", "2")), RejectReason.DuplicateLabelName, "two tags that sanitise alike");
            Refused(() => histogram.Record(1, T("a", "1"), T("a", "2")), RejectReason.DuplicateLabelName, "a tag twice");
            Refused(() => histogram.Record(1, T("a", 1), T("b", 2), T("c", 3), T("d", 4), T("e", 5)), RejectReason.TooManyLabels, "five tags");
            Refused(() => histogram.Record(1, [.. Enumerable.Range(0, 10).Select(i => T($"t{i}", i))]), RejectReason.TooManyLabels, "ten tags");
            Refused(() => counter.Add(1, T("region", "123456789")), RejectReason.LabelValueTooLong, "a long tag value");
            Refused(() => histogram.Record(1, T("route", 123456789.5)), RejectReason.LabelValueTooLong, "a long formatted tag value");
            Refused(() => longName.Record(1, T("k", "v")), RejectReason.InvalidMetricName, "a 305-character instrument name");
            Refused(() => fourth.Record(1, T("k", "v")), RejectReason.MetricLimitExceeded, "a fourth metric");
        }

        // Good measurements still go through.
        counter.Add(2, T("region", "eu"));
        await Task.Run(() => histogram.Record(1.5, T("route", "/a")));
        Assert.Equal(0, rig.Collector.Rejected);
        rig.Collector.Flush();
        await rig.Pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        AssertAccounted(rig.Pipeline.GetMetrics());
        Assert.Equal(3.0, rig.Stats("p12b_orders", new Label("region", "eu"))!.Sum);
        Assert.Equal(2, rig.Stats("p12b_latency", new Label("route", "/a"))!.Count);
    }

    [Fact]
    public async Task Bridge_TagWithANullKey_NeverThrowsAtTheCallSite()
    {
        // docs/sdk.md, "Bridge": "Nothing at the call sites throws". A KeyValuePair with a null key is what a tag
        // built from a missing configuration value gives.
        await using var rig = new Rig();
        string meterName = "P12b.NullKey." + Guid.NewGuid().ToString("N");
        using var meter = new Meter(meterName);
        using var bridge = new MeterBridge(rig.Collector, new MeterBridgeOptions { Meters = { meterName } }, rig.Time);
        Counter<long> counter = meter.CreateCounter<long>("p12b.nullkey");
        PipelineMetrics before = rig.Pipeline.GetMetrics();
        Exception? thrown = Record.Exception(() => counter.Add(1, new KeyValuePair<string, object?>(null!, "v")));
        Assert.True(thrown is null, $"Counter<long>.Add with a null tag key threw out of the bridge's callback: {thrown?.GetType().Name}: {thrown?.Message}\n{thrown?.StackTrace}");
        Assert.Equal(1, rig.Pipeline.GetMetrics().Rejected - before.Rejected + rig.Collector.Rejected);
    }

    [Fact]
    public async Task LabelledCalls_SeriesWhoseEveryPointIsRefusedOrLate_ReclaimedAndTheLimitFreed_FreshAndSameStringsExact()
    {
        const string Metric = "p12b_limit_seconds";
        await using var rig = new Rig(o => o.Registry = new SeriesRegistryOptions { MaxSeriesPerMetric = 50 });
        MetricHistogram h = rig.Collector.CreateHistogram(Metric, ["pod", "zone"]);
        MetricHistogram alive = rig.Collector.CreateHistogram("p12b_alive", ["k"]);
        for (int s = 0; s < 40; s++)
        {
            alive.Record(1, "x");
            await rig.StepAsync();
        }

        long farFuture = rig.NowMs + (long)TimeSpan.FromDays(1).TotalMilliseconds;
        for (int i = 0; i < 30; i++)
        {
            Assert.Equal(RejectReason.TimestampOutOfRange, h.RecordAt(farFuture, 1, $"refused-{i}", "z"));
        }

        for (int i = 0; i < 20; i++)
        {
            // 30 s behind the watermark, within MaxPointAge: accepted, then late at its shard.
            Assert.Equal(RejectReason.None, h.RecordAt(T0 + 5_000 + i, 1, $"late-{i}", "z"));
        }

        rig.Collector.Flush();
        await rig.Pipeline.DrainAsync();
        Assert.Equal(50, rig.Pipeline.Registry.GetSeriesCount(Metric));
        Assert.Equal(20, rig.Pipeline.GetMetrics().LateByMetric.GetValueOrDefault(Metric));
        long overflowBefore = rig.Pipeline.Registry.GetOverflowResolutions(Metric);

        for (int s = 0; s < 60 && rig.Pipeline.Registry.GetSeriesCount(Metric) > 0; s++)
        {
            alive.Record(1, "x");
            await rig.StepAsync();
        }

        Assert.True(rig.Pipeline.Registry.GetSeriesCount(Metric) == 0,
            $"{rig.Pipeline.Registry.GetSeriesCount(Metric)} series without an aggregated point still hold the limit; {Describe(rig.Pipeline.GetMetrics())}");

        // The limit is free: 50 label sets, written with the same objects and with fresh strings, across two reclaims.
        string[] pods = [.. Enumerable.Range(0, 50).Select(i => $"pod-{i}")];
        var expected = new Dictionary<string, List<double>>();
        for (int cycle = 0; cycle < 2; cycle++)
        {
            for (int k = 0; k < 4; k++)
            {
                for (int i = 0; i < pods.Length; i++)
                {
                    double v = (cycle * 100) + (k * 10) + (i * 0.5) + 0.125;
                    string pod = (k & 1) == 0 ? pods[i] : new string(pods[i].AsSpan());
                    string zone = k == 3 ? new string("z".AsSpan()) : "z";
                    Assert.Equal(RejectReason.None, h.Record(v, pod, zone));
                    (expected.TryGetValue(pods[i], out List<double>? list) ? list : expected[pods[i]] = []).Add(v);
                }

                alive.Record(1, "x");
                await rig.StepAsync();
            }

            Assert.Equal(overflowBefore, rig.Pipeline.Registry.GetOverflowResolutions(Metric));
            Assert.Equal(50, rig.Pipeline.Registry.GetSeriesCount(Metric));
            for (int s = 0; s < 60 && rig.Pipeline.Registry.GetSeriesCount(Metric) > 0; s++)
            {
                alive.Record(1, "x");
                await rig.StepAsync();
            }

            Assert.Equal(0, rig.Pipeline.Registry.GetSeriesCount(Metric));
        }

        rig.Collector.Flush();
        await rig.Pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        PipelineMetrics m = rig.Pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(20, m.LateByMetric.GetValueOrDefault(Metric));
        foreach (string pod in pods)
        {
            MetricStatistics? st = rig.Stats(Metric, new Label("pod", pod), new Label("zone", "z"));
            Assert.NotNull(st);
            Assert.Equal(expected[pod].Count, st.Count);
            Assert.Equal(expected[pod].Sum(), st.Sum, 9);
            Assert.Equal(expected[pod].Min(), st.Min);
            Assert.Equal(expected[pod].Max(), st.Max);
        }

        Assert.Null(rig.Stats(Metric, new Label("pod", "late-0"), new Label("zone", "z")));
    }

    [Fact]
    public async Task LabelledCalls_FromThreeThreadsRacingThePipelineStop_NoThrowNoHang_EveryCallAccounted()
    {
        var rig = new Rig(o => o.Registry = new SeriesRegistryOptions { MaxLabelValueLength = 8 });
        MetricHistogram h = rig.Collector.CreateHistogram("p12b_race_seconds", ["t", "k"]);
        MetricCounter c = rig.Collector.CreateCounter("p12b_race_total", ["t", "k"]);
        const int Threads = 3;
        long[] ok = new long[Threads], closed = new long[Threads], tooLong = new long[Threads], other = new long[Threads];
        var errors = new List<Exception>();
        string[] values = [.. Enumerable.Range(0, 300).Select(i => $"v{i}")];
        using var started = new CountdownEvent(Threads);
        Thread[] threads = [.. Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                string tn = $"t{t}";
                for (int i = 0; i < 5_000_000; i++)
                {
                    if (i == 2_000)
                    {
                        started.Signal();
                    }

                    string k = i % 101 == 0 ? "123456789" : (i & 1) == 0 ? values[i % 300] : new string(values[i % 300].AsSpan());
                    RejectReason r = t == 2 ? c.Add(1, tn, k) : (i & 2) == 0 ? h.Record(1, tn, k) : h.RecordAt(T0 + 1, 1, tn, k);
                    switch (r)
                    {
                        case RejectReason.None: ok[t]++; break;
                        case RejectReason.WriterClosed:
                            if (++closed[t] >= 100)
                            {
                                return;
                            }

                            break;
                        case RejectReason.LabelValueTooLong: tooLong[t]++; break;
                        default: other[t]++; break;
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
        await rig.Pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        foreach (Thread th in threads)
        {
            Assert.True(th.Join(TimeSpan.FromSeconds(10)), "a writer thread hung after the stop");
        }

        Assert.Empty(errors);
        PipelineMetrics m = rig.Pipeline.GetMetrics();
        AssertAccounted(m);
        Assert.Equal(0, m.StalePoints);
        Assert.Equal(0, other.Sum());
        SourceMetrics s = m.Sources.Single(x => x.Source == Source);
        Assert.True(s.Accepted + s.Dropped == ok.Sum(), $"{ok.Sum()} calls returned None; source accepted {s.Accepted} + dropped {s.Dropped}");
        Assert.True(s.Rejected == closed.Sum(), $"{closed.Sum()} WriterClosed returned; the engine counted {s.Rejected} refusals");
        Assert.Equal(m.RejectedByReason[RejectReason.WriterClosed], s.Rejected);
        // A long value is the collector's refusal, unless the writer was closed first (then WriterClosed, the engine's).
        Assert.Equal(tooLong.Sum(), rig.Collector.GetRejectedCount(RejectReason.LabelValueTooLong));
        Assert.Equal(tooLong.Sum(), rig.Collector.Rejected);
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late);
        await rig.DisposeAsync();
    }
}
